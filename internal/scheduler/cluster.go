package scheduler

import (
	"fmt"
	"maps"
	"slices"
	"sort"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/gpu"
)

// Cluster is the scheduler's working view of a snapshot: per node, what
// allocations hold of every dimension, kept incrementally as allocations
// are added and removed. Schedule builds one per call from the snapshot and
// throws it away; a caller that places many requests against one evolving
// cluster (the trace simulator, benchmarks) builds it once with NewCluster
// and calls Engine.Plan repeatedly, which updates it in place.
//
// A Cluster is not safe for concurrent use. It never modifies the
// snapshot's nodes or allocations.
type Cluster struct {
	nodes   []*NodeState
	byID    map[string]*NodeState
	byJob   map[string][]*api.Allocation
	byAlloc map[string]*api.Allocation
	drivers map[string]uint64 // driver name → bit in NodeState.drivers
	models  map[string][]uint64
	queues  *queueBook
	index   *freeIndex
	// prio counts allocations per priority (clamped to 0..100), so
	// preemption knows at once whether anything could be evicted.
	prio [api.MaxPriority + 1]int
	// gpuNodes are the nodes with GPUs, by ID: GPU work looks only there
	// (and at every node when it finds nothing, to explain why).
	gpuNodes []*NodeState
	gpuIndex *gpuIndex
	values   map[attrRef]*attrIndex
	counts   [][]int32 // zeroed per-node counters for plans to borrow
	memos    map[string]*explainMemo
	changes  []int32  // nodes whose accounting changed, in order (explain.go)
	stamp    []uint32 // per node: dedup stamp for walking changes
	stampGen uint32
}

// borrowCounts hands out a zeroed per-node counter array; returnCounts
// takes it back zeroed. Plans reuse them instead of allocating one per
// group.
func (c *Cluster) borrowCounts() []int32 {
	if k := len(c.counts); k > 0 {
		a := c.counts[k-1]
		c.counts = c.counts[:k-1]
		return a
	}
	return make([]int32, len(c.nodes))
}

func (c *Cluster) returnCounts(a []int32) { c.counts = append(c.counts, a) }

// attrIndex numbers the values of one attribute: per node its value's
// number (-1 when the node does not carry it), and how many distinct
// values the schedulable nodes carry.
type attrIndex struct {
	ids    []int32
	n      int // values numbered (over every node)
	values int // distinct values over schedulable nodes
}

// attrIndex returns the numbering of an attribute's values, computed once
// per attribute.
func (c *Cluster) attrIndex(ref attrRef) *attrIndex {
	if x, ok := c.values[ref]; ok {
		return x
	}
	x := &attrIndex{ids: make([]int32, len(c.nodes))}
	id := map[string]int32{}
	seen := map[int32]bool{}
	for i, n := range c.nodes {
		v, ok := ref.get(n.node)
		if !ok {
			x.ids[i] = -1
			continue
		}
		k, known := id[v]
		if !known {
			k = int32(len(id))
			id[v] = k
		}
		x.ids[i] = k
		if n.schedulable {
			seen[k] = true
		}
	}
	x.n, x.values = len(id), len(seen)
	if c.values == nil {
		c.values = map[attrRef]*attrIndex{}
	}
	c.values[ref] = x
	return x
}

// NodeState is one node and what allocations hold of it. Scorers read it
// through its methods; only the Cluster changes it.
type NodeState struct {
	node        *api.Node
	index       int
	gen         uint64
	schedulable bool
	drivers     uint64

	capCPU, capMem, capDisk int
	cpu, mem, disk          int
	portMin, portMax        int
	ports                   []int32 // host ports in use, sorted; a multiset
	inRange                 int     // entries of ports inside [portMin, portMax]

	gpus   []gpu.Device
	allocs []*api.Allocation

	// A summary of the GPUs for quick rejection and the GPU index:
	// devices that can go whole now, the most free milli on a device that
	// can take a share (and on one already shared), healthy MIG-enabled
	// devices, and the most free compute slices on one of them (or the
	// compute of a free instance).
	gpuIdle, gpuShareMax, gpuMIG int
	gpuPartialMax, gpuMIGFree    int
}

