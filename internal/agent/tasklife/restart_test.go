package tasklife

import (
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
)

// TestRestartTracker replays sequences of exits, each at a time given as
// an offset from t0, and checks every verdict.
func TestRestartTracker(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	failMode := api.RestartPolicy{Attempts: 2, Interval: api.Duration(time.Minute), Delay: api.Duration(5 * time.Second), Mode: api.RestartModeFail}
	delayMode := failMode
	delayMode.Mode = api.RestartModeDelay
	none := api.RestartPolicy{Attempts: 0, Interval: api.Duration(time.Minute), Mode: api.RestartModeFail}
	crash := Exit{Message: "exit code 1"}
	clean := Exit{Successful: true, Message: "exit code 0"}
	type step struct {
		at   time.Duration
		exit Exit
		want Verdict
	}
	restart := func(d time.Duration) Verdict { return Verdict{Outcome: Restart, Delay: d} }
	cases := []struct {
		name    string
		policy  api.RestartPolicy
		jobType api.JobType
		steps   []step
	}{
		{"attempts within the interval, then give up", failMode, api.JobService, []step{
			{0, crash, restart(5 * time.Second)},
			{10 * time.Second, crash, restart(5 * time.Second)},
			{20 * time.Second, crash, Verdict{Outcome: GiveUp, Reason: "exceeded 2 restart attempts within 1m0s; last: exit code 1"}},
		}},
		{"an exit after the interval opens a fresh window", failMode, api.JobService, []step{
			{0, crash, restart(5 * time.Second)},
			{10 * time.Second, crash, restart(5 * time.Second)},
			{61 * time.Second, crash, restart(5 * time.Second)},
			{70 * time.Second, crash, restart(5 * time.Second)},
			{80 * time.Second, crash, Verdict{Outcome: GiveUp, Reason: "exceeded 2 restart attempts within 1m0s; last: exit code 1"}},
		}},
		{"an exit exactly at the interval's end still counts in the window", failMode, api.JobService, []step{
			{0, crash, restart(5 * time.Second)},
			{30 * time.Second, crash, restart(5 * time.Second)},
			{60 * time.Second, crash, Verdict{Outcome: GiveUp, Reason: "exceeded 2 restart attempts within 1m0s; last: exit code 1"}},
		}},
		{"mode delay waits out the window, then starts a fresh one", delayMode, api.JobService, []step{
			{0, crash, restart(5 * time.Second)},
			{10 * time.Second, crash, restart(5 * time.Second)},
			{20 * time.Second, crash, restart(40 * time.Second)},
			{70 * time.Second, crash, restart(5 * time.Second)},
			{75 * time.Second, crash, restart(5 * time.Second)},
			{80 * time.Second, crash, restart(50 * time.Second)},
		}},
		{"mode delay never waits less than the delay", delayMode, api.JobService, []step{
			{0, crash, restart(5 * time.Second)},
			{30 * time.Second, crash, restart(5 * time.Second)},
			{58 * time.Second, crash, restart(5 * time.Second)},
		}},
		{"no attempts: the first exit gives up", none, api.JobService, []step{
			{0, crash, Verdict{Outcome: GiveUp, Reason: "exceeded 0 restart attempts within 1m0s; last: exit code 1"}},
		}},
		{"a batch task that exits cleanly is done, without spending an attempt", none, api.JobBatch, []step{
			{0, clean, Verdict{Outcome: Finish, Reason: "task finished successfully"}},
		}},
		{"a service task that exits cleanly is restarted", failMode, api.JobService, []step{
			{0, clean, restart(5 * time.Second)},
		}},
		{"a batch task that fails is restarted", failMode, api.JobBatch, []step{
			{0, crash, restart(5 * time.Second)},
			{1 * time.Second, clean, Verdict{Outcome: Finish, Reason: "task finished successfully"}},
		}},
		{"a permanent start failure fails at once", failMode, api.JobService, []step{
			{0, Exit{StartFailed: true, Permanent: true, Message: "image not found"}, Verdict{Outcome: Fail, Reason: "task could not be started: image not found"}},
		}},
		{"a transient start failure spends an attempt", failMode, api.JobBatch, []step{
			{0, Exit{StartFailed: true, Message: "lost track of the task: engine busy"}, restart(5 * time.Second)},
			{1 * time.Second, Exit{StartFailed: true, Successful: true, Message: "lost track of the task: engine busy"}, restart(5 * time.Second)},
			{2 * time.Second, Exit{StartFailed: true, Message: "lost track of the task: engine busy"}, Verdict{Outcome: GiveUp, Reason: "exceeded 2 restart attempts within 1m0s; last: lost track of the task: engine busy"}},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tr := NewRestartTracker(c.policy, c.jobType)
			for i, s := range c.steps {
				var got Verdict
				tr, got = tr.Next(s.exit, t0.Add(s.at))
				if got != s.want {
					t.Fatalf("exit %d at +%s: got %+v (%s), want %+v (%s)", i, s.at, got, got.Outcome, s.want, s.want.Outcome)
				}
			}
		})
	}
}

// TestRestartTrackerIsAValue: Next leaves the tracker it was called on
// as it was, so a decision can be asked without committing to it.
func TestRestartTrackerIsAValue(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	tr := NewRestartTracker(api.RestartPolicy{Attempts: 1, Interval: api.Duration(time.Minute), Mode: api.RestartModeFail}, api.JobService)
	_, v1 := tr.Next(Exit{}, t0)
	_, v2 := tr.Next(Exit{}, t0)
	if v1.Outcome != Restart || v2.Outcome != Restart {
		t.Fatalf("asking twice from the same tracker: %s then %s, want restart both times", v1.Outcome, v2.Outcome)
	}
}
