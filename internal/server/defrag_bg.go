package server

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

// The background defragmenter (opt-in: Config.DefragInterval): while
// this server leads, every interval it does one round of what `gantry gpu
// defrag apply` does, decided by defragplan.Background (pure: the store's
// state and the time in, one action out) and carried out through the same
// placeMove and followMove as apply. Everything a round needs is in the
// store (replacements carry Allocation.Move and their create time, the
// latest proposal is a defrag record), so a new leader goes on where the
// old one stopped.

// DefaultDefragMovesPerHour is the background defragmenter's rate limit
// when Config.DefragMovesPerHour is 0.
const DefaultDefragMovesPerHour = 6

// defragLoop runs a round every interval until ctx ends or leadership
// is lost.
func (s *Server) defragLoop(ctx context.Context, fence *state.Fence) error {
	if s.cfg.DefragInterval <= 0 {
		return nil
	}
	s.log.Info("GPU defragmentation in the background", "interval", s.cfg.DefragInterval, "moves_per_hour", s.defragRate())
	t := time.NewTicker(s.cfg.DefragInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if err := s.defragRoundSafely(ctx, fence); errors.Is(err, state.ErrNotLeader) {
			return err
		} else if err != nil && ctx.Err() == nil {
			s.log.Warn("background GPU defragmentation round failed; the next round tries again", "err", err)
		}
	}
}

func (s *Server) defragRate() int {
	if s.cfg.DefragMovesPerHour > 0 {
		return s.cfg.DefragMovesPerHour
	}
	return DefaultDefragMovesPerHour
}

// defragRoundSafely runs defragRound, turning a panic into an error.
func (s *Server) defragRoundSafely(ctx context.Context, fence *state.Fence) (err error) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("background GPU defragmentation panic", "panic", r, "stack", string(debug.Stack()))
			err = &panicError{where: "background GPU defragmentation", value: r}
		}
	}()
	return s.defragRound(ctx, fence)
}

// defragRound reads the state, asks defragplan.Background what to do and
// does it.
func (s *Server) defragRound(ctx context.Context, fence *state.Fence) error {
	in, err := s.defragInput(api.DefragRequest{})
	var he *httpError
	if errors.As(err, &he) {
		return nil // no GPUs: nothing to defragment
	}
	if err != nil {
		return err
	}
	now := s.now()
	bg := &defragplan.BackgroundInput{Input: *in, Now: now, MovesPerHour: s.defragRate()}
	for _, a := range s.store.Allocs(state.AllocFilter{}) {
		if a.Move != "" {
			bg.Moved = append(bg.Moved, a)
		}
	}
	prev, err := s.store.DefragProposal(ctx)
	if err != nil {
		return err
	}
	if prev != nil {
		bg.Proposed = prev.Plan
	}
	d, err := defragplan.Background(s.defragEngine(), bg)
	if err != nil {
		return fmt.Errorf("plan GPU defragmentation: %w", err)
	}
	s.log.Debug("background GPU defragmentation", "action", d.Action, "why", d.Why)
	switch d.Action {
	case defragplan.BackgroundFollow:
		_, err := s.followMove(ctx, fence, now, api.DefragByBackground)
		return err
	case defragplan.BackgroundPropose, defragplan.BackgroundWithdraw:
		d.Plan.Index = s.store.Index()
		s.log.Info("GPU defragmentation proposed", "job", d.Plan.Job, "moves", len(d.Plan.Moves), "why", d.Why)
		return s.store.PutDefragRecord(ctx, fence, &api.DefragRecord{Type: api.DefragEventProposed, Source: api.DefragByBackground,
			Namespace: d.Plan.Namespace, Job: d.Plan.Job, Plan: d.Plan, Reason: d.Why, ModifyTime: now})
	case defragplan.BackgroundStart:
		if _, err := s.placeMove(ctx, fence, *d.Move, now, api.DefragByBackground); err != nil {
			var he *httpError
			if errors.As(err, &he) {
				return nil // abandoned and recorded: the next round plans again
			}
			return err
		}
	}
	return nil
}
