package server

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/server/broker"
	"github.com/gantryhq/gantry/internal/server/evalstep"
	"github.com/gantryhq/gantry/internal/server/ownwrites"
	"github.com/gantryhq/gantry/internal/state"
)

// The leader's evaluation pipeline. One evaluation's plan commits (in its
// own goroutine) while the broker goroutine decides the next one, and the
// leader does not wait for its view to hold a commit before deciding
// again. What keeps that as safe as one evaluation at a time:
//
//   - The working cluster absorbed the plan in flight, so the next plan
//     never counts on its room; a rebuild of the working cluster first
//     settles (waits for the commit and for the view to hold it).
//   - The re-check of the next plan counts the leader's own placements
//     the view does not hold yet (ownView), and its node guards are
//     raised to the plan revisions the leader's commits left
//     (ownwrites.Log.NodeRev) just before it commits, after the plan
//     before it committed: a foreign write in between still fails it.
//   - A job's evaluations stay in order: one of a job with a plan in
//     flight, or one the view does not hold yet, waits for it.
//   - A decision is committed only after the plan before it committed
//     whole; otherwise it is dropped, the failed evaluation goes the
//     synchronous way (processEval: catch up, decide again, retry), and
//     the dropped one is decided again.

// maxUnseen bounds the leader's commits its view may lag behind, the one
// in flight included.
const maxUnseen = 3

// inflight is a plan being committed by its goroutine.
type inflight struct {
	e      *api.Evaluation
	d      *evalstep.Decision
	commit *ownwrites.Commit
	done   chan struct{}
	out    evalstep.Outcome
	err    error
	seen   bool // wait recorded the outcome
}

// ownView is the re-check's view of the cluster: the store's, with the
// leader's placements and plan revisions it does not hold yet.
type ownView struct {
	evalstep.View
	own    *ownwrites.Log
	checks func(ids []string, extra func(node string) []*api.Allocation) []state.NodeCheck // state.Store.NodeChecks
}

// NodeChecks reads the nodes from the view in one go, counting the
// leader's placements and plan revisions it does not hold yet
// (evalstep.UsageView).
func (v ownView) NodeChecks(ids []string) []state.NodeCheck {
	out := v.checks(ids, v.own.Placed)
	for i, id := range ids {
		out[i].PlanIndex = max(out[i].PlanIndex, v.own.NodeRev(id))
	}
	return out
}

// NodePlanIndex is the later of the view's and the leader's own.
func (v ownView) NodePlanIndex(id string) int64 {
	return max(v.View.NodePlanIndex(id), v.own.NodeRev(id))
}

// NodeAllocsUnsorted adds the leader's placements on the node the view
// does not list yet. A plan's placements on one node are one or two, so
// a scan of the node's list finds those the view already holds.
func (v ownView) NodeAllocsUnsorted(id string) []*api.Allocation {
	out := v.View.NodeAllocsUnsorted(id)
	listed := len(out)
	for _, a := range v.own.Placed(id) {
		if !slices.ContainsFunc(out[:listed], func(b *api.Allocation) bool { return b.ID == a.ID }) {
			out = append(out, a)
		}
	}
	return out
}

// wait blocks until f's commit ended and records it in the leader's log,
// once: a plan that did not commit whole leaves the working cluster
// stale (it absorbed the plan).
func (s *Server) wait(f *inflight) {
	<-f.done
	if f.seen {
		return
	}
	f.seen = true
	if f.err != nil {
		f.commit.Abort()
		s.invalidateWork()
		return
	}
	f.commit.Done(f.out.Rev, f.out.Result.NodeRevs)
	if f.out.Partial {
		s.invalidateWork()
	}
}

// settle waits for the plan in flight and for the view to hold every
// plan the leader committed: what reading the view whole (a rebuild of
// the working cluster, the synchronous path) needs.
func (s *Server) settle(ctx context.Context) error {
	if f := s.work.inflight; f != nil {
		s.wait(f)
	}
	own := &s.work.own
	own.Prune(s.store.Index())
	if own.Len() == 0 {
		return nil
	}
	return s.waitView(ctx, own.Last())
}

// waitView waits until the view holds rev, timed as the view phase.
func (s *Server) waitView(ctx context.Context, rev int64) error {
	phase := time.Now()
	labelPhase(ctx, phaseView)
	defer pprof.SetGoroutineLabels(ctx)
	err := s.store.WaitIndex(ctx, rev)
	s.observePhase(phaseView, phase)
	s.work.own.Prune(s.store.Index())
	return err
}

