package agent

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/gantryhq/gantry/internal/api"
)

// updater batches allocation reports to the servers. A newer report for an
// allocation replaces an unsent older one; failed sends are retried. A
// report after a quiet spell goes at once (a deployment waits on the
// first healthy one); within reportWindow of the last send, what arrives
// goes together at the end of the window, so a burst of changes (every
// allocation a plan gave the node) costs two requests, not one each.
type updater struct {
	send    func(context.Context, []api.AllocUpdate) error
	log     *slog.Logger
	clock   clock
	mu      sync.Mutex
	pending map[string]api.AllocUpdate
	kick    chan struct{}
}

// reportWindow is the least time between two sends of the updater.
const reportWindow = 50 * time.Millisecond

func newUpdater(send func(context.Context, []api.AllocUpdate) error, log *slog.Logger, c clock) *updater {
	return &updater{send: send, log: log, clock: c, pending: map[string]api.AllocUpdate{}, kick: make(chan struct{}, 1)}
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
	var last time.Time // when the last send began; zero: none yet
	for {
		select {
		case <-ctx.Done():
			u.flush(context.WithoutCancel(ctx), 2*time.Second)
			return
		case <-u.kick:
		}
		if wait := reportWindow - u.clock.now().Sub(last); !last.IsZero() && wait > 0 {
			select {
			case <-ctx.Done():
				continue // flushed above
			case <-u.clock.after(wait):
			}
		}
		last = u.clock.now()
		select {
		case <-u.kick: // what it asks for is about to go
		default:
		}
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
	if err := u.send(ctx, batch); err != nil {
		if ctx.Err() == nil {
			u.log.Warn("cannot report allocation states; will retry", "err", err)
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
