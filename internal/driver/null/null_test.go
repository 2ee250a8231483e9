package null

import (
	"context"
	"errors"
	"testing"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/driver"
)

func start(t *testing.T, d *Driver) *driver.Handle {
	t.Helper()
	h, err := d.Start(context.Background(), &driver.TaskConfig{AllocID: "a1", Task: &api.Task{Name: "t", Driver: Name}})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestNotifyExit: the exit is called back once, as the task is stopped;
// asked after the end, at once; for a task the driver does not know,
// with ErrTaskNotFound. A Wait still sees the same exit.
func TestNotifyExit(t *testing.T) {
	d := New()
	h := start(t, d)
	var got []int
	d.NotifyExit(h, func(r *driver.ExitResult, err error) {
		if err != nil {
			t.Fatalf("exit called back with %v", err)
		}
		got = append(got, r.ExitCode)
	})
	if len(got) != 0 || d.Running() != 1 {
		t.Fatalf("called back %v before the task ended; %d running", got, d.Running())
	}
	if err := d.Stop(context.Background(), h, 0); err != nil {
		t.Fatal(err)
	}
	if err := d.Stop(context.Background(), h, 0); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != 143 || d.Running() != 0 {
		t.Fatalf("after two stops: called back %v, %d running; want [143] once, none running", got, d.Running())
	}
	d.NotifyExit(h, func(r *driver.ExitResult, _ error) { got = append(got, r.ExitCode) })
	if len(got) != 2 || got[1] != 143 {
		t.Fatalf("asked after the end: called back %v, want 143 at once", got)
	}
	if r, err := d.Wait(context.Background(), h); err != nil || r.ExitCode != 143 {
		t.Fatalf("Wait after the end: %+v, %v", r, err)
	}

	if err := d.Destroy(context.Background(), h); err != nil {
		t.Fatal(err)
	}
	var gone error
	d.NotifyExit(h, func(_ *driver.ExitResult, err error) { gone = err })
	if !errors.Is(gone, driver.ErrTaskNotFound) {
		t.Fatalf("a destroyed task's exit called back with %v, want ErrTaskNotFound", gone)
	}
}

// TestDestroyEndsWaiters: destroying a running task ends a Wait under
// way and a NotifyExit alike, with 137.
func TestDestroyEndsWaiters(t *testing.T) {
	d := New()
	h := start(t, d)
	code := -1
	d.NotifyExit(h, func(r *driver.ExitResult, _ error) { code = r.ExitCode })
	tk, err := d.get(h)
	if err != nil {
		t.Fatal(err)
	}
	waiting := tk.wait() // what a Wait under way selects on
	if err := d.Destroy(context.Background(), h); err != nil {
		t.Fatal(err)
	}
	select {
	case <-waiting:
	default:
		t.Fatal("a Wait under way goes on after the task was destroyed")
	}
	if code != 137 || tk.code != 137 {
		t.Fatalf("destroyed: called back %d, a Wait would return %d; want 137 for both", code, tk.code)
	}
}