// startCommit commits d in its own goroutine. The plan before it has
// committed whole (finish said so), so its node guards may rise to the
// revisions the leader's own commits left.
func (s *Server) startCommit(ctx context.Context, fence *state.Fence, q *broker.Queue, e *api.Evaluation, d *evalstep.Decision) {
	for n, g := range d.Guards {
		d.Guards[n] = max(g, s.work.own.NodeRev(n))
	}
	// The view lists e as pending until it holds the commit: the queue
	// forgets it now, and hears of it again only if it changes.
	q.Remove(e.ID)
	f := &inflight{e: e, d: d, commit: s.work.own.Begin(e.JobKey(), d.Placed), done: make(chan struct{})}
	s.work.inflight = f
	go func() {
		defer close(f.done)
		defer func() {
			if r := recover(); r != nil {
				s.log.Error("evaluation panic", "eval", e.ID, "job", e.JobKey(), "panic", r, "stack", string(debug.Stack()))
				f.err = &panicError{where: "committing evaluation " + api.ShortID(e.ID), value: r}
			}
		}()
		f.out, f.err = s.commitEval(ctx, fence, e, d)
	}()
}

// finish waits for the plan in flight and handles its outcome. ok is
// false when it did not commit whole: a decision made since assumed it
// did, and is dropped. stop ends the leadership with err.
func (s *Server) finish(ctx context.Context, fence *state.Fence, q *broker.Queue, failures map[string]int) (ok, stop bool, err error) {
	f := s.work.inflight
	if f == nil {
		return true, false, nil
	}
	s.wait(f)
	s.work.inflight = nil
	if f.err == nil {
		delete(failures, f.e.ID)
		s.evalDone(f.d.Eval.Status)
		return !f.out.Partial, false, nil
	}
	if ctx.Err() != nil {
		return false, true, nil
	}
	// Nothing of it was written: it goes the synchronous way from here,
	// and back into the queue as the view has it now (the queue may have
	// heard of a newer version while it was out: never an older one).
	if cur, ok := s.store.Eval(f.e.ID); ok {
		q.Upsert(cur)
	}
	stop, err = s.runSync(ctx, fence, q, failures, f.e, f.err)
	return false, stop, err
}

// runSync handles an evaluation the synchronous way (processEval), once
// the view holds the leader's commits. first is how its commit in the
// pipeline failed, if it did: after a conflict the view catches up with
// etcd and the evaluation is run again if still open, as processEval
// does; anything else counts as a failed attempt.
func (s *Server) runSync(ctx context.Context, fence *state.Fence, q *broker.Queue, failures map[string]int, e *api.Evaluation, first error) (stop bool, err error) {
	switch {
	case first == nil:
		if err = s.settle(ctx); err == nil {
			err = s.processEvalSafely(ctx, fence, e)
		}
	case errors.Is(first, state.ErrConflict):
		if _, err = s.store.Sync(ctx); err == nil {
			s.work.own.Prune(s.store.Index())
			if cur, ok := s.store.Eval(e.ID); ok && (cur.Status == api.EvalPending || cur.Status == api.EvalBlocked) {
				err = s.processEvalSafely(ctx, fence, cur)
			}
		}
	default:
		err = first
	}
	if first != nil {
		s.invalidateWork()
	}
	return s.afterEval(ctx, fence, q, failures, e, err)
}

