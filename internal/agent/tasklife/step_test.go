package tasklife

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// A step of a scenario: the event at t0+at and the effects it must give,
// as Effect.String() writes them.
type scenarioStep struct {
	at   time.Duration
	ev   Event
	want []string
}

func ev(k EventKind) Event { return Event{Kind: k} }
func exit(code int) Event  { return Event{Kind: Exited, Result: ExitResult{ExitCode: code}} }
func verdict(i int, v string) Event {
	return Event{Kind: CheckVerdict, Check: i, Verdict: v}
}
func stopReq() Event { return ev(StopRequested) }

var (
	policyOne   = api.RestartPolicy{Attempts: 1, Interval: api.Duration(time.Minute), Delay: api.Duration(5 * time.Second), Mode: api.RestartModeFail}
	policyNone  = api.RestartPolicy{Attempts: 0, Interval: api.Duration(time.Minute), Mode: api.RestartModeFail}
	killing     = "record Killing: sent SIGTERM, SIGKILL after 1s"
	killed      = "record Killed: task stopped"
	startedRecs = []string{"record Started", "wait"}
)

func seq(parts ...any) []string {
	var out []string
	for _, p := range parts {
		switch p := p.(type) {
		case string:
			out = append(out, p)
		case []string:
			out = append(out, p...)
		}
	}
	return out
}

