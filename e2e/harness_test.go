// Package e2e drives the built gantry binary against the real Docker
// engine and the real embedded etcd, as a user would.
package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/apiclient"
	"github.com/gantryhq/gantry/internal/lifecycle"
	"github.com/gantryhq/gantry/internal/pki"
)

var (
	gantryBin string // the binary under test
	repoRoot  string
	demoWasm  string // the demo app as a WASI module, built with the image
)

// DemoImage is the local image the tests run; TestMain builds it with
// the same script a new user runs.
const DemoImage = "gantry-demo:latest"

func TestMain(m *testing.M) {
	_, file, _, _ := runtime.Caller(0)
	repoRoot = filepath.Dir(filepath.Dir(file))
	dir, err := os.MkdirTemp("", "gantry-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	gantryBin = filepath.Join(dir, "gantry")
	build := exec.Command("go", "build", "-o", gantryBin, "./cmd/gantry")
	build.Dir = repoRoot
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build gantry:", err)
		os.Exit(1)
	}
	demoWasm = filepath.Join(dir, "demo-app.wasm")
	img := exec.Command(filepath.Join(repoRoot, "scripts", "build-demo-image.sh"), DemoImage)
	img.Env = append(os.Environ(), "GANTRY_DEMO_WASM="+demoWasm)
	img.Stdout, img.Stderr = io.Discard, os.Stderr
	if err := img.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build the demo image (is the Docker engine running?):", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Cluster is a `gantry dev` process with its own data dir and ports.
type Cluster struct {
	t       testing.TB
	DataDir string
	Addr    string // http://127.0.0.1:port
	args    []string
	cmd     *exec.Cmd
	exited  chan struct{} // closed once cmd has exited (its Wait returned)
	log     *bytes.Buffer
	NodeID  string
	cliArgs []string          // given to every CLI call (TLS flags)
	api     *apiclient.Client // for API reads; TLS when secure
	secure  bool
}

// StartDev starts `gantry dev` on free ports and waits until its node is
// ready. extra flags are appended.
func StartDev(t testing.TB, extra ...string) *Cluster {
	t.Helper()
	return startDev(t, extra, nil)
}

// StartDevSecure starts `gantry dev` with TLS flags (and --acl); cliArgs
// are the CLI's TLS flags. Readiness is read from /v1/status, which needs
// no token.
func StartDevSecure(t testing.TB, extra, cliArgs []string) *Cluster {
	t.Helper()
	return startDev(t, extra, cliArgs)
}

func startDev(t testing.TB, extra, cliArgs []string) *Cluster {
	c := &Cluster{t: t, DataDir: t.TempDir(), cliArgs: cliArgs}
	port := freePort(t)
	var tlsCfg *tls.Config
	scheme := "http"
	if cliArgs != nil {
		c.secure = true
		scheme = "https"
		var files pki.Files
		for i := 0; i+1 < len(cliArgs); i += 2 {
			switch cliArgs[i] {
			case "--ca-cert":
				files.CA = cliArgs[i+1]
			case "--client-cert":
				files.Cert = cliArgs[i+1]
			case "--client-key":
				files.Key = cliArgs[i+1]
			}
		}
		cfg, err := files.ClientConfig()
		if err != nil {
			t.Fatal(err)
		}
		tlsCfg = cfg
	}
	setPorts := func(port int) {
		c.Addr = fmt.Sprintf("%s://127.0.0.1:%d", scheme, port)
		c.api = apiclient.New(apiclient.Options{Servers: []string{c.Addr}, TLS: tlsCfg})
		c.args = append([]string{"dev",
			"--data-dir", c.DataDir,
			"--http-addr", fmt.Sprintf("127.0.0.1:%d", port),
			"--agent-addr", fmt.Sprintf("127.0.0.1:%d", freePort(t)),
			"--etcd-client-url", fmt.Sprintf("http://127.0.0.1:%d", freePort(t)),
			"--etcd-peer-url", fmt.Sprintf("http://127.0.0.1:%d", freePort(t)),
			"--node-name", "e2e-" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")),
			"--heartbeat-ttl", "5s",
		}, extra...)
	}
	setPorts(port)
	ready := false
	t.Cleanup(func() {
		// A dev process that never became ready is killed, and its log
		// says why.
		if ready || c.cmd == nil || c.cmd.Process == nil {
			return
		}
		c.cmd.Process.Kill()
		<-c.exited
		t.Logf("gantry dev never became ready; its log:\n%s", c.log.String())
	})
	// The ports were free when freePort asked, but another test's
	// process may take one before gantry dev binds it: then it exits at
	// once naming the address, and it is started again on other ports.
	for attempt := 1; ; attempt++ {
		err := c.start()
		if err == nil {
			break
		}
		if attempt == 3 || !strings.Contains(c.log.String(), "address already in use") {
			t.Fatalf("%v; its log:\n%s", err, c.log.String())
		}
		t.Logf("gantry dev could not bind its ports (attempt %d), trying others in a new data dir: %v", attempt, err)
		c.DataDir = t.TempDir()
		setPorts(freePort(t))
	}
	ready = true
	t.Cleanup(c.Cleanup)
	return c
}

// Start (re)starts the dev process and waits for its node.
func (c *Cluster) Start() {
	c.t.Helper()
	if err := c.start(); err != nil {
		c.t.Fatalf("%v; its log:\n%s", err, c.log.String())
	}
}

// start starts the dev process and waits for its node: an error when the
// process exits first, or when it is not ready within 90 s.
func (c *Cluster) start() error {
	c.t.Helper()
	if err := c.launch(); err != nil {
		return err
	}
	cmd, exited := c.cmd, c.exited
	wait := func(what string, cond func() bool) error {
		deadline := time.Now().Add(90 * time.Second)
		for !cond() {
			select {
			case <-exited:
				return fmt.Errorf("gantry dev exited (%v) while waiting for %s", cmd.ProcessState, what)
			default:
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("timed out after 1m30s waiting for %s", what)
			}
			time.Sleep(100 * time.Millisecond)
		}
		return nil
	}
	if c.secure {
		if err := wait("the server to answer", func() bool {
			var st api.StatusResponse
			return c.GetJSON("/v1/status", &st) == nil && st.Leader
		}); err != nil {
			return err
		}
		return wait("the node to register", func() bool {
			b, err := os.ReadFile(filepath.Join(c.DataDir, "agent", "node-id"))
			c.NodeID = strings.TrimSpace(string(b))
			return err == nil && c.NodeID != "" && strings.Contains(c.log.String(), "node registered")
		})
	}
	return wait("the node to be ready", func() bool {
		var nodes []*api.Node
		if c.GetJSON("/v1/nodes", &nodes) != nil {
			return false
		}
		for _, n := range nodes {
			if n.Status == api.NodeStatusReady {
				c.NodeID = n.ID
				return true
			}
		}
		return false
	})
}

// launch starts the process (gantry with c.args, its output in c.log)
// and reaps it when it exits, closing c.exited: every process a Cluster
// runs is started here, so that Stop and Kill9 can wait on c.exited.
func (c *Cluster) launch() error {
	c.log = &bytes.Buffer{}
	c.cmd = exec.Command(gantryBin, c.args...)
	c.cmd.Stdout, c.cmd.Stderr = c.log, c.log
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.cmd.Start(); err != nil {
		return fmt.Errorf("start gantry %s: %w", c.args[0], err)
	}
	cmd, exited := c.cmd, make(chan struct{})
	c.exited = exited
	go func() { cmd.Wait(); close(exited) }()
	return nil
}

// running reports whether the dev process has not exited.
func (c *Cluster) running() bool {
	if c.cmd == nil {
		return false
	}
	select {
	case <-c.exited:
		return false
	default:
		return true
	}
}

// Kill9 kills the dev process (not its tasks) the hard way.
func (c *Cluster) Kill9() {
	c.t.Helper()
	c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.exited
}

// Stop stops the dev process gracefully, after checking the allocation
// transitions it recorded.
func (c *Cluster) Stop() {
	if !c.running() {
		return
	}
	c.checkTransitions()
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(15 * time.Second):
		c.cmd.Process.Kill()
		<-c.exited
	}
}

