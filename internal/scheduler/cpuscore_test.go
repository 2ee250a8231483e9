package scheduler_test

import (
	"testing"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/scheduler"
)

// cpuAndGPU is a GPUScorer that also scores work without GPUs: it prefers
// the node whose name it is told, for either kind of work.
type cpuAndGPU struct{ want string }

func (s cpuAndGPU) ScoreGPU(n *scheduler.NodeState, _ *scheduler.Ask, _ *scheduler.Choice) (float64, bool) {
	return s.score(n), true
}

func (s cpuAndGPU) ScoreCPU(n *scheduler.NodeState, ask *scheduler.Ask) (float64, bool) {
	if ask.CPU <= 0 || len(ask.GPU) != 0 {
		panic("ScoreCPU called for GPU work or without the ask")
	}
	return s.score(n), true
}

func (s cpuAndGPU) score(n *scheduler.NodeState) float64 {
	if n.Node().Name == s.want {
		return 1
	}
	return 0
}

func TestCPUScorerPlacesWorkWithoutGPUs(t *testing.T) {
	var nodes []*api.Node
	for _, name := range []string{"a", "b", "c"} {
		nodes = append(nodes, &api.Node{
			ID: name, Name: name, Status: api.NodeStatusReady,
			Resources: api.NodeResources{CPU: 4000, Memory: 4096},
			Drivers:   map[string]api.DriverInfo{api.DriverExec: {Detected: true, Healthy: true}},
			GPUs:      []api.GPUDevice{{UUID: name + "-gpu0", Model: "T4", Memory: 15360}},
		})
	}
	job := func(name string, gpu *api.GPURequest) *scheduler.Request {
		return &scheduler.Request{
			Job: &api.Job{Name: name, Namespace: "default", Type: api.JobBatch, Priority: 50,
				Groups: []*api.Group{{Name: "g", Count: 1, Tasks: []*api.Task{{Name: "t", Driver: api.DriverExec,
					Resources: api.Resources{CPU: 1000, Memory: 256, GPU: gpu}}}}}},
			Place: []scheduler.Placement{{Group: "g"}},
		}
	}
	for _, tc := range []struct {
		name   string
		scorer scheduler.GPUScorer
		want   string
	}{
		{"cpu scorer picks b", cpuAndGPU{want: "b"}, "b"},
		{"cpu scorer picks c", cpuAndGPU{want: "c"}, "c"},
		// A plain GPUScorer leaves work without GPUs to the built-in
		// best-fit, which takes the first of three identical nodes.
		{"gpu-only scorer", scheduler.BestFit{}, "a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eng := scheduler.New(scheduler.Config{GPUScorer: tc.scorer, SampleSize: -1, DisablePreemption: true})
			c := eng.NewCluster(&scheduler.Snapshot{Nodes: nodes})
			plan, err := eng.Plan(c, job("cpu", nil))
			if err != nil {
				t.Fatal(err)
			}
			if len(plan.Placed) != 1 || plan.Placed[0].NodeID != tc.want {
				t.Fatalf("work without GPUs placed on %v, want %s", plan.Placed, tc.want)
			}
		})
	}
}
