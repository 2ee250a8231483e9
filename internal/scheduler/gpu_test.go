package scheduler_test

import (
	"strings"
	"testing"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/scheduler"
	. "github.com/gantryhq/gantry/internal/scheduler/schedtest"
)

const h100 = "NVIDIA H100 80GB HBM3"

func gpuOf(a *api.Allocation, task string) *api.AllocatedGPU { return a.Resources[task].GPU }

func TestWholeGPUsPreferNVLink(t *testing.T) {
	h := New(scheduler.Config{})
	// GPUs 0-1, 2-3 … linked in pairs; NUMA 0 holds 0-3.
	h.AddNodes(Node("g", CPU(64000), Memory(512000), GPUs(8, h100, 81559), NVLinkPairs()))
	p := mustRun(t, h, Job("a", Group("g", 1, Task("t", 1000, 1000, WholeGPUs(1, "")))))
	p = mustRun(t, h, Job("b", Group("g", 1, Task("t", 1000, 1000, WholeGPUs(2, "H100*")))))
	got := gpuOf(p.Placed[0], "t").Devices
	if len(got) != 2 || got[0] != "g-gpu2" || got[1] != "g-gpu3" {
		t.Fatalf("2 GPUs: %v, want an idle NVLink pair [g-gpu2 g-gpu3]", got)
	}
	p = mustRun(t, h, Job("c", Group("g", 1, Task("t", 1000, 1000, WholeGPUs(6, "")))))
	if p.Failed == nil || !strings.Contains(p.Failed["g"].String(), "GPUs exhausted: 6 idle needed on 1") {
		t.Fatalf("explanation: %v", p.Failed)
	}
	p = mustRun(t, h, Job("d", Group("g", 1, Task("t", 1000, 1000, WholeGPUs(1, "A100*")))))
	if p.Failed == nil || p.Failed["g"].String() != "0/1 nodes fit: no GPU of model A100* on 1" {
		t.Fatalf("explanation: %v", p.Failed)
	}
}

func TestUnhealthyGPUsNeverUsed(t *testing.T) {
	h := New(scheduler.Config{})
	h.AddNodes(Node("g", CPU(64000), Memory(512000), GPUs(2, h100, 81559, Unhealthy(0))))
	p := mustRun(t, h, Job("a", Group("g", 2, Task("t", 10, 10, WholeGPUs(1, "")))))
	if len(p.Placed) != 1 || gpuOf(p.Placed[0], "t").Devices[0] != "g-gpu1" {
		t.Fatalf("placed %d on %v", len(p.Placed), p.Placed)
	}
	u := New(scheduler.Config{})
	u.AddNodes(Node("u", CPU(64000), Memory(512000), GPUs(1, h100, 81559, Unhealthy(0))))
	p = mustRun(t, u, Job("b", Group("g", 1, Task("t", 10, 10, Share(100, 0, false)))))
	if p.Failed == nil || !strings.Contains(p.Failed["g"].String(), "GPUs unhealthy") {
		t.Fatalf("explanation: %v", p.Failed)
	}
}

func TestMIGCreatesAtBestSlotAndReusesInstances(t *testing.T) {
	h := New(scheduler.Config{})
	h.AddNodes(Node("m", CPU(64000), Memory(512000),
		GPUs(1, "NVIDIA A100-SXM4-40GB", 40960, MIGMode(true), Instances(api.MIGInstance{Profile: "1g.5gb", Start: 0, Size: 1}))))
	// An existing free 1g.5gb instance is used as it is.
	p := mustRun(t, h, Job("a", Group("g", 1, Task("t", 10, 10, MIG("1g.5gb")))))
	m := gpuOf(p.Placed[0], "t").MIG
	if m == nil || m.Create || m.Start != 0 || m.InstanceUUID == "" {
		t.Fatalf("want the existing instance, got %+v", m)
	}
	// Slot 0 is taken, so 4g.20gb is gone; the next one is created at 1,
	// which keeps 3g.20gb at 4 and the 2g slots at 2 and 4 placeable.
	p = mustRun(t, h, Job("b", Group("g", 1, Task("t", 10, 10, MIG("1g.5gb")))))
	m = gpuOf(p.Placed[0], "t").MIG
	if m == nil || !m.Create || m.Start != 1 || m.Size != 1 {
		t.Fatalf("want a new instance at 1, got %+v", m)
	}
	p = mustRun(t, h, Job("c", Group("g", 1, Task("t", 10, 10, MIG("3g.20gb")))))
	m = gpuOf(p.Placed[0], "t").MIG
	if m == nil || !m.Create || m.Start != 4 {
		t.Fatalf("3g.20gb: %+v", m)
	}
	p = mustRun(t, h, Job("d", Group("g", 1, Task("t", 10, 10, MIG("3g.20gb")))))
	if p.Failed == nil || !strings.Contains(p.Failed["g"].String(), "MIG profile 3g.20gb: no free slot on 1") {
		t.Fatalf("explanation: %v", p.Failed)
	}
	p = mustRun(t, h, Job("e", Group("g", 1, Task("t", 10, 10, MIG("3g.40gb")))))
	if p.Failed == nil || !strings.Contains(p.Failed["g"].String(), "MIG profile 3g.40gb not offered") {
		t.Fatalf("explanation: %v", p.Failed)
	}
}

