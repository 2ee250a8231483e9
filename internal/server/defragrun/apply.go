package defragrun

import (
	"context"
	"fmt"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/state"
)

// Apply does one step of making room for the job dr names, with the
// leader's fence: it follows the move under way if there is one;
// otherwise it plans, and places the first move's replacement, or asks
// for an evaluation when the job fits as it is.
func (r *Runner) Apply(ctx context.Context, fence *state.Fence, dr api.DefragRequest) (*api.DefragStep, error) {
	now := r.p.Now()
	// A move under way is followed first.
	if step, err := r.Follow(ctx, fence, now, api.DefragByApply); step != nil || err != nil {
		return step, err
	}
	p, err := r.Plan(dr)
	if err != nil {
		return nil, err
	}
	switch {
	case p.Fits && len(p.Moves) == 0:
		e := r.p.NewEval(p.Namespace, p.Job, api.TriggerDefrag)
		if j, ok := r.p.View.Job(p.Namespace, p.Job); ok {
			e.Priority, e.JobVersion = j.Priority, j.Version
		}
		if err := r.p.Writer.CreateEvals(ctx, fence, e); err != nil {
			return nil, err // as it is: the server answers the store's errors by their kind
		}
		return &api.DefragStep{State: api.DefragDone, Plan: p,
			Message: fmt.Sprintf("%s/%s fits now; evaluation %s places it", p.Job, p.Group, api.ShortID(e.ID))}, nil
	case !p.Fits:
		return &api.DefragStep{State: api.DefragFailed, Plan: p, Message: p.Why}, nil
	}
	r.record(ctx, fence, &api.DefragRecord{Type: api.DefragEventProposed, Source: api.DefragByApply, Namespace: p.Namespace, Job: p.Job, Plan: p, ModifyTime: now})
	m := p.Moves[0]
	placed, err := r.Place(ctx, fence, m, now, api.DefragByApply)
	if err != nil {
		return nil, err
	}
	return &api.DefragStep{State: api.DefragPlaced, Move: &m, Plan: p,
		Message: fmt.Sprintf("placed %s on %s GPU %v to replace %s on %s GPU %v (%d more move(s) planned)",
			placed.ShortID(), m.ToNode, m.ToGPUs, m.Name, m.FromNode, m.FromGPUs, len(p.Moves)-1)}, nil
}
