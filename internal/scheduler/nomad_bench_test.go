package scheduler_test

import (
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/scheduler"
	. "github.com/gantryhq/gantry/internal/scheduler/schedtest"
)

// BenchmarkNomadShape/<nodes>_nodes_<racks>_racks_<allocs>_allocs_<spread|no_spread>
// builds the fleet and job shape of Nomad's BenchmarkServiceScheduler
// (its facts, not its code): 5,000 identical nodes with 32,000 MB of
// memory (here 16 cores, so that two replicas fit a node), the rack label
// r<i mod racks>; one service job of 600 or 1,200 replicas of 6 cores /
// 6,000 MB with a set_contains_any constraint on the rack admitting half
// of the racks (the even ones), with and without an even spread over the
// racks. Each iteration places the whole job against a fresh cluster in
// one Plan; only the Plan is timed.
//
// It reports placements/s (wall clock) and placements/cpu-s (CPU time of
// the timed part, steadier on a shared machine); max-per-node and nodes-used (replicas per
// node); rack-dev-final, the largest deviation of an admitted rack from
// its even share (replicas ÷ admitted racks) at the end, and rack-dev-step,
// the largest at any step of the placement order; and the regret of the
// sampled choice (regret-p50-%, regret-p99-% of the score range,
// apart-miss-%: placements where a node that kept replicas further apart
// was missed), from one extra untimed Plan with Config.MeasureRegret
// (GANTRY_BENCH_REGRET=0 skips it).
func BenchmarkNomadShape(b *testing.B) {
	for _, racks := range []int{25, 50, 75} {
		for _, allocs := range []int{600, 1200} {
			for _, spread := range []bool{true, false} {
				name := fmt.Sprintf("%d_nodes_%d_racks_%d_allocs_%s", 5000, racks, allocs, map[bool]string{true: "spread", false: "no_spread"}[spread])
				b.Run(name, func(b *testing.B) { benchNomadShape(b, 5000, racks, allocs, spread) })
			}
		}
	}
}

// NomadShape returns the fleet and the job of BenchmarkNomadShape.
func NomadShape(nodes, racks, allocs int, spread bool) ([]*api.Node, *api.Job) {
	fleet := make([]*api.Node, nodes)
	for i := range fleet {
		fleet[i] = Node(fmt.Sprintf("node-%05d", i), CPU(16000), Memory(32000), Disk(100*1024),
			Label("rack", fmt.Sprintf("r%d", i%racks)))
	}
	var admitted []string
	for r := 0; r < racks; r += 2 {
		admitted = append(admitted, fmt.Sprintf("r%d", r))
	}
	opts := []GroupOpt{Task("t", 6000, 6000), Constraint("${node.labels.rack}", "set_contains_any", strings.Join(admitted, ","))}
	if spread {
		opts = append(opts, Spread("${node.labels.rack}", nil))
	}
	return fleet, Job("nomad-shape", Group("g", allocs, opts...))
}

func benchNomadShape(b *testing.B, nodes, racks, allocs int, spread bool) {
	fleet, job := NomadShape(nodes, racks, allocs, spread)
	eng := scheduler.New(scheduler.Config{})
	req := Request(job)
	var plan *scheduler.Plan
	placed := 0
	var clock cpuClock
	b.ReportAllocs()
	b.StopTimer()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c := eng.NewCluster(&scheduler.Snapshot{Nodes: fleet})
		clock.Start(b)
		var err error
		plan, err = eng.Plan(c, req)
		clock.Stop(b)
		if err != nil {
			b.Fatal(err)
		}
		placed += len(plan.Placed)
	}
	if len(plan.Placed) != allocs {
		b.Fatalf("placed %d of %d: %v", len(plan.Placed), allocs, plan.Failed)
	}
	b.ReportMetric(float64(placed)/b.Elapsed().Seconds(), "placements/s")
	clock.report(b, placed)
	perNode := map[string]int{}
	rack := map[string]int{}
	admitted := (racks + 1) / 2
	stepDev := 0.0
	for t, a := range plan.Placed {
		perNode[a.NodeID]++
		var n int
		fmt.Sscanf(a.NodeName, "node-%d", &n)
		rack[fmt.Sprintf("r%d", n%racks)]++
		stepDev = math.Max(stepDev, rackDeviation(rack, racks, float64(t+1)/float64(admitted)))
	}
	most := 0
	for _, k := range perNode {
		most = max(most, k)
	}
	b.ReportMetric(float64(most), "max-per-node")
	b.ReportMetric(float64(len(perNode)), "nodes-used")
	b.ReportMetric(rackDeviation(rack, racks, float64(allocs)/float64(admitted)), "rack-dev-final")
	b.ReportMetric(stepDev, "rack-dev-step")

	if os.Getenv("GANTRY_BENCH_REGRET") == "0" {
		return
	}
	measured := scheduler.New(scheduler.Config{MeasureRegret: true})
	mplan, err := measured.Plan(measured.NewCluster(&scheduler.Snapshot{Nodes: fleet}), req)
	if err != nil {
		b.Fatal(err)
	}
	reportRegret(b, mplan.Regret)
}

// rackDeviation is the largest |replicas − share| over the admitted
// (even-numbered) racks.
func rackDeviation(rack map[string]int, racks int, share float64) float64 {
	dev := 0.0
	for r := 0; r < racks; r += 2 {
		dev = math.Max(dev, math.Abs(float64(rack[fmt.Sprintf("r%d", r)])-share))
	}
	return dev
}

// reportRegret reports the median and 99th percentile of the regret as a
// percentage of the score range, and how often the sample missed a node
// that kept replicas further apart.
func reportRegret(b *testing.B, samples []scheduler.RegretSample) {
	if len(samples) == 0 {
		b.ReportMetric(0, "regret-samples")
		return
	}
	f := make([]float64, len(samples))
	missed := 0
	for i, s := range samples {
		f[i] = s.Fraction()
		if s.Apart {
			missed++
		}
	}
	slices.Sort(f)
	q := func(p float64) float64 { return 100 * f[min(len(f)-1, int(p*float64(len(f))))] }
	b.ReportMetric(q(0.5), "regret-p50-%")
	b.ReportMetric(q(0.99), "regret-p99-%")
	b.ReportMetric(100*float64(missed)/float64(len(samples)), "apart-miss-%")
	b.ReportMetric(float64(len(samples)), "regret-samples")
}
