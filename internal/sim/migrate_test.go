package sim

import (
	"context"
	"math"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/gantryhq/gantry/internal/scheduler"
	"github.com/gantryhq/gantry/internal/scheduler/policy"
)

// TestReplayMigrate replays the default list (seed 42, the gantry
// policy) once without and twice with a 5% move budget. Without a budget
// it must be the one-pass Replay, point for point; with one it must be
// the same until the first task that fits nowhere, make moves (every one
// checked against scheduler.Fit inside ReplayMigrate, which fails the
// replay on any over-allocation), stay within the budget, and give the
// same result twice.
func TestReplayMigrate(t *testing.T) {
	dir := traceDir(t)
	nodes, err := LoadNodes(filepath.Join(dir, "openb_node_list_gpu_node.csv"))
	if err != nil {
		t.Fatal(err)
	}
	list, err := LoadTasks(filepath.Join(dir, "openb_pod_list_default.csv"))
	if err != nil {
		t.Fatal(err)
	}
	api, gpus := APINodes(nodes)
	typical := Typical(list)
	tasks, rank := Order(list, len(api), 42, 1.3, gpus*1000)
	names := make([]string, len(api))
	for i, n := range api {
		names[i] = n.Name
	}
	slices.Sort(names)
	ranks := map[string]int{}
	for i, name := range names {
		ranks[name] = rank[i]
	}
	run := func(budget float64) ([]Point, int, int) {
		sc, err := policy.New("gantry", policy.Env{Seed: 42, Typical: typical, Rank: ranks})
		if err != nil {
			t.Fatal(err)
		}
		eng := scheduler.New(scheduler.Config{GPUScorer: sc, SampleSize: -1, DisablePreemption: true})
		points, placed, moves, err := ReplayMigrate(context.Background(), eng, api, tasks, policy.NewFragModel(typical), Migration{Budget: budget, Window: DefaultWindow})
		if err != nil {
			t.Fatal(err)
		}
		return points, placed, moves
	}
	one, onePlaced, oneMoves := run(0)
	if oneMoves != 0 {
		t.Fatalf("%d moves without a budget", oneMoves)
	}
	sc, _ := policy.New("gantry", policy.Env{Seed: 42, Typical: typical, Rank: ranks})
	ref, refPlaced, err := Replay(context.Background(), scheduler.New(scheduler.Config{GPUScorer: sc, SampleSize: -1, DisablePreemption: true}), api, tasks, policy.NewFragModel(typical))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(one, ref) || onePlaced != refPlaced {
		t.Fatal("with budget 0 the replay is not the one-pass Replay")
	}
	mig, placed, moves := run(5)
	if moves == 0 {
		t.Fatal("no task moved with a 5% budget on the default list")
	}
	if limit := int(math.Floor(0.05 * float64(placed))); moves > limit {
		t.Fatalf("%d moves, the budget allows %d (5%% of %d placed)", moves, limit, placed)
	}
	first := slices.IndexFunc(one, func(p Point) bool { return p.Used < p.Arrived })
	if first < 0 || !reflect.DeepEqual(mig[:first], one[:first]) {
		t.Fatalf("the replays differ before the first task that fits nowhere (task %d)", first)
	}
	again, placed2, moves2 := run(5)
	if !reflect.DeepEqual(mig, again) || placed != placed2 || moves != moves2 {
		t.Fatal("two replays with the same seed and budget differ")
	}
	a0, a5 := Reduce(one, gpus, Allocation(gpus)), Reduce(mig, gpus, Allocation(gpus))
	t.Logf("gantry, seed 42: %.2f%% one pass, %.2f%% with a 5%% budget (%d moves, %d placed), bound %.2f%%",
		a0[100], a5[100], moves, placed, UpperBound(tasks, gpus)[100])
}
