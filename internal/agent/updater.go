package agent

import (
	"context"
	"sync"
	"time"

	"github.com/gantryhq/gantry/internal/api"
)

// updater batches allocation reports to the servers. A newer report for an
// allocation replaces an unsent older one; failed sends are retried.
type updater struct {
	a       *Agent
	mu      sync.Mutex
	pending map[string]api.AllocUpdate
	kick    chan struct{}
}

func newUpdater(a *Agent) *updater {
	return &updater{a: a, pending: map[string]api.AllocUpdate{}, kick: make(chan struct{}, 1)}
}

func (u *updater) push(up api.AllocUpdate) {
	u.mu.Lock()
	u.pending[up.ID] = up
	u.mu.Unlock()
	select {
	case u.kick <- struct{}{}:
	default:
	}
}

func (u *updater) run(ctx context.Context) {
	backoff := 200 * time.Millisecond
	for {
		select {
		case <-ctx.Done():
			u.flush(context.WithoutCancel(ctx), 2*time.Second)
			return
		case <-u.kick:
		}
		// Gather what arrives in a short window into one request.
		sleep(ctx, 50*time.Millisecond)
		for !u.flush(ctx, 0) && ctx.Err() == nil {
			sleep(ctx, backoff)
			backoff = min(backoff*2, 5*time.Second)
		}
		backoff = 200 * time.Millisecond
	}
}

// flush sends every pending report; false means it must be retried.
func (u *updater) flush(ctx context.Context, timeout time.Duration) bool {
	u.mu.Lock()
	if len(u.pending) == 0 {
		u.mu.Unlock()
		return true
	}
	batch := make([]api.AllocUpdate, 0, len(u.pending))
	for _, up := range u.pending {
		batch = append(batch, up)
	}
	u.pending = map[string]api.AllocUpdate{}
	u.mu.Unlock()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	if err := u.a.reportAllocs(ctx, batch); err != nil {
		if ctx.Err() == nil {
			u.a.log.Warn("cannot report allocation states; will retry", "err", err)
		}
		u.mu.Lock()
		for _, up := range batch {
			if _, newer := u.pending[up.ID]; !newer {
				u.pending[up.ID] = up
			}
		}
		u.mu.Unlock()
		return false
	}
	return true
}
