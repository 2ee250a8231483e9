package evalstep

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/lifecycle"
	"github.com/gantryhq/gantry/internal/reconcile"
	"github.com/gantryhq/gantry/internal/scheduler"
	"github.com/gantryhq/gantry/internal/state"
)

// View is the read-only part of the cluster a step looks at beyond the
// job's own objects: the nodes that receive placements, their allocations
// and plan guards, and allocations named by a preemption. *state.Store is
// one. The step reads each node's guard before its allocations, so that
// a change between the two fails the commit instead of slipping past the
// re-check.
type View interface {
	Node(id string) (*api.Node, bool)
	NodeAllocsUnsorted(id string) []*api.Allocation
	NodePlanIndex(id string) int64
	Alloc(id string) (*api.Allocation, bool)
}

// UsageView is a View that also sums what each node's live allocations
// take as they change (the leader's view of the store), and reads many
// nodes at once. The re-check then adds a plan's placements to the sum
// instead of walking every allocation of every node the plan touches,
// wherever nothing on the node holds a host port or a GPU and the plan
// stops nothing there.
type UsageView interface {
	NodeChecks(ids []string) []state.NodeCheck
}

// Scheduler places the replicas a request asks for. The server backs it
// with its working cluster (incremental) or a snapshot; a harness with
// scheduler.Engine over its own nodes.
type Scheduler interface {
	Plan(req *scheduler.Request) (*scheduler.Plan, error)
}

// SchedulerFunc lets a function serve as a Scheduler.
type SchedulerFunc func(req *scheduler.Request) (*scheduler.Plan, error)

// Plan calls f.
func (f SchedulerFunc) Plan(req *scheduler.Request) (*scheduler.Plan, error) { return f(req) }

// Snapshot is what one evaluation depends on, read by the caller before
// the step.
type Snapshot struct {
	// Job is the job's current version; nil when it was purged.
	Job *api.Job
	// Allocs are every allocation of the job, terminal ones included.
	Allocs []*api.Allocation
	// Nodes holds the nodes the job's allocations sit on.
	Nodes map[string]*api.Node
	// Versions holds the older job versions live allocations run; a
	// version the store no longer has is present with a nil value.
	Versions map[uint64]*api.Job
	// Evals are the job's evaluations, oldest first.
	Evals []*api.Evaluation
	// Deployment is the job's newest deployment (nil: none) and Stable
	// the newest version below the job's whose deployment succeeded.
	Deployment *api.Deployment
	Stable     *uint64
	// GPUScorer is the server's GPU policy built on the GPU workload
	// learnt from the jobs of the state read (policy.Served), passed to
	// the scheduler with every request: a plan depends on it as on the
	// nodes and allocations, so it is part of the snapshot. nil: the
	// scheduler's own scorer. GPUWorkload is its version, recorded on the
	// evaluation (api.Evaluation.GPUWorkload).
	GPUScorer   scheduler.GPUScorer
	GPUWorkload string
	// Cluster is the rest of the cluster, read through a narrow view.
	Cluster View
	// CapacityIndex is the store's capacity index read before anything
	// else of the snapshot: a blocked evaluation waits for a change after
	// it (api.Evaluation.SnapshotIndex).
	CapacityIndex int64
}

// Input is one step's whole input.
type Input struct {
	Eval  *api.Evaluation
	Snap  *Snapshot
	Now   time.Time
	Sched Scheduler
	// NewID makes the IDs of new allocations, deployments and
	// evaluations.
	NewID func() string
	// LostBatchGrace is how long batch work on a down node waits for it.
	LostBatchGrace time.Duration
}

// Planned is a reconciled and scheduled change for one job, not yet
// committed: what `job plan` shows and what a step commits.
type Planned struct {
	Job     *api.Job
	Result  *reconcile.Result
	Updates []*api.Allocation // stops, lost, in-place
	Preempt []*api.Allocation // evicted to make room for Placed
	Placed  []*api.Allocation
	Failed  map[string]*api.Explanation
	// Notes are things worth a log line that change nothing (a stop the
	// lifecycle table does not allow).
	Notes []string
}

// Kind says what a Decision asks for.
type Kind int

