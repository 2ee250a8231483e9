package server

import (
	"errors"
	"fmt"

	"github.com/gantryhq/gantry/internal/server/evalstep"
	"github.com/gantryhq/gantry/internal/state"
)

// evalErrClass is what the broker does with an evaluation that failed
// (evalstep.OnFailure decides from it).
type evalErrClass = evalstep.Class

const (
	failOnce  = evalstep.FailOnce
	failPanic = evalstep.FailPanic
	retry     = evalstep.Retry
	notLeader = evalstep.NotLeader
)

// classifyEvalErr says what an evaluation's error means. Only conflicts
// and unavailability are worth retrying; everything else, ErrInvalid
// included, would fail the same way again.
func classifyEvalErr(err error) evalErrClass {
	var pe *panicError
	switch {
	case errors.Is(err, state.ErrNotLeader):
		return notLeader
	case errors.As(err, &pe):
		return failPanic
	case errors.Is(err, state.ErrConflict), state.Unavailable(err):
		return retry
	}
	return failOnce
}

// panicError is a panic recovered while processing an evaluation.
type panicError struct {
	where string // what was running: "scheduler", "evaluation"
	value any
}

func (e *panicError) Error() string {
	return fmt.Sprintf("%s panicked: %v (a bug in gantry; the evaluation failed instead of the server)", e.where, e.value)
}
