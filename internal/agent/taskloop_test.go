package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/agent/tasklife"
	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/driver"
	"github.com/gantryhq/gantry/internal/driver/null"
)

// The task loop's tests run everything on the test's goroutine: the loop
// drains on whichever goroutine posts (inlineLoop), the driver is a
// script that answers at once and calls back on exit (notifyScript), and
// the restart delay is a timer of a fake clock that fires when the test
// says (loopClock). No sleeps, nothing timed.

// inlineLoop is a task loop drained by whoever posts to it, at once.
func inlineLoop() *taskLoop {
	return &taskLoop{shut: make(chan struct{}), spawn: func(f func()) { f() }}
}

// loopClock is a clock whose time the test sets and whose timers fire
// when the test says.
type loopClock struct {
	now    time.Time
	timers []*loopTimer
}

type loopTimer struct {
	d       time.Duration
	f       func()
	stopped bool
	fired   bool
}

func newLoopClock() *loopClock {
	return &loopClock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *loopClock) clock() clock {
	return clock{
		now: func() time.Time { return c.now },
		afterFunc: func(d time.Duration, f func()) func() bool {
			tm := &loopTimer{d: d, f: f}
			c.timers = append(c.timers, tm)
			return func() bool {
				live := !tm.stopped && !tm.fired
				tm.stopped = true
				return live
			}
		},
	}
}

// pending is the timers neither fired nor stopped.
func (c *loopClock) pending() []*loopTimer {
	var out []*loopTimer
	for _, tm := range c.timers {
		if !tm.stopped && !tm.fired {
			out = append(out, tm)
		}
	}
	return out
}

// fire moves the time past the one pending timer and runs it; it returns
// the timer's delay.
func (c *loopClock) fire(t *testing.T) time.Duration {
	t.Helper()
	p := c.pending()
	if len(p) != 1 {
		t.Fatalf("%d pending timers, want 1", len(p))
	}
	c.now = c.now.Add(p[0].d)
	p[0].fired = true
	p[0].f()
	return p[0].d
}

// notifyScript is a task port for the loop whose calls return at once,
// each recorded: a start answers startErr (then nil), a stop makes the
// task exit 143, and the test ends a run with exit.
type notifyScript struct {
	calls    []string
	startErr error
	n        int
	exited   map[string]int                             // handle → exit code, once it exited
	notify   map[string]func(*driver.ExitResult, error) // handle → the callback of its exit
	reports  int
}

func newNotifyScript() *notifyScript {
	return &notifyScript{exited: map[string]int{}, notify: map[string]func(*driver.ExitResult, error){}}
}

func (p *notifyScript) start(context.Context) (*driver.Handle, error) {
	p.calls = append(p.calls, "start")
	if err := p.startErr; err != nil {
		p.startErr = nil
		return nil, err
	}
	p.n++
	return &driver.Handle{ID: fmt.Sprintf("h%d", p.n), Running: true}, nil
}

func (p *notifyScript) wait(context.Context, *driver.Handle) (*driver.ExitResult, error) {
	panic("a task on the loop waited: its runner would hold a goroutine")
}

func (p *notifyScript) notifyExit(h *driver.Handle, f func(*driver.ExitResult, error)) {
	p.calls = append(p.calls, "notify "+h.ID)
	if code, ok := p.exited[h.ID]; ok {
		f(&driver.ExitResult{ExitCode: code}, nil)
		return
	}
	p.notify[h.ID] = f
}

// exit ends the run of handle id with code, as the driver would.
func (p *notifyScript) exit(id string, code int) {
	if _, ok := p.exited[id]; ok {
		return
	}
	p.exited[id] = code
	if f := p.notify[id]; f != nil {
		delete(p.notify, id)
		f(&driver.ExitResult{ExitCode: code}, nil)
	}
}

func (p *notifyScript) stop(_ context.Context, h *driver.Handle, timeout time.Duration) error {
	p.calls = append(p.calls, fmt.Sprintf("stop %s %s", h.ID, timeout))
	p.exit(h.ID, 143)
	return nil
}

func (p *notifyScript) destroy(_ context.Context, h *driver.Handle) error {
	p.calls = append(p.calls, "destroy "+h.ID)
	return nil
}

