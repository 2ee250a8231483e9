package sim

import (
	"context"
	"fmt"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/scheduler"
	"github.com/gantryhq/gantry/internal/scheduler/policy"
)

// gpuMemory is the memory of each GPU model in MiB (shares take the same
// fraction of it as of compute, so the values only need to be plausible).
var gpuMemory = map[string]int{
	"P100": 16280, "T4": 15109, "V100M16": 16160, "V100M32": 32510, "A10": 22731,
	"G2": 16384, "G3": 32768,
}

// APINodes turns a node list into ready Gantry nodes with a healthy exec
// driver and one api.GPUDevice per GPU, and returns the cluster's GPU
// count.
func APINodes(nodes []Node) ([]*api.Node, int) {
	out := make([]*api.Node, len(nodes))
	gpus := 0
	for i, n := range nodes {
		an := &api.Node{
			ID: n.Name, Name: n.Name, Status: api.NodeStatusReady,
			Resources: api.NodeResources{CPU: n.CPU, Memory: n.Memory},
			Drivers:   map[string]api.DriverInfo{api.DriverExec: {Detected: true, Healthy: true}},
		}
		mem := gpuMemory[n.Model]
		if mem == 0 {
			mem = 16384
		}
		for g := 0; g < n.GPUs; g++ {
			an.GPUs = append(an.GPUs, api.GPUDevice{
				UUID: fmt.Sprintf("%s-gpu%d", n.Name, g), Index: g, Model: n.Model, Memory: mem,
			})
		}
		gpus += n.GPUs
		out[i] = an
	}
	return out, gpus
}

// ShapeOf is the task's shape for the typical-task model.
func ShapeOf(t *Task) policy.Shape {
	return policy.Shape{CPU: t.CPU, Milli: t.Milli, Count: t.GPUs, Model: t.Model}
}

// Typical returns the typical tasks of a task list: its most common shapes
// covering 95% of the tasks (CPU-only tasks included).
func Typical(tasks []Task) []policy.Typical {
	shapes := make([]policy.Shape, len(tasks))
	for i := range tasks {
		shapes[i] = ShapeOf(&tasks[i])
	}
	return policy.TypicalTasks(shapes, 0.95)
}

// gpuRequest maps a task's GPU columns onto Gantry's request forms.
func gpuRequest(t *Task) *api.GPURequest {
	switch {
	case t.GPUs == 0:
		return nil
	case t.Milli < 1000:
		return &api.GPURequest{Model: t.Model, Share: &api.GPUShare{Milli: t.Milli}}
	}
	return &api.GPURequest{Count: t.GPUs, Model: t.Model}
}

// TaskJob is the job Replay plans for task i of its list: a batch job
// named t<i> with one group "t" of one replica.
func TaskJob(i int, t *Task) *api.Job {
	return &api.Job{
		Name: fmt.Sprintf("t%d", i), Namespace: api.DefaultNamespace, Type: api.JobBatch, Priority: api.DefaultPriority,
		Groups: []*api.Group{{Name: "t", Count: 1, Tasks: []*api.Task{{
			Name: "t", Driver: api.DriverExec,
			Resources: api.Resources{CPU: t.CPU, Memory: t.Memory, GPU: gpuRequest(t)},
		}}}},
	}
}

// Point is the cluster after one task was tried.
type Point struct {
	Arrived int64   // milli-GPU asked for by the tasks tried so far
	Used    int64   // milli-GPU held by placed tasks
	Frag    float64 // fragmentation against the typical tasks, milli-GPU
	Idle    int64   // free milli-GPU
}

// Replay tries every task once, in order, against a fresh cluster of the
// nodes, with the engine's configuration, and records a Point after each.
// metric measures fragmentation (the typical tasks of the original list).
// It returns the points and how many tasks were placed.
func Replay(ctx context.Context, eng *scheduler.Engine, nodes []*api.Node, tasks []Task, metric *policy.FragModel) ([]Point, int, error) {
	c := eng.NewCluster(&scheduler.Snapshot{Nodes: nodes})
	var free []int
	frags := make([]float64, len(c.Nodes()))
	idles := make([]int64, len(c.Nodes()))
	var frag float64
	var idle int64
	measure := func(n *scheduler.NodeState) (float64, int64) {
		var model string
		free, model = policy.NodeFree(n, free)
		cpu, _ := n.CPU()
		f := metric.Frag(metric.Class(model), cpu, free)
		var sum int64
		for _, v := range free {
			sum += int64(v)
		}
		return f, sum
	}
	for i, n := range c.Nodes() {
		f, s := measure(n)
		frags[i], idles[i] = f, s
		frag += f
		idle += s
	}
	points := make([]Point, 0, len(tasks))
	var arrived, used int64
	placed := 0
	for i := range tasks {
		if i%256 == 0 && ctx.Err() != nil {
			return nil, 0, ctx.Err()
		}
		t := &tasks[i]
		plan, err := eng.Plan(c, &scheduler.Request{Job: TaskJob(i, t), Place: []scheduler.Placement{{Group: "t"}}})
		if err != nil {
			return nil, 0, fmt.Errorf("task %d (%s): %w", i, t.Name, err)
		}
		demand := int64(t.GPUMilli())
		arrived += demand
		if len(plan.Placed) == 1 {
			placed++
			used += demand
			n := c.Node(plan.Placed[0].NodeID)
			f, s := measure(n)
			k := n.Index()
			frag += f - frags[k]
			idle += s - idles[k]
			frags[k], idles[k] = f, s
		}
		points = append(points, Point{Arrived: arrived, Used: used, Frag: frag, Idle: idle})
	}
	return points, placed, nil
}
