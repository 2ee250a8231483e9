package scheduler_test

import (
	"cmp"
	"fmt"
	"os"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/scheduler"
	"github.com/gantryhq/gantry/internal/scheduler/policy"
	. "github.com/gantryhq/gantry/internal/scheduler/schedtest"
)

// BenchmarkPlace/<workload>/<nodes> fills a heterogeneous fleet (six CPU
// and six GPU node shapes, random zone and rack labels; 30% GPU nodes for
// gpu-mixed and gang8) to 50% with the workload, untimed, then times the
// placement of the jobs that bring the arrived demand (placed or not)
// from there to 90% of the dominant resource (cpu or GPUs). It reports
// placements/s, the replicas that found no room, and packing: nodes in
// use against the lower bound max over cpu, memory and GPUs of
// ceil(demand placed / largest node) (the bound), and the
// tighter number of largest nodes needed to hold the demand, and the
// regret of the sampled choices (see reportRegret; GANTRY_BENCH_REGRET=0
// skips that untimed pass). Run with -benchtime=1x -count=5 and take
// medians.
func BenchmarkPlace(b *testing.B) {
	for _, w := range []string{WorkloadCPU, WorkloadGPUMixed, WorkloadGang8} {
		for _, n := range []int{1000, 5000, 10000} {
			b.Run(fmt.Sprintf("%s/%d", w, n), func(b *testing.B) { benchPlace(b, w, n, "") })
		}
	}
}

// BenchmarkGPUPolicyPlace/<policy>/<nodes> is BenchmarkPlace's gpu-mixed
// workload with the server's GPU policy (policy.Served on the Learnt of
// the jobs so far, each job counted before it is planned, as the server's
// worker does) instead of the core's BestFit.
func BenchmarkGPUPolicyPlace(b *testing.B) {
	for _, name := range []string{policy.Gantry} {
		for _, n := range []int{1000, 5000, 10000} {
			b.Run(fmt.Sprintf("%s/%d", name, n), func(b *testing.B) { benchPlace(b, WorkloadGPUMixed, n, name) })
		}
	}
}

// benchPlace runs one BenchmarkPlace case; gpuPolicy names a
// policy.Served to place GPU work with ("": the core's default).
func benchPlace(b *testing.B, kind string, size int, gpuPolicy string) {
	gpuFrac := 0.3
	if kind == WorkloadCPU {
		gpuFrac = 0
	}
	nodes := Fleet(42, size, gpuFrac)

	var maxCPU, maxMem, maxGPU int
	var cpus, mems, gpuCounts []int64
	for _, n := range nodes {
		a := n.Allocatable()
		maxCPU, maxMem, maxGPU = max(maxCPU, a.CPU), max(maxMem, a.Memory), max(maxGPU, len(n.GPUs))
		cpus, mems, gpuCounts = append(cpus, int64(a.CPU)), append(mems, int64(a.Memory)), append(gpuCounts, int64(1000*len(n.GPUs)))
	}
	for _, s := range [][]int64{cpus, mems, gpuCounts} {
		slices.SortFunc(s, func(a, b int64) int { return cmp.Compare(b, a) })
	}
	share := Dominant(nodes)
	cfg := scheduler.Config{GPUSampleSize: policy.GPUSampleSize(gpuPolicy)} // as the server configures its engine
	var learnt *policy.Learner
	var served *policy.Served
	planOne := func(eng *scheduler.Engine, c *scheduler.Cluster, r *scheduler.Request) (*scheduler.Plan, error) {
		if learnt != nil {
			j := *r.Job
			j.ModifyIndex = learnt.Last() + 1 // as the store orders submissions
			learnt.Add(&j)
			// As the server does: one scorer per version of the learnt
			// workload, so its memoized ratings serve the plans after.
			if l := learnt.Learnt(); served == nil || served.Learnt().Version != l.Version {
				served, _ = policy.Serve(gpuPolicy, l)
			}
			r.Scorer = served
		}
		return eng.Plan(c, r)
	}
	// fill builds the cluster filled to 50% with the workload of seed and
	// returns it with the requests that bring the arrived load to 90%.
	fill := func(eng *scheduler.Engine, seed uint64) (*scheduler.Cluster, []*scheduler.Request) {
		c := eng.NewCluster(&scheduler.Snapshot{Nodes: nodes})
		reqs, err := Fill(func(r *scheduler.Request) (*scheduler.Plan, error) { return planOne(eng, c, r) }, NewWorkload(kind, seed), share, 0.5, 0.9)
		if err != nil {
			b.Fatal(err)
		}
		return c, reqs
	}
	var placed, unplaced, used, lower, tight int
	var clock cpuClock
	b.ReportAllocs()
	b.StopTimer()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if gpuPolicy != "" {
			learnt, served = policy.NewLearner(), nil
		}
		eng := scheduler.New(cfg)
		c, reqs := fill(eng, uint64(i+1))
		runtime.GC()
		clock.Start(b)
		for _, r := range reqs {
			plan, err := planOne(eng, c, r)
			if err != nil {
				b.Fatal(err)
			}
			placed += len(plan.Placed)
			for _, ex := range plan.Failed {
				unplaced += ex.Unplaced
			}
		}
		clock.Stop(b)
		var total scheduler.Resources
		for _, n := range c.Nodes() {
			if len(n.Allocs()) > 0 {
				used++
			}
			for _, a := range n.Allocs() {
				total = total.Add(scheduler.AllocResources(a))
			}
		}
		lb := max(ceilDiv(total.CPU, int64(maxCPU)), ceilDiv(total.Memory, int64(maxMem)))
		if maxGPU > 0 {
			lb = max(lb, ceilDiv(total.GPU, int64(1000*maxGPU)))
		}
		lower += int(lb)
		tight += max(largestNeeded(cpus, total.CPU), largestNeeded(mems, total.Memory), largestNeeded(gpuCounts, total.GPU))
	}
	b.ReportMetric(float64(placed)/b.Elapsed().Seconds(), "placements/s")
	clock.report(b, placed)
	if gpuPolicy == "" && os.Getenv("GANTRY_BENCH_REGRET") != "0" {
		// Regret of the sampled choices: the timed part of the first
		// iteration again, the sampled placements of every 8th request
		// compared with a scan of every node (the same decisions: BestFit
		// keeps no state).
		measured := scheduler.New(scheduler.Config{MeasureRegret: true})
		eng := scheduler.New(cfg)
		c, reqs := fill(eng, 1)
		var samples []scheduler.RegretSample
		for i, r := range reqs {
			e := eng
			if i%8 == 0 {
				e = measured // every 8th request: a full scan per placement is slow
			}
			plan, err := e.Plan(c, r)
			if err != nil {
				b.Fatal(err)
			}
			samples = append(samples, plan.Regret...)
		}
		reportRegret(b, samples)
	}
	b.ReportMetric(float64(unplaced)/float64(b.N), "unplaced/op")
	b.ReportMetric(float64(used)/float64(b.N), "nodes-used")
	b.ReportMetric(float64(lower)/float64(b.N), "nodes-lower-bound")
	b.ReportMetric(float64(used)/float64(lower), "used/bound")
	b.ReportMetric(float64(tight)/float64(b.N), "nodes-k-largest")
}

