package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/bench/report"
)

// TestLoadtestSmall runs the scale benchmark's load tool (bench/scale.sh)
// at a small size against a dev cluster: simulated nodes (the real agent
// code with the null driver) register, the jobs are placed over them, and
// the tool returns once every allocation reports running and its
// exact-count check against the store passed, which the server's own
// view then confirms.
func TestLoadtestSmall(t *testing.T) {
	c := StartDev(t)
	r := c.Gantry("loadtest", "--nodes", "40", "--jobs", "3", "--tasks", "50", "--json", "--timeout", "3m")
	if r.Code != 0 {
		t.Fatalf("loadtest exited %d: %s%s", r.Code, r.Stdout, r.Stderr)
	}
	var res struct {
		Nodes       int     `json:"nodes"`
		Allocations int     `json:"allocations"`
		RunningTime int64   `json:"running_time"`
		PerSec      float64 `json:"allocs_per_sec"`
		LoadCPU     float64 `json:"load_cpu_seconds"`
		LoadRSS     int64   `json:"load_peak_rss_mib"`
		NodeBytes   float64 `json:"load_bytes_per_node"`
		RSSPerAlloc float64 `json:"load_peak_rss_bytes_per_alloc"`
		Goroutines  int     `json:"load_goroutines"`
		Check       struct {
			Pass    bool `json:"pass"`
			Running int  `json:"running"`
			Reads   int  `json:"reads"`
		} `json:"check"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &res); err != nil {
		t.Fatalf("loadtest --json printed %q: %v", r.Stdout, err)
	}
	if res.Nodes != 40 || res.Allocations != 150 || res.RunningTime <= 0 || res.PerSec <= 0 || res.LoadCPU <= 0 || res.LoadRSS <= 0 ||
		res.NodeBytes <= 0 || res.RSSPerAlloc <= 0 || res.Goroutines <= 0 {
		t.Fatalf("loadtest result %+v: want 40 nodes, 150 allocations, a running time, a rate and the load's CPU and memory (per node, per allocation)", res)
	}
	if !res.Check.Pass || res.Check.Running != 150 || res.Check.Reads < 1 {
		t.Fatalf("the load tool's exact-count check %+v: want a pass with 150 running", res.Check)
	}
	nodes := map[string]bool{}
	for j := range 3 {
		allocs := c.Allocs(fmt.Sprintf("load-%04d", j))
		running := 0
		for _, a := range allocs {
			if a.ClientStatus == api.AllocRunning {
				running++
			}
			nodes[a.NodeID] = true
		}
		if running != 50 || len(allocs) != 50 {
			t.Fatalf("job load-%04d: %d allocations, %d running; want 50 running", j, len(allocs), running)
		}
	}
	if len(nodes) < 10 {
		t.Fatalf("150 allocations landed on %d nodes; the simulated nodes were not used", len(nodes))
	}
}

// TestLoadtestLeaderKilled runs the scale suite (bench/scale.sh with
// SERVERS=3 KILL_LEADER_AT=0.5) at a small size: three servers forming
// one embedded etcd cluster, the load tool and its simulated nodes
// pointed at all three, and the leader killed with SIGKILL once half the
// allocations are placed. The run completes on the other two, and the
// load tool's exact-count check against the store passes: every job
// there, each slot held by exactly one running allocation. The report
// gives each server's CPU and memory. No timing is asserted.
func TestLoadtestLeaderKilled(t *testing.T) {
	tmp := t.TempDir()
	out := filepath.Join(tmp, "report")
	cmd := exec.Command(gantryBin, "bench", "run", "--suite", "scale", "--scale-servers", "3", "--scale-kill-leader-at", "0.5",
		"--scale-nodes", "40", "--scale-jobs", "4", "--scale-tasks", "50", "--rounds", "1", "--out", out)
	// The suite's scratch, and so every server's data, lies under TMPDIR.
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// An interrupt lets the bench stop what it started; whatever still
	// runs from this test's folder afterwards is killed.
	stop := time.AfterFunc(4*time.Minute, func() { cmd.Process.Signal(os.Interrupt) })
	err := cmd.Wait()
	stop.Stop()
	killLeftovers(t, tmp)
	if err != nil {
		t.Fatalf("bench run --suite scale with 3 servers and the leader killed: %v\n%s", err, stderr.String())
	}
	rep, err := report.Read(filepath.Join(out, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Partial || len(rep.Suites) != 1 || rep.Suites[0].Status != report.StatusOK {
		t.Fatalf("report: partial %v (%s), suites %+v\n%s", rep.Partial, rep.PartialReason, rep.Suites, stderr.String())
	}
	notes := strings.Join(rep.Suites[0].Notes, "\n")
	for _, want := range []string{"killed the leader s", "pass: 200 of 200 allocations running in 4 jobs; 0 missing jobs, 0 lost, 0 duplicated, 0 stray"} {
		if !strings.Contains(notes, want) {
			t.Errorf("the report's notes do not say %q:\n%s", want, notes)
		}
	}
	for _, name := range []string{"scale/all-running", "scale/all-placed", "scale/placed-per-s", "scale/server-cpu", "scale/server-peak-rss",
		"scale/server-cpu-per-1000-allocs", "scale/server-peak-rss-per-alloc", "scale/etcd-db", "scale/server-s1-cpu", "scale/server-s2-cpu", "scale/server-s3-cpu", "scale/server-s1-peak-rss", "scale/server-s2-peak-rss", "scale/server-s3-peak-rss"} {
		if f, ok := rep.Figure(name); !ok || f.Summary.N != 1 {
			t.Errorf("figure %s: %+v, want one sample", name, f)
		}
	}
}

// killLeftovers kills (SIGKILL) any process whose command line names dir,
// a folder only this test's processes use, and fails the test for each.
func killLeftovers(t *testing.T, dir string) {
	t.Helper()
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !strings.Contains(string(b), dir) {
			continue
		}
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if err != nil || pid == os.Getpid() {
			continue
		}
		t.Errorf("process %d still ran after the bench ended: %q", pid, strings.ReplaceAll(string(b), "\x00", " "))
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}