// Cleanup stops the process and removes every container of its node.
func (c *Cluster) Cleanup() {
	c.Stop()
	if c.t.Failed() {
		c.t.Logf("gantry dev log:\n%s", c.log.String())
	}
	if c.NodeID != "" {
		for _, id := range Containers(c.t, c.NodeID, true) {
			exec.Command("docker", "rm", "-f", id).Run()
		}
	}
	// Exec tasks run under their own executors; stop what is left.
	stopProcesses(c.DataDir)
}

// stopProcesses ends every process whose command line names pattern and
// waits until they are gone (SIGTERM, then SIGKILL after 10 s; at most
// 15 s in all): the test's temporary directory is removed next, and a
// task's executor or wasm runner still writing its state there made
// that removal fail ("directory not empty").
func stopProcesses(pattern string) {
	exec.Command("pkill", "-f", pattern).Run()
	start := time.Now()
	killed := false
	for exec.Command("pgrep", "-f", pattern).Run() == nil && time.Since(start) < 15*time.Second {
		if !killed && time.Since(start) > 10*time.Second {
			exec.Command("pkill", "-KILL", "-f", pattern).Run()
			killed = true
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkTransitions replays every allocation change the store still holds
// (the event stream from its first revision, across restarts of the
// process) and fails the test on a change of (desired, client status)
// that the lifecycle table does not allow. It reads until the newest
// allocation's index, so it costs one short stream per cluster.
func (c *Cluster) checkTransitions() {
	c.t.Helper()
	var allocs []*api.Allocation
	if err := c.GetJSON("/v1/allocations", &allocs); err != nil {
		c.t.Logf("lifecycle check skipped: %v", err)
		return
	}
	var target int64
	for _, a := range allocs {
		target = max(target, a.ModifyIndex)
	}
	if target == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tc := newTransitionChecker()
	errReached := errors.New("reached the newest allocation's index")
	err := c.api.FollowEvents(ctx, apiclient.Events{Topics: []string{api.TopicAllocation}, After: 1}, func(e api.Event) error {
		tc.observe(c.t, e)
		if e.Index >= target {
			return errReached
		}
		return nil
	})
	switch {
	case errors.Is(err, errReached):
		c.t.Logf("lifecycle: %d allocation transitions checked against the table", tc.seen)
	case err != nil:
		c.t.Logf("lifecycle check skipped: %v", err)
	default:
		c.t.Errorf("lifecycle check: the event stream ended at %d transitions before index %d: %v", tc.seen, target, ctx.Err())
	}
}

// transitionChecker follows allocation events in order and fails the test
// on a change of (desired, client status) the lifecycle table does not
// allow. An allocation first seen after its creation (history compacted)
// is followed from there.
type transitionChecker struct {
	last map[string]lifecycle.State
	seen int
}

func newTransitionChecker() *transitionChecker {
	return &transitionChecker{last: map[string]lifecycle.State{}}
}

func (tc *transitionChecker) observe(t testing.TB, e api.Event) {
	t.Helper()
	var a api.Allocation
	if e.Topic != api.TopicAllocation || e.Type == "AllocationDeleted" || json.Unmarshal(e.Payload, &a) != nil || a.ID == "" {
		return
	}
	to := lifecycle.Of(&a)
	from, known := tc.last[a.ID]
	if known || e.Type == "AllocationCreated" {
		if err := lifecycle.Check(from, to); err != nil {
			t.Errorf("allocation %s (%s) at index %d: %v", a.ShortID(), a.Name(), e.Index, err)
		}
		tc.seen++
	}
	tc.last[a.ID] = to
}

// Result is what a CLI invocation printed and how it exited.
type Result struct {
	Code   int
	Stdout string
	Stderr string
}

// Gantry runs the CLI against this cluster.
func (c *Cluster) Gantry(args ...string) Result {
	c.t.Helper()
	return runGantry(c.t, append(append([]string{"--address", c.Addr}, c.cliArgs...), args...)...)
}

func runGantry(t testing.TB, args ...string) Result {
	t.Helper()
	return runGantryStdin(t, "", args...)
}

// GantryStdin runs the CLI with the given standard input.
func (c *Cluster) GantryStdin(stdin string, args ...string) Result {
	c.t.Helper()
	return runGantryStdin(c.t, stdin, append(append([]string{"--address", c.Addr}, c.cliArgs...), args...)...)
}

func runGantryStdin(t testing.TB, stdin string, args ...string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, gantryBin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Stdin = strings.NewReader(stdin)
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("gantry %v: %v", args, err)
	}
	return Result{Code: code, Stdout: out.String(), Stderr: errb.String()}
}

// GetJSON reads an API path into v.
func (c *Cluster) GetJSON(path string, v any) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.api.Do(ctx, http.MethodGet, path, nil, v); err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	return nil
}

// Allocs returns a job's allocations.
func (c *Cluster) Allocs(job string) []*api.Allocation {
	c.t.Helper()
	var as []*api.Allocation
	if err := c.GetJSON("/v1/jobs/"+job+"/allocations", &as); err != nil {
		c.t.Fatal(err)
	}
	return as
}

// Eventually polls cond until it holds or the timeout passes.
func (c *Cluster) Eventually(timeout time.Duration, what string, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Containers lists the IDs of containers Gantry made for a node.
func Containers(t testing.TB, nodeID string, all bool) []string {
	t.Helper()
	args := []string{"ps", "-q", "--no-trunc", "--filter", "label=gantry.node=" + nodeID}
	if all {
		args = append(args, "-a")
	}
	out, err := exec.Command("docker", args...).Output()
	if err != nil {
		t.Fatalf("docker ps: %v", err)
	}
	return strings.Fields(string(out))
}

// WriteSpec writes a job spec into a temp file and returns its path.
func WriteSpec(t testing.TB, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// specFile returns the path of a file under examples/.
func specFile(name string) string { return filepath.Join(repoRoot, "examples", name) }
