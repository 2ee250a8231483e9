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
// allocation a plan gave the node) costs two requests, not one each. A
// report that changes only an allocation's health (healthy or unhealthy,
// its status the same) waits only until healthWindow after the last
// send: a deployment and the load balancer wait on it, and a checked
// task's Healthy comes tens of milliseconds after its Started. A task
// without checks is healthy as it starts: its first running report is
// not hurried, so a burst of them still goes together.
type updater struct {
	send    func(context.Context, []api.AllocUpdate) error
	log     *slog.Logger
	clock   clock
	mu      sync.Mutex
	pending map[string]api.AllocUpdate
	last    map[string]reported // what was last pushed, by allocation (until it ends)
	kick    chan struct{}
	urgent  chan struct{} // a pending report changes a health
}

// reported is an allocation's status and health as last pushed.
type reported struct{ status, health string }

const (
	// reportWindow is the least time between two sends of the updater.
	reportWindow = 50 * time.Millisecond
	// healthWindow is that least time when a change of health waits.
	healthWindow = 10 * time.Millisecond
)

func newUpdater(send func(context.Context, []api.AllocUpdate) error, log *slog.Logger, c clock) *updater {
	return &updater{send: send, log: log, clock: c, pending: map[string]api.AllocUpdate{}, last: map[string]reported{},
		kick: make(chan struct{}, 1), urgent: make(chan struct{}, 1)}
}

func (u *updater) push(up api.AllocUpdate) {
	u.mu.Lock()
	u.pending[up.ID] = up
	prev := u.last[up.ID]
	changed := up.Health != "" && up.Health != prev.health && up.ClientStatus == prev.status
	switch up.ClientStatus {
	case api.AllocComplete, api.AllocFailed, api.AllocLost:
		delete(u.last, up.ID)
	default:
		u.last[up.ID] = reported{up.ClientStatus, up.Health}
	}
	u.mu.Unlock()
	if changed {
		select {
		case u.urgent <- struct{}{}:
		default:
		}
	}
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
		if !u.waitWindow(ctx, last) {
			continue // flushed above
		}
		last = u.clock.now()
		select {
		case <-u.kick: // what it asks for is about to go
		default:
		}
		select {
		case <-u.urgent:
		default:
		}
		for !u.flush(ctx, 0) && ctx.Err() == nil {
			sleep(ctx, backoff)
			backoff = min(backoff*2, 5*time.Second)
		}
		backoff = 200 * time.Millisecond
	}
}

// waitWindow waits until the window after the send that began at last
// (zero: none yet) is over: reportWindow, or healthWindow once a change
// of health waits. False: ctx ended.
func (u *updater) waitWindow(ctx context.Context, last time.Time) bool {
	if last.IsZero() {
		return true
	}
	urgent := false
	for {
		select {
		case <-u.urgent:
			urgent = true
		default:
		}
		window := reportWindow
		if urgent {
			window = healthWindow
		}
		wait := window - u.clock.now().Sub(last)
		if wait <= 0 {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-u.clock.after(wait):
			return true
		case <-u.urgent:
			urgent = true // a shorter wait
		}
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