// TestStep drives the task lifecycle through every path the runner has,
// one event at a time, and checks each step's effects and the status it
// ends with.
func TestStep(t *testing.T) {
	cases := []struct {
		name    string
		checks  int
		policy  api.RestartPolicy
		jobType api.JobType
		prev    *api.TaskState
		steps   []scenarioStep
		want    Status // checked on State, Failed, Health, Restarts, ExitCode
		done    bool
	}{
		{name: "a task without checks is healthy as it starts", policy: policyOne, jobType: api.JobService, steps: []scenarioStep{
			{0, ev(Begin), seq("start")},
			{1, ev(Started), seq(startedRecs, "record Healthy", "report")},
		}, want: Status{State: api.TaskRunning, Health: api.HealthHealthy}},

		{name: "checks: healthy once all pass, unhealthy when one fails, healthy again", checks: 2, policy: policyOne, jobType: api.JobService, steps: []scenarioStep{
			{0, ev(Begin), seq("start")},
			{1, ev(Started), seq(startedRecs, "start checks", "report")},
			{2, verdict(0, api.HealthHealthy), nil},
			{3, verdict(1, api.HealthHealthy), seq("record Healthy", "report")},
			{4, verdict(1, api.HealthHealthy), nil},
			{5, verdict(0, api.HealthUnhealthy), seq("record Unhealthy", "report")},
			{6, verdict(0, api.HealthHealthy), seq("record Healthy", "report")},
		}, want: Status{State: api.TaskRunning, Health: api.HealthHealthy}},

		{name: "an exit restarts after the delay; the exited run goes before the next starts", checks: 1, policy: policyOne, jobType: api.JobService, steps: []scenarioStep{
			{0, ev(Begin), seq("start")},
			{1, ev(Started), seq(startedRecs, "start checks", "report")},
			{2, verdict(0, api.HealthHealthy), seq("record Healthy", "report")},
			{3, exit(1), seq("end checks", "record Terminated: exit code 1", "record Restarting: restarting in 5s", "wake 5s", "report")},
			{4, verdict(0, api.HealthUnhealthy), nil}, // a verdict after its checks ended
			{5, ev(DelayElapsed), seq("destroy", "start")},
			{6, ev(Started), seq(startedRecs, "start checks", "report")},
		}, want: Status{State: api.TaskRunning, Restarts: 1, ExitCode: 1}},

		{name: "attempts spent: not restarting, failed", policy: policyOne, jobType: api.JobService, steps: []scenarioStep{
			{0, ev(Begin), seq("start")},
			{1, ev(Started), seq(startedRecs, "record Healthy", "report")},
			{2, Event{Kind: Exited, Result: ExitResult{ExitCode: 137, OOMKilled: true}}, seq("record Terminated: killed: out of memory (exit code 137)", "record Restarting: restarting in 5s", "wake 5s", "report")},
			{3, ev(DelayElapsed), seq("destroy", "start")},
			{4, ev(Started), seq(startedRecs, "record Healthy", "report")},
			{5, Event{Kind: Exited, Result: ExitResult{ExitCode: 2, Signal: 9}}, seq("record Terminated: exit code 2, signal 9",
				"record Not Restarting: exceeded 1 restart attempts within 1m0s; last: exit code 2, signal 9", "report")},
			{6, ev(DelayElapsed), nil},
			{7, stopReq(), nil}, // already over: nothing to kill or record
		}, want: Status{State: api.TaskDead, Failed: true, Restarts: 1, ExitCode: 2, Health: api.HealthHealthy}, done: true},

		{name: "a batch task that exits cleanly finishes", policy: policyNone, jobType: api.JobBatch, steps: []scenarioStep{
			{0, ev(Begin), seq("start")},
			{1, ev(Started), seq(startedRecs, "record Healthy", "report")},
			{2, exit(0), seq("record Terminated: exit code 0", "record Not Restarting: task finished successfully", "report")},
		}, want: Status{State: api.TaskDead, Health: api.HealthHealthy}, done: true},

		{name: "a permanent start failure fails at once", policy: policyOne, jobType: api.JobService, steps: []scenarioStep{
			{0, ev(Begin), seq("start")},
			{1, Event{Kind: StartFailed, Err: "image not found: nope:latest", Permanent: true}, seq("record Driver Failure: image not found: nope:latest",
				"record Not Restarting: task could not be started: image not found: nope:latest", "report")},
		}, want: Status{State: api.TaskDead, Failed: true}, done: true},

		{name: "a transient start failure spends an attempt and restarts", policy: policyOne, jobType: api.JobService, steps: []scenarioStep{
			{0, ev(Begin), seq("start")},
			{1, Event{Kind: StartFailed, Err: "engine busy"}, seq("record Driver Failure: engine busy", "record Restarting: restarting in 5s", "wake 5s", "report")},
			{2, ev(DelayElapsed), seq("start")},
			{3, Event{Kind: StartFailed, Err: "engine busy"}, seq("record Driver Failure: engine busy",
				"record Not Restarting: exceeded 1 restart attempts within 1m0s; last: lost track of the task: engine busy", "report")},
		}, want: Status{State: api.TaskDead, Failed: true, Restarts: 1}, done: true},

		{name: "stop while running: checks end first, no exit recorded, stays unhealthy", checks: 1, policy: policyOne, jobType: api.JobService, steps: []scenarioStep{
			{0, ev(Begin), seq("start")},
			{1, ev(Started), seq(startedRecs, "start checks", "report")},
			{2, verdict(0, api.HealthUnhealthy), seq("record Unhealthy", "report")},
			{3, stopReq(), seq("end checks", killing, "stop 1s", "report")},
			{4, verdict(0, api.HealthHealthy), nil}, // checks after stop
			{5, stopReq(), nil},
			{6, exit(143), seq(killed, "report")}, // exit after stop requested
			{7, ev(Begin), nil},
		}, want: Status{State: api.TaskDead, Health: api.HealthUnhealthy}, done: true},

		{name: "a healthy task stopped has no health", policy: policyOne, jobType: api.JobService, steps: []scenarioStep{
			{0, ev(Begin), seq("start")},
			{1, ev(Started), seq(startedRecs, "record Healthy", "report")},
			{2, Event{Kind: StopRequested, Message: "ACPI shutdown, powered off after 1s"}, seq("record Killing: ACPI shutdown, powered off after 1s", "stop 1s", "report")},
			{3, exit(0), seq(killed, "report")},
		}, want: Status{State: api.TaskDead}, done: true},

		{name: "stop during the restart delay: nothing starts again", policy: policyOne, jobType: api.JobService, steps: []scenarioStep{
			{0, ev(Begin), seq("start")},
			{1, ev(Started), seq(startedRecs, "record Healthy", "report")},
			{2, exit(1), seq("record Terminated: exit code 1", "record Restarting: restarting in 5s", "wake 5s", "report")},
			{3, stopReq(), seq(killing, killed, "report")},
			{4, ev(DelayElapsed), nil},
		}, want: Status{State: api.TaskDead, Restarts: 1, ExitCode: 1}, done: true},

		{name: "stop while starting: the task started is stopped at once", checks: 1, policy: policyOne, jobType: api.JobService, steps: []scenarioStep{
			{0, ev(Begin), seq("start")},
			{1, stopReq(), seq(killing, "report")},
			{2, ev(Started), seq("stop 1s", "wait")},
			{3, exit(143), seq(killed, "report")},
		}, want: Status{State: api.TaskDead}, done: true},

		{name: "stop while starting, and the start fails", policy: policyOne, jobType: api.JobService, steps: []scenarioStep{
			{0, ev(Begin), seq("start")},
			{1, stopReq(), seq(killing, "report")},
			{2, Event{Kind: StartFailed, Err: "engine busy"}, seq(killed, "report")},
		}, want: Status{State: api.TaskDead}, done: true},

		{name: "a recovered running task is re-attached", checks: 1, policy: policyOne, jobType: api.JobService,
			prev: &api.TaskState{State: api.TaskRunning, Restarts: 2, Health: api.HealthHealthy}, steps: []scenarioStep{
				{0, ev(RecoveredRunning), seq("record Recovered: re-attached after agent restart", "wait", "start checks", "report")},
				{1, verdict(0, api.HealthUnhealthy), seq("record Unhealthy", "report")},
			}, want: Status{State: api.TaskRunning, Restarts: 2, Health: api.HealthUnhealthy}},

		{name: "a task that exited while the agent was down reports its exit and restarts", policy: policyOne, jobType: api.JobService,
			prev: &api.TaskState{State: api.TaskRunning}, steps: []scenarioStep{
				{0, ev(RecoveredExited), seq("wait")},
				{1, exit(3), seq("record Terminated: exit code 3", "record Restarting: restarting in 5s", "wake 5s", "report")},
				{2, ev(DelayElapsed), seq("destroy", "start")},
			}, want: Status{State: api.TaskPending, Restarts: 1, ExitCode: 3}},

		{name: "the driver is missing", policy: policyOne, jobType: api.JobService, steps: []scenarioStep{
			{0, Event{Kind: DriverMissing, Driver: "qemu"}, seq(`record Driver Failure: driver "qemu" is not available on this node`, "report")},
			{1, ev(Begin), nil},
		}, want: Status{State: api.TaskDead, Failed: true}, done: true},

		{name: "the driver losing track of the task is an exit", policy: policyNone, jobType: api.JobService, steps: []scenarioStep{
			{0, ev(Begin), seq("start")},
			{1, ev(Started), seq(startedRecs, "record Healthy", "report")},
			{2, Event{Kind: Exited, Result: ExitResult{ExitCode: -1, Err: "task not found"}}, seq("record Terminated: lost track of the task: task not found",
				"record Not Restarting: exceeded 0 restart attempts within 1m0s; last: lost track of the task: task not found", "report")},
		}, want: Status{State: api.TaskDead, Failed: true, ExitCode: -1, Health: api.HealthHealthy}, done: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := NewState(c.prev, c.checks, time.Second, NewRestartTracker(c.policy, c.jobType))
			for i, step := range c.steps {
				now := t0.Add(step.at * time.Second)
				var effects []Effect
				s, effects = Step(s, step.ev, now)
				var got []string
				for _, e := range effects {
					got = append(got, e.String())
					if e.Op == Record && !e.Time.Equal(now) {
						t.Errorf("step %d: %s at %s, want now (%s)", i, e, e.Time, now)
					}
				}
				if !slices.Equal(got, step.want) {
					t.Fatalf("step %d (%s):\n got  %s\n want %s", i, step.ev.Kind, strings.Join(got, " | "), strings.Join(step.want, " | "))
				}
			}
			got := s.Status
			if got.State != c.want.State || got.Failed != c.want.Failed || got.Health != c.want.Health ||
				got.Restarts != c.want.Restarts || got.ExitCode != c.want.ExitCode {
				t.Errorf("ends %+v, want %+v", got, c.want)
			}
			if s.Done != c.done {
				t.Errorf("done %v, want %v", s.Done, c.done)
			}
		})
	}
}

