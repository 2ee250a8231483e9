package agent

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/driver"
)

// fakeDriver runs tasks that only end when stopped; its exec checks fail
// always and are counted. It is the narrow driver port the task runner
// uses, with no engine behind it.
type fakeDriver struct {
	mu        sync.Mutex
	running   map[string]chan struct{} // handle ID → closed when stopped
	started   int
	destroyed []string
	probes    atomic.Int64
	// probesAtStop is the probe count when Stop was called.
	probesAtStop atomic.Int64
}

func newFakeDriver() *fakeDriver { return &fakeDriver{running: map[string]chan struct{}{}} }

func (d *fakeDriver) Name() string { return "fake" }
func (d *fakeDriver) Fingerprint(context.Context) api.DriverInfo {
	return api.DriverInfo{Detected: true, Healthy: true}
}
func (d *fakeDriver) Recover(context.Context, string) ([]*driver.Handle, error) { return nil, nil }

func (d *fakeDriver) Start(_ context.Context, cfg *driver.TaskConfig) (*driver.Handle, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.started++
	h := &driver.Handle{Driver: "fake", ID: fmt.Sprintf("c%d", d.started), AllocID: cfg.AllocID, Task: cfg.Task.Name, Started: time.Now(), Running: true}
	d.running[h.ID] = make(chan struct{})
	return h, nil
}

func (d *fakeDriver) ch(h *driver.Handle) chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.running[h.ID]
}

