package exec

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/driver"
)

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func decodeTaskConfig(b []byte) (*driver.TaskConfig, error) {
	var c driver.TaskConfig
	return &c, json.Unmarshal(b, &c)
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func newDriver(t *testing.T, root string, change ...func(*Config)) *Driver {
	t.Helper()
	cfg := Config{AllocRoot: root}
	for _, c := range change {
		c(&cfg)
	}
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// task runs command with args in a fresh allocation under root.
func task(root, node, command string, args ...string) *driver.TaskConfig {
	alloc := randomHex(16)
	return &driver.TaskConfig{
		NodeID:    node,
		AllocID:   alloc,
		Namespace: "default",
		Job:       "demo",
		Group:     "g",
		Task: &api.Task{
			Name:      "main",
			Driver:    Name,
			Config:    api.TaskConfig{Command: command, Args: args},
			Resources: api.Resources{CPU: 200, Memory: 64},
		},
		Resources: &api.AllocatedResources{CPU: 200, Memory: 64, Ports: []api.AllocatedPort{{Name: "http", Host: 23456}}},
		AllocDir:  filepath.Join(root, alloc),
	}
}

func start(t *testing.T, d *Driver, cfg *driver.TaskConfig) *driver.Handle {
	t.Helper()
	h, err := d.Start(testCtx(t), cfg)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		if err := d.Destroy(context.Background(), h); err != nil {
			t.Errorf("destroy: %v", err)
		}
	})
	return h
}

func wait(t *testing.T, d *Driver, h *driver.Handle) *driver.ExitResult {
	t.Helper()
	res, err := d.Wait(testCtx(t), h)
	if err != nil {
		t.Fatalf("wait: %v", err)
	}
	return res
}