// TestStepTimes: Started and finished times are the now Step is given.
func TestStepTimes(t *testing.T) {
	s := NewState(nil, 0, time.Second, NewRestartTracker(policyNone, api.JobService))
	s, _ = Step(s, ev(Begin), t0)
	s, _ = Step(s, ev(Started), t0.Add(time.Second))
	if !s.Status.StartedAt.Equal(t0.Add(time.Second)) {
		t.Fatalf("started at %s", s.Status.StartedAt)
	}
	s, _ = Step(s, exit(1), t0.Add(3*time.Second))
	if !s.Status.FinishedAt.Equal(t0.Add(3 * time.Second)) {
		t.Fatalf("finished at %s", s.Status.FinishedAt)
	}
}

// TestStepLeavesItsInputAlone: Step works on a copy; the state it was
// given (its verdicts included) is as it was.
func TestStepLeavesItsInputAlone(t *testing.T) {
	s := NewState(nil, 1, time.Second, NewRestartTracker(policyOne, api.JobService))
	s, _ = Step(s, ev(Begin), t0)
	s, _ = Step(s, ev(Started), t0)
	before := slices.Clone(s.Checks)
	Step(s, verdict(0, api.HealthUnhealthy), t0)
	if !slices.Equal(s.Checks, before) {
		t.Fatalf("verdicts changed under the caller: %v, were %v", s.Checks, before)
	}
}
