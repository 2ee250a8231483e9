package tasklife

import (
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"pgregory.net/rapid"
)

// TestStepNeverDoesWhatTheStateForbids feeds random events (any kind, in
// any order, fitting or not) at times that never go back, and checks each
// step's effects against the state before and after it.
func TestStepNeverDoesWhatTheStateForbids(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		policy := api.RestartPolicy{
			Attempts: rapid.IntRange(0, 3).Draw(t, "attempts"),
			Interval: api.Duration(time.Duration(rapid.IntRange(1, 120).Draw(t, "interval")) * time.Second),
			Delay:    api.Duration(time.Duration(rapid.IntRange(0, 10).Draw(t, "delay")) * time.Second),
			Mode:     rapid.SampledFrom([]string{api.RestartModeFail, api.RestartModeDelay}).Draw(t, "mode"),
		}
		jobType := rapid.SampledFrom([]api.JobType{api.JobService, api.JobBatch}).Draw(t, "type")
		checks := rapid.IntRange(0, 2).Draw(t, "checks")
		s := NewState(nil, checks, time.Second, NewRestartTracker(policy, jobType))
		now := t0
		var lastRecord time.Time
		for i := range rapid.IntRange(1, 40).Draw(t, "steps") {
			now = now.Add(time.Duration(rapid.IntRange(0, 30).Draw(t, "dt")) * time.Second)
			e := Event{Kind: EventKind(rapid.IntRange(0, int(DriverMissing)).Draw(t, "kind"))}
			switch e.Kind {
			case StartFailed:
				e.Err, e.Permanent = "boom", rapid.Bool().Draw(t, "permanent")
			case Exited:
				e.Result.ExitCode = rapid.IntRange(0, 2).Draw(t, "code")
			case CheckVerdict:
				e.Check = rapid.IntRange(-1, 2).Draw(t, "check")
				e.Verdict = rapid.SampledFrom([]string{api.HealthHealthy, api.HealthUnhealthy}).Draw(t, "verdict")
			}
			before := s
			var effects []Effect
			s, effects = Step(s, e, now)
			fail := func(format string, args ...any) {
				t.Fatalf("step %d (%s) from %+v to %+v, effects %v: "+format, append([]any{i, e.Kind, before, s, effects}, args...)...)
			}
			if before.Done && len(effects) > 0 {
				fail("effects after the runner was done")
			}
			if s.Status.Restarts < before.Status.Restarts {
				fail("restarts went down")
			}
			if before.Stopping && !s.Stopping {
				fail("stopping was forgotten")
			}
			for _, ef := range effects {
				switch ef.Op {
				case StartTask:
					if before.Stopping || s.Stopping {
						fail("a start while stopping")
					}
					if before.Starting || before.Waiting {
						fail("a start while a run is in flight")
					}
					if before.Status.State == api.TaskDead && e.Kind != Begin {
						fail("a restart after the task died")
					}
				case StartChecks:
					if s.Stopping || s.Status.State != api.TaskRunning || before.Checking {
						fail("checks started on a task that is not running, or twice")
					}
				case WaitTask, StopTask:
					if !s.Handle {
						fail("%s without a handle", ef.Op)
					}
				case DestroyHandle:
					if !before.Handle || s.Handle || s.Waiting {
						fail("destroyed a handle that is not held, or waited on")
					}
				case Record:
					if ef.Time.Before(lastRecord) || !ef.Time.Equal(now) {
						fail("event time %s went back (last %s) or is not now %s", ef.Time, lastRecord, now)
					}
					lastRecord = ef.Time
					switch ef.Type {
					case api.TaskEventHealthy, api.TaskEventUnhealthy:
						if s.Status.State != api.TaskRunning || s.Stopping {
							fail("health recorded on a task that is not running")
						}
					case api.TaskEventKilled:
						if before.Status.Health == api.HealthUnhealthy && s.Status.Health != api.HealthUnhealthy {
							fail("a task stopped after failing its checks lost its unhealthy verdict")
						}
					}
				}
			}
			if s.Checking && (s.Stopping || s.Status.State != api.TaskRunning) {
				fail("checks run on a task that is not running")
			}
			if s.Done && (s.Starting || s.Waiting || s.Checking) {
				fail("done with work in flight")
			}
		}
	})
}
