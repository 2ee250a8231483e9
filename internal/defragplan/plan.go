package defragplan

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/defrag"
	"github.com/gantryhq/gantry/internal/gpu"
	"github.com/gantryhq/gantry/internal/scheduler"
)

// DefaultMaxMoves bounds a plan when Input.MaxMoves is 0.
const DefaultMaxMoves = 8

// Input is the state a plan is made from.
type Input struct {
	Nodes  []*api.Node
	Allocs []*api.Allocation   // allocations that hold resources
	Jobs   map[string]*api.Job // by api.JobKey: the jobs of Allocs and Target
	Target *api.Job            // the job to make room for; nil frees whole GPUs
	Group  string              // Target's group waiting to be placed
	Count  int                 // replicas of Group waiting (at least 1)
	// MaxMoves bounds the plan (0: DefaultMaxMoves).
	MaxMoves int
}

// Errors of Decide: the request cannot be answered (the caller says so
// and exits non-zero).
var (
	ErrNoGPUs     = errors.New("no node in the cluster has a GPU")
	ErrNotGPUWork = errors.New("the group asks for no GPU a move can make room for")
)

// once is the search's window that keeps a replica moved by the plan
// from moving again in the same plan.
const once = 1 << 40

// retries is how often Decide pins a replica the scheduler would not take
// where the search sent it and searches again.
const retries = 6

// Decide proposes the moves. For a target it returns a plan whose Fits
// says whether the target's waiting replicas all place after the moves
// (FitsNow: without any); an empty plan that does not fit has Why. With
// no target it returns the moves that free the most whole GPUs within
// MaxMoves. eng checks every plan (its preemption is not used).
func Decide(eng *scheduler.Engine, in *Input) (*api.DefragPlan, error) {
	if in.MaxMoves <= 0 {
		in.MaxMoves = DefaultMaxMoves
	}
	gpus := false
	for _, n := range in.Nodes {
		gpus = gpus || len(n.GPUs) > 0
	}
	if !gpus {
		return nil, ErrNoGPUs
	}
	out := &api.DefragPlan{Moves: []api.DefragMove{}}
	var ask defrag.Ask
	if in.Target != nil {
		g := in.Target.LookupGroup(in.Group)
		if g == nil {
			return nil, fmt.Errorf("job %s has no group %q", in.Target.Key(), in.Group)
		}
		var err error
		if ask, err = askOf(g); err != nil {
			return nil, fmt.Errorf("job %s group %s: %w", in.Target.Key(), g.Name, err)
		}
		out.Namespace, out.Job, out.Group, out.Replicas = in.Target.Namespace, in.Target.Name, g.Name, max(in.Count, 1)
		if places(eng, scheduler.NewCluster(&scheduler.Snapshot{Nodes: in.Nodes, Allocs: in.Allocs}), in) == nil {
			out.Fits, out.FitsNow = true, true
			return out, nil
		}
	}
	pinned := map[string]bool{}
	var why string
	for range retries {
		m := newModel(in, pinned)
		var p *api.DefragPlan
		var bad string
		if in.Target != nil {
			p, bad, why = m.forTarget(eng, in, ask)
		} else {
			p, bad, why = m.freeWhole(eng, in)
		}
		if bad == "" {
			if p != nil {
				p.Namespace, p.Job, p.Group, p.Replicas = out.Namespace, out.Job, out.Group, out.Replicas
				return p, nil
			}
			break
		}
		pinned[bad] = true
	}
	out.Why = why
	return out, nil
}

// askOf is a group's demand in the search's terms: the CPU and memory of
// all its tasks and the one task's GPU share or whole GPUs.
func askOf(g *api.Group) (defrag.Ask, error) {
	var a defrag.Ask
	var req *api.GPURequest
	for _, t := range g.Tasks {
		a.CPU += t.Resources.CPU
		a.Memory += t.Resources.Memory
		if r := t.Resources.GPU; r != nil {
			if req != nil {
				return a, fmt.Errorf("GPUs in more than one task: %w", ErrNotGPUWork)
			}
			req = r
		}
	}
	switch {
	case req == nil:
		return a, ErrNotGPUWork
	case req.MIG != "":
		return a, fmt.Errorf("a MIG instance (%s) goes on a GPU in MIG mode, which moving shares does not free: %w", req.MIG, ErrNotGPUWork)
	case req.Share != nil:
		a.Count, a.Milli = 1, req.Share.Milli
	default:
		a.Count, a.Milli, a.Model = req.Count, defrag.Whole, req.Model
	}
	return a, nil
}

// model is internal/defrag's state of the nodes that take new work, with
// one item per movable replica.
type model struct {
	s      *defrag.State
	nodes  []*scheduler.NodeState // by defrag node index
	allocs []*api.Allocation      // by item
}