const (
	// Commit: submit the plan with the evaluation's final status.
	Commit Kind = iota
	// Replan: the plan no longer fits the latest view (a node vanished
	// or another plan took its room); nothing is written and the
	// evaluation is planned again once the view caught up.
	Replan
)

func (k Kind) String() string {
	if k == Replan {
		return "replan"
	}
	return "commit"
}

// Decision is what a step decided. Apply carries it out.
type Decision struct {
	Kind Kind
	// Reason says why a Replan was decided.
	Reason string
	*Planned
	// Eval is the evaluation's final status: complete, or blocked when
	// some replicas could not be placed (it runs again when the
	// cluster's capacity changes).
	Eval *api.Evaluation
	// FollowUps are written with the plan's last step: the job's one
	// future retry (new, or an existing one moved earlier) and the other
	// open evaluations of the job, closed as superseded.
	FollowUps []*api.Evaluation
	// DropRetries are pending retry evaluations with nothing left to do,
	// removed once the plan committed.
	DropRetries []string
	// Gangs names the job's all-or-nothing groups and Guards the plan
	// revisions of the nodes that receive placements, as re-checked.
	Gangs  map[string]bool
	Guards map[string]int64
	// Continue is the evaluation that places the rest when the plan
	// commits only in part (see Partial); written only then.
	Continue *api.Evaluation
}

// PlanJob reconciles the job against its allocations and schedules the
// placements it needs, without writing anything.
func PlanJob(in *Input) (*Planned, error) {
	snap, now, job := in.Snap, in.Now, in.Snap.Job
	rin := &reconcile.Input{Job: job, Allocs: snap.Allocs, Nodes: snap.Nodes, Versions: snap.Versions, Now: now,
		Deployment: snap.Deployment, DeploymentID: in.NewID(), Stable: snap.Stable, LostBatchGrace: in.LostBatchGrace}
	if rin.Nodes == nil {
		rin.Nodes = map[string]*api.Node{}
	}
	if rin.Versions == nil {
		rin.Versions = map[uint64]*api.Job{}
	}
	res := reconcile.Reconcile(rin)
	p := &Planned{Job: job, Result: res}
	stopping := make([]string, 0, len(res.Stop))
	for _, st := range res.Stop {
		c := copyAlloc(st.Alloc)
		c.DesiredStatus, c.DesiredReason, c.ModifyTime = api.AllocDesiredStop, st.Reason, now
		// Only what the lifecycle table allows: an allocation whose node
		// already reported it complete or failed stays so; it is not lost.
		lost := lifecycle.State{Desired: api.AllocDesiredStop, Client: api.AllocLost}
		if st.Lost && lifecycle.AllowedBy(lifecycle.Server, lifecycle.Of(st.Alloc), lost) {
			c.ClientStatus, c.ClientReason = api.AllocLost, st.Reason
		}
		if !lifecycle.AllowedBy(lifecycle.Server, lifecycle.Of(st.Alloc), lifecycle.Of(c)) {
			p.Notes = append(p.Notes, fmt.Sprintf("not stopping allocation %s: the lifecycle table does not allow %s → %s",
				api.ShortID(c.ID), lifecycle.Of(st.Alloc), lifecycle.Of(c)))
			continue
		}
		p.Updates = append(p.Updates, c)
		stopping = append(stopping, c.ID)
	}
	// Allocations waiting for their down node (disconnect.replace false)
	// say so; once the node is back they no longer do.
	for _, w := range res.Waiting {
		if w.Alloc.DesiredReason != w.Reason {
			c := copyAlloc(w.Alloc)
			c.DesiredReason, c.ModifyTime = w.Reason, now
			p.Updates = append(p.Updates, c)
		}
	}
	for _, a := range res.Resumed {
		c := copyAlloc(a)
		c.DesiredReason, c.ModifyTime = "", now
		p.Updates = append(p.Updates, c)
	}
	for _, a := range res.InPlace {
		c := copyAlloc(a)
		c.JobVersion, c.JobSubmitTime, c.ModifyTime = job.Version, job.SubmitTime, now
		p.Updates = append(p.Updates, c)
	}
	if len(res.Place) == 0 {
		return p, nil
	}
	req := &scheduler.Request{Job: job, Stopping: stopping, Scorer: snap.GPUScorer}
	for _, pl := range res.Place {
		req.Place = append(req.Place, scheduler.Placement{Group: pl.Group, Index: pl.Index, PreviousAlloc: pl.Previous})
	}
	plan, err := in.Sched.Plan(req)
	if err != nil {
		return nil, err
	}
	p.Failed = plan.Failed
	for _, pe := range plan.Preempt {
		if a, ok := snap.Cluster.Alloc(pe.AllocID); ok {
			c := copyAlloc(a)
			c.DesiredStatus, c.DesiredReason, c.ModifyTime = api.AllocDesiredStop, "preempted: "+pe.Reason, now
			p.Preempt = append(p.Preempt, c)
		}
	}
	for _, a := range plan.Placed {
		a.ID = in.NewID()
		a.EvalID = in.Eval.ID
		a.DesiredStatus = api.AllocDesiredRun
		a.ClientStatus = api.AllocPending
		a.CreateTime, a.ModifyTime = now, now
		p.Placed = append(p.Placed, a)
	}
	markPlacements(p.Placed, res.Place)
	return p, nil
}