func (n *NodeState) summarize() {
	n.gpuIdle, n.gpuShareMax, n.gpuMIG = 0, 0, 0
	n.gpuPartialMax, n.gpuMIGFree = 0, 0
	for i := range n.gpus {
		d := &n.gpus[i]
		switch {
		case !d.Healthy:
		case d.MIGEnabled:
			n.gpuMIG++
			free := 7 - d.Compute
			if d.Geometry != nil {
				free = d.Geometry.ComputeSlices - d.Compute
			}
			n.gpuMIGFree = max(n.gpuMIGFree, free)
			for _, in := range d.Instances {
				if in.Users == 0 {
					n.gpuMIGFree = max(n.gpuMIGFree, in.Compute, 1)
				}
			}
		case d.Users == 0:
			n.gpuIdle++
			n.gpuShareMax = max(n.gpuShareMax, d.FreeMilli)
		case d.Form == gpu.FormShare:
			n.gpuShareMax = max(n.gpuShareMax, d.FreeMilli)
			n.gpuPartialMax = max(n.gpuPartialMax, d.FreeMilli)
		}
	}
}

// Node is the node as the snapshot gave it.
func (n *NodeState) Node() *api.Node { return n.node }

// Index is the node's position in Cluster.Nodes (nodes sorted by ID): a
// dense number a scorer can use to index its own per-node arrays.
func (n *NodeState) Index() int { return n.index }

// Gen changes whenever what allocations hold of the node changes; a scorer
// may cache a per-node value and recompute it only when Gen moves.
func (n *NodeState) Gen() uint64 { return n.gen }

// CPU returns the free and allocatable millicores.
func (n *NodeState) CPU() (free, capacity int) { return n.capCPU - n.cpu, n.capCPU }

// Memory returns the free and allocatable MiB of memory.
func (n *NodeState) Memory() (free, capacity int) { return n.capMem - n.mem, n.capMem }

// Disk returns the free and allocatable MiB of disk (capacity 0: not
// tracked).
func (n *NodeState) Disk() (free, capacity int) { return n.capDisk - n.disk, n.capDisk }

// GPUs is the accounting of each of the node's GPUs, in the order of
// api.Node.GPUs. Read only.
func (n *NodeState) GPUs() []gpu.Device { return n.gpus }

// Allocs are the allocations the node holds, in no particular order. Read
// only.
func (n *NodeState) Allocs() []*api.Allocation { return n.allocs }

// Schedulable reports whether new work may go to the node.
func (n *NodeState) Schedulable() bool { return n.schedulable }

func newNodeState(node *api.Node, def api.PortRange) *NodeState {
	alloc := node.Allocatable()
	n := &NodeState{
		node: node, schedulable: node.Schedulable(),
		capCPU: alloc.CPU, capMem: alloc.Memory, capDisk: alloc.Disk,
	}
	pr := node.PortRange
	if pr.Min <= 0 || pr.Max < pr.Min {
		pr = def
	}
	n.portMin, n.portMax = pr.Min, pr.Max
	if len(node.GPUs) > 0 {
		n.gpus = gpu.NewDevices(node.GPUs)
		n.summarize()
	}
	return n
}

// NewCluster builds the working view of a snapshot with default settings
// (dynamic port range api.DefaultPortRange for nodes that report none).
// Terminal allocations are skipped; allocations on unknown nodes are
// ignored; every other allocation is accounted as it is, even one that
// breaks a rule (use Fit to check).
func NewCluster(snap *Snapshot) *Cluster { return newCluster(snap, api.DefaultPortRange) }

func newCluster(snap *Snapshot, ports api.PortRange) *Cluster {
	c := &Cluster{
		byID:    make(map[string]*NodeState, len(snap.Nodes)),
		byJob:   map[string][]*api.Allocation{},
		byAlloc: make(map[string]*api.Allocation, len(snap.Allocs)),
		drivers: map[string]uint64{},
		models:  map[string][]uint64{},
	}
	c.nodes = make([]*NodeState, 0, len(snap.Nodes))
	for _, node := range snap.Nodes {
		if node == nil || c.byID[node.ID] != nil {
			continue
		}
		n := newNodeState(node, ports)
		c.byID[node.ID] = n
		c.nodes = append(c.nodes, n)
	}
	sort.Slice(c.nodes, func(i, j int) bool { return c.nodes[i].node.ID < c.nodes[j].node.ID })
	var names []string
	for _, n := range c.nodes {
		for name := range n.node.Drivers {
			if _, ok := c.drivers[name]; !ok {
				c.drivers[name] = 0
				names = append(names, name)
			}
		}
	}
	sort.Strings(names)
	for i, name := range names {
		if i < 64 {
			c.drivers[name] = 1 << i
		}
	}
	for i, n := range c.nodes {
		n.index = i
		for name, d := range n.node.Drivers {
			if d.Detected && d.Healthy {
				n.drivers |= c.drivers[name]
			}
		}
	}
	c.queues = newQueueBook(snap.Queues, c.nodes)
	for _, a := range snap.Allocs {
		if a == nil || a.Terminal() {
			continue
		}
		c.account(a)
	}
	c.index = newFreeIndex(c.nodes)
	c.gpuIndex = newGPUIndex(len(c.nodes))
	for _, n := range c.nodes {
		c.reindex(n)
		if len(n.gpus) > 0 {
			c.gpuNodes = append(c.gpuNodes, n)
		}
	}
	return c
}