func (p *notifyScript) probe(context.Context, api.Check, *driver.Handle) error { return nil }
func (p *notifyScript) report()                                                { p.reports++ }

// expect checks the port's calls since the last expect.
func (p *notifyScript) expect(t *testing.T, want ...string) {
	t.Helper()
	got := p.calls
	p.calls = nil
	if !slices.Equal(got, want) {
		t.Fatalf("port calls %q, want %q", got, want)
	}
}

func loopRunner(p *notifyScript, c *loopClock, l *taskLoop) *taskRunner {
	policy := api.RestartPolicy{Attempts: 2, Interval: api.Duration(time.Hour), Delay: api.Duration(15 * time.Second), Mode: api.RestartModeFail}
	return newTaskShell(&api.Task{Name: "server", Driver: "fake"}, newFakeDriver(), p, c.clock(), slog.New(slog.NewTextHandler(io.Discard, nil)),
		2*time.Second, tasklife.NewRestartTracker(policy, api.JobService), nil, nil, l)
}

func isDone(tr *taskRunner) bool {
	select {
	case <-tr.done:
		return true
	default:
		return false
	}
}

func eventTypes(tr *taskRunner) []string {
	var out []string
	for _, e := range tr.snapshot().Events {
		out = append(out, e.Type)
	}
	return out
}

// TestLoopRunsAndKills: on the loop a task starts, is watched through the
// driver's callback instead of a wait, and is killed on stop: SIGTERM
// with the kill timeout recorded, the exit that follows ends its life.
func TestLoopRunsAndKills(t *testing.T) {
	p, c := newNotifyScript(), newLoopClock()
	tr := loopRunner(p, c, inlineLoop())
	tr.launch(context.Background())
	p.expect(t, "start", "notify h1")
	if st := tr.snapshot(); st.State != api.TaskRunning || st.Health != api.HealthHealthy || !st.StartedAt.Equal(c.now) {
		t.Fatalf("after the start: %+v", st)
	}
	if p.reports == 0 {
		t.Fatal("the start was never reported")
	}

	tr.stop(context.Background())
	p.expect(t, "stop h1 2s")
	if !isDone(tr) {
		t.Fatal("stop returned before the runner's life was over")
	}
	st := tr.snapshot()
	if st.State != api.TaskDead || st.Failed {
		t.Fatalf("after the stop: %+v", st)
	}
	ev := st.Events
	if kill := ev[len(ev)-2]; kill.Type != api.TaskEventKilling || kill.Message != "sent SIGTERM, SIGKILL after 2s" {
		t.Fatalf("the stop recorded %+v, want Killing with the kill timeout", kill)
	}
	if last := ev[len(ev)-1]; last.Type != api.TaskEventKilled {
		t.Fatalf("last event %+v, want Killed", last)
	}
	if len(c.timers) != 0 {
		t.Fatalf("%d timers for a task that never restarted", len(c.timers))
	}
}

// TestLoopRestartWaitsForItsClock: after an exit the runner asks its
// clock for a timer of the restart delay and starts nothing until it
// fires; then the exited run is destroyed and the next one started.
// Once the policy's attempts are spent, the task gives up and its life
// is over.
func TestLoopRestartWaitsForItsClock(t *testing.T) {
	p, c := newNotifyScript(), newLoopClock()
	tr := loopRunner(p, c, inlineLoop())
	tr.launch(context.Background())
	p.expect(t, "start", "notify h1")

	exitAt := c.now
	p.exit("h1", 1)
	p.expect(t) // nothing until the delay is over
	if st := tr.snapshot(); st.State != api.TaskPending || st.Restarts != 1 || st.ExitCode != 1 {
		t.Fatalf("after the exit: %+v", st)
	}
	if ev := lastEvent(tr); ev.Type != api.TaskEventRestarting || ev.Message != "restarting in 15s" || !ev.Time.Equal(exitAt) {
		t.Fatalf("last event %+v, want Restarting at the clock's now", ev)
	}
	if d := c.fire(t); d != 15*time.Second {
		t.Fatalf("restart delay %s, want 15s", d)
	}
	p.expect(t, "destroy h1", "start", "notify h2")
	if st := tr.snapshot(); st.State != api.TaskRunning || st.Restarts != 1 || !st.StartedAt.Equal(exitAt.Add(15*time.Second)) {
		t.Fatalf("after the restart: %+v", st)
	}

	p.exit("h2", 1)
	c.fire(t)
	p.expect(t, "destroy h2", "start", "notify h3")
	p.exit("h3", 1)
	if !isDone(tr) {
		t.Fatal("the runner goes on after the policy's attempts were spent")
	}
	st := tr.snapshot()
	if st.State != api.TaskDead || !st.Failed || st.Restarts != 2 || lastEvent(tr).Type != api.TaskEventNotRestarting {
		t.Fatalf("after the last exit: %+v, last event %+v", st, lastEvent(tr))
	}
	if n := len(c.pending()); n != 0 {
		t.Fatalf("%d timers pending after the task gave up", n)
	}
	p.expect(t) // the last run is left for its logs: destroyed when the allocation is
}

