package suite

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/gantryhq/gantry/internal/bench/report"
	"github.com/gantryhq/gantry/internal/scheduler/policy"
	"github.com/gantryhq/gantry/internal/sim"
)

func simSuite() Suite {
	return Suite{
		Name:   "sim",
		Short:  "the GPU trace replay: GPU allocated at 100% arrived demand per policy",
		Target: func(*Env) string { return "in process, the Alibaba GPU trace" },
		Run:    runSim,
	}
}

// runSim replays the trace's default pod list with every policy of the
// default list (`gantry sim`'s), one sample per seed.
func runSim(ctx context.Context, env *Env, rec *Recorder) error {
	dir := env.Params.TraceDir
	if dir == "" {
		var ok bool
		if dir, ok = sim.FindTraceDir(); !ok {
			return skipf("no trace folder: give --trace-dir (the folder %s, found above the working directory by default)", sim.TraceDirName)
		}
	}
	nodesPath := filepath.Join(dir, "openb_node_list_gpu_node.csv")
	podsPath := filepath.Join(dir, "openb_pod_list_default.csv")
	for _, p := range []string{nodesPath, podsPath} {
		if _, err := os.Stat(p); err != nil {
			return skipf("the trace folder %s lacks %s", dir, filepath.Base(p))
		}
	}
	nodes, err := sim.LoadNodes(nodesPath)
	if err != nil {
		return err
	}
	tasks, err := sim.LoadTasks(podsPath)
	if err != nil {
		return err
	}
	seeds := []int64{42, 43, 44, 45}
	if !env.Quick {
		seeds = []int64{42, 43, 44, 45, 46, 47, 48, 49, 50, 51}
	}
	policies := policy.Names
	results, err := sim.Replays(ctx, nodes, map[string][]sim.Task{sim.Workload(podsPath): tasks}, policies, seeds, 1.3, 0,
		func(done, total int, r *sim.Result, s *sim.SeedRun) {
			env.logf("    [%d/%d] %-10s seed %d: %.2f%% GPU allocated at 100%% arrived (%.1f s)", done, total, r.Label(), s.Seed, s.Alloc[100], s.Duration.Seconds())
		})
	if err != nil {
		return err
	}
	for _, r := range results {
		var alloc, rate []float64
		for _, s := range r.Runs {
			alloc = append(alloc, s.Alloc[100])
			if s.Duration > 0 {
				rate = append(rate, float64(s.Placed)/s.Duration.Seconds())
			}
		}
		rec.Add(report.NewFigure(fmt.Sprintf("sim/%s/gpu-alloc-at-100", r.Policy), "%", report.HigherIsBetter, alloc))
		rec.Add(report.NewFigure(fmt.Sprintf("sim/%s/placements", r.Policy), "tasks/s", report.HigherIsBetter, rate))
	}
	rec.Note("pod list %s, tune 1.3, seeds %d–%d; one sample per seed", sim.Workload(podsPath), seeds[0], seeds[len(seeds)-1])
	return nil
}
