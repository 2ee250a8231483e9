package server

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sort"
	"strings"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/lifecycle"
	"github.com/gantryhq/gantry/internal/reconcile"
	"github.com/gantryhq/gantry/internal/scheduler"
	"github.com/gantryhq/gantry/internal/server/applier"
	"github.com/gantryhq/gantry/internal/state"
	"github.com/google/uuid"
)

// processEval runs one evaluation to completion, retrying when a plan
// conflicts with a concurrent change.
func (s *Server) processEval(ctx context.Context, fence *state.Fence, e *api.Evaluation) error {
	for attempt := 0; ; attempt++ {
		err := s.tryEval(ctx, fence, e)
		if err != nil {
			// What the working cluster absorbed did not (all) commit.
			s.invalidateWork()
		}
		if !errors.Is(err, state.ErrConflict) || attempt >= 8 {
			return err
		}
		// Someone changed what the plan depended on: catch up and redo.
		if _, err := s.store.Sync(ctx); err != nil {
			return err
		}
		cur, ok := s.store.Eval(e.ID)
		if !ok || (cur.Status != api.EvalPending && cur.Status != api.EvalBlocked) {
			return nil
		}
		e = cur
	}
}

// planned is a reconciled and scheduled change for one job, not yet
// committed.
type planned struct {
	job     *api.Job
	result  *reconcile.Result
	updates []*api.Allocation // stops, lost, in-place
	preempt []*api.Allocation // evicted to make room for placed
	placed  []*api.Allocation
	failed  map[string]*api.Explanation
	snap    *state.Snapshot
}

// planJob reconciles a job against its allocations and schedules the
// placements it needs, without writing anything. job may be nil (purged).
func (s *Server) planJob(ctx context.Context, namespace, name string, job *api.Job, evalID string, now time.Time, dry bool) (p *planned, err error) {
	allocs := s.store.Allocs(state.AllocFilter{Namespace: namespace, Job: name})
	in := &reconcile.Input{Job: job, Allocs: allocs, Nodes: map[string]*api.Node{}, Versions: map[uint64]*api.Job{}, Now: now, LostBatchGrace: s.cfg.LostBatchGrace}
	s.deploymentInput(in, namespace, name)
	for _, a := range allocs {
		if n, ok := s.store.Node(a.NodeID); ok {
			in.Nodes[a.NodeID] = n
		}
		if job != nil && a.JobVersion != job.Version && !a.ClientTerminal() {
			if _, ok := in.Versions[a.JobVersion]; !ok {
				old, err := s.store.JobVersion(ctx, namespace, name, a.JobVersion)
				if err != nil && !errors.Is(err, state.ErrNotFound) {
					return nil, err
				}
				in.Versions[a.JobVersion] = old
			}
		}
	}
	res := reconcile.Reconcile(in)
	p = &planned{job: job, result: res}
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
			s.log.Warn("not stopping an allocation: the lifecycle table does not allow it",
				"alloc", api.ShortID(c.ID), "from", lifecycle.Of(st.Alloc).String(), "to", lifecycle.Of(c).String())
			continue
		}
		p.updates = append(p.updates, c)
		stopping = append(stopping, c.ID)
	}
	// Allocations waiting for their down node (disconnect.replace false)
	// say so; once the node is back they no longer do.
	for _, w := range res.Waiting {
		if w.Alloc.DesiredReason != w.Reason {
			c := copyAlloc(w.Alloc)
			c.DesiredReason, c.ModifyTime = w.Reason, now
			p.updates = append(p.updates, c)
		}
	}
	for _, a := range res.Resumed {
		c := copyAlloc(a)
		c.DesiredReason, c.ModifyTime = "", now
		p.updates = append(p.updates, c)
	}
	for _, a := range res.InPlace {
		c := copyAlloc(a)
		c.JobVersion, c.ModifyTime = job.Version, now
		p.updates = append(p.updates, c)
	}
	if len(res.Place) == 0 {
		return p, nil
	}
	req := &scheduler.Request{Job: job, Stopping: stopping}
	for _, pl := range res.Place {
		req.Place = append(req.Place, scheduler.Placement{Group: pl.Group, Index: pl.Index, PreviousAlloc: pl.Previous})
	}
	var plan *scheduler.Plan
	if dry {
		snap := s.store.Snapshot()
		plan, err = s.schedule(snap, req, now)
	} else {
		plan, err = s.scheduleIncremental(req, now)
	}
	if err != nil {
		return nil, err
	}
	p.failed = plan.Failed
	for _, pe := range plan.Preempt {
		if a, ok := s.store.Alloc(pe.AllocID); ok {
			c := copyAlloc(a)
			c.DesiredStatus, c.DesiredReason, c.ModifyTime = api.AllocDesiredStop, "preempted: "+pe.Reason, now
			p.preempt = append(p.preempt, c)
		}
	}
	for _, a := range plan.Placed {
		a.ID = uuid.NewString()
		a.EvalID = evalID
		a.DesiredStatus = api.AllocDesiredRun
		a.ClientStatus = api.AllocPending
		a.CreateTime, a.ModifyTime = now, now
		p.placed = append(p.placed, a)
	}
	markPlacements(p.placed, res.Place)
	return p, nil
}