func (d *fakeDriver) Wait(ctx context.Context, h *driver.Handle) (*driver.ExitResult, error) {
	ch := d.ch(h)
	if ch == nil {
		// Not started here: like a container that was created and never
		// started, waiting for it to be "not running" returns at once
		// with exit code 0.
		return &driver.ExitResult{ExitCode: 0}, nil
	}
	select {
	case <-ch:
		return &driver.ExitResult{ExitCode: 143}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (d *fakeDriver) Stop(_ context.Context, h *driver.Handle, _ time.Duration) error {
	// The task takes a moment to exit after SIGTERM, as a real one does;
	// its checks must not run meanwhile.
	d.probesAtStop.Store(d.probes.Load())
	time.Sleep(30 * time.Millisecond)
	d.mu.Lock()
	defer d.mu.Unlock()
	if ch := d.running[h.ID]; ch != nil {
		select {
		case <-ch:
		default:
			close(ch)
		}
	}
	return nil
}

func (d *fakeDriver) Destroy(_ context.Context, h *driver.Handle) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.destroyed = append(d.destroyed, h.ID)
	return nil
}

func (d *fakeDriver) Exec(context.Context, *driver.Handle, *driver.ExecRequest) (int, error) {
	d.probes.Add(1)
	return 1, nil
}

// syncBuffer is a log sink the check goroutines may write while the test
// reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// fakeAlloc is an allocation of one task on the fake driver, its runner
// built as run() builds it (without the server's job cache).
func fakeAlloc(t *testing.T, d *fakeDriver, log io.Writer, checks []api.Check, recovered []*driver.Handle) (*allocRunner, *taskRunner) {
	t.Helper()
	a, err := New(Config{Servers: []string{"127.0.0.1:1"}, DataDir: t.TempDir(), KillTimeout: time.Second},
		slog.New(slog.NewTextHandler(log, nil)))
	if err != nil {
		t.Fatal(err)
	}
	a.drivers = map[string]driver.Driver{"fake": d}
	job := &api.Job{Name: "web", Namespace: "default", Type: api.JobService}
	task := &api.Task{Name: "server", Driver: "fake", Checks: checks}
	al := &api.Allocation{ID: "alloc-0123456789", Namespace: "default", Job: "web", Group: "web",
		DesiredStatus: api.AllocDesiredRun, ClientStatus: api.AllocPending}
	r := newAllocRunner(a, al, nil)
	tr := newTaskRunner(r, job, task, api.RestartPolicy{Attempts: 0, Interval: api.Duration(time.Minute), Mode: api.RestartModeFail}, nil, recovered)
	r.tasks["server"], r.order = tr, []string{"server"}
	close(r.ready)
	return r, tr
}

// lastReport is what the agent would send the servers next about al.
func lastReport(r *allocRunner) api.AllocUpdate {
	r.a.updates.mu.Lock()
	defer r.a.updates.mu.Unlock()
	return r.a.updates.pending[r.alloc.ID]
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestChecksEndWhenTaskStops (issue 15, defect 2): health checks kept
// probing after their task was told to stop (1,709 of 1,713 "health check
// failing" lines came after the stop), and the replaced replica that had
// failed its checks showed as complete with its health unknown. Once stop
// returns, no check of the task runs any more, and the allocation reports
// the unhealthy verdict that got it replaced.
func TestChecksEndWhenTaskStops(t *testing.T) {
	d := newFakeDriver()
	var log syncBuffer
	r, tr := fakeAlloc(t, d, &log, []api.Check{{Type: api.CheckExec, Command: []string{"false"},
		Interval: api.Duration(time.Millisecond), Timeout: api.Duration(time.Millisecond), Failures: 1}}, nil)
	go tr.run(context.Background())
	eventually(t, "the task unhealthy", func() bool { return tr.snapshot().Health == api.HealthUnhealthy })
	eventually(t, "a few failed probes", func() bool { return d.probes.Load() >= 3 })

	r.stop(context.Background())
	if n := d.probes.Load() - d.probesAtStop.Load(); n != 0 {
		t.Fatalf("%d probe(s) while the task was stopping", n)
	}
	after, logged := d.probes.Load(), strings.Count(log.String(), "health check failing")
	// Give a check that outlived its task every chance to probe again.
	for range 20 {
		time.Sleep(5 * time.Millisecond)
		if d.probes.Load() != after {
			t.Fatalf("%d probe(s) after the task was stopped", d.probes.Load()-after)
		}
	}
	if n := strings.Count(log.String(), "health check failing"); n != logged {
		t.Fatalf("%d \"health check failing\" line(s) after the stop:\n%s", n-logged, log.String())
	}

	u := lastReport(r)
	if u.ClientStatus != api.AllocComplete || u.Health != api.HealthUnhealthy {
		t.Fatalf("stopped after failing its checks: reported %s with health %q, want complete and unhealthy", u.ClientStatus, u.Health)
	}
	if st := u.TaskStates["server"]; st == nil || st.Health != api.HealthUnhealthy || st.State != api.TaskDead {
		t.Fatalf("task state after the stop: %+v", st)
	}
}

// TestNeverStartedContainerIsStartedAnew (issue 15, defect 2): a
// container created but never started before a crash was adopted and
// reported as "Terminated, exit code 0". It ran nothing: it is removed
// and the task started anew, with no exit reported.
func TestNeverStartedContainerIsStartedAnew(t *testing.T) {
	d := newFakeDriver()
	created := &driver.Handle{Driver: "fake", ID: "created-only", AllocID: "alloc-0123456789", Task: "server"} // Running false, Started zero
	r, tr := fakeAlloc(t, d, io.Discard, nil, []*driver.Handle{created})
	go tr.run(context.Background())
	terminated := func() bool {
		for _, e := range tr.snapshot().Events {
			if e.Type == api.TaskEventTerminated {
				return true
			}
		}
		return false
	}
	eventually(t, "the task running (or an exit reported)", func() bool { return tr.snapshot().State == api.TaskRunning || terminated() })

	d.mu.Lock()
	destroyed, started := append([]string(nil), d.destroyed...), d.started
	d.mu.Unlock()
	if len(destroyed) != 1 || destroyed[0] != "created-only" || started != 1 {
		t.Fatalf("destroyed %v, started %d: want the created-only container removed and the task started once", destroyed, started)
	}
	for _, e := range tr.snapshot().Events {
		if e.Type == api.TaskEventTerminated {
			t.Fatalf("a container that never ran reported an exit: %s %q", e.Type, e.Message)
		}
	}
	r.stop(context.Background())
}