// largestNeeded is how many of the largest nodes (capacities sorted
// descending) it takes to hold demand: a lower bound on nodes in use that
// is tighter than demand / largest node on a heterogeneous fleet.
func largestNeeded(sorted []int64, demand int64) int {
	for i, c := range sorted {
		if demand <= 0 {
			return i
		}
		demand -= c
	}
	return len(sorted)
}

var testNow = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }

// BenchmarkHeap measures memory for 10,000 nodes (30% with 8 or 4 GPUs)
// holding 100,000 allocations: the live heap of the snapshot, of the
// snapshot plus the scheduler's Cluster, and the heap the runtime reserved
// (HeapSys, an upper bound of the peak) after a Schedule call that builds
// its own Cluster and places a 10-replica job.
func BenchmarkHeap(b *testing.B) {
	for i := 0; i < b.N; i++ {
		nodes := Fleet(7, 10000, 0.3)
		eng := scheduler.New(scheduler.Config{})
		c := eng.NewCluster(&scheduler.Snapshot{Nodes: nodes})
		w := NewWorkload(WorkloadGPUMixed, 3)
		var allocs []*api.Allocation
		for len(allocs) < 100000 {
			plan, err := eng.Plan(c, Request(w.Next()))
			if err != nil {
				b.Fatal(err)
			}
			for _, a := range plan.Placed {
				a.ID = fmt.Sprintf("alloc-%07d-0000-0000-0000-000000000000", len(allocs))
				a.ClientStatus, a.DesiredStatus = api.AllocRunning, api.AllocDesiredRun
				allocs = append(allocs, a)
			}
		}
		snap := &scheduler.Snapshot{Nodes: nodes, Allocs: allocs}
		c = nil
		w = nil
		base := liveHeap()
		c2 := eng.NewCluster(snap)
		withCluster := liveHeap()
		plan, err := eng.Schedule(snap, Request(Job("probe", Group("g", 10, Task("t", 500, 512)))), testNow)
		if err != nil || len(plan.Placed) != 10 {
			b.Fatalf("probe: %v %v", err, plan.Failed)
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		b.ReportMetric(float64(base)/(1<<20), "snapshot-MiB")
		b.ReportMetric(float64(withCluster-base)/(1<<20), "cluster-MiB")
		b.ReportMetric(float64(ms.HeapSys)/(1<<20), "heap-sys-MiB")
		runtime.KeepAlive(c2)
		runtime.KeepAlive(snap)
	}
}

func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkFeasibility/<fleet>/<nodes> times what job validation (and
// every job register) adds: Engine.Feasibility of a two-group job, one
// group with a constraint and one asking for a GPU (cpu fleet: no GPU
// group, as the scale run submits), on a heterogeneous fleet.
func BenchmarkFeasibility(b *testing.B) {
	for _, fleet := range []string{"cpu", "gpu-mixed"} {
		for _, n := range []int{1000, 10000} {
			b.Run(fmt.Sprintf("%s/%d", fleet, n), func(b *testing.B) {
				groups := []JobOpt{Group("web", 100, Constraint("${node.labels.zone}", "=", "z1"), Task("t", 500, 512))}
				gpuFrac := 0.0
				if fleet != "cpu" {
					gpuFrac = 0.3
					groups = append(groups, Group("train", 8, Task("t", 4000, 8192, WholeGPUs(1, ""))))
				}
				nodes := Fleet(42, n, gpuFrac)
				job := Job("check", groups...)
				eng := scheduler.New(scheduler.Config{})
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if _, err := eng.Feasibility(nodes, job); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
