package docker

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/driver"
)

func newDriver(t *testing.T) *Driver {
	t.Helper()
	d, err := New(Config{PullTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// task describes a demo-app task on node; args replace the image's CMD.
func task(node string, args ...string) *driver.TaskConfig {
	return &driver.TaskConfig{
		NodeID:    node,
		AllocID:   randomHex(16),
		Namespace: "default",
		Job:       "demo",
		Group:     "g",
		Task: &api.Task{
			Name:      "main",
			Driver:    Name,
			Config:    api.TaskConfig{Image: testImage, Args: args},
			Resources: api.Resources{CPU: 500, Memory: 64},
		},
		Resources:   &api.AllocatedResources{CPU: 500, Memory: 64},
		BindAddress: "127.0.0.1",
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
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

func TestFingerprintHealthy(t *testing.T) {
	d := newDriver(t)
	info := d.Fingerprint(testCtx(t))
	if !info.Detected || !info.Healthy || info.Version == "" {
		t.Fatalf("fingerprint of the local engine: %+v", info)
	}
	if !strings.Contains(info.Isolation, "cgroup") {
		t.Errorf("isolation does not describe cgroups: %q", info.Isolation)
	}
	t.Logf("docker %s: %s", info.Version, info.Isolation)
}

func TestFingerprintUnreachableEngine(t *testing.T) {
	sock := "unix:///nonexistent/gantry-" + runID + ".sock"
	d, err := New(Config{Host: sock})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	info := d.Fingerprint(testCtx(t))
	if info.Detected || info.Healthy {
		t.Fatalf("engine that does not exist detected: %+v", info)
	}
	want := "docker engine at " + sock + " does not answer: "
	if !strings.HasPrefix(info.Reason, want) {
		t.Fatalf("reason %q, want it to start with %q", info.Reason, want)
	}
}

// getRoot asks the demo app for / until it answers; the container needs a
// moment to listen.
func getRoot(t *testing.T, ctx context.Context, port int) map[string]any {
	t.Helper()
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	var last error
	for ctx.Err() == nil {
		resp, err := http.Get(url)
		if err == nil {
			var body map[string]any
			err = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			if err == nil && resp.StatusCode == http.StatusOK {
				return body
			}
			err = fmt.Errorf("status %s, decode: %v", resp.Status, err)
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("GET %s: %v", url, last)
	return nil
}

func TestServiceThroughHostPortAndGracefulStop(t *testing.T) {
	d := newDriver(t)
	ctx := testCtx(t)
	cfg := task(testNode)
	port := freePort(t)
	cfg.Task.Config.Ports = []api.PortSpec{{Name: "http", To: 8080}}
	cfg.Resources.Ports = []api.AllocatedPort{{Name: "http", Host: port, To: 8080}}
	h := start(t, d, cfg)
	if !h.Running || h.ID == "" || h.AllocID != cfg.AllocID || h.Task != "main" || h.Started.IsZero() {
		t.Fatalf("handle after start: %+v", h)
	}

	body := getRoot(t, ctx, port)
	if body["alloc_id"] != cfg.AllocID {
		t.Errorf("the app sees GANTRY_ALLOC_ID %v, want %s", body["alloc_id"], cfg.AllocID)
	}

	// The demo app exits 0 on SIGTERM; a SIGKILL would give 137.
	if err := d.Stop(ctx, h, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	res := wait(t, d, h)
	if !res.Successful() {
		t.Fatalf("stopped with grace, want a clean exit after SIGTERM, got %+v", res)
	}
	if err := d.Stop(ctx, h, time.Second); err != nil {
		t.Errorf("stopping an exited container: %v", err)
	}
	if err := d.Destroy(ctx, h); err != nil {
		t.Fatal(err)
	}
	if err := d.Destroy(ctx, h); err != nil {
		t.Errorf("destroying a removed container: %v", err)
	}
	if _, err := d.Wait(ctx, h); !errors.Is(err, driver.ErrTaskNotFound) {
		t.Errorf("wait on a removed container: %v, want ErrTaskNotFound", err)
	}
}

func TestKillGivesNonZeroExit(t *testing.T) {
	d := newDriver(t)
	ctx := testCtx(t)
	h := start(t, d, task(testNode))
	if _, err := d.cli.ContainerKill(ctx, h.ID, client.ContainerKillOptions{Signal: "KILL"}); err != nil {
		t.Fatal(err)
	}
	res := wait(t, d, h)
	if res.Successful() || res.ExitCode != 128+int(syscall.SIGKILL) {
		t.Fatalf("after docker kill: %+v, want exit code 137", res)
	}
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

func TestLogs(t *testing.T) {
	d := newDriver(t)
	h := start(t, d, task(testNode, "batch", "--steps", "5", "--interval", "10ms", "--exit-code", "0"))
	if res := wait(t, d, h); !res.Successful() {
		t.Fatalf("batch: %+v", res)
	}
	id := h.AllocID

	stdout := logs(t, d, h, driver.LogOptions{})
	want := ""
	for i := 1; i <= 5; i++ {
		want += fmt.Sprintf("step %d/5 alloc=%s\n", i, id)
	}
	want += "done, exiting 0\n"
	if stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", stdout, want)
	}
	stderr := logs(t, d, h, driver.LogOptions{Stderr: true})
	if stderr != "progress 1/5\nprogress 2/5\nprogress 3/5\nprogress 4/5\nprogress 5/5\n" {
		t.Errorf("stderr:\n%s", stderr)
	}
	// The engine's tail would count both streams; ours counts the one asked.
	if got := logs(t, d, h, driver.LogOptions{Tail: 2}); got != "step 5/5 alloc="+id+"\ndone, exiting 0\n" {
		t.Errorf("stdout tail 2: %q", got)
	}
	if got := logs(t, d, h, driver.LogOptions{Stderr: true, Tail: 2}); got != "progress 4/5\nprogress 5/5\n" {
		t.Errorf("stderr tail 2: %q", got)
	}
	if got := logs(t, d, h, driver.LogOptions{Stderr: true, Tail: 100}); got != stderr {
		t.Errorf("stderr tail 100: %q", got)
	}
	// Both streams (issue 15: the default of alloc logs), interleaved as
	// written: every line of each, each stream in its order, stdout's
	// steps between stderr's progress lines.
	both := logs(t, d, h, driver.LogOptions{Both: true, Stderr: true})
	if !interleaves(both, stdout, stderr) || !strings.Contains(both, "progress 1/5\nstep 1/5") && !strings.Contains(both, "step 1/5 alloc="+id+"\nprogress 1/5") {
		t.Errorf("both streams:\n%s", both)
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

func TestLogsFollow(t *testing.T) {
	d := newDriver(t)
	h := start(t, d, task(testNode, "batch", "--steps", "4", "--interval", "300ms"))

	// Tail 1 and follow: whatever is there already, then the rest, each
	// line once, until the container exits.
	got := logs(t, d, h, driver.LogOptions{Stderr: true, Follow: true, Tail: 1})
	lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	if lines[len(lines)-1] != "progress 4/4" {
		t.Fatalf("followed stderr ends with %q, want progress 4/4 (all: %q)", lines[len(lines)-1], got)
	}
	for i := 1; i < len(lines); i++ {
		var a, b int
		fmt.Sscanf(lines[i-1], "progress %d/4", &a)
		fmt.Sscanf(lines[i], "progress %d/4", &b)
		if b != a+1 {
			t.Fatalf("followed stderr skips or repeats a line: %q", got)
		}
	}

	// Follow without tail reads the whole stream.
	all := logs(t, d, h, driver.LogOptions{Follow: true})
	if !strings.HasPrefix(all, "step 1/4") || !strings.HasSuffix(all, "done, exiting 0\n") {
		t.Errorf("followed stdout: %q", all)
	}
}

func TestExec(t *testing.T) {
	d := newDriver(t)
	ctx := testCtx(t)
	h := start(t, d, task(testNode))

	var out, errb bytes.Buffer
	code, err := d.Exec(ctx, h, &driver.ExecRequest{
		Cmd:    []string{"/demo-app", "batch", "--steps", "1", "--exit-code", "3"},
		Stdout: &out, Stderr: &errb,
	})
	if err != nil {
		t.Fatal(err)
	}
	if code != 3 {
		t.Errorf("exit code %d, want 3", code)
	}
	if !strings.Contains(out.String(), "step 1/1") || strings.Contains(out.String(), "progress") {
		t.Errorf("stdout %q", out.String())
	}
	if errb.String() != "progress 1/1\n" {
		t.Errorf("stderr %q", errb.String())
	}

	out.Reset()
	code, err = d.Exec(ctx, h, &driver.ExecRequest{
		Cmd:   []string{"/demo-app", "cat"},
		Stdin: strings.NewReader("through stdin\n"), Stdout: &out,
	})
	if err != nil || code != 0 || out.String() != "through stdin\n" {
		t.Errorf("exec with stdin: code %d err %v out %q", code, err, out.String())
	}

	code, err = d.Exec(ctx, h, &driver.ExecRequest{Cmd: []string{"/no/such/program"}})
	if err == nil && code == 0 {
		t.Errorf("exec of a missing program succeeded")
	}
}

func TestExecTTYWithResize(t *testing.T) {
	d := newDriver(t)
	ctx := testCtx(t)
	h := start(t, d, task(testNode))

	pr, pw := io.Pipe()
	resize := make(chan driver.TermSize, 1)
	type result struct {
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		code, err := d.Exec(ctx, h, &driver.ExecRequest{
			Cmd: []string{"/demo-app", "tty", "--wait-winch"}, TTY: true,
			Stdout: pw, Resize: resize,
		})
		pw.Close()
		done <- result{code, err}
	}()
	sc := bufio.NewScanner(pr)
	var lines []string
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		lines = append(lines, line)
		if strings.HasPrefix(line, "tty=") {
			if !strings.HasPrefix(line, "tty=true") {
				t.Errorf("the command does not see a terminal: %q", line)
			}
			// It listens for SIGWINCH before it prints, so the resize
			// cannot be missed.
			resize <- driver.TermSize{Width: 123, Height: 45}
		}
	}
	r := <-done
	if r.err != nil || r.code != 0 {
		t.Fatalf("tty exec: code %d err %v", r.code, r.err)
	}
	if len(lines) < 2 || lines[len(lines)-1] != "resized rows=45 cols=123" {
		t.Fatalf("tty exec output %q, want the new size last", lines)
	}
}

func TestRecover(t *testing.T) {
	d := newDriver(t)
	ctx := testCtx(t)
	node := testNode + "-recover"
	running := start(t, d, task(node))
	exited := start(t, d, task(node, "batch", "--steps", "1", "--exit-code", "2"))
	if res := wait(t, d, exited); res.ExitCode != 2 {
		t.Fatalf("batch exit %+v", res)
	}
	start(t, d, task(testNode+"-other"))

	// A new driver, as after an agent restart.
	hs, err := newDriver(t).Recover(ctx, node)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]*driver.Handle{}
	for _, h := range hs {
		byID[h.ID] = h
	}
	if len(hs) != 2 || byID[running.ID] == nil || byID[exited.ID] == nil {
		t.Fatalf("recovered %d handles %+v, want exactly the two of the node", len(hs), hs)
	}
	if r := byID[running.ID]; !r.Running || r.AllocID != running.AllocID || r.Task != "main" {
		t.Errorf("running container recovered as %+v", r)
	}
	if r := byID[exited.ID]; r.Running || r.AllocID != exited.AllocID {
		t.Errorf("exited container recovered as %+v", r)
	}
	if res := wait(t, d, byID[exited.ID]); res.ExitCode != 2 {
		t.Errorf("exit status of a recovered container: %+v", res)
	}
}

func TestAbsentImage(t *testing.T) {
	d := newDriver(t)
	cfg := task(testNode)
	cfg.Task.Config.Image = "gantry-absent-" + runID + ":latest"
	_, err := d.Start(testCtx(t), cfg)
	if !errors.Is(err, driver.ErrImageNotFound) {
		t.Fatalf("start with an absent image: %v, want ErrImageNotFound", err)
	}
	want := `image "` + cfg.Task.Config.Image + `" is not on this node and cannot be pulled (`
	if !strings.HasPrefix(err.Error(), want) {
		t.Errorf("message %q, want it to start with %q", err, want)
	}
	t.Log(err)
}

func TestHostPortInUse(t *testing.T) {
	d := newDriver(t)
	ctx := testCtx(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	cfg := task(testNode)
	cfg.Resources.Ports = []api.AllocatedPort{{Name: "http", Host: port, To: 8080}}
	h, err := d.Start(ctx, cfg)
	if err == nil {
		d.Destroy(ctx, h)
		t.Fatal("start on a taken host port succeeded")
	}
	var pe *PortInUseError
	if !errors.As(err, &pe) || pe.Host != port || pe.Name != "http" {
		t.Fatalf("error %v, want a PortInUseError for port %d", err, port)
	}
	if !strings.Contains(err.Error(), fmt.Sprintf("host port %d", port)) {
		t.Errorf("message does not name the port: %v", err)
	}
	if _, err := d.cli.ContainerInspect(ctx, ContainerName(cfg), client.ContainerInspectOptions{}); err == nil {
		t.Errorf("the container that failed to start was left behind")
	}
}

func TestStartAgainAdoptsOrReplaces(t *testing.T) {
	d := newDriver(t)
	ctx := testCtx(t)
	cfg := task(testNode)
	h1 := start(t, d, cfg)

	// The agent retries a Start whose answer it lost: same container.
	h2, err := d.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if h2.ID != h1.ID {
		t.Fatalf("second start made container %s beside running %s", h2.ID, h1.ID)
	}

	// A leftover that is not running is replaced.
	if err := d.Stop(ctx, h1, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	h3 := start(t, d, cfg)
	if h3.ID == h1.ID || !h3.Running {
		t.Fatalf("start over an exited container gave %+v", h3)
	}
	if _, err := d.cli.ContainerInspect(ctx, h1.ID, client.ContainerInspectOptions{}); err == nil {
		t.Errorf("the exited container %s was left beside its replacement", h1.ID)
	}
}

func TestHostPortHeldByAnotherContainer(t *testing.T) {
	d := newDriver(t)
	ctx := testCtx(t)
	port := freePort(t)
	first := task(testNode)
	first.Resources.Ports = []api.AllocatedPort{{Name: "http", Host: port, To: 8080}}
	start(t, d, first)

	second := task(testNode)
	second.Resources.Ports = []api.AllocatedPort{{Name: "web", Host: port, To: 8080}}
	h, err := d.Start(ctx, second)
	if err == nil {
		d.Destroy(ctx, h)
		t.Fatal("two containers started on one host port")
	}
	var pe *PortInUseError
	if !errors.As(err, &pe) || pe.Host != port || pe.Name != "web" {
		t.Fatalf("error %v, want a PortInUseError for port %d", err, port)
	}
	t.Log(err)
}
