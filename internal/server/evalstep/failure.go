package evalstep

import (
	"fmt"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/server/applier"
)

// Class is what an evaluation's error means; the server classifies its
// errors (state's sentinels, recovered panics) into one.
type Class int

const (
	// FailOnce: retrying cannot succeed (invalid input, a plan larger
	// than a transaction may hold, a bug): the evaluation fails at once
	// with the error's message.
	FailOnce Class = iota
	// FailPanic: the evaluation's processing panicked; it fails at once
	// with the panic's message and is counted.
	FailPanic
	// Retry: the store changed under the plan or could not be reached;
	// the evaluation is tried again after a backoff, a bounded number of
	// times.
	Retry
	// NotLeader: this server no longer leads; it stops processing.
	NotLeader
)

func (c Class) String() string {
	switch c {
	case FailOnce:
		return "fail"
	case FailPanic:
		return "panic"
	case Retry:
		return "retry"
	case NotLeader:
		return "not-leader"
	}
	return "unknown"
}

// MaxAttempts bounds the tries of an evaluation whose errors are worth
// retrying (conflicts, an unavailable store).
const MaxAttempts = 5

// RetryBackoff is the wait before the next try, per failed attempt.
const RetryBackoff = 200 * time.Millisecond

// Failure is what becomes of an evaluation after its attempt-th failure.
type Failure struct {
	// StepDown: leadership moved; the broker stops and nothing is written.
	StepDown bool
	// Backoff > 0: try again after it; nothing is written.
	Backoff time.Duration
	// Eval is the evaluation's failed status, to write (nil otherwise).
	Eval *api.Evaluation
	// Panic: count the failure as a panic.
	Panic bool
}

// OnFailure decides what the attempt-th failure (counting from 1) of
// evaluation e, of class c with message msg, leads to. cur is the
// evaluation as the view holds it now (nil: as e).
func OnFailure(e, cur *api.Evaluation, c Class, attempt int, msg string, now time.Time) Failure {
	switch {
	case c == NotLeader:
		return Failure{StepDown: true}
	case c == Retry && attempt < MaxAttempts:
		return Failure{Backoff: time.Duration(attempt) * RetryBackoff}
	}
	f := *e
	if cur != nil {
		f = *cur
	}
	f.Status, f.StatusDescription, f.ModifyTime = api.EvalFailed, msg, now
	return Failure{Eval: &f, Panic: c == FailPanic}
}

// Partial is what is recorded when d's plan committed only in part (a
// later step failed with cause, every gang and preemption set whole on
// one side of it): the evaluation, complete, says how much was committed,
// and d.Continue plans the rest against the new state.
func Partial(d *Decision, res applier.Result, cause error) (done, next *api.Evaluation) {
	c := *d.Eval
	c.Status = api.EvalComplete
	c.Placed = res.Placed
	c.FailedGroups = nil
	c.StatusDescription = fmt.Sprintf("plan applied in part: %d of %d placements committed in %d transaction(s) before %v; evaluation %s places the rest",
		res.Placed, len(d.Placed), res.Steps, cause, d.Continue.ID)
	return &c, d.Continue
}