// TestLoopStopDuringRestartDelay: a stop between runs kills nothing (no
// task runs), ends the runner at once and stops the delay's timer; a
// timer that fires all the same starts nothing.
func TestLoopStopDuringRestartDelay(t *testing.T) {
	p, c := newNotifyScript(), newLoopClock()
	tr := loopRunner(p, c, inlineLoop())
	tr.launch(context.Background())
	p.exit("h1", 1)
	p.expect(t, "start", "notify h1")
	tm := c.pending()
	if len(tm) != 1 {
		t.Fatalf("%d pending timers after the exit, want the restart delay's", len(tm))
	}

	tr.stop(context.Background())
	p.expect(t)
	if !isDone(tr) || !tm[0].stopped {
		t.Fatalf("after a stop in the restart delay: done %v, timer stopped %v", isDone(tr), tm[0].stopped)
	}
	if got := eventTypes(tr); !slices.Equal(got[len(got)-2:], []string{api.TaskEventKilling, api.TaskEventKilled}) {
		t.Fatalf("events %q, want Killing then Killed last", got)
	}
	tm[0].f() // the timer fired as it was stopped
	p.expect(t)
	if st := tr.snapshot(); st.State != api.TaskDead {
		t.Fatalf("a late timer revived the task: %+v", st)
	}
}

// TestLoopPermanentStartFailure: a start the driver says can never work
// ends the task failed, with no restart timer.
func TestLoopPermanentStartFailure(t *testing.T) {
	p, c := newNotifyScript(), newLoopClock()
	p.startErr = fmt.Errorf("pull nope:latest: %w", driver.ErrImageNotFound)
	tr := loopRunner(p, c, inlineLoop())
	tr.launch(context.Background())
	p.expect(t, "start")
	if st := tr.snapshot(); !isDone(tr) || st.State != api.TaskDead || !st.Failed || lastEvent(tr).Type != api.TaskEventNotRestarting {
		t.Fatalf("after a permanent start failure: done %v, %+v", isDone(tr), st)
	}
	if len(c.timers) != 0 {
		t.Fatalf("a permanent start failure is retried after %s", c.timers[0].d)
	}
}

// TestLoopStopBeforeBegin: a stop posted before the task's first step
// (the allocation was stopped as its runner was built) follows that
// step: the task that started is stopped at once and the runner ends.
func TestLoopStopBeforeBegin(t *testing.T) {
	p, c := newNotifyScript(), newLoopClock()
	l := &taskLoop{shut: make(chan struct{})} // drained by the test
	tr := loopRunner(p, c, l)
	l.post(loopItem{tr: tr, kind: loopStop, ctx: context.Background()})
	tr.launch(context.Background())
	l.drain()
	p.expect(t, "start", "stop h1 2s", "notify h1")
	if !isDone(tr) {
		t.Fatal("the runner goes on after a stop")
	}
	if got := eventTypes(tr); !slices.Equal(got, []string{api.TaskEventKilling, api.TaskEventKilled}) {
		t.Fatalf("events %q, want Killing and Killed only (the task never ran for the servers)", got)
	}
}

