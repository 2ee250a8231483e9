package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
)

// wasmExample is an example spec with the module path and the load
// balancer's port pointed at this run's.
func wasmExample(t *testing.T, name string, lbPort int) string {
	t.Helper()
	b, err := os.ReadFile(specFile(name))
	if err != nil {
		t.Fatal(err)
	}
	s := strings.ReplaceAll(string(b), "/var/tmp/gantry-demo/demo-app.wasm", demoWasm)
	if lbPort > 0 {
		s = strings.ReplaceAll(s, "port: 8001", fmt.Sprintf("port: %d", lbPort))
	}
	return WriteSpec(t, name, s)
}

// runnerPids lists the wasm runner processes of a cluster's tasks: those
// whose command line names a spec under its data directory, and spare
// runners a task took (their ready file, last on the command line, is
// gone).
func runnerPids(t *testing.T, c *Cluster) []string {
	t.Helper()
	var out []string
	for pid, args := range wasmRunners(c) {
		if args[2] != "--spare" {
			out = append(out, pid)
		} else if _, err := os.Stat(args[len(args)-1]); err != nil {
			out = append(out, pid)
		}
	}
	sort.Strings(out)
	return out
}

// sparePids lists the spare runners of a cluster no task took yet (their
// ready file exists, or they are still compiling).
func sparePids(c *Cluster) []string {
	var out []string
	for pid, args := range wasmRunners(c) {
		if _, err := os.Stat(args[len(args)-1]); args[2] == "--spare" && err == nil {
			out = append(out, pid)
		}
	}
	sort.Strings(out)
	return out
}

// wasmRunners are the wasm runner processes of a cluster, by pid, with
// their command lines.
func wasmRunners(c *Cluster) map[string][]string {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	out := map[string][]string{}
	for _, f := range procs {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if len(args) > 2 && args[1] == "wasm-run" && strings.HasPrefix(args[len(args)-1], c.DataDir) {
			out[filepath.Base(filepath.Dir(f))] = args
		}
	}
	return out
}