func logs(t *testing.T, d *Driver, h *driver.Handle, opts driver.LogOptions) string {
	t.Helper()
	rc, err := d.Logs(testCtx(t), h, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestFingerprint(t *testing.T) {
	d := newDriver(t, t.TempDir())
	info := d.Fingerprint(testCtx(t))
	if !info.Detected || !info.Healthy {
		t.Fatalf("fingerprint: %+v", info)
	}
	if ok, why := d.LimitsEnforced(); ok {
		if !strings.Contains(info.Isolation, "limits enforced with a cgroup v2") {
			t.Errorf("isolation %q", info.Isolation)
		}
	} else if !strings.Contains(info.Isolation, "cpu and memory limits are NOT enforced: "+why) {
		t.Errorf("isolation %q does not say limits are not enforced and why", info.Isolation)
	}
	t.Log(info.Isolation)

	bad := newDriver(t, t.TempDir(), func(c *Config) { c.ExecutorPath = "/nonexistent/gantry" })
	if info := bad.Fingerprint(testCtx(t)); info.Healthy || !strings.Contains(info.Reason, "/nonexistent/gantry") {
		t.Errorf("fingerprint with a missing executor: %+v", info)
	}
}

func TestBatchExitCodeLogsAndEnvironment(t *testing.T) {
	root := t.TempDir()
	d := newDriver(t, root)
	cfg := task(root, "n1", demoApp, "batch", "--steps", "3", "--interval", "10ms", "--exit-code", "3")
	h := start(t, d, cfg)
	if !h.Running || h.Pid == 0 || h.AllocID != cfg.AllocID || h.Task != "main" {
		t.Fatalf("handle %+v", h)
	}
	res := wait(t, d, h)
	if res.ExitCode != 3 || res.Signal != 0 || res.Err != nil {
		t.Fatalf("exit %+v, want code 3", res)
	}
	want := ""
	for i := 1; i <= 3; i++ {
		want += fmt.Sprintf("step %d/3 alloc=%s\n", i, cfg.AllocID)
	}
	want += "done, exiting 3\n"
	if got := logs(t, d, h, driver.LogOptions{}); got != want {
		t.Errorf("stdout %q, want %q", got, want)
	}
	if got := logs(t, d, h, driver.LogOptions{Stderr: true}); got != "progress 1/3\nprogress 2/3\nprogress 3/3\n" {
		t.Errorf("stderr %q", got)
	}
	if got := logs(t, d, h, driver.LogOptions{Stderr: true, Tail: 1}); got != "progress 3/3\n" {
		t.Errorf("stderr tail 1 %q", got)
	}
	// Both streams (issue 15: the default of alloc logs): every line of
	// each, each stream in its own order.
	if got := logs(t, d, h, driver.LogOptions{Both: true}); !interleaves(got, want, "progress 1/3\nprogress 2/3\nprogress 3/3\n") {
		t.Errorf("both streams %q", got)
	}
	if got := logs(t, d, h, driver.LogOptions{Tail: 2, Follow: true}); got != fmt.Sprintf("step 3/3 alloc=%s\ndone, exiting 3\n", cfg.AllocID) {
		t.Errorf("stdout tail 2 of an ended task, followed: %q", got)
	}

	// The task's environment and directory.
	cfg = task(root, "n1", "sh", "-c", `echo "port=$GANTRY_PORT_HTTP home=$HOME cuda=[${CUDA_VISIBLE_DEVICES-unset}]"; pwd`)
	h = start(t, d, cfg)
	if res := wait(t, d, h); !res.Successful() {
		t.Fatalf("exit %+v", res)
	}
	dir := filepath.Join(cfg.AllocDir, "main")
	if got := logs(t, d, h, driver.LogOptions{}); got != "port=23456 home="+dir+" cuda=[]\n"+dir+"\n" {
		t.Errorf("environment: %q", got)
	}
}

func TestStartFailures(t *testing.T) {
	root := t.TempDir()
	d := newDriver(t, root)
	_, err := d.Start(testCtx(t), task(root, "n1", "no-such-program-"+randomHex(4)))
	if err == nil || !strings.Contains(err.Error(), "not found in PATH") {
		t.Errorf("start of a missing program: %v", err)
	}
	cfg := task(root, "n1", "true")
	cfg.AllocDir = filepath.Join(t.TempDir(), "elsewhere")
	if _, err := d.Start(testCtx(t), cfg); err == nil || !strings.Contains(err.Error(), "not directly under") {
		t.Errorf("start outside the alloc root: %v", err)
	}
	// Exists but cannot be executed: the executor reports the failure.
	cfg = task(root, "n1", "/etc/hostname")
	if _, err := d.Start(testCtx(t), cfg); err == nil {
		t.Errorf("start of a non-executable file succeeded")
	}
}

func TestLogsRotate(t *testing.T) {
	root := t.TempDir()
	d := newDriver(t, root, func(c *Config) { c.LogMaxBytes, c.LogMaxFiles = 2048, 3 })
	script := `i=0; while [ $i -lt 1000 ]; do echo "line $i ......................................"; i=$((i+1)); done`
	cfg := task(root, "n1", "sh", "-c", script)
	h := start(t, d, cfg)
	if res := wait(t, d, h); !res.Successful() {
		t.Fatalf("exit %+v", res)
	}
	logDir := filepath.Join(cfg.AllocDir, "logs")
	idx := logIndexes(logDir, "main.stdout")
	if len(idx) == 0 || len(idx) > 3 || idx[len(idx)-1] < 1 {
		t.Fatalf("stdout files %v: want rotation and at most 3 kept", idx)
	}
	for _, i := range idx {
		if st, _ := os.Stat(filepath.Join(logDir, "main.stdout."+strconv.Itoa(i))); st.Size() > 2048+64*1024 {
			t.Errorf("file %d has %d bytes", i, st.Size())
		}
	}
	got := logs(t, d, h, driver.LogOptions{Tail: 3})
	if got != "line 997 ......................................\nline 998 ......................................\nline 999 ......................................\n" {
		t.Errorf("tail 3: %q", got)
	}
	// What is kept is an unbroken run of lines ending with the last.
	lines := strings.Split(strings.TrimSuffix(logs(t, d, h, driver.LogOptions{}), "\n"), "\n")
	var first int
	fmt.Sscanf(lines[0], "line %d", &first)
	for k, l := range lines {
		if l != fmt.Sprintf("line %d ......................................", first+k) {
			t.Fatalf("line %d of the kept logs is %q", k, l)
		}
	}
	if first+len(lines) != 1000 || first == 0 {
		t.Errorf("kept lines %d..%d, want a suffix of 0..999 without the oldest", first, first+len(lines)-1)
	}
}

func TestLogsFollowWhileRunning(t *testing.T) {
	root := t.TempDir()
	d := newDriver(t, root)
	h := start(t, d, task(root, "n1", demoApp, "batch", "--steps", "4", "--interval", "200ms"))
	got := logs(t, d, h, driver.LogOptions{Stderr: true, Follow: true})
	if got != "progress 1/4\nprogress 2/4\nprogress 3/4\nprogress 4/4\n" {
		t.Errorf("followed stderr %q", got)
	}
}

func processGone(pid int) bool {
	_, zombie, err := procStart(pid)
	return err != nil || zombie
}

func TestStopHonoursSIGTERM(t *testing.T) {
	root := t.TempDir()
	d := newDriver(t, root)
	h := start(t, d, task(root, "n1", demoApp, "batch", "--steps", "1000", "--interval", "1s"))
	// The app handles SIGTERM from its first line on.
	for ctx := testCtx(t); ctx.Err() == nil && !strings.Contains(logs(t, d, h, driver.LogOptions{}), "step 1/"); time.Sleep(20 * time.Millisecond) {
	}
	if err := d.Stop(testCtx(t), h, time.Minute); err != nil {
		t.Fatal(err)
	}
	// The demo app exits 143 by itself on SIGTERM; SIGKILL would show as
	// signal 9.
	if res := wait(t, d, h); res.ExitCode != 143 || res.Signal != 0 {
		t.Fatalf("exit %+v, want 143 from the app's own SIGTERM handling", res)
	}
	if out := logs(t, d, h, driver.LogOptions{}); !strings.Contains(out, "terminated at step") {
		t.Errorf("stdout %q", out)
	}
}

func TestStopKillsTheWholeGroup(t *testing.T) {
	root := t.TempDir()
	d := newDriver(t, root)
	// The shell and its child ignore SIGTERM: only the SIGKILL after grace
	// ends them, and it must reach the child too.
	cfg := task(root, "n1", "sh", "-c", `trap "" TERM; sleep 1000 & echo $! > child.pid; echo started; wait`)
	h := start(t, d, cfg)
	pidFile := filepath.Join(cfg.AllocDir, "main", "child.pid")
	var child int
	for ctx := testCtx(t); child == 0 && ctx.Err() == nil; time.Sleep(20 * time.Millisecond) {
		b, _ := os.ReadFile(pidFile)
		child, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	if child == 0 {
		t.Fatal("the task never wrote its child's pid")
	}
	if err := d.Stop(testCtx(t), h, 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	res := wait(t, d, h)
	if res.Signal != int(syscall.SIGKILL) || res.ExitCode != 128+int(syscall.SIGKILL) {
		t.Errorf("exit %+v, want SIGKILL", res)
	}
	for ctx := testCtx(t); !processGone(child) && ctx.Err() == nil; time.Sleep(20 * time.Millisecond) {
	}
	if !processGone(child) {
		t.Errorf("child %d of the task survived Stop", child)
	}
}

func TestRecoverAfterAgentKilled(t *testing.T) {
	root := t.TempDir()
	node := "n-" + randomHex(4)
	cfg := task(root, node, demoApp, "batch", "--steps", "5", "--interval", "300ms", "--exit-code", "7")
	raw, _ := json.Marshal(cfg)
	arg, _ := json.Marshal(agentRun{AllocRoot: root, Config: raw})

	// An agent process starts the task and is killed -9.
	self, _ := os.Executable()
	agent := osexec.Command(self, "-test.run=^$")
	agent.Env = append(os.Environ(), envAgent+"="+string(arg))
	var out bytes.Buffer
	agent.Stdout, agent.Stderr = &out, &out
	err := agent.Run()
	var ee *osexec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("agent: %v\n%s", err, out.String())
	}
	var started driver.Handle
	if err := json.NewDecoder(bufio.NewReader(&out)).Decode(&started); err != nil {
		t.Fatalf("agent output %q: %v", out.String(), err)
	}

	// Another task of another node must not be recovered.
	d := newDriver(t, root)
	other := start(t, d, task(root, "other-node", "sleep", "1000"))

	// A new driver, as in the restarted agent.
	d2 := newDriver(t, root)
	hs, err := d2.Recover(testCtx(t), node)
	if err != nil {
		t.Fatal(err)
	}
	if len(hs) != 1 || hs[0].ID != started.ID || hs[0].AllocID != cfg.AllocID || hs[0].Task != "main" || hs[0].Pid != started.Pid {
		t.Fatalf("recovered %+v, want the task started by the killed agent %+v", hs, started)
	}
	h := hs[0]
	t.Cleanup(func() { d2.Destroy(context.Background(), h) })
	if !h.Running {
		t.Errorf("recovered task not running")
	}
	if res := wait(t, d2, h); res.ExitCode != 7 || res.Err != nil {
		t.Fatalf("exit status after recovery %+v, want 7", res)
	}
	if got := logs(t, d2, h, driver.LogOptions{Tail: 1}); got != "done, exiting 7\n" {
		t.Errorf("logs after recovery %q", got)
	}
	// Exited tasks are recovered too, as not running.
	hs, _ = d2.Recover(testCtx(t), node)
	if len(hs) != 1 || hs[0].Running {
		t.Errorf("recovered after exit: %+v", hs)
	}
	// Destroy forgets it.
	if err := d2.Destroy(testCtx(t), h); err != nil {
		t.Fatal(err)
	}
	if hs, _ = d2.Recover(testCtx(t), node); len(hs) != 0 {
		t.Errorf("recovered after destroy: %+v", hs)
	}
	if err := d2.Destroy(testCtx(t), h); err != nil {
		t.Errorf("second destroy: %v", err)
	}
	_ = other
}

func TestExecutorKilled(t *testing.T) {
	root := t.TempDir()
	d := newDriver(t, root)
	h := start(t, d, task(root, "n1", "sleep", "1000"))
	st, err := stateOf(h)
	if err != nil {
		t.Fatal(err)
	}
	syscall.Kill(st.ExecutorPid, syscall.SIGKILL)
	syscall.Kill(st.Pid, syscall.SIGKILL)
	res := wait(t, d, h)
	if res.Err == nil || res.Successful() {
		t.Errorf("exit after the executor died: %+v, want an unknown status", res)
	}
}

func TestExec(t *testing.T) {
	root := t.TempDir()
	d := newDriver(t, root)
	cfg := task(root, "n1", "sleep", "1000")
	h := start(t, d, cfg)
	ctx := testCtx(t)

	var out, errb bytes.Buffer
	code, err := d.Exec(ctx, h, &driver.ExecRequest{
		Cmd:    []string{"sh", "-c", `echo out; echo err >&2; pwd; echo "$GANTRY_ALLOC_ID"; exit 4`},
		Stdout: &out, Stderr: &errb,
	})
	if err != nil || code != 4 {
		t.Fatalf("exec: code %d err %v", code, err)
	}
	if want := "out\n" + filepath.Join(cfg.AllocDir, "main") + "\n" + cfg.AllocID + "\n"; out.String() != want {
		t.Errorf("stdout %q, want %q", out.String(), want)
	}
	if errb.String() != "err\n" {
		t.Errorf("stderr %q", errb.String())
	}

	out.Reset()
	code, err = d.Exec(ctx, h, &driver.ExecRequest{Cmd: []string{"cat"}, Stdin: strings.NewReader("in\n"), Stdout: &out})
	if err != nil || code != 0 || out.String() != "in\n" {
		t.Errorf("exec with stdin: code %d err %v out %q", code, err, out.String())
	}

	// With a terminal, and a resize while it runs.
	pr, pw := io.Pipe()
	resize := make(chan driver.TermSize, 1)
	done := make(chan error, 1)
	go func() {
		code, err := d.Exec(ctx, h, &driver.ExecRequest{Cmd: []string{demoApp, "tty", "--wait-winch"}, TTY: true, Stdout: pw, Resize: resize})
		if err == nil && code != 0 {
			err = fmt.Errorf("exit code %d", code)
		}
		pw.Close()
		done <- err
	}()
	var lines []string
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		lines = append(lines, line)
		if strings.HasPrefix(line, "tty=") {
			resize <- driver.TermSize{Width: 99, Height: 33}
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("tty exec: %v", err)
	}
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "tty=true") || lines[1] != "resized rows=33 cols=99" {
		t.Errorf("tty exec output %q", lines)
	}
}

func TestCgroupLimits(t *testing.T) {
	root := t.TempDir()
	d := newDriver(t, root, func(c *Config) { c.CgroupParent = DefaultCgroupParent + "-test-" + randomHex(4) })
	if ok, why := d.LimitsEnforced(); !ok {
		t.Skip("limits are not enforced on this host: " + why)
	}
	t.Cleanup(func() { os.Remove(d.cfg.CgroupParent) })
	cfg := task(root, "n1", "sh", "-c", `cat /proc/self/cgroup; cat "/sys/fs/cgroup$(cut -d: -f3 /proc/self/cgroup)/memory.max" "/sys/fs/cgroup$(cut -d: -f3 /proc/self/cgroup)/cpu.max"`)
	h := start(t, d, cfg)
	if res := wait(t, d, h); !res.Successful() {
		t.Fatalf("exit %+v", res)
	}
	out := logs(t, d, h, driver.LogOptions{})
	if !strings.Contains(out, cfg.AllocID+"-main") || !strings.Contains(out, strconv.Itoa(64<<20)) || !strings.Contains(out, "20000 100000") {
		t.Errorf("the task does not run in its cgroup with its limits:\n%s", out)
	}
	// Past its memory the kernel kills it, and Wait says so.
	cfg = task(root, "n1", "sh", "-c", `x=xxxxxxxxxxxxxxxx; while true; do x="$x$x"; done`)
	cfg.Resources.Memory = 16
	h = start(t, d, cfg)
	if res := wait(t, d, h); !res.OOMKilled {
		t.Errorf("exit %+v, want OOMKilled", res)
	}
}

// interleaves reports whether merged holds exactly the lines of a and b,
// each in its own order.
func interleaves(merged, a, b string) bool {
	la, lb := strings.SplitAfter(a, "\n"), strings.SplitAfter(b, "\n")
	la, lb = la[:len(la)-1], lb[:len(lb)-1]
	for _, l := range strings.SplitAfter(merged, "\n") {
		switch {
		case l == "":
		case len(la) > 0 && l == la[0]:
			la = la[1:]
		case len(lb) > 0 && l == lb[0]:
			lb = lb[1:]
		default:
			return false
		}
	}
	return len(la) == 0 && len(lb) == 0
}
