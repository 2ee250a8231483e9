package server

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"runtime/pprof"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/scheduler"
	"github.com/gantryhq/gantry/internal/server/applier"
	"github.com/gantryhq/gantry/internal/server/evalstep"
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

// snapshotFor reads what evaluating the job depends on: its allocations,
// evaluations and deployments from the view, the nodes they sit on, and
// the older versions live allocations run (from etcd when the view has
// not read them yet). job may be nil (purged).
func (s *Server) snapshotFor(ctx context.Context, namespace, name string, job *api.Job) (*evalstep.Snapshot, error) {
	capIdx := s.store.CapacityIndex() // before the reads: a change after it is not missed
	allocs := s.store.Allocs(state.AllocFilter{Namespace: namespace, Job: name})
	snap := &evalstep.Snapshot{Job: job, Allocs: allocs, Nodes: map[string]*api.Node{}, Versions: map[uint64]*api.Job{},
		Evals: s.store.Evals(namespace, name), Cluster: s.store, CapacityIndex: capIdx}
	if d, ok := s.store.LatestDeployment(namespace, name); ok {
		snap.Deployment = d
	}
	if job != nil {
		snap.Stable = s.stableVersion(namespace, name, job.Version)
	}
	for _, a := range allocs {
		if n, ok := s.store.Node(a.NodeID); ok {
			snap.Nodes[a.NodeID] = n
		}
		if job != nil && a.JobVersion != job.Version && !a.ClientTerminal() {
			if _, ok := snap.Versions[a.JobVersion]; !ok {
				old, err := s.store.JobVersion(ctx, namespace, name, a.JobVersion)
				if err != nil && !errors.Is(err, state.ErrNotFound) {
					return nil, err
				}
				snap.Versions[a.JobVersion] = old
			}
		}
	}
	return snap, nil
}

// stepInput is the pure step's input for evaluation e at now. The GPU
// policy's input is derived from the jobs in the store, with dryRun's job
// counted as submitted (`job plan`, so that it plans with what `job run`
// of the same job will); it is returned for the caller to report.
func (s *Server) stepInput(ctx context.Context, e *api.Evaluation, job *api.Job, dryRun bool, now time.Time, sched evalstep.Scheduler) (*evalstep.Input, *api.GPUWorkload, error) {
	snap, err := s.snapshotFor(ctx, e.Namespace, e.Job, job)
	if err != nil {
		return nil, nil, err
	}
	var planned *api.Job
	if dryRun {
		planned = job
	}
	sc, learnt := s.gpuInput(planned)
	if sc != nil {
		snap.GPUScorer, snap.GPUWorkload = sc, learnt.Version
	}
	in := &evalstep.Input{Eval: e, Snap: snap, Now: now, Sched: sched, NewID: uuid.NewString, LostBatchGrace: s.cfg.LostBatchGrace}
	return in, gpuWorkloadRef(sc, learnt), nil
}

// planJob plans a job without writing anything or touching the leader's
// working cluster (`job plan`), and says which learnt GPU workload it
// planned with (nil: the GPU policy learns nothing).
func (s *Server) planJob(ctx context.Context, job *api.Job, now time.Time) (*evalstep.Planned, *api.GPUWorkload, error) {
	sched := evalstep.SchedulerFunc(func(req *scheduler.Request) (*scheduler.Plan, error) {
		return s.schedule(s.store.Snapshot(), req, now)
	})
	in, ref, err := s.stepInput(ctx, &api.Evaluation{ID: "plan", Namespace: job.Namespace, Job: job.Name}, job, true, now, sched)
	if err != nil {
		return nil, nil, err
	}
	p, err := evalstep.PlanJob(in)
	return p, ref, err
}

