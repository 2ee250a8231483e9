package tasklife

import (
	"fmt"
	"slices"
	"time"

	"github.com/gantryhq/gantry/internal/api"
)

// Status is the part of a task's state the servers see (api.TaskState
// without its events, which Step hands out as Record effects).
type Status struct {
	State      string // api.TaskPending, api.TaskRunning, api.TaskDead
	Failed     bool
	ExitCode   int
	Restarts   int
	Health     string // "", api.HealthHealthy, api.HealthUnhealthy
	StartedAt  time.Time
	FinishedAt time.Time
}

// StatusOf is the status part of a task state.
func StatusOf(s *api.TaskState) Status {
	return Status{State: s.State, Failed: s.Failed, ExitCode: s.ExitCode, Restarts: s.Restarts,
		Health: s.Health, StartedAt: s.StartedAt, FinishedAt: s.FinishedAt}
}

// Apply writes the status into a task state, leaving its events.
func (st Status) Apply(s *api.TaskState) {
	s.State, s.Failed, s.ExitCode, s.Restarts = st.State, st.Failed, st.ExitCode, st.Restarts
	s.Health, s.StartedAt, s.FinishedAt = st.Health, st.StartedAt, st.FinishedAt
}

// State is one task's life as the runner's decisions see it: what the
// servers see (Status), what is in flight in the runner's shell (a start,
// a wait, the checks, a restart delay), the per-check verdicts and the
// restart tracker. It is a value: Step returns the state that follows.
type State struct {
	Status Status
	// Checks is each health check's last verdict: "", healthy, unhealthy.
	Checks []string
	// NumChecks is how many health checks the task has.
	NumChecks int
	// KillTimeout is how long a stopped task has between SIGTERM and
	// SIGKILL.
	KillTimeout time.Duration
	Restarts    RestartTracker

	Starting bool // a start is in flight
	Waiting  bool // the shell waits for the task to exit
	Checking bool // the health checks run
	Delaying bool // a restart delay runs (a wake-up is scheduled)
	Handle   bool // the shell holds a handle of the task (running or exited)
	Stopping bool // the task was told to stop: it never starts again
	Killing  bool // the stop was recorded (Killing); Killed follows
	// Done says the runner has nothing left to do: the task is dead and
	// nothing is in flight. Step ignores every later event.
	Done bool
}

// NewState is the state of a task about to run, carrying on from the
// status the servers hold for it (prev, nil for a new task).
func NewState(prev *api.TaskState, numChecks int, killTimeout time.Duration, restarts RestartTracker) State {
	s := State{NumChecks: numChecks, KillTimeout: killTimeout, Restarts: restarts}
	if prev != nil {
		s.Status = StatusOf(prev)
	} else {
		s.Status.State = api.TaskPending
	}
	return s
}

// EventKind names what happened to a task.
type EventKind int

const (
	// Begin: the runner begins and found no task to adopt: start one.
	Begin EventKind = iota
	// Started: the driver started the task; the shell holds its handle.
	Started
	// StartFailed: the driver could not start it (Err, Permanent).
	StartFailed
	// Exited: the task ended (Result).
	Exited
	// StopRequested: the allocation stops; Message, when set, is what the
	// driver's stop will do (its StopDescriber), for the Killing event.
	StopRequested
	// DelayElapsed: the restart delay Step asked for is over.
	DelayElapsed
	// CheckVerdict: health check number Check gave Verdict.
	CheckVerdict
	// RecoveredRunning: the runner adopted a task that still runs.
	RecoveredRunning
	// RecoveredExited: the runner adopted a task that exited while the
	// agent was down; its exit is reported as the shell's wait returns.
	RecoveredExited
	// DriverMissing: the task's driver is not available on this node.
	DriverMissing
)

var eventNames = [...]string{"begin", "started", "start failed", "exited", "stop requested",
	"delay elapsed", "check verdict", "recovered running", "recovered exited", "driver missing"}

