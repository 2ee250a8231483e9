package schedtest

import (
	"fmt"
	"sort"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/scheduler"
)

// Harness runs a scheduler against an in-memory cluster: nodes,
// allocations and queues it owns, and the plans it has applied.
type Harness struct {
	Nodes  []*api.Node
	Allocs []*api.Allocation
	Queues []*api.Queue
	Sched  scheduler.Scheduler
	Now    time.Time
	Plans  []*scheduler.Plan
	seq    int
}

// New returns a harness around scheduler.New(cfg), at a fixed time.
func New(cfg scheduler.Config) *Harness {
	return &Harness{Sched: scheduler.New(cfg), Now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
}

// AddNodes adds nodes to the cluster.
func (h *Harness) AddNodes(ns ...*api.Node) *Harness {
	h.Nodes = append(h.Nodes, ns...)
	return h
}

// AddQueues adds queues.
func (h *Harness) AddQueues(qs ...*api.Queue) *Harness {
	h.Queues = append(h.Queues, qs...)
	return h
}

// Snapshot is the cluster as the scheduler sees it: every node and every
// allocation that still holds resources.
func (h *Harness) Snapshot() *scheduler.Snapshot {
	s := &scheduler.Snapshot{Nodes: h.Nodes, Queues: h.Queues}
	for _, a := range h.Allocs {
		if !a.Terminal() {
			s.Allocs = append(s.Allocs, a)
		}
	}
	return s
}

// Request asks for every replica the job's groups miss: for each group,
// the indices below Count that no live allocation of the job holds.
func (h *Harness) Request(job *api.Job) *scheduler.Request {
	have := map[string]map[int]bool{}
	for _, a := range h.Allocs {
		if a.JobKey() == job.Key() && !a.Terminal() {
			if have[a.Group] == nil {
				have[a.Group] = map[int]bool{}
			}
			have[a.Group][a.Index] = true
		}
	}
	req := &scheduler.Request{Job: job}
	for _, g := range job.Groups {
		if g == nil {
			continue
		}
		for i := 0; i < g.Count; i++ {
			if !have[g.Name][i] {
				req.Place = append(req.Place, scheduler.Placement{Group: g.Name, Index: i})
			}
		}
	}
	return req
}

// Schedule plans the job's missing replicas without applying the plan.
func (h *Harness) Schedule(job *api.Job) (*scheduler.Plan, error) {
	return h.Sched.Schedule(h.Snapshot(), h.Request(job), h.Now)
}

// Run plans the job's missing replicas and applies the plan.
func (h *Harness) Run(job *api.Job) (*scheduler.Plan, error) {
	p, err := h.Schedule(job)
	if err != nil {
		return nil, err
	}
	h.Apply(p)
	return p, nil
}

// Apply records a plan as the plan applier would: placed allocations get
// IDs ("a-000001" …) and run; preempted ones stop.
func (h *Harness) Apply(p *scheduler.Plan) {
	h.Plans = append(h.Plans, p)
	for _, x := range p.Preempt {
		for _, a := range h.Allocs {
			if a.ID == x.AllocID {
				a.DesiredStatus, a.DesiredReason = api.AllocDesiredStop, x.Reason
				a.ClientStatus = api.AllocComplete
			}
		}
	}
	for _, a := range p.Placed {
		h.seq++
		c := *a
		c.ID = fmt.Sprintf("a-%06d", h.seq)
		c.DesiredStatus, c.ClientStatus = api.AllocDesiredRun, api.AllocRunning
		h.Allocs = append(h.Allocs, &c)
	}
}

// Live returns the allocations that hold resources, optionally only the
// job's ("namespace/name"; "" for all).
func (h *Harness) Live(jobKey string) []*api.Allocation {
	var out []*api.Allocation
	for _, a := range h.Allocs {
		if !a.Terminal() && (jobKey == "" || a.JobKey() == jobKey) {
			out = append(out, a)
		}
	}
	return out
}

// Check runs scheduler.Fit on every node with its live allocations.
func (h *Harness) Check() error {
	byNode := map[string][]*api.Allocation{}
	for _, a := range h.Live("") {
		byNode[a.NodeID] = append(byNode[a.NodeID], a)
	}
	for _, n := range h.Nodes {
		if err := scheduler.Fit(n, byNode[n.ID]); err != nil {
			return err
		}
		delete(byNode, n.ID)
	}
	for id := range byNode {
		return fmt.Errorf("allocations on unknown node %s", id)
	}
	return nil
}

// PerNode counts the live allocations of a job per node name, for
// assertions.
func (h *Harness) PerNode(jobKey string) map[string]int {
	out := map[string]int{}
	for _, a := range h.Live(jobKey) {
		out[a.NodeName]++
	}
	return out
}

// NodeNames lists the names of the nodes holding a plan's placements, in
// plan order.
func NodeNames(p *scheduler.Plan) []string {
	out := make([]string, len(p.Placed))
	for i, a := range p.Placed {
		out[i] = a.NodeName
	}
	return out
}

// Sorted returns a sorted copy.
func Sorted(s []string) []string {
	c := append([]string(nil), s...)
	sort.Strings(c)
	return c
}
