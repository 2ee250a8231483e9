package scheduler

import (
	"github.com/gantryhq/gantry/internal/api"
)

// GPUStage is how far a GPU request got on a node's best device: the
// stages of GPU eligibility, in the order the scheduler checks them.
type GPUStage int

const (
	GPUNoDevices         GPUStage = sNoGPUs // the node has no GPUs
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
	GPUTasks []int             // indexes of the tasks that ask for GPUs
	Nodes    []NodeFeasibility // every node, sorted by ID
	// Asked is max(count, gang.min); AtOnce is how many of those
	// replicas the empty cluster holds at once when the scheduler places
	// them one after the other.
	Asked, AtOnce int
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
	groups, err := compileJob(job)
	if err != nil {
		return nil, err
	}
	empty := make([]*api.Node, 0, len(nodes))
	for _, n := range nodes {
		if n != nil {
			empty = append(empty, idealNode(n))
		}
	}
	snap := &Snapshot{Nodes: empty}
	c := e.NewCluster(snap)
	p := &planner{e: e, c: c, job: job, jobKey: job.Key(), explaining: true}
	out := make([]GroupFeasibility, len(groups))
	for gi, g := range groups {
		p.prepare(g)
		gf := GroupFeasibility{Group: g.group.Name, GPUTasks: g.gpuTask, Demand: g.demand}
		for _, n := range c.nodes {
			nf := NodeFeasibility{Node: nodeByID(nodes, n.node.ID)}
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
			gf.Nodes = append(gf.Nodes, nf)
		}
		gf.Asked = g.group.Count
		if g.gang > gf.Asked {
			gf.Asked = g.gang
		}
		fits := 0
		for _, nf := range gf.Nodes {
			if nf.Fits {
				fits++
			}
		}
		switch {
		case fits == 0:
		case gf.Asked <= fits:
			// One replica on each of that many empty nodes that fit one:
			// no need to plan them.
			gf.AtOnce = gf.Asked
		default:
			gf.AtOnce = e.atOnce(snap, job, gi, gf.Asked)
		}
		out[gi] = gf
	}
	return out, nil
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

// idealNode is a copy of n that is ready and eligible, whose detected
// drivers and GPUs are healthy.
func idealNode(n *api.Node) *api.Node {
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
	return &c
}

// constraintIndex maps the i-th compiled constraint of g back to its index
// in the group's constraints (distinct_hosts is not compiled).
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

func nodeByID(nodes []*api.Node, id string) *api.Node {
	for _, n := range nodes {
		if n != nil && n.ID == id {
			return n
		}
	}
	return nil
}
