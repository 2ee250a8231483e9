package scheduler

import (
	"time"

	"github.com/gantryhq/gantry/internal/api"
)

// Scheduler turns a request for placements into a plan. Implementations
// are pure functions of their arguments.
type Scheduler interface {
	Schedule(snap *Snapshot, req *Request, now time.Time) (*Plan, error)
}

// Snapshot is the cluster as the scheduler sees it: every node and every
// allocation that still holds resources. Callers must not modify it while
// a Schedule call runs; the scheduler never modifies it.
type Snapshot struct {
	Nodes  []*api.Node
	Allocs []*api.Allocation // non-terminal allocations of every job
	Queues []*api.Queue
}

// Request asks for replicas of one job's groups to be placed.
type Request struct {
	Job   *api.Job
	Place []Placement
	// Stopping lists allocations the caller stops in the same plan; their
	// resources count as free.
	Stopping []string
	// Scorer, when set, rates GPU work for this call in place of
	// Config.GPUScorer (through ForPlan when it is a PlanScorer, and for
	// work without GPUs when what it gives is a CPUScorer). It is how a
	// caller passes a scorer built from inputs of the state it plans
	// against (the server's learnt workload, policy.Served), so that the
	// plan is a function of the call's arguments and the same state
	// gives the same plan in every caller.
	Scorer GPUScorer
}

// Placement is one replica to place.
type Placement struct {
	Group         string
	Index         int
	PreviousAlloc *api.Allocation // the allocation this one replaces, if any
}

// Plan is the scheduler's decision. Placed allocations carry NodeID,
// NodeName, Group, Index and Resources; the caller assigns IDs and
// statuses.
type Plan struct {
	Placed  []*api.Allocation
	Preempt []Preemption
	Failed  map[string]*api.Explanation // by group
	// Regret has one sample per placement chosen from a sample of the
	// nodes, only with Config.MeasureRegret.
	Regret []RegretSample
}

// Preemption is an allocation evicted to make room, with the reason.
type Preemption struct {
	AllocID string
	Reason  string
}