// Step decides what the evaluation does. An error is the scheduler's (or
// a panic the caller recovered); everything else is in the Decision.
func Step(in *Input) (*Decision, error) {
	p, err := PlanJob(in)
	if err != nil {
		return nil, err
	}
	d := &Decision{Planned: p}
	guards, err := recheck(in.Snap.Cluster, p)
	if err != nil {
		d.Kind, d.Reason = Replan, err.Error()
		return d, nil
	}
	e, now, job := in.Eval, in.Now, p.Job
	final := *e
	final.ModifyTime = now
	final.Placed, final.Stopped = len(p.Placed), len(p.Result.Stop)
	final.FailedGroups = p.Failed
	final.GPUWorkload = in.Snap.GPUWorkload
	final.Status, final.StatusDescription, final.SnapshotIndex = api.EvalComplete, "", 0
	if len(p.Failed) > 0 {
		final.Status, final.SnapshotIndex = api.EvalBlocked, in.Snap.CapacityIndex
		final.StatusDescription = "some replicas could not be placed; retried when the cluster changes"
	}
	if len(p.Result.GaveUp) > 0 && final.StatusDescription == "" {
		final.StatusDescription = fmt.Sprintf("%d allocation(s) failed too often to be replaced", len(p.Result.GaveUp))
	}
	if w := p.Result.Waiting; len(w) > 0 && final.StatusDescription == "" {
		final.StatusDescription = waitingDescription(w)
	}
	d.Eval = &final

	retry, create, drop := RetryFollowUp(in.Snap.Evals, e.ID, p.Result.RetryAt, now)
	if create {
		retry = NewEval(in.NewID(), e.Namespace, e.Job, api.TriggerRetry, now)
		retry.WaitUntil = p.Result.RetryAt
		if job != nil {
			retry.Priority, retry.JobVersion = job.Priority, job.Version
		}
	}
	if retry != nil {
		d.FollowUps = append(d.FollowUps, retry)
	}
	d.DropRetries = drop
	// Other open evaluations of the same job are answered by this one.
	for _, o := range in.Snap.Evals {
		if o.ID != e.ID && (o.Status == api.EvalPending && !now.Before(o.WaitUntil) || o.Status == api.EvalBlocked) {
			c := *o
			c.Status, c.StatusDescription, c.ModifyTime = api.EvalComplete, "superseded by evaluation "+e.ID, now
			d.FollowUps = append(d.FollowUps, &c)
		}
	}
	d.Gangs = gangGroups(job)
	d.Guards = guards
	next := NewEval(in.NewID(), e.Namespace, e.Job, api.TriggerPlanContinue, now)
	next.Priority, next.JobVersion = e.Priority, e.JobVersion
	d.Continue = next
	return d, nil
}

// NewEval is a pending evaluation of a job with the default priority.
func NewEval(id, namespace, job, trigger string, now time.Time) *api.Evaluation {
	return &api.Evaluation{
		ID:          id,
		Namespace:   namespace,
		Job:         job,
		Priority:    api.DefaultPriority,
		TriggeredBy: trigger,
		Status:      api.EvalPending,
		CreateTime:  now,
		ModifyTime:  now,
	}
}

