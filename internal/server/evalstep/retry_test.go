package evalstep

import (
	"slices"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
)

// TestRetryFollowUp (issue 15): evaluations of a rolling job each asked
// for a retry at a slightly different time, and every one of them woke
// up later to place nothing. A job keeps at most one future retry, moved
// earlier when asked, and none once nothing is left to wait for.
func TestRetryFollowUp(t *testing.T) {
	now := time.Date(2026, 12, 6, 5, 0, 0, 0, time.UTC)
	ev := func(id string, status string, trigger string, in time.Duration) *api.Evaluation {
		return &api.Evaluation{ID: id, Status: status, TriggeredBy: trigger, WaitUntil: now.Add(in)}
	}
	r1 := ev("r1", api.EvalPending, api.TriggerRetry, 10*time.Second)
	r2 := ev("r2", api.EvalPending, api.TriggerRetry, 10*time.Minute)
	done := ev("d", api.EvalComplete, api.TriggerRetry, 10*time.Second)
	reg := ev("j", api.EvalPending, api.TriggerJobRegister, time.Minute)
	cases := []struct {
		name    string
		pending []*api.Evaluation
		at      time.Duration // 0: no retry wanted
		moveTo  time.Duration // -1: nothing written
		create  bool
		drop    []string
	}{
		{"first retry is created", []*api.Evaluation{done, reg}, 10 * time.Second, -1, true, nil},
		{"a later retry is not created beside an earlier one", []*api.Evaluation{r1}, 12 * time.Second, -1, false, nil},
		{"an earlier retry moves the pending one", []*api.Evaluation{r2}, 10 * time.Second, 10 * time.Second, false, nil},
		{"extra pending retries go", []*api.Evaluation{r2, r1}, 10 * time.Second, -1, false, []string{"r2"}},
		{"nothing to wait for removes them", []*api.Evaluation{r1, r2, reg, done}, 0, -1, false, []string{"r1", "r2"}},
		{"nothing to wait for and none pending", []*api.Evaluation{reg}, 0, -1, false, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			at := time.Time{}
			if c.at > 0 {
				at = now.Add(c.at)
			}
			put, create, drop := RetryFollowUp(c.pending, "self", at, now)
			if create != c.create || !slices.Equal(drop, c.drop) {
				t.Errorf("create %v drop %v, want %v %v", create, drop, c.create, c.drop)
			}
			switch {
			case c.moveTo < 0 && put != nil:
				t.Errorf("wrote %+v", put)
			case c.moveTo >= 0 && (put == nil || !put.WaitUntil.Equal(now.Add(c.moveTo))):
				t.Errorf("wrote %+v, want the pending retry moved to +%s", put, c.moveTo)
			}
		})
	}
}