// scheduleIncremental plans against the leader's working cluster, which
// follows the store without being rebuilt for every evaluation: it is
// built from a snapshot when capacity changed in the store (a node
// changed, an allocation stopped or went away) or after a plan failed to
// commit, and otherwise only absorbs this worker's own plans. Before a
// rebuild the view must hold every plan the leader committed (settle),
// or the new cluster would miss them. With a scheduler that cannot plan
// incrementally it falls back to a snapshot.
func (s *Server) scheduleIncremental(ctx context.Context, req *scheduler.Request, now time.Time) (plan *scheduler.Plan, err error) {
	eng, ok := s.sched.(*scheduler.Engine)
	if !ok {
		if err := s.settle(ctx); err != nil {
			return nil, err
		}
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
	if capIdx := s.store.CapacityIndex(); s.work.cluster == nil || capIdx != s.work.capIndex {
		if err := s.settle(ctx); err != nil {
			return nil, err
		}
		start := time.Now()
		defer func() { s.observeSchedule(time.Since(start)) }()
		capIdx = s.store.CapacityIndex()
		snap := s.store.Snapshot()
		s.work.cluster = eng.NewCluster(&scheduler.Snapshot{Nodes: snap.Nodes, Allocs: snap.Allocs, Queues: snap.Queues})
		s.work.capIndex = capIdx
		return eng.Plan(s.work.cluster, req)
	}
	start := time.Now()
	defer func() { s.observeSchedule(time.Since(start)) }()
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

// tryEval is the worker's synchronous path: it decides the evaluation,
// commits the decision and waits until the view holds it. The pipeline
// (pipeline.go) runs the same two halves overlapped; it falls back to
// this path, after settling, for everything but a plain commit.
func (s *Server) tryEval(ctx context.Context, fence *state.Fence, e *api.Evaluation) error {
	d, err := s.decideEval(ctx, e)
	if err != nil {
		return err
	}
	if d.Kind == evalstep.Replan {
		s.planRejected("recheck")
		return fmt.Errorf("%s: %w", d.Reason, state.ErrConflict)
	}
	out, err := s.commitEval(ctx, fence, e, d)
	if err != nil {
		return err
	}
	if out.Partial {
		s.invalidateWork() // the working cluster absorbed all of the plan
	}
	phase := time.Now()
	labelPhase(ctx, phaseView)
	defer pprof.SetGoroutineLabels(ctx)
	err = s.store.WaitIndex(ctx, out.Rev)
	s.observePhase(phaseView, phase)
	return err
}

// decideEval reads the evaluation's snapshot and lets the pure step
// decide, re-checking the plan against the view and the leader's own
// plans the view may not hold yet. It touches the working cluster, so
// only the broker goroutine calls it.
func (s *Server) decideEval(ctx context.Context, e *api.Evaluation) (*evalstep.Decision, error) {
	now := s.now()
	phase := time.Now()
	labelPhase(ctx, phaseDecide)
	defer pprof.SetGoroutineLabels(ctx)
	job, _ := s.store.Job(e.Namespace, e.Job)
	in, _, err := s.stepInput(ctx, e, job, false, now, evalstep.SchedulerFunc(func(req *scheduler.Request) (*scheduler.Plan, error) {
		return s.scheduleIncremental(ctx, req, now)
	}))
	if err != nil {
		return nil, err
	}
	in.Snap.Cluster = ownView{View: in.Snap.Cluster, own: &s.work.own, checks: s.store.NodeChecks}
	d, err := evalstep.Step(in)
	if err != nil {
		return nil, err
	}
	for _, n := range d.Notes {
		s.log.Warn(n, "eval", api.ShortID(e.ID), "job", e.JobKey())
	}
	s.observePhase(phaseDecide, phase)
	return d, nil
}

// commitEval applies a Commit decision through the port and says what it
// did. It touches nothing of the broker goroutine's, so the pipeline runs
// it beside the next decision.
func (s *Server) commitEval(ctx context.Context, fence *state.Fence, e *api.Evaluation, d *evalstep.Decision) (evalstep.Outcome, error) {
	phase := time.Now()
	labelPhase(ctx, phaseCommit)
	defer pprof.SetGoroutineLabels(ctx)
	out, err := evalstep.Apply(ctx, &port{s: s, fence: fence}, d)
	s.observePhase(phaseCommit, phase)
	if errors.Is(out.Cause, state.ErrConflict) {
		s.planRejected("commit")
	}
	if err != nil {
		return out, err
	}
	if out.DropErr != nil {
		s.log.Warn("remove retry evaluations that have nothing left to do", "job", e.JobKey(), "err", out.DropErr)
	}
	if out.Partial {
		s.log.Warn("plan applied in part; a follow-up evaluation places the rest", "eval", api.ShortID(e.ID), "job", e.JobKey(),
			"placed", out.Result.Placed, "of", len(d.Placed), "next", api.ShortID(d.Continue.ID), "cause", out.Cause)
	} else if len(d.Placed)+len(d.Updates)+len(d.Preempt)+len(d.Result.Deployments) > 0 || len(d.Failed) > 0 {
		s.log.Info("evaluation applied", "eval", api.ShortID(e.ID), "job", e.JobKey(), "trigger", e.TriggeredBy,
			"placed", len(d.Placed), "updated", len(d.Updates)+len(d.Preempt), "steps", out.Result.Steps, "status", d.Eval.Status)
	}
	return out, nil
}

// port is the worker's side of evalstep.Planner: the plan applier and
// the store's evaluation writes, each fenced by the leadership the
// worker runs under.
type port struct {
	s     *Server
	fence *state.Fence
}

func (p *port) SubmitPlan(ctx context.Context, plan *applier.Plan) (applier.Result, error) {
	plan.Fence = p.fence
	ap := &applier.Applier{Store: p.s.store, Limits: p.s.cfg.TxnLimits}
	return ap.Apply(ctx, plan)
}

func (p *port) UpdateEval(ctx context.Context, e *api.Evaluation, create ...*api.Evaluation) (int64, error) {
	return p.s.store.ApplyPlan(ctx, &state.PlanCommit{Fence: p.fence, Eval: e, FollowUps: create})
}

func (p *port) DeleteEvals(ctx context.Context, ids []string) error {
	return p.s.store.DeleteEvals(ctx, p.fence, ids)
}

// copyAlloc returns a copy whose top-level fields can be changed.
func copyAlloc(a *api.Allocation) *api.Allocation {
	c := *a
	return &c
}