func newModel(in *Input, pinned map[string]bool) *model {
	full := scheduler.NewCluster(&scheduler.Snapshot{Nodes: in.Nodes, Allocs: in.Allocs})
	usable := map[string]bool{}
	var nodes []*api.Node
	for _, n := range full.Nodes() {
		if n.Schedulable() && len(n.GPUs()) > 0 {
			usable[n.Node().ID] = true
			nodes = append(nodes, n.Node())
		}
	}
	var stay, move []*api.Allocation
	for _, a := range in.Allocs {
		if usable[a.NodeID] && !pinned[a.ID] && movable(in, a) {
			move = append(move, a)
		} else {
			stay = append(stay, a)
		}
	}
	// The nodes with what stays on them, then the movable replicas as
	// items.
	c := scheduler.NewCluster(&scheduler.Snapshot{Nodes: nodes, Allocs: stay})
	m := &model{}
	var dn []defrag.Node
	index := map[string]int{}
	for i, n := range c.Nodes() {
		cpu, _ := n.CPU()
		mem, _ := n.Memory()
		d := defrag.Node{Name: n.Node().Name, CPU: cpu, Memory: mem}
		for _, g := range n.GPUs() {
			// A GPU in MIG mode, unhealthy, or bound to vfio-pci (VMs
			// only: the moves are containers' and processes' work) is
			// never a destination.
			d.GPUs = append(d.GPUs, defrag.GPU{Model: g.Model, Free: g.FreeMilli, Users: g.Users, MIG: g.MIGEnabled || !g.Healthy || g.Passthrough})
		}
		dn = append(dn, d)
		index[n.Node().ID] = i
		m.nodes = append(m.nodes, n)
	}
	m.s = defrag.NewState(dn)
	slices.SortFunc(move, func(a, b *api.Allocation) int { return cmp.Compare(a.ID, b.ID) })
	for _, a := range move {
		n := index[a.NodeID]
		task, r := gpuTask(a)
		it := defrag.Item{Node: n, CPU: 0, Memory: 0, Model: modelOf(in, a, task)}
		for _, tr := range a.Resources {
			it.CPU += tr.CPU
			it.Memory += tr.Memory
		}
		uuids := r.Devices
		it.Milli = defrag.Whole
		if r.Share != nil {
			uuids, it.Milli = []string{r.Share.GPU}, r.Share.Milli
		}
		for _, u := range uuids {
			for k, g := range m.nodes[n].GPUs() {
				if g.UUID == u {
					it.GPUs = append(it.GPUs, k)
				}
			}
		}
		if _, err := m.s.Place(it); err != nil {
			// The model disagrees with the scheduler's accounting: the
			// replica stays where it is.
			pinned[a.ID] = true
			return newModel(in, pinned)
		}
		m.allocs = append(m.allocs, a)
	}
	return m
}

// movable reports whether a replica may move: its group allows it, it is
// no gang, its GPU work is one share or whole GPUs in one task, it has no
// static port, it runs, and no move has touched it.
func movable(in *Input, a *api.Allocation) bool {
	if a.DesiredStatus != api.AllocDesiredRun || a.ClientStatus != api.AllocRunning || a.Move != "" {
		return false
	}
	for _, b := range in.Allocs {
		if b.PreviousAlloc == a.ID && b.Move != "" && !b.Terminal() {
			return false // being moved now
		}
	}
	job := in.Jobs[a.JobKey()]
	if job == nil {
		return false
	}
	g := job.LookupGroup(a.Group)
	if g == nil || !g.Migrate || g.Gang != nil && g.Gang.Min > 0 {
		return false
	}
	for _, t := range g.Tasks {
		for _, p := range t.Config.Ports {
			if p.Static > 0 {
				return false
			}
		}
	}
	task, r := gpuTask(a)
	return task != "" && r.MIG == nil && (r.Share != nil || len(r.Devices) > 0)
}

// gpuTask returns the one task of a that holds a GPU, or "".
func gpuTask(a *api.Allocation) (string, *api.AllocatedGPU) {
	name, n := "", 0
	var g *api.AllocatedGPU
	for t, r := range a.Resources {
		if r != nil && r.GPU != nil {
			name, g = t, r.GPU
			n++
		}
	}
	if n != 1 {
		return "", nil
	}
	return name, g
}

func modelOf(in *Input, a *api.Allocation, task string) string {
	if job := in.Jobs[a.JobKey()]; job != nil {
		if g := job.LookupGroup(a.Group); g != nil {
			for _, t := range g.Tasks {
				if t.Name == task && t.Resources.GPU != nil {
					return t.Resources.GPU.Model
				}
			}
		}
	}
	return ""
}

