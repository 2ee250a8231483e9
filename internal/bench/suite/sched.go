package suite

import (
	"context"
	"fmt"
	"runtime"
	"syscall"
	"time"

	"github.com/gantryhq/gantry/internal/bench/report"
	"github.com/gantryhq/gantry/internal/scheduler"
	"github.com/gantryhq/gantry/internal/scheduler/schedtest"
)

func sched() Suite {
	return Suite{
		Name:   "sched",
		Short:  "the scheduler's placements per CPU-second on heterogeneous fleets, filled from 50% to 90%",
		Target: func(*Env) string { return "in process, one core" },
		Run:    runSched,
	}
}

// runSched is BenchmarkPlace of internal/scheduler, in process: for each
// workload and fleet size it fills the fleet to 50% untimed, then times
// the placement of the jobs that bring the arrived demand to 90%, one
// round per seed. The figure is placements per CPU-second of this
// process (GOMAXPROCS 1 while it runs), which a busy machine disturbs
// less than the wall clock.
func runSched(ctx context.Context, env *Env, rec *Recorder) error {
	sizes := []int{1000, 5000, 10000}
	if env.Quick {
		sizes = []int{1000, 2000}
	}
	rounds := pick(env.Params.Rounds, 4, 5, env.Quick)
	prev := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(prev)
	for _, w := range []string{schedtest.WorkloadCPU, schedtest.WorkloadGPUMixed, schedtest.WorkloadGang8} {
		for _, n := range sizes {
			var samples []float64
			unplaced := 0
			for r := range rounds {
				if err := ctx.Err(); err != nil {
					return err
				}
				placed, miss, cpu, err := placeRound(w, n, uint64(r+1))
				if err != nil {
					return fmt.Errorf("%s on %d nodes: %w", w, n, err)
				}
				unplaced += miss
				samples = append(samples, float64(placed)/cpu.Seconds())
			}
			f := report.NewFigure(fmt.Sprintf("sched/%s/%d", w, n), "placements/cpu-s", report.HigherIsBetter, samples)
			f.Chart = &report.Chart{ID: "sched/throughput", Kind: "line", Title: "placements per CPU-second against cluster size", XLabel: "nodes", Series: w, X: float64(n)}
			rec.Add(f)
			env.logf("    %s on %d nodes: %d rounds, %d replicas found no room", w, n, rounds, unplaced)
		}
	}
	return nil
}

// placeRound fills a fleet of n nodes with workload kind (seed) and
// returns the placements of the timed part, the replicas that found no
// room and the CPU time the placing took.
func placeRound(kind string, n int, seed uint64) (placed, unplaced int, cpu time.Duration, err error) {
	gpuFrac := 0.3
	if kind == schedtest.WorkloadCPU {
		gpuFrac = 0
	}
	nodes := schedtest.Fleet(42, n, gpuFrac)
	eng := scheduler.New(scheduler.Config{})
	c := eng.NewCluster(&scheduler.Snapshot{Nodes: nodes})
	plan := func(r *scheduler.Request) (*scheduler.Plan, error) { return eng.Plan(c, r) }
	reqs, err := schedtest.Fill(plan, schedtest.NewWorkload(kind, seed), schedtest.Dominant(nodes), 0.5, 0.9)
	if err != nil {
		return 0, 0, 0, err
	}
	runtime.GC()
	start := processCPU()
	for _, r := range reqs {
		p, err := plan(r)
		if err != nil {
			return 0, 0, 0, err
		}
		placed += len(p.Placed)
		for _, f := range p.Failed {
			unplaced += f.Unplaced
		}
	}
	return placed, unplaced, processCPU() - start, nil
}

// processCPU is this process's user and system CPU time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