// scheduleIncremental plans against the leader's working cluster, which
// follows the store without being rebuilt for every evaluation: it is
// built from a snapshot when capacity changed in the store (a node
// changed, an allocation stopped or went away) or after a plan failed to
// commit, and otherwise only absorbs this worker's own plans. With a
// scheduler that cannot plan incrementally it falls back to a snapshot.
func (s *Server) scheduleIncremental(req *scheduler.Request, now time.Time) (plan *scheduler.Plan, err error) {
	eng, ok := s.sched.(*scheduler.Engine)
	if !ok {
		return s.schedule(s.store.Snapshot(), req, now)
	}
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("scheduler panic", "job", req.Job.Key(), "panic", r, "stack", string(debug.Stack()))
			err = fmt.Errorf("job %s: %w", req.Job.Key(), &panicError{where: "the scheduler", value: r})
		}
		if err != nil {
			s.work.cluster = nil
		}
	}()
	start := time.Now()
	defer func() { s.observeSchedule(time.Since(start)) }()
	if capIdx := s.store.CapacityIndex(); s.work.cluster == nil || capIdx != s.work.capIndex {
		snap := s.store.Snapshot()
		s.work.cluster = eng.NewCluster(&scheduler.Snapshot{Nodes: snap.Nodes, Allocs: snap.Allocs, Queues: snap.Queues})
		s.work.capIndex = capIdx
	}
	return eng.Plan(s.work.cluster, req)
}

// invalidateWork drops the working cluster (a plan did not commit).
func (s *Server) invalidateWork() { s.work.cluster = nil }

// schedule calls the scheduler, turning a panic into an error so that a
// scheduler bug fails one evaluation instead of the server.
func (s *Server) schedule(snap *state.Snapshot, req *scheduler.Request, now time.Time) (plan *scheduler.Plan, err error) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("scheduler panic", "job", req.Job.Key(), "panic", r, "stack", string(debug.Stack()))
			err = fmt.Errorf("job %s: %w", req.Job.Key(), &panicError{where: "the scheduler", value: r})
		}
	}()
	start := time.Now()
	defer func() { s.observeSchedule(time.Since(start)) }()
	return s.sched.Schedule(&scheduler.Snapshot{Nodes: snap.Nodes, Allocs: snap.Allocs, Queues: snap.Queues}, req, now)
}

