package e2e

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/gantryhq/gantry/internal/api"
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
