package server

import (
	"context"
	"errors"
	"runtime/debug"
	"sync"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/server/broker"
	"github.com/gantryhq/gantry/internal/server/evalstep"
	"github.com/gantryhq/gantry/internal/server/gc"
	"github.com/gantryhq/gantry/internal/server/nodemon"
	"github.com/gantryhq/gantry/internal/state"
	"github.com/google/uuid"
)

// runElection campaigns for leadership until ctx ends; while it leads it
// runs the broker, the node monitor and garbage collection.
func (s *Server) runElection(ctx context.Context) {
	for ctx.Err() == nil {
		l, err := s.store.Campaign(ctx, s.cfg.ID, s.apiURL, 10*time.Second)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("election failed; retrying", "err", err)
				sleep(ctx, time.Second)
			}
			continue
		}
		fence := l.Fence
		s.log.Info("became leader", "server", s.cfg.ID, "fence", fence.Rev)
		lctx, cancel := context.WithCancel(ctx)
		s.leaderMu.Lock()
		s.fence = fence
		s.leaderMu.Unlock()
		go func() {
			select {
			case <-l.Done():
				s.log.Warn("leadership session ended")
			case <-lctx.Done():
			}
			cancel()
		}()
		s.lead(lctx, fence, cancel)
		cancel()
		s.leaderMu.Lock()
		s.fence = nil
		s.leaderMu.Unlock()
		rctx, rcancel := context.WithTimeout(context.Background(), 2*time.Second)
		l.Resign(rctx)
		rcancel()
		s.log.Info("stopped leading", "server", s.cfg.ID)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// lead runs the leader's loops until ctx ends or one of them finds that
// leadership moved (it then calls stepDown).
func (s *Server) lead(ctx context.Context, fence *state.Fence, stepDown func()) {
	var wg sync.WaitGroup
	loops := []func(context.Context, *state.Fence) error{s.brokerLoop, s.nodeMonitorLoop, s.gcLoop, s.deploymentLoop, s.vsphere.Run, s.defrag.Run}
	for _, loop := range loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := loop(ctx, fence); errors.Is(err, state.ErrNotLeader) {
				s.log.Warn("leadership lost", "err", err)
				stepDown()
			}
		}()
	}
	wg.Wait()
}

// processEvalSafely runs processEval, turning a panic anywhere in it (the
// reconciler, the plan's assembly) into a failed evaluation instead of a
// dead server.
func (s *Server) processEvalSafely(ctx context.Context, fence *state.Fence, e *api.Evaluation) (err error) {
	defer func() {
		if r := recover(); r != nil {
			s.invalidateWork()
			s.log.Error("evaluation panic", "eval", e.ID, "job", e.JobKey(), "panic", r, "stack", string(debug.Stack()))
			err = &panicError{where: "processing evaluation " + api.ShortID(e.ID), value: r}
		}
	}()
	return s.processEval(ctx, fence, e)
}

// followEvals brings the broker's queue up to the store's evaluations
// changed after since, and returns the revision it now reflects.
func (s *Server) followEvals(q *broker.Queue, since int64) int64 {
	changed, gone, upTo, whole := s.store.EvalChanges(since)
	if whole {
		q.Reset()
	}
	for _, id := range gone {
		q.Remove(id)
	}
	for _, e := range changed {
		q.Upsert(e)
	}
	return upTo
}

// nextEval picks the next evaluation to run, or says how long to wait:
// the queue's head, or, with queues defined, the first of the ready
// evaluations in fair-share order.
func (s *Server) nextEval(q *broker.Queue, now time.Time) (*api.Evaluation, time.Duration) {
	capIdx := s.store.CapacityIndex()
	if len(s.store.Queues()) == 0 {
		return q.Next(now, capIdx)
	}
	ready := q.Ready(now, capIdx)
	if len(ready) == 0 {
		return q.Next(now, capIdx)
	}
	return s.orderReady(ready)[0], 0
}

// nodeMonitorLoop runs the node monitor (internal/server/nodemon) once a
// second while leading: it marks nodes down once their heartbeat lease
// expired, and asks for evaluations of the jobs that ran there. A node
// gets a full heartbeat TTL from the moment this server became leader
// before it may be marked down (nodemon.Down).
func (s *Server) nodeMonitorLoop(ctx context.Context, fence *state.Fence) error {
	// The grace after a takeover is the TTL the cluster's nodes were
	// handed, grown with their number (HeartbeatTTL); each node's lease
	// carries the TTL it registered with.
	// While this server is overloaded (overload.go), and for a TTL after,
	// the monitor keeps silent nodes ready for longer (nodemon.Spare).
	m := nodemon.New(s.store, fence, s.now, func() time.Duration { return s.heartbeatTTL(false) },
		func() int { return int(s.overloadLevel()) }, s.newEval, s.log)
	s.load.monitor.Store(m)
	defer s.load.monitor.CompareAndSwap(m, nil)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	return m.Run(ctx, t.C)
}

var errUnchanged = errors.New("unchanged")

// evalJobsOnNode creates one evaluation per job with live allocations on
// the node.
func (s *Server) evalJobsOnNode(ctx context.Context, fence *state.Fence, nodeID, trigger string) error {
	return nodemon.EvalJobsOnNode(ctx, s.store, fence, s.newEval, nodeID, trigger)
}

func (s *Server) newEval(namespace, job, trigger string) *api.Evaluation {
	return evalstep.NewEval(uuid.NewString(), namespace, job, trigger, s.now())
}

// gcLoop runs garbage collection (internal/server/gc) every 30 seconds
// while leading: finished evaluations after gc.EvalAge (keeping each
// job's latest few), and terminal allocations after gc.AllocAge once they
// were replaced or their job stopped.
func (s *Server) gcLoop(ctx context.Context, fence *state.Fence) error {
	c := gc.New(s.store, fence, func() bool { return s.leaderFence() == fence }, s.log)
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	return c.Run(ctx, t.C, s.now)
}
