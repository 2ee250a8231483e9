package server

import (
	"context"
	"sync"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/state"
)

// reportBatcher commits agents' allocation reports together: whatever
// arrives while one commit runs goes into the next, so thousands of
// agents cost a few transactions a second rather than two round trips
// each. A request returns once its reports are committed.
type reportBatcher struct {
	s       *Server
	mu      sync.Mutex
	pending []pendingReport
	// committing is when the oldest report of the round being committed
	// arrived (zero between rounds).
	committing time.Time
	kick       chan struct{}
}

type pendingReport struct {
	reports []state.NodeReport
	done    chan error
	queued  time.Time
}

// oldest is when the oldest report not yet committed arrived; zero when
// none waits. Its age is the overload sampler's report lag.
func (b *reportBatcher) oldest() time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.committing.IsZero() {
		return b.committing
	}
	if len(b.pending) > 0 {
		return b.pending[0].queued
	}
	return time.Time{}
}

func newReportBatcher(s *Server) *reportBatcher {
	return &reportBatcher{s: s, kick: make(chan struct{}, 1)}
}

// submit queues one agent's reports and waits for their commit.
func (b *reportBatcher) submit(ctx context.Context, nodeID string, updates []api.AllocUpdate) error {
	p := pendingReport{done: make(chan error, 1), queued: time.Now()}
	for _, u := range updates {
		p.reports = append(p.reports, state.NodeReport{NodeID: nodeID, Update: u})
	}
	b.mu.Lock()
	b.pending = append(b.pending, p)
	b.mu.Unlock()
	select {
	case b.kick <- struct{}{}:
	default:
	}
	select {
	case err := <-p.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// maxBatchReports bounds one commit round.
const maxBatchReports = 2000

func (b *reportBatcher) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.kick:
		}
		for {
			b.mu.Lock()
			var take []pendingReport
			n := 0
			for len(b.pending) > 0 && (n == 0 || n+len(b.pending[0].reports) <= maxBatchReports) {
				n += len(b.pending[0].reports)
				take = append(take, b.pending[0])
				b.pending = b.pending[1:]
			}
			if len(take) > 0 {
				b.committing = take[0].queued
			}
			b.mu.Unlock()
			if len(take) == 0 {
				break
			}
			var all []state.NodeReport
			for _, p := range take {
				all = append(all, p.reports...)
			}
			err := b.s.store.UpdateAllocsFromClients(ctx, all, b.s.now(), func(a *api.Allocation) *api.Evaluation {
				e := b.s.newEval(a.Namespace, a.Job, api.TriggerAllocFailure)
				e.Priority = a.Priority
				return e
			})
			b.mu.Lock()
			b.committing = time.Time{}
			b.mu.Unlock()
			for _, p := range take {
				p.done <- err
			}
		}
	}
}
