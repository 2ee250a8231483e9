package scheduler

import (
	"sync"

	"github.com/gantryhq/gantry/internal/api"
)

// GPUStage is how far a GPU request got on a node's best device: the
// stages of GPU eligibility, in the order the scheduler checks them.
type GPUStage int

const (
	GPUNoDevices         GPUStage = sNoGPUs // the node has no GPUs
	GPUKind              GPUStage = sKind   // none of the kind the task takes: passthrough for a VM, the others for the rest
	GPUModel             GPUStage = sModel  // no device of the model asked
	GPUMemory            GPUStage = sMemMin // none with memory_min MiB
	GPUComputeCapability GPUStage = sCC     // none of compute_capability_min
	GPUHealth            GPUStage = sHealth // none healthy
	GPUMode              GPUStage = sMode   // none in the right MIG mode
	GPUEnforce           GPUStage = sEnforce
	GPUProfile           GPUStage = sProfile // MIG profile not offered
	GPUCapacity          GPUStage = sCap     // too few devices, or too little of one
	GPUFits              GPUStage = sOK
)

// NodeFeasibility is what the scheduler's checks say about one replica of
// a group on one node holding nothing. Fits and Reason are the
// scheduler's own verdict (the checks of every placement, in their
// order); the other fields judge each dimension on its own, whatever the
// others say, so that a caller can tell which one no node passes.
type NodeFeasibility struct {
	Node   *api.Node // as given to Feasibility
	Fits   bool
	Reason string // why not, worded as in placement explanations

	MissingDrivers    []int // indexes of the tasks whose driver the node lacks
	FailedConstraints []int // indexes into the group's constraints
	CPU, Memory, Disk bool  // the group's sum fits the node's allocatable capacity
	Ports             bool  // enough dynamic ports in the node's range
	// GPU is, per task asking for GPUs (GPUTasks order), how far the ask
	// got on this node on its own.
	GPU []GPUStage
}

// GroupFeasibility judges one group against the cluster's shape.
type GroupFeasibility struct {
	Group    string
	GPUTasks []int // indexes of the tasks that ask for GPUs
	// Asked is max(count, gang.min). Fits counts the nodes where one
	// replica fits when empty, up to Asked; when it reaches Asked, the
	// group fits (a replica on each) and Nodes is nil. Otherwise Nodes
	// judges every node, sorted by ID, Fits counts them all, and AtOnce
	// is how many replicas the empty cluster holds at once when the
	// scheduler places them one after the other.
	Asked, Fits, AtOnce int
	Nodes               []NodeFeasibility
	// Demand is what one replica asks (cpu, memory, GPU thousandths).
	Demand Resources
}

// Feasibility judges a job against the shape of a cluster: every node as
// if it were ready, eligible, with its detected drivers and its GPUs
// healthy and nothing allocated, so that the answer is about what the
// cluster could ever hold, not what is free now. It uses the same checks
// as placement, so that it never disagrees with the scheduler. It returns
// an error matching ErrInvalid for a job Validate rejects.
//
// It is pure, like the rest of the package: it does not modify nodes or
// job.
func (e *Engine) Feasibility(nodes []*api.Node, job *api.Job) ([]GroupFeasibility, error) {
	return e.FeasibilityOn(e.NewIdeal(nodes), job)
}

// Ideal is the shape of a cluster prepared once for many Feasibility
// questions: building it is most of the cost of one answer on a large
// cluster. It is safe for concurrent use; it answers for the nodes it was
// made from, so a caller must make a new one when they change.
type Ideal struct {
	mu    sync.Mutex
	nodes []*api.Node
	c     *Cluster
}

// NewIdeal prepares the ideal shape of nodes.
func (e *Engine) NewIdeal(nodes []*api.Node) *Ideal {
	// The working view of the nodes as they are, then made ideal in
	// place (the nodes themselves are not touched). Only with more driver
	// names than the bitmask holds are the nodes copied instead.
	c := e.NewCluster(&Snapshot{Nodes: nodes})
	if len(c.drivers) > 64 {
		c = e.NewCluster(&Snapshot{Nodes: idealNodes(nodes)})
	} else {
		c.idealize()
	}
	return &Ideal{nodes: nodes, c: c}
}

// FeasibilityOn is Feasibility against a prepared shape.
func (e *Engine) FeasibilityOn(ideal *Ideal, job *api.Job) ([]GroupFeasibility, error) {
	groups, err := compileJob(job)
	if err != nil {
		return nil, err
	}
	ideal.mu.Lock()
	defer ideal.mu.Unlock()
	nodes, c := ideal.nodes, ideal.c
	var snap *Snapshot // ideal copies, for atOnce, made once when needed
	p := &planner{e: e, c: c, job: job, jobKey: job.Key()}
	out := make([]GroupFeasibility, len(groups))
	for gi, g := range groups {
		p.prepare(g)
		gf := GroupFeasibility{Group: g.group.Name, GPUTasks: g.gpuTask, Demand: g.demand, Asked: max(g.group.Count, g.gang)}
		// Quick pass: as soon as Asked nodes fit one replica each, the
		// group fits (one replica on each), and nothing needs explaining.
		p.explaining = false
		for _, n := range c.nodes {
			if gf.Fits >= gf.Asked {
				break
			}
			if p.check(g, n) == 0 {
				gf.Fits++
			}
		}
		if gf.Fits >= gf.Asked {
			gf.AtOnce = gf.Asked
			out[gi] = gf
			continue
		}
		// Too few: every node in detail, then how many replicas the
		// empty cluster holds at once.
		p.explaining = true
		gf.Fits = 0
		for _, n := range c.nodes {
			nf := p.feasibility(g, n)
			if nf.Fits {
				gf.Fits++
			}
			gf.Nodes = append(gf.Nodes, nf)
		}
		if gf.Fits > 0 {
			if snap == nil {
				snap = &Snapshot{Nodes: idealNodes(nodes)}
			}
			gf.AtOnce = e.atOnce(snap, job, gi, gf.Asked)
		}
		out[gi] = gf
	}
	return out, nil
}

