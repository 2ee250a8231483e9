package server

import (
	"errors"
	"fmt"

	"github.com/gantryhq/gantry/internal/state"
)

// evalErrClass is what the broker does with an evaluation that failed.
type evalErrClass int

const (
	// failOnce: retrying cannot succeed (invalid input, a plan larger
	// than a transaction may hold, a bug): the evaluation fails at once
	// with the error's message.
	failOnce evalErrClass = iota
	// failPanic: the evaluation's processing panicked; it fails at once
	// with the panic's message and is counted.
	failPanic
	// retry: the store changed under the plan or could not be reached;
	// the evaluation is tried again after a backoff, a bounded number of
	// times.
	retry
	// notLeader: this server no longer leads; it stops processing.
	notLeader
)

func (c evalErrClass) String() string {
	switch c {
	case failOnce:
		return "fail"
	case failPanic:
		return "panic"
	case retry:
		return "retry"
	case notLeader:
		return "not-leader"
	}
	return "unknown"
}

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