func (s *Server) tryEval(ctx context.Context, fence *state.Fence, e *api.Evaluation) error {
	now := s.now()
	job, _ := s.store.Job(e.Namespace, e.Job)
	p, err := s.planJob(ctx, e.Namespace, e.Job, job, e.ID, now, false)
	if err != nil {
		return err
	}
	if err := s.recheck(p); err != nil {
		s.planRejected("recheck")
		return err
	}

	final := *e
	final.ModifyTime = now
	final.Placed, final.Stopped = len(p.placed), len(p.result.Stop)
	final.FailedGroups = p.failed
	final.Status, final.StatusDescription = api.EvalComplete, ""
	if len(p.failed) > 0 {
		final.Status = api.EvalBlocked
		final.StatusDescription = "some replicas could not be placed; retried when the cluster changes"
	}
	if len(p.result.GaveUp) > 0 && final.StatusDescription == "" {
		final.StatusDescription = fmt.Sprintf("%d allocation(s) failed too often to be replaced", len(p.result.GaveUp))
	}
	if w := p.result.Waiting; len(w) > 0 && final.StatusDescription == "" {
		final.StatusDescription = waitingDescription(w)
	}
	var followUps []*api.Evaluation
	retry, create, dropRetries := retryFollowUp(s.store.Evals(e.Namespace, e.Job), e.ID, p.result.RetryAt, now)
	if create {
		retry = s.newEval(e.Namespace, e.Job, api.TriggerRetry)
		retry.WaitUntil = p.result.RetryAt
		if job != nil {
			retry.Priority, retry.JobVersion = job.Priority, job.Version
		}
	}
	if retry != nil {
		followUps = append(followUps, retry)
	}
	// Other open evaluations of the same job are answered by this one.
	for _, o := range s.store.Evals(e.Namespace, e.Job) {
		if o.ID != e.ID && (o.Status == api.EvalPending && !now.Before(o.WaitUntil) || o.Status == api.EvalBlocked) {
			c := *o
			c.Status, c.StatusDescription, c.ModifyTime = api.EvalComplete, "superseded by evaluation "+e.ID, now
			followUps = append(followUps, &c)
		}
	}

	guards := map[string]int64{}
	for _, a := range p.placed {
		guards[a.NodeID] = s.store.NodePlanIndex(a.NodeID)
	}
	plan := &applier.Plan{
		Fence: fence, Eval: &final, FollowUps: followUps, Deployments: p.result.Deployments,
		Update: p.updates, Preempt: p.preempt, Place: p.placed, Gangs: gangGroups(job), Guards: guards,
	}
	ap := &applier.Applier{Store: s.store, Limits: s.cfg.TxnLimits}
	res, err := ap.Apply(ctx, plan)
	if err != nil {
		if errors.Is(err, state.ErrConflict) {
			s.planRejected("commit")
		}
		if res.Partial() && !errors.Is(err, state.ErrNotLeader) {
			return s.recordPartial(ctx, fence, e, &final, res, len(p.placed), err)
		}
		return err
	}
	if len(dropRetries) > 0 {
		if err := s.store.DeleteEvals(ctx, fence, dropRetries); errors.Is(err, state.ErrNotLeader) {
			return err
		} else if err != nil {
			s.log.Warn("remove retry evaluations that have nothing left to do", "job", e.JobKey(), "err", err)
		}
	}
	if len(p.placed)+len(p.updates)+len(p.preempt)+len(p.result.Deployments) > 0 || len(p.failed) > 0 {
		s.log.Info("evaluation applied", "eval", api.ShortID(e.ID), "job", e.JobKey(), "trigger", e.TriggeredBy,
			"placed", len(p.placed), "updated", len(p.updates)+len(p.preempt), "steps", res.Steps, "status", final.Status)
	}
	return s.store.WaitIndex(ctx, res.Rev)
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

// recordPartial closes an evaluation whose plan committed only in part
// (a later step conflicted, every gang and preemption set whole on one
// side of it): the evaluation says how much was committed and a follow-up
// evaluation, created in the same write, plans the rest against the new
// state.
func (s *Server) recordPartial(ctx context.Context, fence *state.Fence, e, final *api.Evaluation, res applier.Result, total int, cause error) error {
	s.invalidateWork() // the working cluster absorbed all of the plan
	next := s.newEval(e.Namespace, e.Job, api.TriggerPlanContinue)
	next.Priority, next.JobVersion = e.Priority, e.JobVersion
	done := *final
	done.Status = api.EvalComplete
	done.Placed = res.Placed
	done.FailedGroups = nil
	done.StatusDescription = fmt.Sprintf("plan applied in part: %d of %d placements committed in %d transaction(s) before %v; evaluation %s places the rest",
		res.Placed, total, res.Steps, cause, next.ID)
	if _, err := s.store.ApplyPlan(ctx, &state.PlanCommit{Fence: fence, Eval: &done, FollowUps: []*api.Evaluation{next}}); err != nil {
		return fmt.Errorf("record a partly applied plan: %w", err)
	}
	s.log.Warn("plan applied in part; a follow-up evaluation places the rest", "eval", api.ShortID(e.ID), "job", e.JobKey(),
		"placed", res.Placed, "of", total, "next", api.ShortID(next.ID), "cause", cause)
	return s.store.WaitIndex(ctx, res.Rev)
}

// recheck verifies every node that receives placements against the latest
// view: the plan applier's guard against two plans handing out the same
// resource. A failure is a conflict: the evaluation is planned again.
func (s *Server) recheck(p *planned) error {
	byNode := map[string][]*api.Allocation{}
	for _, a := range p.placed {
		byNode[a.NodeID] = append(byNode[a.NodeID], a)
	}
	stopping := map[string]bool{}
	for _, u := range p.updates {
		if u.DesiredStatus == api.AllocDesiredStop {
			stopping[u.ID] = true
		}
	}
	nodes := make([]string, 0, len(byNode))
	for id := range byNode {
		nodes = append(nodes, id)
	}
	sort.Strings(nodes)
	for _, id := range nodes {
		n, ok := s.store.Node(id)
		if !ok {
			return fmt.Errorf("node %s vanished: %w", id, state.ErrConflict)
		}
		existing := s.store.NodeAllocsUnsorted(id)
		all := make([]*api.Allocation, 0, len(existing)+len(byNode[id]))
		for _, a := range existing {
			if !stopping[a.ID] && !a.Terminal() {
				all = append(all, a)
			}
		}
		all = append(all, byNode[id]...)
		if err := scheduler.Fit(n, all); err != nil {
			return fmt.Errorf("%v: %w", err, state.ErrConflict)
		}
	}
	return nil
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