// feasibility judges one replica of g on the empty node n, as given.
func (p *planner) feasibility(g *groupPlan, n *NodeState) NodeFeasibility {
	nf := NodeFeasibility{Node: n.node}
	if r := p.check(g, n); r == 0 {
		nf.Fits = true
	} else {
		nf.Reason = p.reasonText(g, r)
	}
	for ti, t := range g.group.Tasks {
		if d, ok := n.node.Drivers[t.Driver]; !ok || !d.Detected {
			nf.MissingDrivers = append(nf.MissingDrivers, ti)
		}
	}
	for i, m := range g.constraints {
		if !m.match(n.node) {
			nf.FailedConstraints = append(nf.FailedConstraints, constraintIndex(g.group, i))
		}
	}
	nf.CPU = g.cpu <= n.capCPU
	nf.Memory = g.mem <= n.capMem
	nf.Disk = n.capDisk <= 0 || g.disk <= n.capDisk
	free := n.freeDynamicPorts()
	for _, port := range g.static {
		if port >= n.portMin && port <= n.portMax {
			free--
		}
	}
	nf.Ports = free >= g.dynamic
	for k := range g.gpu {
		st := sNoGPUs
		if len(n.gpus) > 0 {
			el, s := eligible(n.gpus, g.mask(k, n), &g.gpu[k], nil)
			st = s
			if len(el) >= g.gpu[k].Count {
				st = sOK
			} else {
				st = min(st, sCap)
			}
		}
		nf.GPU = append(nf.GPU, GPUStage(st))
	}
	return nf
}

// atOnce places up to n replicas of group gi, one after the other and
// without the gang rule, on an empty cluster, and counts those that fit.
func (e *Engine) atOnce(snap *Snapshot, job *api.Job, gi, n int) int {
	if n == 0 || len(snap.Nodes) == 0 {
		return 0
	}
	j := *job
	j.Groups = make([]*api.Group, len(job.Groups))
	copy(j.Groups, job.Groups)
	g := *job.Groups[gi]
	g.Gang, g.Count = nil, n
	j.Groups[gi] = &g
	req := &Request{Job: &j}
	for i := 0; i < n; i++ {
		req.Place = append(req.Place, Placement{Group: g.Name, Index: i})
	}
	plan, err := e.Plan(e.NewCluster(snap), req)
	if err != nil {
		return 0
	}
	return len(plan.Placed)
}

// idealize makes every node of the cluster ready and eligible, with its
// detected drivers and its GPUs healthy, in the cluster's own accounting.
func (c *Cluster) idealize() {
	for _, n := range c.nodes {
		n.schedulable = true
		n.drivers = 0
		for name, d := range n.node.Drivers {
			if d.Detected {
				n.drivers |= c.drivers[name]
			}
		}
		sick := false
		for i := range n.gpus {
			if !n.gpus[i].Healthy {
				n.gpus[i].Healthy, sick = true, true
			}
		}
		if sick {
			n.summarize()
		}
		c.reindex(n)
	}
}

// idealNodes copies the nodes as idealize sees them.
func idealNodes(nodes []*api.Node) []*api.Node {
	out := make([]*api.Node, 0, len(nodes))
	for _, n := range nodes {
		if n == nil {
			continue
		}
		c := *n
		c.Status, c.Ineligible, c.Drain = api.NodeStatusReady, false, nil
		c.Drivers = make(map[string]api.DriverInfo, len(n.Drivers))
		for name, d := range n.Drivers {
			d.Healthy = d.Detected
			c.Drivers[name] = d
		}
		c.GPUs = make([]api.GPUDevice, len(n.GPUs))
		copy(c.GPUs, n.GPUs)
		for i := range c.GPUs {
			c.GPUs[i].Unhealthy = false
		}
		out = append(out, &c)
	}
	return out
}

// constraintIndex maps the i-th compiled constraint of g back to its index
// in the group's constraints (distinct_hosts is not compiled).
func ideal(n *api.Node) bool {
	if n.Status != api.NodeStatusReady || n.Ineligible || n.Drain != nil {
		return false
	}
	for _, d := range n.Drivers {
		if d.Healthy != d.Detected {
			return false
		}
	}
	for i := range n.GPUs {
		if n.GPUs[i].Unhealthy {
			return false
		}
	}
	return true
}

func constraintIndex(g *api.Group, i int) int {
	for j, c := range g.Constraints {
		if normalizeOp(c.Operator) == OpDistinctHosts {
			continue
		}
		if i == 0 {
			return j
		}
		i--
	}
	return -1
}

// AttributeValue resolves a constraint's attribute ("${node.labels.zone}")
// on a node exactly as placement does, and reports whether the node has it.
func AttributeValue(n *api.Node, attr string) (string, bool) {
	ref, err := parseAttr(attr)
	if err != nil || ref.kind == attrLiteral {
		return "", false
	}
	return ref.get(n)
}
