package suite

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/gantryhq/gantry/internal/api"
)

// cluster is a Gantry API the suites drive: one given by --address, or a
// process started on loopback (proc set) that stop ends and removes.
type cluster struct {
	env     *Env
	addr    string
	proc    *exec.Cmd
	dataDir string
	log     *bytes.Buffer
	jobs    []string // jobs a suite submitted, stopped by stopJobs
	// extraEnv is added to the environment of the processes it starts
	// (the daemon, and CLI calls such as gantry loadtest).
	extraEnv []string
}

// freePort asks the kernel for a loopback port nobody uses.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free loopback port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ports returns n loopback ports: BasePort, BasePort+1, … when set, else
// n different free ones (every listener is held until all n are found,
// so one call never hands out a port twice).
func (e *Env) ports(n int, offset int) ([]int, error) {
	out := make([]int, n)
	if e.Params.BasePort > 0 {
		for i := range out {
			out[i] = e.Params.BasePort + offset + i
		}
		return out, nil
	}
	for i := range out {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free loopback port: %w", err)
		}
		defer l.Close()
		out[i] = l.Addr().(*net.TCPAddr).Port
	}
	return out, nil
}

// devCluster returns the cluster at env.Address, or starts `gantry dev`
// on loopback with extra flags and waits until its node is ready.
func devCluster(ctx context.Context, env *Env, name string, extra ...string) (*cluster, error) {
	if env.Address != "" {
		c := &cluster{env: env, addr: strings.TrimRight(env.Address, "/")}
		if !strings.Contains(c.addr, "://") {
			c.addr = "http://" + c.addr
		}
		var st api.StatusResponse
		if err := c.get(ctx, "/v1/status", &st); err != nil {
			return nil, fmt.Errorf("cluster %s: %w", env.Address, err)
		}
		return c, nil
	}
	p, err := env.ports(4, 0)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(env.Dir, name)
	args := append([]string{"dev", "--data-dir", dir,
		"--http-addr", fmt.Sprintf("127.0.0.1:%d", p[0]),
		"--agent-addr", fmt.Sprintf("127.0.0.1:%d", p[1]),
		"--etcd-client-url", fmt.Sprintf("http://127.0.0.1:%d", p[2]),
		"--etcd-peer-url", fmt.Sprintf("http://127.0.0.1:%d", p[3]),
		"--node-name", "bench-" + name, "--log-level", "warn"}, extra...)
	c := &cluster{env: env, addr: fmt.Sprintf("http://127.0.0.1:%d", p[0]), dataDir: dir}
	if err := c.start(args); err != nil {
		return nil, err
	}
	env.logf("    started gantry dev on %s (data in %s)", c.addr, dir)
	if err := c.waitReady(ctx, 60*time.Second); err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

func (c *cluster) start(args []string) error {
	c.log = &bytes.Buffer{}
	c.proc = exec.Command(c.env.Bin, args...)
	c.proc.Stdout, c.proc.Stderr = c.log, c.log
	if len(c.extraEnv) > 0 {
		c.proc.Env = append(os.Environ(), c.extraEnv...)
	}
	// Its own process group: a Ctrl-C at the terminal reaches the bench,
	// which then stops this process in order (jobs first).
	c.proc.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.proc.Start(); err != nil {
		return fmt.Errorf("start %s %s: %w", c.env.Bin, args[0], err)
	}
	return nil
}

// waitReady waits until a node is ready.
func (c *cluster) waitReady(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		var nodes []*api.Node
		if c.get(ctx, "/v1/nodes", &nodes) == nil {
			for _, n := range nodes {
				if n.Status == api.NodeStatusReady {
					return nil
				}
			}
		}
		if c.proc != nil && c.proc.ProcessState != nil {
			return fmt.Errorf("gantry dev exited: %s", lastLines(c.log.String(), 5))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no node ready on %s after %s; its log ends: %s", c.addr, limit, lastLines(c.log.String(), 5))
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

// stop stops the suite's jobs, then a process this suite started, and
// removes its data.
func (c *cluster) stop() {
	ctx, cancel := cleanupContext()
	defer cancel()
	c.stopJobs(ctx)
	if c.proc == nil {
		return
	}
	_ = c.proc.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = c.proc.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = c.proc.Process.Kill()
		<-done
	}
	if c.dataDir != "" {
		removeAll(c.dataDir)
	}
}

// stopJobs stops every job this suite submitted and waits (up to the
// context) until none of their allocations runs.
func (c *cluster) stopJobs(ctx context.Context) {
	for _, j := range c.jobs {
		_, _ = c.gantry(ctx, "job", "stop", j)
	}
	for _, j := range c.jobs {
		for ctx.Err() == nil {
			var allocs []*api.Allocation
			if c.get(ctx, "/v1/jobs/"+j+"/allocations", &allocs) != nil || !anyLive(allocs) {
				break
			}
			_ = sleep(ctx, 200*time.Millisecond)
		}
	}
	c.jobs = nil
}

func anyLive(allocs []*api.Allocation) bool {
	for _, a := range allocs {
		if a.ClientStatus == api.AllocRunning || a.ClientStatus == api.AllocPending {
			return true
		}
	}
	return false
}

// gantry runs the CLI against the cluster and returns its stdout.
func (c *cluster) gantry(ctx context.Context, args ...string) (string, error) {
	full := append([]string{"--address", c.addr}, args...)
	if c.env.Token != "" {
		full = append([]string{"--token", c.env.Token}, full...)
	}
	cmd := exec.CommandContext(ctx, c.env.Bin, full...)
	if len(c.extraEnv) > 0 {
		cmd.Env = append(os.Environ(), c.extraEnv...)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("gantry %s: %s", strings.Join(args, " "), firstLine(errb.String(), err))
	}
	return out.String(), nil
}

// submit writes spec to the scratch dir and runs `gantry job run
// --detach` with it; the job is stopped when the suite ends.
func (c *cluster) submit(ctx context.Context, name, spec string) error {
	path := filepath.Join(c.env.Dir, name+".yaml")
	if err := os.WriteFile(path, []byte(spec), 0o644); err != nil {
		return err
	}
	c.jobs = append(c.jobs, name)
	_, err := c.gantry(ctx, "job", "run", "--detach", path)
	return err
}

// get reads a /v1 path as JSON.
func (c *cluster) get(ctx context.Context, path string, out any) error {
	return getJSON(ctx, c.addr, c.env.Token, path, out)
}

func getJSON(ctx context.Context, base, token, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("X-Gantry-Token", token)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return fmt.Errorf("the API at %s does not answer (is a Gantry server running there?): %w", base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("GET %s: %s %s", path, resp.Status, strings.TrimSpace(string(b)))
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// nodes returns the cluster's ready nodes.
func (c *cluster) readyNodes(ctx context.Context) ([]*api.Node, error) {
	var nodes []*api.Node
	if err := c.get(ctx, "/v1/nodes", &nodes); err != nil {
		return nil, err
	}
	var out []*api.Node
	for _, n := range nodes {
		if n.Status == api.NodeStatusReady {
			out = append(out, n)
		}
	}
	return out, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

func firstLine(stderr string, err error) string {
	s := strings.TrimSpace(stderr)
	if s == "" {
		return err.Error()
	}
	return strings.Join(strings.Fields(strings.TrimPrefix(s, "Error: ")), " ")
}
