package evalstep

import (
	"context"
	"errors"
	"fmt"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/server/applier"
	"github.com/gantryhq/gantry/internal/state"
)

// Planner is the one port through which a decision changes the world.
// The server's holds the leader's fence: every call of a deposed leader
// fails with state.ErrNotLeader and writes nothing.
type Planner interface {
	// SubmitPlan commits a plan in as few transactions as the store
	// allows (applier.Applier); on an error the Result says what
	// committed before it.
	SubmitPlan(ctx context.Context, p *applier.Plan) (applier.Result, error)
	// UpdateEval writes an evaluation's status and creates the
	// evaluations given, in one write, and returns its revision.
	UpdateEval(ctx context.Context, e *api.Evaluation, create ...*api.Evaluation) (int64, error)
	// DeleteEvals removes evaluations.
	DeleteEvals(ctx context.Context, ids []string) error
}

// Outcome is what Apply did.
type Outcome struct {
	// Rev is the store revision the caller waits for before the next
	// evaluation.
	Rev int64
	// Result is what the plan's commit did.
	Result applier.Result
	// Partial: the plan committed in part, for Cause; the evaluation was
	// recorded as such and its continuation created.
	Partial bool
	Cause   error
	// DropErr is a failure to remove retries with nothing left to do
	// (harmless: they wake up, find nothing, and go).
	DropErr error
}

// Apply carries a Commit decision out through the port: the plan with
// the evaluation's final status and follow-ups; when only part of it
// committed, the partial record and its continuation; then the removal of
// pending retries that have nothing left to do. An error means the
// decision did not take effect (wholly, or as a recorded part).
func Apply(ctx context.Context, port Planner, d *Decision) (Outcome, error) {
	if d.Kind != Commit {
		return Outcome{}, fmt.Errorf("apply a %s decision: only commits are applied", d.Kind)
	}
	plan := &applier.Plan{
		Eval: d.Eval, FollowUps: d.FollowUps, Deployments: d.Result.Deployments,
		Update: d.Updates, Preempt: d.Preempt, Place: d.Placed, Gangs: d.Gangs, Guards: d.Guards,
	}
	res, err := port.SubmitPlan(ctx, plan)
	if err != nil {
		if !res.Partial() || errors.Is(err, state.ErrNotLeader) {
			return Outcome{Result: res, Cause: err}, err
		}
		done, next := Partial(d, res, err)
		rev, rerr := port.UpdateEval(ctx, done, next)
		if rerr != nil {
			return Outcome{Result: res, Cause: err}, fmt.Errorf("record a partly applied plan: %w", rerr)
		}
		// Wait for the record, not only the plan: until the view holds
		// it, the evaluation is still listed pending.
		return Outcome{Rev: max(rev, res.Rev), Result: res, Partial: true, Cause: err}, nil
	}
	out := Outcome{Rev: res.Rev, Result: res}
	if len(d.DropRetries) > 0 {
		if err := port.DeleteEvals(ctx, d.DropRetries); errors.Is(err, state.ErrNotLeader) {
			return out, err
		} else if err != nil {
			out.DropErr = err
		}
	}
	return out, nil
}
