package evalstep

import (
	"sort"
	"time"

	"github.com/gantryhq/gantry/internal/api"
)

// A job keeps at most one future "retry" evaluation. The reconciler asks
// to be run again at a time (a replacement's delay, a deployment's
// min_healthy_time or progress deadline); every evaluation of a rolling
// job asked for its own, at a slightly different time, and each woke up
// later to place nothing, filling the job's evaluations and the event
// stream of a healthy job. Now an evaluation that wants a retry moves the
// job's pending one earlier (or leaves it, when it comes first: it will
// ask again), and one that wants none removes the pending ones, which
// have nothing left to do.

// RetryFollowUp decides the job's future retry evaluations after an
// evaluation asked for one at `at` (zero: none). pending are the job's
// evaluations; self is the evaluation that just ran. It returns the
// evaluation to write (a new one is made by the caller when create is
// true) and the IDs of pending retries to remove.
func RetryFollowUp(pending []*api.Evaluation, self string, at, now time.Time) (put *api.Evaluation, create bool, drop []string) {
	var future []*api.Evaluation
	for _, e := range pending {
		if e.ID != self && e.Status == api.EvalPending && e.TriggeredBy == api.TriggerRetry && now.Before(e.WaitUntil) {
			future = append(future, e)
		}
	}
	sort.Slice(future, func(i, j int) bool { return future[i].WaitUntil.Before(future[j].WaitUntil) })
	if at.IsZero() {
		for _, e := range future {
			drop = append(drop, e.ID)
		}
		return nil, false, drop
	}
	if len(future) == 0 {
		return nil, true, nil
	}
	for _, e := range future[1:] {
		drop = append(drop, e.ID)
	}
	if first := future[0]; at.Before(first.WaitUntil) {
		c := *first
		c.WaitUntil, c.ModifyTime = at, now
		put = &c
	}
	return put, false, drop
}
