package defragplan

import (
	"fmt"
	"slices"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/scheduler"
)

// RateWindow is the window the background defragmenter's rate limit
// counts moves in: at most MovesPerHour moves started within any hour.
const RateWindow = time.Hour

// Actions of the background defragmenter (BackgroundDecision.Action).
const (
	// BackgroundIdle: nothing to move; Why says why.
	BackgroundIdle = "idle"
	// BackgroundWithdraw: nothing to move any more, but the latest
	// proposal still lists moves: record Plan (no moves, Why) in its place.
	BackgroundWithdraw = "withdraw"
	// BackgroundFollow: a move is under way; follow it (stop the old
	// replica once the replacement is healthy, or give up on it).
	BackgroundFollow = "follow"
	// BackgroundPropose: record Plan as the proposal; its first move
	// starts at a later round if it is still proposed then, so every
	// move is shown before it is made.
	BackgroundPropose = "propose"
	// BackgroundStart: start Move, the first move of Plan.
	BackgroundStart = "start"
	// BackgroundWait: Plan is proposed, but the rate limit allows no move
	// before Next.
	BackgroundWait = "wait"
)

// BackgroundInput is what one round of the background defragmenter
// decides from. Input is the state with its target chosen as for `gantry
// gpu defrag plan` without --for (the largest pending GPU request, or
// none); everything else is read from the store, so a new leader decides
// as the old one would have.
type BackgroundInput struct {
	Input
	Now time.Time
	// MovesPerHour bounds the moves started within any RateWindow
	// (below 1: 1).
	MovesPerHour int
	// Moved is every allocation, terminal or not, that is the replacement
	// of a move (Allocation.Move set): their CreateTime is when each move
	// started, whoever started it.
	Moved []*api.Allocation
	// Proposed is the latest proposal in the store, or nil.
	Proposed *api.DefragPlan
}

// BackgroundDecision is what one round does.
type BackgroundDecision struct {
	Action string
	Plan   *api.DefragPlan // the plan behind Propose, Start, Wait; the empty one of Withdraw
	Move   *api.DefragMove // Start: the move to make
	Why    string
	Next   time.Time // Wait: when the rate limit allows the next move
}

// Background decides one round of the background defragmenter: follow a
// move under way; else plan (Decide) and propose the plan, start its
// first move once it was proposed in an earlier round and the rate limit
// allows, or say why nothing moves. Every move of a plan it acts on is
// checked once more to belong to a group with `migrate: true` and no
// gang: no other replica is ever moved, batch or service. Pure: no I/O,
// no clock (Now is given).
func Background(eng *scheduler.Engine, in *BackgroundInput) (BackgroundDecision, error) {
	if a, old := underWay(in.Allocs); a != nil {
		return BackgroundDecision{Action: BackgroundFollow,
			Why: fmt.Sprintf("the move of %s to %s is under way (replacement %s)", old.Name(), a.NodeName, a.ShortID())}, nil
	}
	p, err := Decide(eng, &in.Input)
	if err != nil {
		return BackgroundDecision{}, err
	}
	if !p.Fits || len(p.Moves) == 0 {
		why := p.Why
		switch {
		case p.FitsNow:
			why = fmt.Sprintf("%s/%s fits without moves", p.Job, p.Group)
		case why == "":
			why = "no moves to make"
		}
		if in.Proposed != nil && len(in.Proposed.Moves) > 0 {
			p.Moves, p.Why = []api.DefragMove{}, why
			return BackgroundDecision{Action: BackgroundWithdraw, Plan: p, Why: why}, nil
		}
		return BackgroundDecision{Action: BackgroundIdle, Plan: p, Why: why}, nil
	}
	for _, m := range p.Moves {
		if why := refuse(&in.Input, m); why != "" {
			return BackgroundDecision{Action: BackgroundIdle, Plan: p, Why: why}, nil
		}
	}
	first := p.Moves[0]
	if !proposed(in.Proposed, p, first) {
		return BackgroundDecision{Action: BackgroundPropose, Plan: p, Why: "a new plan: its first move starts at the next round"}, nil
	}
	limit := max(in.MovesPerHour, 1)
	var recent []time.Time
	for _, a := range in.Moved {
		if a.Move != "" && in.Now.Sub(a.CreateTime) < RateWindow {
			recent = append(recent, a.CreateTime)
		}
	}
	if len(recent) >= limit {
		slices.SortFunc(recent, func(a, b time.Time) int { return a.Compare(b) })
		next := recent[len(recent)-limit].Add(RateWindow)
		return BackgroundDecision{Action: BackgroundWait, Plan: p, Next: next,
			Why: fmt.Sprintf("rate limit: %d move(s) started in the last hour (at most %d); the next may start at %s", len(recent), limit, next.UTC().Format(time.RFC3339))}, nil
	}
	return BackgroundDecision{Action: BackgroundStart, Plan: p, Move: &first, Why: first.Reason}, nil
}

// underWay returns the replacement of a move that is not finished (its
// old replica still runs) and that old replica, or nils.
func underWay(allocs []*api.Allocation) (*api.Allocation, *api.Allocation) {
	byID := make(map[string]*api.Allocation, len(allocs))
	for _, a := range allocs {
		byID[a.ID] = a
	}
	for _, a := range allocs {
		if a.Move == "" || a.DesiredStatus != api.AllocDesiredRun || a.ClientTerminal() {
			continue
		}
		if old := byID[a.PreviousAlloc]; old != nil && old.DesiredStatus == api.AllocDesiredRun && !old.ClientTerminal() {
			return a, old
		}
	}
	return nil, nil
}

// refuse says why the background defragmenter will not make move m, or
// "": only a replica of a group with migrate: true and no gang moves.
func refuse(in *Input, m api.DefragMove) string {
	job := in.Jobs[api.JobKey(m.Namespace, m.Job)]
	if job == nil {
		return fmt.Sprintf("refused the plan: the job of %s is unknown", m.Name)
	}
	g := job.LookupGroup(m.Group)
	switch {
	case g == nil:
		return fmt.Sprintf("refused the plan: job %s has no group %s", job.Key(), m.Group)
	case !g.Migrate:
		return fmt.Sprintf("refused the plan: %s/%s does not allow migration (migrate: false)", m.Job, m.Group)
	case g.Gang != nil && g.Gang.Min > 0:
		return fmt.Sprintf("refused the plan: %s/%s is a gang, which never moves", m.Job, m.Group)
	}
	return ""
}

// proposed reports whether the latest proposal made for the same target
// lists move m (same replica, same destination).
func proposed(prev, p *api.DefragPlan, m api.DefragMove) bool {
	if prev == nil || prev.Namespace != p.Namespace || prev.Job != p.Job || prev.Group != p.Group {
		return false
	}
	return slices.ContainsFunc(prev.Moves, func(o api.DefragMove) bool {
		return o.Alloc == m.Alloc && o.ToNodeID == m.ToNodeID && slices.Equal(o.ToUUIDs, m.ToUUIDs)
	})
}