func TestMIGUnmanagedUsesOnlyExistingInstances(t *testing.T) {
	h := New(scheduler.Config{})
	h.AddNodes(Node("m", CPU(64000), Memory(512000), GPUs(1, h100, 81559, MIGMode(false),
		Instances(api.MIGInstance{Profile: "3g.40gb", Start: 4, Size: 4}))))
	p := mustRun(t, h, Job("a", Group("g", 2, Task("t", 10, 10, MIG("3g.40gb")))))
	if len(p.Placed) != 1 || p.Failed["g"].Unplaced != 1 {
		t.Fatalf("placed %d failed %v", len(p.Placed), p.Failed)
	}
}

func TestSharesPackAndNeverMixForms(t *testing.T) {
	h := New(scheduler.Config{})
	h.AddNodes(Node("s", CPU(64000), Memory(512000), GPUs(2, "Tesla T4", 15360)))
	for i := 0; i < 4; i++ {
		mustRun(t, h, Job("s"+string(rune('a'+i)), Group("g", 1, Task("t", 10, 10, Share(250, 0, false)))))
	}
	used := map[string]int{}
	for _, a := range h.Live("") {
		s := gpuOf(a, "t").Share
		used[s.GPU] += s.Milli
		if s.Memory != 3840 {
			t.Fatalf("default memory %d, want 250/1000 of 15360", s.Memory)
		}
	}
	if used["s-gpu0"] != 1000 || used["s-gpu1"] != 0 {
		t.Fatalf("shares did not pack: %v", used)
	}
	// GPU 0 is full of shares; a whole-GPU task takes GPU 1, then nothing
	// is left for either form.
	mustRun(t, h, Job("w", Group("g", 1, Task("t", 10, 10, WholeGPUs(1, "")))))
	p := mustRun(t, h, Job("x", Group("g", 1, Task("t", 10, 10, Share(10, 0, false)))))
	if p.Failed == nil {
		t.Fatal("a share landed on a whole GPU or a full one")
	}
}

func TestShareEnforceAndMemory(t *testing.T) {
	h := New(scheduler.Config{})
	h.AddNodes(Node("plain", CPU(64000), Memory(512000), GPUs(1, h100, 81559)),
		Node("mps", CPU(64000), Memory(512000), GPUs(1, h100, 81559, Enforced())))
	p := mustRun(t, h, Job("a", Group("g", 1, Task("t", 10, 10, Share(460, 8192, true)))))
	s := gpuOf(p.Placed[0], "t").Share
	if p.Placed[0].NodeName != "mps" || s.Memory != 8192 || !s.Enforce {
		t.Fatalf("enforced share on %s: %+v", p.Placed[0].NodeName, s)
	}
	p = mustRun(t, h, Job("b", Group("g", 1, Task("t", 10, 10, Share(100, 80000, true)))))
	if p.Failed == nil || !strings.Contains(p.Failed["g"].String(), "no GPU enforces shares on 1") ||
		!strings.Contains(p.Failed["g"].String(), "GPU share: no GPU with 100 milli and 80000 MiB free on 1") {
		t.Fatalf("explanation: %v", p.Failed)
	}
}

func TestSeveralGPUTasksInOneGroup(t *testing.T) {
	h := New(scheduler.Config{})
	h.AddNodes(Node("g", CPU(64000), Memory(512000), GPUs(2, h100, 81559)))
	p := mustRun(t, h, Job("a", Group("g", 1,
		Task("x", 10, 10, Share(700, 0, false)),
		Task("y", 10, 10, Share(700, 0, false)),
		Task("z", 10, 10, WholeGPUs(1, "")))))
	if len(p.Placed) != 0 {
		t.Fatalf("two 700-milli shares and a whole GPU do not fit 2 GPUs, placed %v", gpuOf(p.Placed[0], "x"))
	}
	p = mustRun(t, h, Job("b", Group("g", 1,
		Task("x", 10, 10, Share(500, 0, false)),
		Task("y", 10, 10, Share(500, 0, false)),
		Task("z", 10, 10, WholeGPUs(1, "")))))
	if len(p.Placed) != 1 {
		t.Fatalf("failed: %v", p.Failed)
	}
	a := p.Placed[0]
	if gpuOf(a, "x").Share.GPU != gpuOf(a, "y").Share.GPU || gpuOf(a, "z").Devices[0] == gpuOf(a, "x").Share.GPU {
		t.Fatalf("collision: %+v %+v %+v", gpuOf(a, "x").Share, gpuOf(a, "y").Share, gpuOf(a, "z").Devices)
	}
}

