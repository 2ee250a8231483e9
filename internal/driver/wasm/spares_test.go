package wasm

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
)

// runnerPidFor is the pid of the spare runner waiting with ready as its
// ready file, or 0.
func runnerPidFor(ready string) int {
	return procWith(func(args []string) bool {
		return len(args) > 2 && args[1] == RunnerCommand && args[2] == spareFlag && args[len(args)-1] == ready
	})
}

// procWith is the pid of a process whose arguments match, or 0.
func procWith(match func(args []string) bool) int {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if match(strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")) {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
			return pid
		}
	}
	return 0
}

// TestSpareRunner: with Config.Spares, a start of a module leaves a spare
// runner with that module compiled once the task's runner compiled it; the
// next start of the module takes it (the task's process is the spare's)
// and runs exactly as a fresh runner would: arguments, environment,
// mount, result file, exit code. A spare stopped (SIGTERM) while it waits
// ends, and the next start runs anew. Close lets the last spare go.
func TestSpareRunner(t *testing.T) {
	r := newRig(t)
	r.d.cfg.Spares = 1
	t.Cleanup(r.d.Close)
	gone := func(pid int, failure string) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err != nil {
				return
			}
			if b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); strings.Contains(string(b), ") Z ") {
				return
			}
			if time.Now().After(deadline) {
				t.Fatal(failure)
			}
		}
	}
	runIO := func(i int, wantPid int) {
		t.Helper()
		cfg := r.ioTask(t)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		h, err := r.d.Start(ctx, cfg)
		if err != nil {
			t.Fatalf("start %d: %v", i, err)
		}
		if wantPid != 0 && h.Pid != wantPid {
			t.Errorf("start %d: the task's process is %d, want the spare runner %d", i, h.Pid, wantPid)
		}
		res, err := r.d.Wait(ctx, h)
		if err != nil || !res.Successful() {
			t.Fatalf("run %d: %+v %v\nstderr: %s", i, res, err, logOf(t, cfg, "stderr"))
		}
		checkIO(t, cfg)
	}
	waitSpare := func(what string) int {
		t.Helper()
		_, pid := readySpare(t, r, what)
		return pid
	}

	runIO(0, 0)
	pid := waitSpare("after the first start")
	runIO(1, pid)
	pid = waitSpare("after a start that took the spare")

	// A spare stopped while it waits ends; the next start runs anew.
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	gone(pid, "the spare runner still runs after SIGTERM")
	runIO(2, 0)
	pid = waitSpare("after a start with no spare")

	r.d.Close()
	gone(pid, "the spare runner still runs after Close")
	if readies, _ := filepath.Glob(filepath.Join(r.d.cfg.SpareDir, "*.ready")); len(readies) != 0 {
		t.Errorf("ready files left after Close: %v", readies)
	}
}

// readySpare waits until exactly one spare runner of r's driver is ready
// and returns its ready file and pid.
func readySpare(t *testing.T, r *rig, what string) (string, int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		readies, _ := filepath.Glob(filepath.Join(r.d.cfg.SpareDir, "*.ready"))
		if len(readies) == 1 {
			if pid := runnerPidFor(readies[0]); pid != 0 {
				return readies[0], pid
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no spare runner ready (ready files %v)", what, readies)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAdoptingStartLeavesTheSpare: a Start of a task an earlier Start
// left running adopts it, and neither takes nor loses the spare waiting
// for its module.
func TestAdoptingStartLeavesTheSpare(t *testing.T) {
	r := newRig(t)
	r.d.cfg.Spares = 1
	t.Cleanup(r.d.Close)
	cfg := r.config(api.Task{Config: api.TaskConfig{Module: modules["loop"]}})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	h, err := r.d.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.d.Stop(context.Background(), h, time.Second)
		r.d.Destroy(context.Background(), h)
	})
	ready, pid := readySpare(t, r, "after the loop's start")
	again, err := r.d.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("start again: %v", err)
	}
	if again.Pid != h.Pid {
		t.Fatalf("the second start runs pid %d, want the running task's %d adopted", again.Pid, h.Pid)
	}
	if _, err := os.Stat(ready); err != nil || runnerPidFor(ready) != pid {
		t.Fatalf("the adopting start took or lost the spare (ready file: %v)", err)
	}
}

// TestSpareRoom: a spare needs the floor plus eight bytes per byte of its
// module available.
func TestSpareRoom(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		avail uint64
		size  int64
		want  bool
	}{
		{avail: 0, size: 0, want: false},
		{avail: spareFloor - 1, size: 0, want: false},
		{avail: spareFloor, size: 0, want: true},
		{avail: spareFloor + 88*mib, size: 11 * mib, want: true},
		{avail: spareFloor + 88*mib - 1, size: 11 * mib, want: false},
		{avail: 64 << 30, size: 1 << 30, want: true},
		{avail: 64 << 30, size: -1, want: false},
	} {
		if got := spareRoom(tc.avail, tc.size); got != tc.want {
			t.Errorf("spareRoom(%d, %d) = %v, want %v", tc.avail, tc.size, got, tc.want)
		}
	}
}

// TestNoSpareWithoutRoom: where the node's available memory is short of
// what spareRoom asks, or cannot be read, a start leaves no spare; with
// room it does.
func TestNoSpareWithoutRoom(t *testing.T) {
	for _, tc := range []struct {
		name  string
		avail uint64
		ok    bool
		spare bool
	}{
		{name: "short", avail: 256 << 20, ok: true},
		{name: "unknown", avail: 64 << 30, ok: false},
		{name: "room", avail: 64 << 30, ok: true, spare: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			r.d.cfg.Spares = 1
			r.d.cfg.MemAvailable = func() (uint64, bool) { return tc.avail, tc.ok }
			t.Cleanup(r.d.Close)
			r.d.startSpare(strings.Repeat("a", 64), modules["io"])
			r.d.pool.mu.Lock()
			n := len(r.d.pool.spares)
			r.d.pool.mu.Unlock()
			if got := n == 1; got != tc.spare {
				t.Fatalf("%d spares after startSpare with %d bytes available (readable: %v), want a spare: %v", n, tc.avail, tc.ok, tc.spare)
			}
		})
	}
}