// lbAllocs asks the load balancer n times and returns the allocations
// that answered.
func lbAllocs(port, n int) map[string]bool {
	seen := map[string]bool{}
	client := &http.Client{Timeout: 5 * time.Second}
	for i := 0; i < n; i++ {
		resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
		if err != nil {
			continue
		}
		var a struct {
			AllocID string `json:"alloc_id"`
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if json.Unmarshal(b, &a) == nil && a.AllocID != "" {
			seen[a.AllocID] = true
		}
	}
	return seen
}

func healthyRunning(allocs []*api.Allocation) int {
	n := 0
	for _, a := range allocs {
		if a.ClientStatus == api.AllocRunning && a.Health == api.HealthHealthy {
			n++
		}
	}
	return n
}

// TestWasmService: examples/wasm-web.yaml as a user runs it — the demo
// app compiled to WASI, three replicas on the wasm driver, healthy and
// served through the load balancer; kill -9 of gantry dev and a restart
// adopt the running modules (the same runner processes, no second
// instance); and the batch example's exit code 3 fails its allocation
// with exit code 3. Without spare runners (--wasm-spares 0): the runners
// counted are the three tasks' alone; TestWasmSpare covers the spare
// that the default keeps.
func TestWasmService(t *testing.T) {
	lb := freePort(t)
	c := StartDev(t, "--lb", "--lb-access-log=false", "--wasm-spares", "0")
	r := c.Gantry("job", "run", "--timeout", "5m", wasmExample(t, "wasm-web.yaml", lb))
	if r.Code != 0 {
		t.Fatalf("job run wasm-web: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if n := healthyRunning(c.Allocs("wasm-web")); n != 3 {
		t.Fatalf("want 3 healthy running replicas, got %d", n)
	}
	c.Eventually(30*time.Second, "all three replicas to answer through the load balancer", func() bool {
		return len(lbAllocs(lb, 9)) == 3
	})
	before := runnerPids(t, c)
	if len(before) != 3 {
		t.Fatalf("want 3 wasm runner processes, got %v", before)
	}

	c.Kill9()
	if got := runnerPids(t, c); strings.Join(got, ",") != strings.Join(before, ",") {
		t.Fatalf("runners changed when gantry dev was killed: before %v, after %v", before, got)
	}
	c.Start()
	c.Eventually(60*time.Second, "3 healthy replicas after the restart", func() bool {
		return healthyRunning(c.Allocs("wasm-web")) == 3
	})
	// Give a wrongly started second instance time to show up.
	time.Sleep(3 * time.Second)
	if after := runnerPids(t, c); strings.Join(after, ",") != strings.Join(before, ",") {
		t.Fatalf("runners changed across kill -9 and restart (want the same processes adopted): before %v, after %v", before, after)
	}
	if !strings.Contains(c.log.String(), "found tasks from an earlier run") {
		t.Fatal("the agent did not report recovering the wasm tasks")
	}
	c.Eventually(30*time.Second, "all three replicas to answer through the load balancer after the restart", func() bool {
		return len(lbAllocs(lb, 9)) == 3
	})

	r = c.Gantry("job", "run", "--timeout", "3m", wasmExample(t, "wasm-batch.yaml", 0))
	if r.Code == 0 {
		t.Fatalf("job run wasm-batch succeeded, want a failure (exit code 3)\n%s", r.Stdout)
	}
	c.Eventually(2*time.Minute, "the batch allocation to fail", func() bool {
		al := c.Allocs("wasm-batch")
		return len(al) == 1 && al[0].ClientStatus == api.AllocFailed
	})
	ts := c.Allocs("wasm-batch")[0].TaskStates["steps"]
	if ts == nil || ts.ExitCode != 3 || !ts.Failed {
		t.Fatalf("want task steps failed with exit code 3, got %+v", ts)
	}
	logs := c.Gantry("alloc", "logs", c.Allocs("wasm-batch")[0].ID)
	if !strings.Contains(logs.Stdout, "done, exiting 3") {
		t.Fatalf("alloc logs of the batch module: exit %d\n%s%s", logs.Code, logs.Stdout, logs.Stderr)
	}
}

// TestWasmSpare: by default (no --wasm-spares), a start of the demo
// module leaves a spare runner with it compiled; the next job's replica
// takes it (its runner is that process) and is healthy; a kill -9 of
// gantry dev ends the spare made after it but not the tasks, and the
// restarted agent adopts both replicas, starting no second instance.
func TestWasmSpare(t *testing.T) {
	c := StartDev(t)
	spec := func(name string) string {
		return WriteSpec(t, name+".yaml", fmt.Sprintf(`name: %s
groups:
  - name: web
    count: 1
    tasks:
      - name: server
        driver: wasm
        config: {module: %s, ports: [{name: http}]}
        resources: {cpu: 100, memory: 64}
        checks: [{type: http, port: http, path: /healthz, interval: 1s, timeout: 1s}]
`, name, demoWasm))
	}
	waitSpare := func(what string) string {
		var pids []string
		c.Eventually(2*time.Minute, what, func() bool {
			pids = sparePids(c)
			return len(pids) == 1
		})
		return pids[0]
	}
	if r := c.Gantry("job", "run", "--timeout", "5m", spec("first")); r.Code != 0 {
		t.Fatalf("job run first: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	spare := waitSpare("a spare runner after the first start")
	if r := c.Gantry("job", "run", "--timeout", "5m", spec("second")); r.Code != 0 {
		t.Fatalf("job run second: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	second := c.Allocs("second")
	if len(second) != 1 || healthyRunning(second) != 1 {
		t.Fatalf("want one healthy replica of second, got %+v", second)
	}
	runners := runnerPids(t, c)
	if !slices.Contains(runners, spare) {
		t.Fatalf("the second replica did not take the spare runner %s: runners %v", spare, runners)
	}
	waitSpare("a new spare after the second start")

	c.Kill9()
	c.Eventually(30*time.Second, "the spare to end with gantry dev", func() bool {
		return len(wasmRunners(c)) == len(runners)
	})
	if got := runnerPids(t, c); strings.Join(got, ",") != strings.Join(runners, ",") {
		t.Fatalf("the tasks' runners changed when gantry dev was killed: before %v, after %v", runners, got)
	}
	c.Start()
	c.Eventually(60*time.Second, "both replicas healthy after the restart", func() bool {
		return healthyRunning(c.Allocs("first")) == 1 && healthyRunning(c.Allocs("second")) == 1
	})
	time.Sleep(3 * time.Second) // a wrongly started second instance would show by now
	if got := runnerPids(t, c); strings.Join(got, ",") != strings.Join(runners, ",") {
		t.Fatalf("runners changed across kill -9 and restart (want the same processes adopted): before %v, after %v", runners, got)
	}
}