// forTarget searches moves for each waiting replica in turn and checks
// the whole plan. It returns the plan, or the ID of a replica the
// scheduler refused where the search sent it (to pin and search again),
// or why there is no plan.
func (m *model) forTarget(eng *scheduler.Engine, in *Input, ask defrag.Ask) (*api.DefragPlan, string, string) {
	var moves []defrag.Move
	budget := in.MaxMoves
	var room []string
	for i := range max(in.Count, 1) {
		p, ok := defrag.Find(m.s, ask, defrag.Options{MaxMoves: budget, Window: once})
		if !ok {
			return nil, "", m.nothing(in, i)
		}
		if err := m.s.Apply(p, ask, 0, once); err != nil {
			return nil, "", fmt.Sprintf("the move search broke a rule (%v); nothing proposed", err)
		}
		// The replica takes its room: the next one must find other room.
		if _, err := m.s.Place(defrag.Item{Node: p.Node, GPUs: p.GPUs, Milli: ask.Milli, CPU: ask.CPU, Memory: ask.Memory, Model: ask.Model, Pinned: true}); err != nil {
			return nil, "", fmt.Sprintf("the move search left no room it promised (%v); nothing proposed", err)
		}
		moves = append(moves, p.Moves...)
		budget -= len(p.Moves)
		room = append(room, m.gpuName(p.Node, p.GPUs))
	}
	plan, bad, err := m.check(eng, in, moves)
	if err != nil {
		return nil, bad, err.Error()
	}
	for i := range plan.Moves {
		plan.Moves[i].Reason = fmt.Sprintf("frees %s for %s/%s", strings.Join(room, ", "), in.Target.Name, in.Group)
	}
	plan.Fits = true
	return plan, "", ""
}

func (m *model) nothing(in *Input, placed int) string {
	if placed > 0 {
		return fmt.Sprintf("moves make room for %d of the %d waiting replicas of %s/%s, not all", placed, max(in.Count, 1), in.Target.Name, in.Group)
	}
	return fmt.Sprintf("no plan of at most %d moves of replicas that allow migration (migrate: true) makes room for %s/%s", in.MaxMoves, in.Target.Name, in.Group)
}

// freeWhole moves shares off GPUs, one GPU at a time, while each GPU freed
// costs moves within the budget; idle GPUs are held so that no move lands
// on one.
func (m *model) freeWhole(eng *scheduler.Engine, in *Input) (*api.DefragPlan, string, string) {
	hold := func(n, g int) {
		m.s.Place(defrag.Item{Node: n, GPUs: []int{g}, Milli: defrag.Whole, Pinned: true})
	}
	for n, nd := range m.s.Nodes {
		for g, d := range nd.GPUs {
			if !d.MIG && d.Users == 0 {
				hold(n, g)
			}
		}
	}
	var moves []defrag.Move
	var freed []string
	budget := in.MaxMoves
	for budget > 0 {
		ask := defrag.Ask{Count: 1, Milli: defrag.Whole}
		p, ok := defrag.Find(m.s, ask, defrag.Options{MaxMoves: budget, Window: once})
		if !ok || len(p.Moves) == 0 || m.s.Apply(p, ask, 0, once) != nil {
			break
		}
		hold(p.Node, p.GPUs[0])
		moves = append(moves, p.Moves...)
		budget -= len(p.Moves)
		freed = append(freed, m.gpuName(p.Node, p.GPUs))
	}
	if len(moves) == 0 {
		return nil, "", fmt.Sprintf("no move of at most %d replicas that allow migration (migrate: true) frees a whole GPU", in.MaxMoves)
	}
	plan, bad, err := m.check(eng, in, moves)
	if err != nil {
		return nil, bad, err.Error()
	}
	for i := range plan.Moves {
		plan.Moves[i].Reason = "consolidates shares so that " + strings.Join(freed, ", ") + " become whole"
	}
	plan.Fits, plan.Freed = true, len(freed)
	return plan, "", ""
}

func (m *model) gpuName(n int, gs []int) string {
	var idx []string
	for _, g := range gs {
		idx = append(idx, fmt.Sprint(m.nodes[n].GPUs()[g].Index))
	}
	word := "GPU"
	if len(idx) > 1 {
		word = "GPUs"
	}
	return fmt.Sprintf("%s %s %s", m.nodes[n].Node().Name, word, strings.Join(idx, ","))
}