func TestGPUComputeCapabilityAndMemory(t *testing.T) {
	h := New(scheduler.Config{})
	h.AddNodes(Node("old", CPU(64000), Memory(512000), GPUs(4, "Tesla V100-SXM2-16GB", 16384, CC("7.0"))),
		Node("new", CPU(64000), Memory(512000), GPUs(4, h100, 81559, CC("9.0"))))
	p := mustRun(t, h, Job("a", Group("g", 1, Task("t", 10, 10, GPUReq(api.GPURequest{Count: 1, ComputeCapabilityMin: "8.0"})))))
	if p.Placed[0].NodeName != "new" {
		t.Fatal(p.Placed[0].NodeName)
	}
	p = mustRun(t, h, Job("b", Group("g", 1, Task("t", 10, 10, GPUReq(api.GPURequest{Count: 1, MemoryMin: 100000})))))
	if p.Failed == nil || p.Failed["g"].String() != "0/2 nodes fit: no GPU with 100000 MiB of memory on 2" {
		t.Fatalf("%v", p.Failed)
	}
}

// A scorer can choose the node and the device; the core honours it.
func TestPluggableScorerChoosesNodeAndDevice(t *testing.T) {
	var seen int
	worst := scheduler.GPUScorerFunc(func(n *scheduler.NodeState, ask *scheduler.Ask, c *scheduler.Choice) (float64, bool) {
		seen++
		// Prefer the emptiest node and the last eligible device on it.
		free, _ := n.CPU()
		c.Pick(0, c.Eligible[0][len(c.Eligible[0])-1])
		return float64(free), true
	})
	h := New(scheduler.Config{GPUScorer: worst})
	h.AddNodes(Node("a", CPU(8000), Memory(64000), GPUs(4, "T4", 15360)),
		Node("b", CPU(16000), Memory(64000), GPUs(4, "T4", 15360)))
	p := mustRun(t, h, Job("x", Group("g", 1, Task("t", 10, 10, Share(300, 0, false)))))
	s := gpuOf(p.Placed[0], "t").Share
	if p.Placed[0].NodeName != "b" || s.GPU != "b-gpu3" || seen != 2 {
		t.Fatalf("scorer ignored: %s %s (seen %d)", p.Placed[0].NodeName, s.GPU, seen)
	}
}

// planScorer hands each Plan the scorer it was given and records the
// clusters it was asked for.
type planScorer struct {
	scheduler.GPUScorer // never called: Plan uses what ForPlan returns
	give                scheduler.GPUScorer
	asked               []*scheduler.Cluster
}

func (p *planScorer) ForPlan(c *scheduler.Cluster) scheduler.GPUScorer {
	p.asked = append(p.asked, c)
	return p.give
}

type cpuToo struct {
	scheduler.GPUScorer
	cpu func(n *scheduler.NodeState) float64
}

func (c cpuToo) ScoreCPU(n *scheduler.NodeState, _ *scheduler.Ask) (float64, bool) {
	return c.cpu(n), true
}

// A PlanScorer is asked once per Plan, with its cluster, and what it
// returns rates GPU work and (being a CPUScorer) work without GPUs; nil
// means BestFit.
func TestPlanScorerIsAskedOncePerPlan(t *testing.T) {
	never := scheduler.GPUScorerFunc(func(*scheduler.NodeState, *scheduler.Ask, *scheduler.Choice) (float64, bool) {
		t.Fatal("the configured scorer was called instead of the one ForPlan returned")
		return 0, false
	})
	emptiest := scheduler.GPUScorerFunc(func(n *scheduler.NodeState, _ *scheduler.Ask, _ *scheduler.Choice) (float64, bool) {
		free, _ := n.CPU()
		return float64(free), true
	})
	ps := &planScorer{GPUScorer: never, give: cpuToo{emptiest, func(n *scheduler.NodeState) float64 {
		free, _ := n.CPU()
		return float64(free)
	}}}
	eng := scheduler.New(scheduler.Config{GPUScorer: ps, SampleSize: -1})
	nodes := []*api.Node{Node("a", CPU(8000), Memory(64000), GPUs(2, "T4", 15360)), Node("b", CPU(16000), Memory(64000), GPUs(2, "T4", 15360))}
	c := eng.NewCluster(&scheduler.Snapshot{Nodes: nodes})
	for i, job := range []*api.Job{
		Job("gpu", Group("g", 1, Task("t", 100, 10, Share(300, 0, false)))),
		Job("cpu", Group("g", 1, Task("t", 100, 10))),
	} {
		plan, err := eng.Plan(c, Request(job))
		if err != nil {
			t.Fatal(err)
		}
		if len(ps.asked) != i+1 || ps.asked[i] != c {
			t.Fatalf("ForPlan asked %d times (%v), want once per plan with the plan's cluster", len(ps.asked), ps.asked)
		}
		for _, a := range plan.Placed {
			if a.NodeName != "b" {
				t.Fatalf("%s placed on %s: the scorer from ForPlan was not used", a.Name(), a.NodeName)
			}
		}
	}
	// nil: BestFit, which fills the tighter node.
	ps.give = nil
	plan, err := eng.Plan(eng.NewCluster(&scheduler.Snapshot{Nodes: nodes}), Request(Job("x", Group("g", 1, Task("t", 100, 10, Share(300, 0, false))))))
	if err != nil || len(plan.Placed) != 1 || plan.Placed[0].NodeName != "a" {
		t.Fatalf("nil from ForPlan: %v %+v, want BestFit's choice a", err, plan)
	}
}
