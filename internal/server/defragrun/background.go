package defragrun

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/defragplan"
	"github.com/gantryhq/gantry/internal/state"
)

// The background defragmenter (opt-in: Config.Interval): while its server
// leads, every interval it does one round of what apply does, decided by
// defragplan.Background (pure: the store's state and the time in, one
// action out) and carried out through the same Place and Follow as apply.
// Everything a round needs is in the store (replacements carry
// Allocation.Move and their create time, the latest proposal is a defrag
// record), so a new leader goes on where the old one stopped.

// Run does a round every interval until ctx ends, and returns
// state.ErrNotLeader once a round finds that leadership moved. With no
// interval it returns nil at once.
func (r *Runner) Run(ctx context.Context, fence *state.Fence) error {
	if r.cfg.Interval <= 0 {
		return nil
	}
	r.p.Log.Info("GPU defragmentation in the background", "interval", r.cfg.Interval, "moves_per_hour", r.rate())
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if err := r.roundSafely(ctx, fence); errors.Is(err, state.ErrNotLeader) {
			return err
		} else if err != nil && ctx.Err() == nil {
			r.p.Log.Warn("background GPU defragmentation round failed; the next round tries again", "err", err)
		}
	}
}

func (r *Runner) rate() int {
	if r.cfg.MovesPerHour > 0 {
		return r.cfg.MovesPerHour
	}
	return DefaultMovesPerHour
}

// panicError is a panic recovered in a background round.
type panicError struct{ value any }

func (e *panicError) Error() string {
	return fmt.Sprintf("background GPU defragmentation panicked: %v (a bug in gantry; the evaluation failed instead of the server)", e.value)
}

// roundSafely runs Round, turning a panic into an error.
func (r *Runner) roundSafely(ctx context.Context, fence *state.Fence) (err error) {
	defer func() {
		if v := recover(); v != nil {
			r.p.Log.Error("background GPU defragmentation panic", "panic", v, "stack", string(debug.Stack()))
			err = &panicError{value: v}
		}
	}()
	return r.Round(ctx, fence)
}

// Round reads the state, asks defragplan.Background what to do as of
// the clock's time and does it, with the leader's fence.
func (r *Runner) Round(ctx context.Context, fence *state.Fence) error {
	in, err := r.input(api.DefragRequest{})
	var he *Error
	if errors.As(err, &he) {
		return nil // no GPUs: nothing to defragment
	}
	if err != nil {
		return err
	}
	now := r.p.Now()
	bg := &defragplan.BackgroundInput{Input: *in, Now: now, MovesPerHour: r.rate()}
	for _, a := range r.p.View.Allocs(state.AllocFilter{}) {
		if a.Move != "" {
			bg.Moved = append(bg.Moved, a)
		}
	}
	prev, err := r.p.View.DefragProposal(ctx)
	if err != nil {
		return fmt.Errorf("read the latest GPU defragmentation proposal: %w", err)
	}
	if prev != nil {
		bg.Proposed = prev.Plan
	}
	d, err := defragplan.Background(engine(), bg)
	if err != nil {
		return fmt.Errorf("plan GPU defragmentation: %w", err)
	}
	r.p.Log.Debug("background GPU defragmentation", "action", d.Action, "why", d.Why)
	switch d.Action {
	case defragplan.BackgroundFollow:
		_, err := r.Follow(ctx, fence, now, api.DefragByBackground)
		return err
	case defragplan.BackgroundPropose, defragplan.BackgroundWithdraw:
		d.Plan.Index = r.p.View.Index()
		r.p.Log.Info("GPU defragmentation proposed", "job", d.Plan.Job, "moves", len(d.Plan.Moves), "why", d.Why)
		if err := r.p.Writer.PutDefragRecord(ctx, fence, &api.DefragRecord{Type: api.DefragEventProposed, Source: api.DefragByBackground,
			Namespace: d.Plan.Namespace, Job: d.Plan.Job, Plan: d.Plan, Reason: d.Why, ModifyTime: now}); err != nil {
			return fmt.Errorf("record the GPU defragmentation proposal for %s: %w", d.Plan.Job, err)
		}
	case defragplan.BackgroundStart:
		if _, err := r.Place(ctx, fence, *d.Move, now, api.DefragByBackground); err != nil {
			var he *Error
			if errors.As(err, &he) {
				return nil // abandoned and recorded: the next round plans again
			}
			return err
		}
	}
	return nil
}
