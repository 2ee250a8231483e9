package gc

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/state"
)

// Store is what the collector reads and deletes. *state.Store is one.
// The deletes carry the leader's fence and return state.ErrNotLeader once
// leadership moved.
type Store interface {
	Evals(namespace, job string) []*api.Evaluation
	AllocsUnsorted(f state.AllocFilter) []*api.Allocation
	Job(namespace, name string) (*api.Job, bool)
	Alloc(id string) (*api.Allocation, bool)
	DefragMoveAllocs(ctx context.Context) ([]string, error)
	DeleteEvals(ctx context.Context, fence *state.Fence, ids []string) error
	DeleteAllocs(ctx context.Context, fence *state.Fence, ids []string) error
	DeleteDefragMoves(ctx context.Context, fence *state.Fence, ids []string) error
}

// Collector runs the decision against the store while its server leads.
type Collector struct {
	store   Store
	fence   *state.Fence
	leading func() bool
	log     *slog.Logger
}

// New returns a collector for the leadership that holds fence; leading
// says whether the server still holds it.
func New(store Store, fence *state.Fence, leading func() bool, log *slog.Logger) *Collector {
	return &Collector{store: store, fence: fence, leading: leading, log: log}
}

// Run calls Round on every tick with the time now gives, until ctx ends;
// it returns state.ErrNotLeader when a round finds that leadership moved.
func (c *Collector) Run(ctx context.Context, ticks <-chan time.Time, now func() time.Time) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticks:
		}
		if err := c.Round(ctx, now()); err != nil {
			return err
		}
	}
}

// Round deletes the evaluations, then the allocations, the decision names
// as of now. A delete that fails for another reason than a lost
// leadership is logged and tried again next round.
func (c *Collector) Round(ctx context.Context, now time.Time) error {
	if !c.leading() {
		return state.ErrNotLeader
	}
	if err := c.store.DeleteEvals(ctx, c.fence, Evals(c.store.Evals("", ""), now)); errors.Is(err, state.ErrNotLeader) {
		return err
	} else if err != nil {
		c.log.Warn("garbage-collect evaluations", "err", err)
	}
	if err := c.store.DeleteAllocs(ctx, c.fence, Allocs(c.store.AllocsUnsorted(state.AllocFilter{}), c.store.Job, now)); errors.Is(err, state.ErrNotLeader) {
		return err
	} else if err != nil {
		c.log.Warn("garbage-collect allocations", "err", err)
	}
	moves, err := c.store.DefragMoveAllocs(ctx)
	if err != nil {
		c.log.Warn("garbage-collect GPU defragmentation records", "err", err)
		return nil
	}
	exists := func(id string) bool { _, ok := c.store.Alloc(id); return ok }
	if err := c.store.DeleteDefragMoves(ctx, c.fence, DefragMoves(moves, exists)); errors.Is(err, state.ErrNotLeader) {
		return err
	} else if err != nil {
		c.log.Warn("garbage-collect GPU defragmentation records", "err", err)
	}
	return nil
}