// recheck verifies every node that receives placements against the
// latest view: the guard against two plans handing out the same resource.
// It returns the nodes' plan guards, each read before the node's
// allocations.
func recheck(v View, p *Planned) (map[string]int64, error) {
	byNode := map[string][]*api.Allocation{}
	for _, a := range p.Placed {
		byNode[a.NodeID] = append(byNode[a.NodeID], a)
	}
	// What this plan stops frees its room in the same commit.
	stopping := map[string]bool{}
	for _, u := range p.Updates {
		if u.DesiredStatus == api.AllocDesiredStop {
			stopping[u.ID] = true
		}
	}
	for _, u := range p.Preempt {
		stopping[u.ID] = true
	}
	stopsOn := map[string]bool{}
	for _, u := range p.Updates {
		if stopping[u.ID] {
			stopsOn[u.NodeID] = true
		}
	}
	for _, u := range p.Preempt {
		stopsOn[u.NodeID] = true
	}
	nodes := make([]string, 0, len(byNode))
	for id := range byNode {
		nodes = append(nodes, id)
	}
	sort.Strings(nodes)
	var checks []state.NodeCheck
	if uv, ok := v.(UsageView); ok {
		checks = uv.NodeChecks(nodes)
	}
	guards := make(map[string]int64, len(nodes))
	for i, id := range nodes {
		if checks != nil && !stopsOn[id] {
			c := checks[i]
			if c.Node == nil {
				return nil, fmt.Errorf("node %s vanished", id)
			}
			use := c.Usage
			for _, a := range byNode[id] {
				use.Add(a, 1)
			}
			if use.Itemized == 0 {
				guards[id] = c.PlanIndex
				if err := scheduler.FitUsage(c.Node, use); err != nil {
					return nil, err
				}
				continue
			}
		}
		guards[id] = v.NodePlanIndex(id)
		n, ok := v.Node(id)
		if !ok {
			return nil, fmt.Errorf("node %s vanished", id)
		}
		existing := v.NodeAllocsUnsorted(id)
		all := make([]*api.Allocation, 0, len(existing)+len(byNode[id]))
		for _, a := range existing {
			if !stopping[a.ID] && !a.Terminal() {
				all = append(all, a)
			}
		}
		all = append(all, byNode[id]...)
		if err := scheduler.Fit(n, all); err != nil {
			return nil, err
		}
	}
	return guards, nil
}

// gangGroups names the groups of job whose placements are all-or-nothing.
func gangGroups(job *api.Job) map[string]bool {
	if job == nil {
		return nil
	}
	out := map[string]bool{}
	for _, g := range job.Groups {
		if g.Gang != nil && g.Gang.Min > 0 {
			out[g.Name] = true
		}
	}
	return out
}

// markPlacements copies the deployment and canary marks of the
// reconciler's placements onto the allocations the scheduler placed.
func markPlacements(placed []*api.Allocation, wanted []reconcile.Placement) {
	type key struct {
		group string
		index int
	}
	byKey := make(map[key]reconcile.Placement, len(wanted))
	for _, p := range wanted {
		byKey[key{p.Group, p.Index}] = p
	}
	for _, a := range placed {
		if p, ok := byKey[key{a.Group, a.Index}]; ok {
			a.DeploymentID, a.Canary = p.Deployment, p.Canary
		}
	}
}

// copyAlloc returns a copy whose top-level fields can be changed.
func copyAlloc(a *api.Allocation) *api.Allocation {
	c := *a
	return &c
}

// waitingDescription is an evaluation's status description when
// allocations wait for their down node instead of being replaced.
func waitingDescription(w []reconcile.Stop) string {
	ids := make([]string, 0, len(w))
	for _, st := range w {
		ids = append(ids, st.Alloc.ShortID())
	}
	return fmt.Sprintf("%d allocation(s) not replaced (%s): %s",
		len(w), strings.Join(ids, ", "), strings.TrimPrefix(w[0].Reason, reconcile.WaitingPrefix)+"; waiting for the node to come back")
}