// brokerLoop hands evaluations to the worker: highest priority first,
// then oldest; at most one per job at a time; delayed ones when due;
// blocked ones again once the cluster's capacity changed. The next
// evaluation is decided while the last one's plan commits (see above).
func (s *Server) brokerLoop(ctx context.Context, fence *state.Fence) error {
	s.invalidateWork() // whatever an earlier leadership knew is stale
	s.work.own, s.work.inflight = ownwrites.Log{}, nil
	defer func() {
		// The commit in flight must not outlive the leadership.
		if f := s.work.inflight; f != nil {
			<-f.done
			s.work.inflight = nil
		}
	}()
	failures := map[string]int{}
	q, since := broker.New(), int64(-1)
	for ctx.Err() == nil {
		changed := s.store.Changed()
		since = s.followEvals(q, since)
		// Only what the queue has heard of leaves the log: a commit the
		// view holds but the queue has not read yet still holds back its
		// job's evaluations, which the queue lists as they were.
		s.work.own.Prune(since)
		e, wake := s.nextEval(q, s.now())
		f := s.work.inflight
		switch {
		case e == nil && f != nil, f != nil && f.e.JobKey() == e.JobKey():
			// Nothing else to decide, or the job's plan is in flight.
			if _, stop, err := s.finish(ctx, fence, q, failures); stop {
				return err
			}
			continue
		case e == nil:
			timer := time.NewTimer(wake)
			select {
			case <-ctx.Done():
			case <-changed:
			case <-timer.C:
			}
			timer.Stop()
			continue
		}
		if rev := s.work.own.JobRev(e.JobKey()); rev > since {
			// The job's last commit is not in the queue yet; once the
			// view holds it, the queue hears what it changed (e itself
			// may be closed).
			s.waitView(ctx, rev)
			continue
		}
		if s.work.own.Len() > maxUnseen {
			// The view fell behind the leader's commits: let it catch up
			// with the oldest before going on. Unbounded, the lag grew to
			// hundreds of plans in a million-allocation run, and every
			// re-check counted each of them again.
			s.waitView(ctx, s.work.own.Oldest())
			continue
		}
		d, derr := s.decideEvalSafely(ctx, e)
		overlapped := s.work.inflight != nil
		ok, stop, err := s.finish(ctx, fence, q, failures)
		if stop {
			return err
		}
		if !ok {
			continue // decided on a plan that did not commit: decide again
		}
		switch {
		case derr == nil && d.Kind == evalstep.Commit:
			if overlapped {
				s.met.overlapped.Inc()
			}
			s.startCommit(ctx, fence, q, e, d)
			continue
		case derr == nil: // the plan no longer fits the latest view
			s.planRejected("recheck")
			derr = fmt.Errorf("%s: %w", d.Reason, state.ErrConflict)
		}
		if stop, err := s.runSync(ctx, fence, q, failures, e, derr); stop {
			return err
		}
	}
	return nil
}

// decideEvalSafely runs decideEval, turning a panic into an error.
func (s *Server) decideEvalSafely(ctx context.Context, e *api.Evaluation) (d *evalstep.Decision, err error) {
	defer func() {
		if r := recover(); r != nil {
			s.invalidateWork()
			s.log.Error("evaluation panic", "eval", e.ID, "job", e.JobKey(), "panic", r, "stack", string(debug.Stack()))
			d, err = nil, &panicError{where: "processing evaluation " + api.ShortID(e.ID), value: r}
		}
	}()
	return s.decideEval(ctx, e)
}

// afterEval records how an evaluation run the synchronous way ended:
// counted when it succeeded; otherwise retried after a backoff, failed
// for good, or, when the leadership is gone, the end of the loop (stop).
func (s *Server) afterEval(ctx context.Context, fence *state.Fence, q *broker.Queue, failures map[string]int, e *api.Evaluation, err error) (stop bool, _ error) {
	if err == nil {
		delete(failures, e.ID)
		if cur, ok := s.store.Eval(e.ID); ok {
			s.evalDone(cur.Status)
		}
		return false, nil
	}
	if ctx.Err() != nil {
		return true, nil
	}
	class := classifyEvalErr(err)
	failures[e.ID]++
	cur, _ := s.store.Eval(e.ID)
	fl := evalstep.OnFailure(e, cur, class, failures[e.ID], err.Error(), s.now())
	if fl.StepDown {
		return true, err
	}
	s.log.Error("evaluation failed", "eval", e.ID, "job", e.JobKey(), "attempt", failures[e.ID], "class", class.String(), "err", err)
	if fl.Backoff > 0 {
		s.evalDone("error")
		sleep(ctx, fl.Backoff)
		return false, nil
	}
	if fl.Panic {
		s.evalPanicked()
	}
	s.evalDone(api.EvalFailed)
	rev, err := s.store.ApplyPlan(ctx, &state.PlanCommit{Fence: fence, Eval: fl.Eval})
	if errors.Is(err, state.ErrNotLeader) {
		return true, err
	}
	if err == nil {
		// Until the view holds the failure, it still lists the
		// evaluation as pending, and the next pick would run it again.
		s.store.WaitIndex(ctx, rev)
	}
	delete(failures, e.ID)
	return false, nil
}