// Nodes lists the nodes sorted by ID. Read only.
func (c *Cluster) Nodes() []*NodeState { return c.nodes }

// Node returns the node with the given ID, or nil.
func (c *Cluster) Node(id string) *NodeState { return c.byID[id] }

// Alloc returns the allocation with the given ID, or nil.
func (c *Cluster) Alloc(id string) *api.Allocation { return c.byAlloc[id] }

// JobAllocs are the allocations of a job ("<namespace>/<name>") the
// cluster holds. Read only.
func (c *Cluster) JobAllocs(jobKey string) []*api.Allocation { return c.byJob[jobKey] }

// Add accounts an allocation on its node. It reports false when the node
// is unknown (the allocation is then ignored).
func (c *Cluster) Add(a *api.Allocation) bool {
	if !c.account(a) {
		return false
	}
	c.reindex(c.byID[a.NodeID])
	return true
}

func (c *Cluster) account(a *api.Allocation) bool {
	n := c.byID[a.NodeID]
	if n == nil {
		return false
	}
	_ = n.apply(a, 1, false)
	n.allocs = append(n.allocs, a)
	c.prio[clampPrio(a.Priority)]++
	k := a.JobKey()
	c.byJob[k] = append(c.byJob[k], a)
	if a.ID != "" {
		c.byAlloc[a.ID] = a
	}
	c.queues.add(a, 1)
	return true
}

// Remove gives back what an allocation holds (found by pointer, or by ID
// when it has one). It reports false when the cluster does not hold it.
func (c *Cluster) Remove(a *api.Allocation) bool {
	n := c.byID[a.NodeID]
	if n == nil {
		return false
	}
	i := findAlloc(n.allocs, a)
	if i < 0 {
		return false
	}
	a = n.allocs[i]
	n.allocs = removeAt(n.allocs, i)
	c.prio[clampPrio(a.Priority)]--
	_ = n.apply(a, -1, false)
	k := a.JobKey()
	if l := c.byJob[k]; l != nil {
		if j := findAlloc(l, a); j >= 0 {
			if l = removeAt(l, j); len(l) == 0 {
				delete(c.byJob, k)
			} else {
				c.byJob[k] = l
			}
		}
	}
	if a.ID != "" {
		delete(c.byAlloc, a.ID)
	}
	c.queues.add(a, -1)
	c.reindex(n)
	return true
}

func clampPrio(p int) int { return min(max(p, api.MinPriority), api.MaxPriority) }

// anyBelow reports whether some allocation has a priority below p.
func (c *Cluster) anyBelow(p int) bool {
	for i := 0; i < clampPrio(p); i++ {
		if c.prio[i] > 0 {
			return true
		}
	}
	return false
}

func findAlloc(l []*api.Allocation, a *api.Allocation) int {
	for i, x := range l {
		if x == a {
			return i
		}
	}
	if a.ID != "" {
		for i, x := range l {
			if x.ID == a.ID {
				return i
			}
		}
	}
	return -1
}

// removeAt deletes element i keeping the order (plans and tests rely on
// stable orders).
func removeAt(l []*api.Allocation, i int) []*api.Allocation {
	copy(l[i:], l[i+1:])
	l[len(l)-1] = nil
	return l[:len(l)-1]
}

// apply adds (sign 1) or removes (sign -1) an allocation's resources. With
// strict set (Fit) it returns the first rule the allocation breaks; the
// state is then partly updated and must be thrown away.
func (n *NodeState) apply(a *api.Allocation, sign int, strict bool) error {
	n.gen++
	if len(a.Resources) == 1 || !strict {
		// One task, or no error to report: any order does, and walking
		// the map allocates nothing (this runs for every allocation of
		// every node a plan touches when the plan is checked).
		for t, r := range a.Resources {
			if err := n.applyTask(a, t, r, sign, strict); err != nil {
				return err
			}
		}
		return nil
	}
	for _, t := range slices.Sorted(maps.Keys(a.Resources)) { // the first conflict, by task name
		if err := n.applyTask(a, t, a.Resources[t], sign, strict); err != nil {
			return err
		}
	}
	return nil
}

