// Package null owns the null driver: it pretends to run tasks, holding each
// as a timer inside the agent's process. Fault tests and the scale
// benchmark use it to run many nodes per process through the real agent
// code without starting containers.
//
// Its Start, Stop and Destroy return at once and it tells of an exit by
// calling back (driver.ExitNotifier), so an agent may step its tasks
// without a goroutine each (the load tool's simulated nodes do).
//
// A task runs until stopped; `config.command: "exit <duration> [code]"`
// makes it end by itself. It must never start a process or touch the
// machine; its tasks do not survive the agent (Recover finds none).
package null

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/driver"
	"github.com/google/uuid"
)

// Name is the driver's name in job specs.
const Name = "null"

// Driver holds pretend tasks in memory.
type Driver struct {
	mu    sync.Mutex
	tasks map[string]*task
}

// task is one pretend task. Its exit is told to whoever asked first:
// a Wait (done, made when one waits) or the agent's NotifyExit callback.
type task struct {
	mu     sync.Mutex
	ended  bool
	code   int
	done   chan struct{}                   // closed at the end; nil until a Wait asks
	notify func(*driver.ExitResult, error) // NotifyExit's callback, called once at the end
}

func (t *task) end(code int) {
	t.mu.Lock()
	if t.ended {
		t.mu.Unlock()
		return
	}
	t.ended, t.code = true, code
	if t.done != nil {
		close(t.done)
	}
	f := t.notify
	t.notify = nil
	t.mu.Unlock()
	if f != nil {
		f(&driver.ExitResult{ExitCode: code}, nil)
	}
}

// wait is the channel closed when the task ends, made on first use.
func (t *task) wait() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.done == nil {
		t.done = make(chan struct{})
		if t.ended {
			close(t.done)
		}
	}
	return t.done
}

// New makes a null driver.
func New() *Driver { return &Driver{tasks: map[string]*task{}} }

var (
	_ driver.Driver       = (*Driver)(nil)
	_ driver.ExitNotifier = (*Driver)(nil)
)

// Name implements driver.Driver.
func (d *Driver) Name() string { return Name }

// Fingerprint implements driver.Driver: always available.
func (d *Driver) Fingerprint(context.Context) api.DriverInfo {
	return api.DriverInfo{Detected: true, Healthy: true, Version: "1", Isolation: "none: tasks are pretended, nothing runs"}
}

// parseExit reads "exit <duration> [code]".
func parseExit(cmd string) (time.Duration, int, bool, error) {
	f := strings.Fields(cmd)
	if len(f) == 0 {
		return 0, 0, false, nil
	}
	if f[0] != "exit" || len(f) > 3 || len(f) < 2 {
		return 0, 0, false, fmt.Errorf("null driver: command %q: use \"exit <duration> [code]\" or none", cmd)
	}
	d, err := time.ParseDuration(f[1])
	if err != nil {
		return 0, 0, false, fmt.Errorf("null driver: command %q: %v", cmd, err)
	}
	code := 0
	if len(f) == 3 {
		if code, err = strconv.Atoi(f[2]); err != nil {
			return 0, 0, false, fmt.Errorf("null driver: exit code %q: %v", f[2], err)
		}
	}
	return d, code, true, nil
}

// Start implements driver.Driver.
func (d *Driver) Start(_ context.Context, cfg *driver.TaskConfig) (*driver.Handle, error) {
	after, code, exits, err := parseExit(cfg.Task.Config.Command)
	if err != nil {
		return nil, err
	}
	t := &task{}
	id := uuid.NewString()
	d.mu.Lock()
	d.tasks[id] = t
	d.mu.Unlock()
	if exits {
		time.AfterFunc(after, func() { t.end(code) })
	}
	return &driver.Handle{Driver: Name, ID: id, AllocID: cfg.AllocID, Task: cfg.Task.Name, Started: time.Now(), Running: true}, nil
}

func (d *Driver) get(h *driver.Handle) (*task, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	t := d.tasks[h.ID]
	if t == nil {
		return nil, driver.ErrTaskNotFound
	}
	return t, nil
}

// Wait implements driver.Driver.
func (d *Driver) Wait(ctx context.Context, h *driver.Handle) (*driver.ExitResult, error) {
	t, err := d.get(h)
	if err != nil {
		return nil, err
	}
	select {
	case <-t.wait():
		t.mu.Lock()
		defer t.mu.Unlock()
		return &driver.ExitResult{ExitCode: t.code}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// NotifyExit implements driver.ExitNotifier: f is called as the task
// ends (stopped, destroyed, or its "exit" command's time is up), with no
// goroutine waiting for it meanwhile.
func (d *Driver) NotifyExit(h *driver.Handle, f func(*driver.ExitResult, error)) {
	t, err := d.get(h)
	if err != nil {
		f(nil, err)
		return
	}
	t.mu.Lock()
	if !t.ended {
		t.notify = f
		t.mu.Unlock()
		return
	}
	code := t.code
	t.mu.Unlock()
	f(&driver.ExitResult{ExitCode: code}, nil)
}

// Stop implements driver.Driver.
func (d *Driver) Stop(_ context.Context, h *driver.Handle, _ time.Duration) error {
	t, err := d.get(h)
	if err != nil {
		return err
	}
	t.end(143)
	return nil
}

// Destroy implements driver.Driver.
func (d *Driver) Destroy(_ context.Context, h *driver.Handle) error {
	d.mu.Lock()
	if t := d.tasks[h.ID]; t != nil {
		t.end(137)
		delete(d.tasks, h.ID)
	}
	d.mu.Unlock()
	return nil
}

// Recover implements driver.Driver: pretend tasks die with the agent.
func (d *Driver) Recover(context.Context, string) ([]*driver.Handle, error) { return nil, nil }

// Running counts the tasks currently held.
func (d *Driver) Running() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, t := range d.tasks {
		t.mu.Lock()
		if !t.ended {
			n++
		}
		t.mu.Unlock()
	}
	return n
}
