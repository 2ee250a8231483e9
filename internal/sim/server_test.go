package sim

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/gantryhq/gantry/internal/scheduler"
	"github.com/gantryhq/gantry/internal/scheduler/policy"
)

// arrivals plans the i-th task as the server's worker plans the
// evaluation of its job: with the GPU policy built on the Learnt of the
// jobs in the store by then (the tasks that arrived so far, this one
// included, never the ones to come).
type arrivals struct {
	policy string
	learn  *policy.Learner
	served *policy.Served // the scorer for the learnt workload's version, as the server keeps it
	tasks  []Task
	next   int
}

func (a *arrivals) ScoreGPU(n *scheduler.NodeState, ask *scheduler.Ask, c *scheduler.Choice) (float64, bool) {
	return scheduler.BestFit{}.ScoreGPU(n, ask, c)
}

func (a *arrivals) ForPlan(c *scheduler.Cluster) scheduler.GPUScorer {
	job := TaskJob(a.next, &a.tasks[a.next])
	a.next++
	job.ModifyIndex = int64(a.next) // the order the store took the jobs in
	a.learn.Add(job)
	if l := a.learn.Learnt(); a.served == nil || a.served.Learnt().Version != l.Version {
		s, err := policy.Serve(a.policy, l)
		if err != nil {
			panic(err)
		}
		a.served = s
	}
	return a.served.ForPlan(c)
}

// TestServerGPUPolicyReplay replays the trace through the server's default
// scheduler configuration (scheduler.New with only the GPU scorer set, so
// work without GPUs is looked at SampleSize nodes at a time) with its
// default GPU policy, gantry learning the typical tasks online, and with
// the core's BestFit, the earlier default. The learning policy must
// allocate more GPU at 100% arrived. GANTRY_SIM_SEEDS (e.g. 42-51) widens
// the seeds; GANTRY_SIM_SAMPLE sets SampleSize (-1: every node rated for
// work without GPUs, as gantry sim does); -short replays the default list
// only.
func TestServerGPUPolicyReplay(t *testing.T) {
	dir := traceDir(t)
	nodes, err := LoadNodes(filepath.Join(dir, "openb_node_list_gpu_node.csv"))
	if err != nil {
		t.Fatal(err)
	}
	apiNodes, gpus := APINodes(nodes)
	seeds := []int64{42}
	if s := os.Getenv("GANTRY_SIM_SEEDS"); s != "" {
		if seeds, err = ParseSeeds(s); err != nil {
			t.Fatal(err)
		}
	}
	sample := 0 // the server's: scheduler.DefaultSampleSize
	if s := os.Getenv("GANTRY_SIM_SAMPLE"); s != "" {
		if sample, err = strconv.Atoi(s); err != nil {
			t.Fatalf("GANTRY_SIM_SAMPLE: %v", err)
		}
	}
	lists := []string{"openb_pod_list_default", "openb_pod_list_cpu250"}
	if testing.Short() {
		lists = lists[:1]
	}
	for _, list := range lists {
		tasks, err := LoadTasks(filepath.Join(dir, list+".csv"))
		if err != nil {
			t.Fatal(err)
		}
		metric := policy.NewFragModel(Typical(tasks))
		var sumOnline, sumBest float64
		for _, seed := range seeds {
			order, _ := Order(tasks, len(apiNodes), seed, 1.3, gpus*1000)
			// Each policy with the engine the server builds for it.
			alloc := func(sc scheduler.GPUScorer, name string) float64 {
				cfg := scheduler.Config{GPUScorer: sc, SampleSize: sample, GPUSampleSize: policy.GPUSampleSize(name)}
				points, _, err := Replay(context.Background(), scheduler.New(cfg), apiNodes, order, metric)
				if err != nil {
					t.Fatal(err)
				}
				c := Reduce(points, gpus, Allocation(gpus))
				return c.At(100)
			}
			got, best := alloc(&arrivals{policy: policy.Gantry, learn: policy.NewLearner(), tasks: order}, policy.Gantry), alloc(scheduler.BestFit{}, policy.BestFit)
			t.Logf("%s seed %d: GPU allocated at 100%% arrived: gantry learning online %.2f%%, BestFit %.2f%%", Variant(list), seed, got, best)
			if got <= best {
				t.Errorf("%s seed %d: the server's default GPU policy allocated %.2f%%, no more than BestFit's %.2f%%", Variant(list), seed, got, best)
			}
			sumOnline += got
			sumBest += best
		}
		n := float64(len(seeds))
		t.Logf("%s, mean of %d seeds: gantry learning online %.2f%%, BestFit %.2f%%", Variant(list), len(seeds), sumOnline/n, sumBest/n)
	}
}