func (n *NodeState) applyTask(a *api.Allocation, t string, r *api.AllocatedResources, sign int, strict bool) error {
	if r == nil {
		return nil
	}
	n.cpu += sign * r.CPU
	n.mem += sign * r.Memory
	n.disk += sign * r.Disk
	for _, p := range r.Ports {
		if sign > 0 {
			if strict && (p.Host <= 0 || p.Host > 65535) {
				return fmt.Errorf("allocation %s task %s: host port %d out of range", a.ShortID(), t, p.Host)
			}
			if strict && n.portUsed(p.Host) {
				return fmt.Errorf("host port %d on node %s handed out twice (allocation %s task %s)", p.Host, n.node.Name, a.ShortID(), t)
			}
			n.addPort(p.Host)
		} else {
			n.removePort(p.Host)
		}
	}
	if r.GPU != nil {
		if err := n.applyGPU(a, t, r.GPU, sign, strict); err != nil {
			return err
		}
		n.summarize()
	}
	return nil
}

func (n *NodeState) gpuByUUID(uuid string) *gpu.Device {
	for i := range n.gpus {
		if n.gpus[i].UUID == uuid {
			return &n.gpus[i]
		}
	}
	return nil
}

func (n *NodeState) applyGPU(a *api.Allocation, task string, g *api.AllocatedGPU, sign int, strict bool) error {
	forms := 0
	if len(g.Devices) > 0 {
		forms++
	}
	if g.MIG != nil {
		forms++
	}
	if g.Share != nil {
		forms++
	}
	if strict && forms > 1 {
		return fmt.Errorf("allocation %s task %s holds more than one GPU form", a.ShortID(), task)
	}
	missing := func(uuid string) error {
		if strict {
			return fmt.Errorf("allocation %s task %s: node %s has no GPU %s", a.ShortID(), task, n.node.Name, uuid)
		}
		return nil
	}
	wrap := func(err error) error {
		return fmt.Errorf("node %s, allocation %s task %s: %w", n.node.Name, a.ShortID(), task, err)
	}
	for _, uuid := range g.Devices {
		d := n.gpuByUUID(uuid)
		if d == nil {
			if err := missing(uuid); err != nil {
				return err
			}
			continue
		}
		if sign > 0 {
			if err := d.AddWhole(strict); err != nil {
				return wrap(err)
			}
		} else {
			d.RemoveWhole()
		}
	}
	if m := g.MIG; m != nil {
		d := n.gpuByUUID(m.GPU)
		if d == nil {
			return missing(m.GPU)
		}
		if sign > 0 {
			if err := d.AddMIG(m.Profile, m.Start, m.Size, m.InstanceUUID, strict); err != nil {
				return wrap(err)
			}
		} else {
			d.RemoveMIG(m.Start, m.Size, m.InstanceUUID)
		}
	}
	if s := g.Share; s != nil {
		d := n.gpuByUUID(s.GPU)
		if d == nil {
			return missing(s.GPU)
		}
		if sign > 0 {
			if strict && s.Enforce && !d.SharingEnforced {
				return fmt.Errorf("node %s, allocation %s task %s: GPU %s does not enforce shares", n.node.Name, a.ShortID(), task, d.UUID)
			}
			if err := d.AddShare(s.Milli, s.Memory, strict); err != nil {
				return wrap(err)
			}
		} else {
			d.RemoveShare(s.Milli, s.Memory)
		}
	}
	return nil
}

func (n *NodeState) portIndex(p int) int {
	return sort.Search(len(n.ports), func(i int) bool { return int(n.ports[i]) >= p })
}

func (n *NodeState) portUsed(p int) bool {
	i := n.portIndex(p)
	return i < len(n.ports) && int(n.ports[i]) == p
}

func (n *NodeState) addPort(p int) {
	i := n.portIndex(p)
	n.ports = append(n.ports, 0)
	copy(n.ports[i+1:], n.ports[i:])
	n.ports[i] = int32(p)
	if p >= n.portMin && p <= n.portMax {
		n.inRange++
	}
}

func (n *NodeState) removePort(p int) {
	i := n.portIndex(p)
	if i < len(n.ports) && int(n.ports[i]) == p {
		n.ports = append(n.ports[:i], n.ports[i+1:]...)
		if p >= n.portMin && p <= n.portMax {
			n.inRange--
		}
	}
}

// freeDynamicPorts is how many ports of the dynamic range are unused.
func (n *NodeState) freeDynamicPorts() int {
	return n.portMax - n.portMin + 1 - n.inRange
}

// modelMask returns, per node, a bitmask of the GPUs whose model matches
// pattern (bit i: GPU i), computed once per pattern.
func (c *Cluster) modelMask(pattern string) []uint64 {
	if m, ok := c.models[pattern]; ok {
		return m
	}
	m := make([]uint64, len(c.nodes))
	for i, n := range c.nodes {
		for j := range n.gpus {
			if j < 64 && gpu.MatchModel(pattern, n.gpus[j].Model) {
				m[i] |= 1 << j
			}
		}
	}
	c.models[pattern] = m
	return m
}
