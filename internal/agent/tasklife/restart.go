package tasklife

import (
	"fmt"
	"time"

	"github.com/gantryhq/gantry/internal/api"
)

// Exit is how one run of a task ended, as the restart tracker sees it.
type Exit struct {
	// Successful is a clean exit (code 0, no signal, no OOM kill, the
	// driver kept track of the task).
	Successful bool
	// StartFailed says the task could not be started at all; Permanent
	// that trying again cannot help (the image does not exist, the driver
	// cannot run the task).
	StartFailed bool
	Permanent   bool
	// Message describes the exit ("exit code 1", the start error), for
	// the reason of a final verdict.
	Message string
}

// Outcome is what follows an exit.
type Outcome int

const (
	// Restart the task after Verdict.Delay.
	Restart Outcome = iota
	// Finish: a batch task that exited cleanly is done; it did not fail.
	Finish
	// Fail: the task cannot be started, so it is not restarted.
	Fail
	// GiveUp: the policy's attempts within its interval are spent (mode
	// fail); the task failed.
	GiveUp
)

func (o Outcome) String() string {
	switch o {
	case Restart:
		return "restart"
	case Finish:
		return "finish"
	case Fail:
		return "fail"
	case GiveUp:
		return "give up"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// Verdict is the restart tracker's answer to one exit.
type Verdict struct {
	Outcome Outcome
	Delay   time.Duration // with Restart: how long to wait before starting again
	Reason  string        // with Finish, Fail and GiveUp: why the task is not restarted
}

// RestartTracker applies a group's restart policy to a task's exits. It
// is a value: Next returns the tracker that follows, so a caller keeps
// the history by keeping the value, and a test can replay any sequence
// of exits at any times. Nomad keeps the same decision in its
// RestartTracker, which is told the time too.
//
// The policy allows Attempts restarts within a window of Interval that
// opens at the first exit after the previous window ended. One more exit
// within the window spends the policy: in mode fail the tracker gives up;
// in mode delay it waits until the window ends (at least Delay) and
// starts a fresh window.
type RestartTracker struct {
	Policy  api.RestartPolicy
	JobType api.JobType
	// The current window: when it opened and how many exits it counted.
	WinStart time.Time
	WinCount int
}

// NewRestartTracker is a tracker with no exits yet.
func NewRestartTracker(p api.RestartPolicy, jobType api.JobType) RestartTracker {
	return RestartTracker{Policy: p, JobType: jobType}
}

// Next decides what follows exit e at time now, and returns the tracker
// that remembers it.
func (t RestartTracker) Next(e Exit, now time.Time) (RestartTracker, Verdict) {
	if e.StartFailed && e.Permanent {
		return t, Verdict{Outcome: Fail, Reason: "task could not be started: " + e.Message}
	}
	if !e.StartFailed && e.Successful && t.JobType == api.JobBatch {
		return t, Verdict{Outcome: Finish, Reason: "task finished successfully"}
	}
	p := t.Policy
	if t.WinStart.IsZero() || now.Sub(t.WinStart) > p.Interval.D() {
		t.WinStart, t.WinCount = now, 0
	}
	t.WinCount++
	delay := p.Delay.D()
	if t.WinCount > p.Attempts {
		if p.Mode != api.RestartModeDelay {
			return t, Verdict{Outcome: GiveUp, Reason: fmt.Sprintf("exceeded %d restart attempts within %s; last: %s", p.Attempts, p.Interval, e.Message)}
		}
		delay = max(delay, t.WinStart.Add(p.Interval.D()).Sub(now))
		t.WinStart, t.WinCount = time.Time{}, 0
	}
	return t, Verdict{Outcome: Restart, Delay: delay}
}