// TestLoopShutdownLeavesTasksRunning: once the agent shuts down (the
// loop is closed) a stop returns at once and stops nothing, and an exit
// the driver calls back with afterwards changes nothing: the tasks keep
// running, as the goroutine-per-task runner leaves them.
func TestLoopShutdownLeavesTasksRunning(t *testing.T) {
	p, c := newNotifyScript(), newLoopClock()
	l := inlineLoop()
	tr := loopRunner(p, c, l)
	tr.launch(context.Background())
	p.expect(t, "start", "notify h1")
	l.close()
	tr.stop(context.Background())
	p.exit("h1", 1)
	p.expect(t)
	if st := tr.snapshot(); st.State != api.TaskRunning {
		t.Fatalf("after the agent shut down: %+v", st)
	}
}

// TestEventTasksRunNullDriverOnTheLoop: an agent with EventTasks steps
// the null driver's tasks on its loop (no goroutine per task) and keeps a
// goroutine for tasks of drivers that block (the fake one); allocations
// of null tasks run, are reported running, and stop complete, with the
// driver holding nothing afterwards.
func TestEventTasksRunNullDriverOnTheLoop(t *testing.T) {
	a, err := New(Config{Servers: []string{"127.0.0.1:1"}, DataDir: t.TempDir(), KillTimeout: time.Second, EventTasks: true},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	a.loop = inlineLoop()
	nd := null.New()
	a.drivers = map[string]driver.Driver{"fake": newFakeDriver(), null.Name: nd}
	job := &api.Job{Name: "web", Namespace: "default", Type: api.JobService}
	policy := api.DefaultRestartPolicy(api.JobService)

	r0 := newAllocRunner(a, &api.Allocation{ID: "alloc-mixed", DesiredStatus: api.AllocDesiredRun}, nil)
	if tr := newTaskRunner(r0, job, &api.Task{Name: "f", Driver: "fake"}, policy, nil, nil); tr.loop != nil || tr.msgs == nil {
		t.Fatal("a task of a driver that blocks is on the loop")
	}
	if tr := newTaskRunner(r0, job, &api.Task{Name: "n", Driver: null.Name}, policy, nil, nil); tr.loop != a.loop {
		t.Fatal("a null driver task is not on the agent's loop")
	}

	const allocs = 300
	before := runtime.NumGoroutine()
	var runners []*allocRunner
	for i := range allocs {
		al := &api.Allocation{ID: fmt.Sprintf("alloc-%04d", i), Namespace: "default", Job: "web", Group: "g",
			DesiredStatus: api.AllocDesiredRun, ClientStatus: api.AllocPending}
		r := newAllocRunner(a, al, nil)
		tr := newTaskRunner(r, job, &api.Task{Name: "t", Driver: null.Name}, policy, nil, nil)
		r.tasks["t"], r.order = tr, []string{"t"}
		close(r.ready)
		tr.launch(context.Background())
		runners = append(runners, r)
	}
	// Other tests' goroutines may still be ending; none of this test's
	// tasks may hold one.
	if n := runtime.NumGoroutine() - before; n > allocs/10 {
		t.Fatalf("%d more goroutines with %d tasks running on the loop", n, allocs)
	}
	if n := nd.Running(); n != allocs {
		t.Fatalf("the null driver runs %d tasks, want %d", n, allocs)
	}
	if u := lastReport(runners[0]); u.ClientStatus != api.AllocRunning || u.Health != api.HealthHealthy {
		t.Fatalf("reported %s with health %q, want running and healthy", u.ClientStatus, u.Health)
	}

	for _, r := range runners {
		r.stop(context.Background())
	}
	if n := nd.Running(); n != 0 {
		t.Fatalf("the null driver still runs %d tasks after every allocation stopped", n)
	}
	u := lastReport(runners[allocs-1])
	if u.ClientStatus != api.AllocComplete {
		t.Fatalf("a stopped allocation reported %s, want complete", u.ClientStatus)
	}
	if st := u.TaskStates["t"]; st == nil || st.State != api.TaskDead || st.Events[len(st.Events)-1].Type != api.TaskEventKilled {
		t.Fatalf("task state after the stop: %+v", st)
	}
}
