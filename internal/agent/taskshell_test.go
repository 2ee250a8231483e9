package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/agent/tasklife"
	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/driver"
)

// scriptPort is a task port the test drives call by call: each start and
// wait blocks until the test answers it, and every call is announced on
// calls. No daemon, no agent, no sleeps.
type scriptPort struct {
	calls   chan string
	starts  chan error              // the answer to the next start (nil: started)
	exits   chan *driver.ExitResult // the answer to the next wait
	stopped chan struct{}           // closed by the first stop: the waiting run exits 143
	n       int
	reports chan struct{}
}

func newScriptPort() *scriptPort {
	return &scriptPort{calls: make(chan string, 100), starts: make(chan error), exits: make(chan *driver.ExitResult),
		stopped: make(chan struct{}), reports: make(chan struct{}, 100)}
}

func (p *scriptPort) start(ctx context.Context) (*driver.Handle, error) {
	p.calls <- "start"
	select {
	case err := <-p.starts:
		if err != nil {
			return nil, err
		}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	p.n++
	return &driver.Handle{ID: fmt.Sprintf("h%d", p.n), Running: true}, nil
}

func (p *scriptPort) wait(ctx context.Context, h *driver.Handle) (*driver.ExitResult, error) {
	p.calls <- "wait " + h.ID
	select {
	case r := <-p.exits:
		return r, nil
	case <-p.stopped:
		return &driver.ExitResult{ExitCode: 143}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (p *scriptPort) stop(_ context.Context, h *driver.Handle, timeout time.Duration) error {
	p.calls <- fmt.Sprintf("stop %s %s", h.ID, timeout)
	close(p.stopped)
	return nil
}

func (p *scriptPort) destroy(_ context.Context, h *driver.Handle) error {
	p.calls <- "destroy " + h.ID
	return nil
}

func (p *scriptPort) probe(context.Context, api.Check, *driver.Handle) error { return nil }
func (p *scriptPort) report()                                                { p.reports <- struct{}{} }

func (p *scriptPort) expect(t *testing.T, want string) {
	t.Helper()
	select {
	case got := <-p.calls:
		if got != want {
			t.Fatalf("port call %q, want %q", got, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no port call; want %q", want)
	}
}

// fakeClock is a clock whose time the test sets and whose delays fire
// when the test says.
type fakeClock struct {
	now    time.Time
	delays chan time.Duration
	fire   chan time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), delays: make(chan time.Duration, 10), fire: make(chan time.Time)}
}

func (c *fakeClock) clock() clock {
	return clock{
		now:   func() time.Time { return c.now },
		after: func(d time.Duration) <-chan time.Time { c.delays <- d; return c.fire },
	}
}

func scriptRunner(p taskPort, c *fakeClock, fakeDrv driver.Driver) *taskRunner {
	policy := api.RestartPolicy{Attempts: 3, Interval: api.Duration(time.Minute), Delay: api.Duration(15 * time.Second), Mode: api.RestartModeFail}
	return newTaskShell(&api.Task{Name: "server", Driver: "fake"}, fakeDrv, p, c.clock(), slog.New(slog.NewTextHandler(io.Discard, nil)),
		2*time.Second, tasklife.NewRestartTracker(policy, api.JobService), nil, nil, nil)
}

func lastEvent(tr *taskRunner) api.TaskEvent {
	ev := tr.snapshot().Events
	if len(ev) == 0 {
		return api.TaskEvent{}
	}
	return ev[len(ev)-1]
}

// TestShellRestartWaitsForItsClock: after an exit the runner asks its
// clock for the restart delay and starts nothing until that fires; event
// times are the clock's. The restart is driven by the fake clock, not by
// waiting 15 s.
func TestShellRestartWaitsForItsClock(t *testing.T) {
	p, c := newScriptPort(), newFakeClock()
	tr := scriptRunner(p, c, newFakeDriver())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go tr.run(ctx)

	p.expect(t, "start")
	p.starts <- nil
	p.expect(t, "wait h1")
	p.exits <- &driver.ExitResult{ExitCode: 1}
	select {
	case d := <-c.delays:
		if d != 15*time.Second {
			t.Fatalf("restart delay %s, want 15s", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the runner never asked its clock for the restart delay")
	}
	if ev := lastEvent(tr); ev.Type != api.TaskEventRestarting || ev.Message != "restarting in 15s" || !ev.Time.Equal(c.now) {
		t.Fatalf("last event %+v, want Restarting at the clock's now", ev)
	}
	select {
	case call := <-p.calls:
		t.Fatalf("%q before the restart delay fired", call)
	default:
	}
	c.fire <- c.now
	p.expect(t, "destroy h1")
	p.expect(t, "start")
	p.starts <- nil
	p.expect(t, "wait h2")
	if st := tr.snapshot(); st.State != api.TaskRunning || st.Restarts != 1 {
		t.Fatalf("after the restart: %s with %d restarts", st.State, st.Restarts)
	}
}

// TestShellStopWhileStarting: a stop that comes while the driver starts
// the task stops the task that started, and ends the runner.
func TestShellStopWhileStarting(t *testing.T) {
	p, c := newScriptPort(), newFakeClock()
	tr := scriptRunner(p, c, newFakeDriver())
	go tr.run(context.Background())
	p.expect(t, "start")
	stopped := make(chan struct{})
	go func() { tr.stop(context.Background()); close(stopped) }()
	eventually(t, "Killing recorded", func() bool { return lastEvent(tr).Type == api.TaskEventKilling })
	p.starts <- nil
	// The stop and the wait run beside the loop, in either order.
	if a, b := <-p.calls, <-p.calls; !(a == "stop h1 2s" && b == "wait h1" || a == "wait h1" && b == "stop h1 2s") {
		t.Fatalf("port calls %q, %q: want the task that started stopped and waited for", a, b)
	}
	<-stopped
	st := tr.snapshot()
	if st.State != api.TaskDead || lastEvent(tr).Type != api.TaskEventKilled {
		t.Fatalf("after the stop: %s, last event %+v", st.State, lastEvent(tr))
	}
}

// TestShellPermanentStartFailure: the runner tells a permanent start
// failure (the driver's ErrImageNotFound) from a transient one.
func TestShellPermanentStartFailure(t *testing.T) {
	p, c := newScriptPort(), newFakeClock()
	tr := scriptRunner(p, c, newFakeDriver())
	go tr.run(context.Background())
	p.expect(t, "start")
	p.starts <- fmt.Errorf("pull nope:latest: %w", driver.ErrImageNotFound)
	select {
	case <-tr.done:
	case d := <-c.delays:
		t.Fatalf("a permanent start failure is retried after %s", d)
	}
	if st := tr.snapshot(); st.State != api.TaskDead || !st.Failed || lastEvent(tr).Type != api.TaskEventNotRestarting {
		t.Fatalf("after a permanent start failure: %+v", st)
	}
}