func (k EventKind) String() string {
	if int(k) < len(eventNames) {
		return eventNames[k]
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// ExitResult is how a run of a task ended, as data (driver.ExitResult
// with its error as text).
type ExitResult struct {
	ExitCode  int
	Signal    int
	OOMKilled bool
	Message   string // the driver's description of the exit, if any
	Err       string // the driver lost track of the task
}

// Successful is a clean exit.
func (r ExitResult) Successful() bool {
	return r.ExitCode == 0 && r.Signal == 0 && !r.OOMKilled && r.Err == ""
}

// Describe is the exit as the Terminated event says it.
func (r ExitResult) Describe() string {
	switch {
	case r.Err != "":
		return "lost track of the task: " + r.Err
	case r.OOMKilled:
		return fmt.Sprintf("killed: out of memory (exit code %d)", r.ExitCode)
	case r.Signal != 0:
		return fmt.Sprintf("exit code %d, signal %d", r.ExitCode, r.Signal)
	case r.Message != "":
		return fmt.Sprintf("exit code %d: %s", r.ExitCode, r.Message)
	}
	return fmt.Sprintf("exit code %d", r.ExitCode)
}

// Event is one thing that happened to a task; which fields matter
// depends on Kind.
type Event struct {
	Kind      EventKind
	Err       string     // StartFailed: the driver's error
	Permanent bool       // StartFailed: trying again cannot help
	Result    ExitResult // Exited
	Message   string     // StopRequested: what the stop does
	Check     int        // CheckVerdict: the check's index
	Verdict   string     // CheckVerdict: healthy or unhealthy
	Driver    string     // DriverMissing: the driver's name
}

// Op names what the shell does for a task.
type Op int

const (
	// StartTask starts the task (in the background); Started or
	// StartFailed follows.
	StartTask Op = iota
	// WaitTask waits for the task held (in the background); Exited
	// follows.
	WaitTask
	// StartChecks starts the task's health checks; CheckVerdict events
	// follow until EndChecks.
	StartChecks
	// EndChecks ends the checks and returns once none runs any more.
	EndChecks
	// Wake schedules DelayElapsed after Delay.
	Wake
	// StopTask stops the task held, SIGKILL after Timeout.
	StopTask
	// DestroyHandle removes the task held (container, process leftovers)
	// and lets go of its handle.
	DestroyHandle
	// Record adds the task event Type with Message at Time.
	Record
	// Report sends the allocation's state to the servers.
	Report
)

var opNames = [...]string{"start", "wait", "start checks", "end checks", "wake", "stop", "destroy", "record", "report"}

func (o Op) String() string {
	if int(o) < len(opNames) {
		return opNames[o]
	}
	return fmt.Sprintf("Op(%d)", int(o))
}

// Effect is one thing Step asks the shell to do, in the order given.
type Effect struct {
	Op      Op
	Delay   time.Duration // Wake
	Timeout time.Duration // StopTask
	Type    string        // Record: the task event type
	Message string        // Record
	Time    time.Time     // Record: the now Step was given
}

func (e Effect) String() string {
	switch e.Op {
	case Wake:
		return fmt.Sprintf("wake %s", e.Delay)
	case StopTask:
		return fmt.Sprintf("stop %s", e.Timeout)
	case Record:
		if e.Message == "" {
			return "record " + e.Type
		}
		return fmt.Sprintf("record %s: %s", e.Type, e.Message)
	}
	return e.Op.String()
}

// Step decides what follows event e at time now: the state after it and
// the effects the shell carries out, in order. Events that do not fit
// the state (a verdict after the checks ended, an exit with no wait in
// flight, anything once Done) change nothing.
func Step(s State, e Event, now time.Time) (State, []Effect) {
	if s.Done {
		return s, nil
	}
	s.Checks = slices.Clone(s.Checks)
	st := stepper{s: s, now: now}
	st.step(e)
	if st.recorded {
		st.do(Effect{Op: Report})
	}
	return st.s, st.out
}

type stepper struct {
	s        State
	now      time.Time
	out      []Effect
	recorded bool
}

func (st *stepper) do(e Effect) { st.out = append(st.out, e) }

func (st *stepper) record(typ, msg string) {
	st.do(Effect{Op: Record, Type: typ, Message: msg, Time: st.now})
	st.recorded = true
}

func (st *stepper) step(e Event) {
	s := &st.s
	switch e.Kind {
	case Begin:
		if s.Stopping || s.Starting || s.Waiting || s.Delaying {
			return
		}
		st.start()

	case Started:
		if !s.Starting {
			return
		}
		s.Starting, s.Handle = false, true
		if s.Stopping {
			// Told to stop while it started: stop it at once, and end
			// once it has exited.
			st.stopTask()
			st.wait()
			return
		}
		s.Status.State, s.Status.StartedAt, s.Status.FinishedAt = api.TaskRunning, st.now, time.Time{}
		s.Status.Failed, s.Status.Health = false, ""
		st.record(api.TaskEventStarted, "")
		st.wait()
		st.startHealth()

	case StartFailed:
		if !s.Starting {
			return
		}
		s.Starting = false
		if s.Stopping {
			st.killed()
			return
		}
		st.record(api.TaskEventDriverFailure, e.Err)
		exit := Exit{StartFailed: true, Permanent: e.Permanent, Message: ExitResult{ExitCode: -1, Err: e.Err}.Describe()}
		if e.Permanent {
			exit.Message = e.Err
		}
		st.afterExit(exit)

	case Exited:
		if !s.Waiting {
			return
		}
		s.Waiting = false
		st.endChecks()
		if s.Stopping {
			st.killed() // the stop records the end, not the exit
			return
		}
		msg := e.Result.Describe()
		s.Status.ExitCode = e.Result.ExitCode
		st.record(api.TaskEventTerminated, msg)
		st.afterExit(Exit{Successful: e.Result.Successful(), Message: msg})

	case DelayElapsed:
		if !s.Delaying {
			return
		}
		s.Delaying = false
		if s.Stopping || s.Starting || s.Waiting {
			return
		}
		if s.Handle {
			// The exited run was kept through the delay (its logs stay
			// readable); it goes before the next run starts.
			st.do(Effect{Op: DestroyHandle})
			s.Handle = false
		}
		st.start()

	case StopRequested:
		if s.Stopping {
			return
		}
		s.Stopping = true
		st.endChecks()
		if s.Status.State == api.TaskDead && !s.Starting {
			// Already over: nothing to kill, nothing to record.
			st.settle()
			return
		}
		msg := e.Message
		if msg == "" {
			msg = fmt.Sprintf("sent SIGTERM, SIGKILL after %s", s.KillTimeout)
		}
		s.Killing = true
		st.record(api.TaskEventKilling, msg)
		switch {
		case s.Waiting:
			st.stopTask() // Exited ends it
		case s.Starting:
			// Started or StartFailed ends it.
		default:
			st.killed() // between runs: nothing runs
		}

	case CheckVerdict:
		if !s.Checking || s.Stopping || e.Check < 0 || e.Check >= len(s.Checks) {
			return
		}
		s.Checks[e.Check] = e.Verdict
		if h := health(s.Checks); h != "" {
			st.setHealth(h)
		}

	case RecoveredRunning, RecoveredExited:
		if s.Handle || s.Starting || s.Waiting || s.Delaying || s.Stopping {
			return
		}
		s.Handle = true
		if e.Kind == RecoveredRunning {
			s.Status.State = api.TaskRunning
			st.record(api.TaskEventRecovered, "re-attached after agent restart")
			st.wait()
			st.startHealth()
			return
		}
		st.wait() // its exit is reported as the wait returns

	case DriverMissing:
		if s.Starting || s.Waiting || s.Delaying || s.Handle {
			return
		}
		s.Status.State, s.Status.Failed, s.Status.FinishedAt = api.TaskDead, true, st.now
		st.record(api.TaskEventDriverFailure, fmt.Sprintf("driver %q is not available on this node", e.Driver))
		st.settle()
	}
}

func (st *stepper) start() {
	st.s.Starting = true
	st.do(Effect{Op: StartTask})
}

func (st *stepper) wait() {
	st.s.Waiting = true
	st.do(Effect{Op: WaitTask})
}

func (st *stepper) stopTask() {
	st.do(Effect{Op: StopTask, Timeout: st.s.KillTimeout})
}

// startHealth begins a run's health: a task without checks is healthy
// as it runs; one with checks waits for their verdicts.
func (st *stepper) startHealth() {
	s := &st.s
	s.Checks = make([]string, s.NumChecks)
	if s.NumChecks == 0 {
		st.setHealth(api.HealthHealthy)
		return
	}
	s.Checking = true
	st.do(Effect{Op: StartChecks})
}

func (st *stepper) endChecks() {
	if st.s.Checking {
		st.s.Checking = false
		st.do(Effect{Op: EndChecks})
	}
}

// setHealth records a change of health of a running task.
func (st *stepper) setHealth(h string) {
	s := &st.s
	if s.Status.Health == h || s.Status.State != api.TaskRunning {
		return
	}
	s.Status.Health = h
	typ := api.TaskEventHealthy
	if h == api.HealthUnhealthy {
		typ = api.TaskEventUnhealthy
	}
	st.record(typ, "")
}

// health derives a task's health from its checks' verdicts: unhealthy
// when any fails, healthy when every one passes, "" (no change) while
// some have not answered.
func health(checks []string) string {
	h := api.HealthHealthy
	for _, v := range checks {
		switch v {
		case api.HealthUnhealthy:
			return api.HealthUnhealthy
		case "":
			h = ""
		}
	}
	return h
}

// afterExit applies the restart policy to an exit (or a failed start).
func (st *stepper) afterExit(e Exit) {
	s := &st.s
	var v Verdict
	s.Restarts, v = s.Restarts.Next(e, st.now)
	if v.Outcome != Restart {
		s.Status.State, s.Status.Failed, s.Status.FinishedAt = api.TaskDead, v.Outcome != Finish, st.now
		st.record(api.TaskEventNotRestarting, v.Reason)
		st.settle()
		return
	}
	s.Status.State, s.Status.Restarts, s.Status.Health = api.TaskPending, s.Status.Restarts+1, ""
	st.record(api.TaskEventRestarting, fmt.Sprintf("restarting in %s", v.Delay.Round(time.Millisecond)))
	s.Delaying = true
	st.do(Effect{Op: Wake, Delay: v.Delay})
}

// killed ends a stopped task: recorded Killed when its stop was recorded
// Killing. A task stopped after failing its checks stays unhealthy: that
// is why it was replaced.
func (st *stepper) killed() {
	s := &st.s
	if s.Killing {
		if s.Status.Health != api.HealthUnhealthy {
			s.Status.Health = ""
		}
		s.Status.State, s.Status.FinishedAt = api.TaskDead, st.now
		st.record(api.TaskEventKilled, "task stopped")
	}
	st.settle()
}

// settle marks the runner done once the task is dead and nothing of it
// is in flight.
func (st *stepper) settle() {
	s := &st.s
	if (s.Status.State == api.TaskDead || s.Stopping) && !s.Starting && !s.Waiting && !s.Checking {
		s.Done = true
	}
}