// check carries the moves out on the scheduler's cluster: each moved
// replica must be one its group's constraints and drivers allow on the
// destination, every node touched must pass scheduler.Fit, and the target
// must then place. It returns the moves as the API shows them, or the ID
// of a replica to pin and the reason.
func (m *model) check(eng *scheduler.Engine, in *Input, moves []defrag.Move) (*api.DefragPlan, string, error) {
	c := scheduler.NewCluster(&scheduler.Snapshot{Nodes: in.Nodes, Allocs: in.Allocs})
	plan := &api.DefragPlan{Moves: []api.DefragMove{}}
	touched := map[string]bool{}
	for _, mv := range moves {
		old := m.allocs[mv.Item]
		from, to := m.nodes[mv.From], m.nodes[mv.To]
		if !allows(eng, in.Jobs[old.JobKey()], old.Group, to.Node()) {
			return nil, old.ID, fmt.Errorf("%s may not run on %s", old.Name(), to.Node().Name)
		}
		moved := Relocate(old, to.Node(), mv.ToGPUs)
		if !c.Remove(c.Alloc(old.ID)) || !c.Add(moved) {
			return nil, old.ID, fmt.Errorf("%s: the scheduler's view does not hold it", old.Name())
		}
		touched[from.Node().ID], touched[to.Node().ID] = true, true
		dm := api.DefragMove{Alloc: old.ID, Name: old.Name(), Namespace: old.Namespace, Job: old.Job, Group: old.Group,
			FromNode: from.Node().Name, ToNode: to.Node().Name, ToNodeID: to.Node().ID, Milli: m.s.Items[mv.Item].Milli}
		for _, g := range mv.FromGPUs {
			dm.FromGPUs = append(dm.FromGPUs, from.GPUs()[g].Index)
		}
		for _, g := range mv.ToGPUs {
			dm.ToGPUs = append(dm.ToGPUs, to.GPUs()[g].Index)
			dm.ToUUIDs = append(dm.ToUUIDs, to.GPUs()[g].UUID)
		}
		plan.Moves = append(plan.Moves, dm)
	}
	for _, id := range slices.Sorted(mapsKeys(touched)) {
		n := c.Node(id)
		if err := scheduler.Fit(n.Node(), n.Allocs()); err != nil {
			return nil, "", fmt.Errorf("the moves would break a placement rule: %w", err)
		}
	}
	if in.Target != nil {
		if err := places(eng, c, in); err != nil {
			return nil, "", fmt.Errorf("the moves make room the scheduler would not use: %w", err)
		}
	}
	return plan, "", nil
}

// Relocate is the replica a moves to: a copy on node n holding GPUs gs
// (indices into n.GPUs) in place of what its GPU task held, with no host
// ports (the scheduler assigns them when the replacement is placed).
func Relocate(a *api.Allocation, n *api.Node, gs []int) *api.Allocation {
	c := *a
	c.NodeID, c.NodeName = n.ID, n.Name
	c.Resources = map[string]*api.AllocatedResources{}
	task, g := gpuTask(a)
	for t, r := range a.Resources {
		rc := *r
		rc.Ports = nil
		if t == task {
			ng := &api.AllocatedGPU{}
			if g.Share != nil {
				d := n.GPUs[gs[0]]
				ng.Share = &api.ShareAssignment{GPU: d.UUID, Milli: g.Share.Milli, Memory: g.Share.Memory, Enforce: g.Share.Enforce}
				if g.Share.Memory > d.Memory {
					ng.Share.Memory = gpu.ShareMemory(g.Share.Milli, 0, d.Memory)
				}
			} else {
				for _, k := range gs {
					ng.Devices = append(ng.Devices, n.GPUs[k].UUID)
				}
			}
			rc.GPU = ng
		}
		c.Resources[t] = &rc
	}
	return &c
}

// allows reports whether the scheduler would place a replica of the
// group on node n were it empty: constraints, drivers, GPU models.
func allows(eng *scheduler.Engine, job *api.Job, group string, n *api.Node) bool {
	if job == nil {
		return false
	}
	c := eng.NewCluster(&scheduler.Snapshot{Nodes: []*api.Node{n}})
	p, err := eng.Plan(c, &scheduler.Request{Job: job, Place: []scheduler.Placement{{Group: group}}})
	return err == nil && len(p.Placed) == 1
}

// places reports nil when the scheduler places every waiting replica of
// the target on c (changing nothing), or why not.
func places(eng *scheduler.Engine, c *scheduler.Cluster, in *Input) error {
	req := &scheduler.Request{Job: in.Target}
	for i := range max(in.Count, 1) {
		req.Place = append(req.Place, scheduler.Placement{Group: in.Group, Index: i})
	}
	noPreempt := scheduler.New(withoutPreemption(eng.Config()))
	p, err := noPreempt.Plan(c, req)
	switch {
	case err != nil:
		return err
	case len(p.Placed) < len(req.Place):
		if ex := p.Failed[in.Group]; ex != nil {
			return errors.New(ex.String())
		}
		return fmt.Errorf("%d of %d replicas placed", len(p.Placed), len(req.Place))
	}
	return nil
}

func withoutPreemption(c scheduler.Config) scheduler.Config {
	c.DisablePreemption = true
	return c
}

func mapsKeys(m map[string]bool) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}
