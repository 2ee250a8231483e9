package policy_test

import (
	"fmt"
	"math"
	"testing"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/scheduler"
	"github.com/gantryhq/gantry/internal/scheduler/policy"
)

// node is a test node: cpu millicores, and the milli already taken on
// each of its GPUs (by one share per GPU, or whole when 1000).
type node struct {
	name  string
	cpu   int
	model string
	used  []int
}

// cluster builds the scheduler's view of the nodes with their GPUs in use.
func cluster(t *testing.T, nodes []node) (*scheduler.Cluster, []*api.Node) {
	t.Helper()
	var ns []*api.Node
	var allocs []*api.Allocation
	for _, n := range nodes {
		an := &api.Node{ID: n.name, Name: n.name, Status: api.NodeStatusReady,
			Resources: api.NodeResources{CPU: n.cpu, Memory: 1 << 20},
			Drivers:   map[string]api.DriverInfo{api.DriverExec: {Detected: true, Healthy: true}}}
		model := n.model
		if model == "" {
			model = "T4"
		}
		for i, u := range n.used {
			uuid := fmt.Sprintf("%s-%d", n.name, i)
			an.GPUs = append(an.GPUs, api.GPUDevice{UUID: uuid, Index: i, Model: model, Memory: 16000})
			var g *api.AllocatedGPU
			switch {
			case u == 1000:
				g = &api.AllocatedGPU{Devices: []string{uuid}}
			case u > 0:
				g = &api.AllocatedGPU{Share: &api.ShareAssignment{GPU: uuid, Milli: u, Memory: u * 16}}
			default:
				continue
			}
			allocs = append(allocs, &api.Allocation{ID: uuid + "-a", Namespace: "default", Job: "old", Group: "g", NodeID: n.name,
				Resources: map[string]*api.AllocatedResources{"t": {GPU: g}}})
		}
		ns = append(ns, an)
	}
	return scheduler.NewCluster(&scheduler.Snapshot{Nodes: ns, Allocs: allocs}), ns
}

// place plans one task with the policy and returns the node and, for a
// share, the GPU index it got.
func place(t *testing.T, pol scheduler.GPUScorer, c *scheduler.Cluster, cpu int, gpu *api.GPURequest) (string, int) {
	t.Helper()
	eng := scheduler.New(scheduler.Config{GPUScorer: pol, SampleSize: -1, DisablePreemption: true})
	plan, err := eng.Plan(c, &scheduler.Request{
		Job: &api.Job{Name: "new", Namespace: "default", Type: api.JobBatch, Priority: 50,
			Groups: []*api.Group{{Name: "g", Count: 1, Tasks: []*api.Task{{Name: "t", Driver: api.DriverExec,
				Resources: api.Resources{CPU: cpu, Memory: 1, GPU: gpu}}}}}},
		Place: []scheduler.Placement{{Group: "g"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Placed) != 1 {
		t.Fatalf("not placed: %+v", plan.Failed)
	}
	a := plan.Placed[0]
	dev := -1
	if g := a.Resources["t"].GPU; g != nil && g.Share != nil {
		fmt.Sscanf(g.Share.GPU[len(a.NodeID)+1:], "%d", &dev)
	}
	return a.NodeID, dev
}

func share(m int) *api.GPURequest { return &api.GPURequest{Share: &api.GPUShare{Milli: m}} }
func whole(n int) *api.GPURequest { return &api.GPURequest{Count: n} }

// typical: half 1-GPU tasks, a quarter 500-milli shares, a quarter CPU-only.
var typical = []policy.Typical{
	{Shape: policy.Shape{CPU: 4000, Milli: 1000, Count: 1}, Weight: 0.5},
	{Shape: policy.Shape{CPU: 4000, Milli: 500, Count: 1}, Weight: 0.25},
	{Shape: policy.Shape{CPU: 8000}, Weight: 0.25},
}

func newPolicy(t *testing.T, name string, rank map[string]int) policy.Scorer {
	t.Helper()
	p, err := policy.New(name, policy.Env{Seed: 1, Typical: typical, Rank: rank})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPolicyChoices(t *testing.T) {
	for _, tc := range []struct {
		name, policy string
		nodes        []node
		cpu          int
		gpu          *api.GPURequest
		wantNode     string
		wantGPU      int // for shares; -1: not checked
	}{
		{"bestfit takes the tightest node", policy.BestFit,
			[]node{{"a", 32000, "", []int{0, 0, 0, 0}}, {"b", 32000, "", []int{1000, 1000, 0, 0}}},
			4000, whole(1), "b", -1},
		{"bestfit takes the least-free GPU for a share", policy.BestFit,
			[]node{{"a", 32000, "", []int{200, 600, 0, 0}}},
			4000, share(300), "a", 1},
		{"packing prefers an already shared GPU", policy.Packing,
			[]node{{"a", 32000, "", []int{0, 0}}, {"b", 32000, "", []int{1000, 0}}, {"c", 32000, "", []int{500, 0}}},
			4000, share(300), "c", 0},
		{"packing prefers free GPUs on a node in use over an idle node", policy.Packing,
			[]node{{"a", 32000, "", []int{0, 0}}, {"b", 32000, "", []int{1000, 0}}},
			4000, whole(1), "b", -1},
		{"clustering prefers a node running only the same kind", policy.Clustering,
			[]node{{"a", 32000, "", []int{0, 0, 0, 0}}, {"b", 32000, "", []int{300, 0, 0, 0}}, {"c", 32000, "", []int{1000, 0, 0, 0}}},
			4000, whole(1), "c", -1},
		{"clustering sends shares to shared nodes", policy.Clustering,
			[]node{{"a", 32000, "", []int{0, 0, 0, 0}}, {"b", 32000, "", []int{300, 0, 0, 0}}, {"c", 32000, "", []int{1000, 0, 0, 0}}},
			4000, share(100), "b", -1},
		{"dotprod prefers the node with less free to align with", policy.DotProd,
			[]node{{"a", 96000, "", []int{0, 0, 0, 0, 0, 0, 0, 0}}, {"b", 16000, "", []int{0, 0}}},
			8000, whole(1), "b", -1},
		{"fgd fills the GPU a share leaves least fragment on", policy.FGD,
			[]node{{"a", 32000, "", []int{0, 0}}, {"b", 32000, "", []int{500, 1000}}},
			4000, share(500), "b", 0},
		{"fgd keeps whole GPUs whole", policy.FGD,
			[]node{{"a", 32000, "", []int{0, 0}}, {"b", 32000, "", []int{0, 400}}},
			4000, share(500), "b", 1},
		{"gantry keeps the CPU next to idle GPUs", policy.Gantry,
			[]node{{"a", 12000, "", []int{0, 0}}, {"b", 64000, "", []int{1000, 1000}}},
			10000, nil, "b", -1},
		{"gantry takes the fullest GPU among equals", policy.Gantry,
			[]node{{"a", 32000, "", []int{100, 200, 1000, 1000}}},
			4000, share(100), "a", 1},
		{"fgd takes the lowest index among equals", policy.FGD,
			[]node{{"a", 32000, "", []int{100, 200, 1000, 1000}}},
			4000, share(100), "a", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := cluster(t, tc.nodes)
			gotNode, gotGPU := place(t, newPolicy(t, tc.policy, nil), c, tc.cpu, tc.gpu)
			if gotNode != tc.wantNode || (tc.wantGPU >= 0 && gotGPU != tc.wantGPU) {
				t.Fatalf("placed on %s GPU %d, want %s GPU %d", gotNode, gotGPU, tc.wantNode, tc.wantGPU)
			}
		})
	}
}

// Ties go to the lowest rank, not to the first node.
func TestPolicyTiesFollowRank(t *testing.T) {
	nodes := []node{{"a", 32000, "", []int{0, 0}}, {"b", 32000, "", []int{0, 0}}, {"c", 32000, "", []int{0, 0}}}
	for _, name := range []string{policy.BestFit, policy.FGD, policy.Packing, policy.Gantry} {
		c, _ := cluster(t, nodes)
		got, _ := place(t, newPolicy(t, name, map[string]int{"a": 2, "b": 0, "c": 1}), c, 4000, whole(1))
		if got != "b" {
			t.Errorf("%s: tie went to %s, want b (rank 0)", name, got)
		}
	}
}

// Random spreads over every feasible node and is the same for a seed.
func TestRandomPolicy(t *testing.T) {
	nodes := []node{{"a", 320000, "", []int{0, 0, 0, 0}}, {"b", 320000, "", []int{0, 0, 0, 0}}, {"c", 320000, "", []int{0, 0, 0, 0}}}
	run := func() []string {
		c, _ := cluster(t, nodes)
		p := newPolicy(t, policy.Random, nil)
		var got []string
		for i := 0; i < 9; i++ {
			n, _ := place(t, p, c, 1000, share(100))
			got = append(got, n)
		}
		return got
	}
	a, b := run(), run()
	seen := map[string]bool{}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("two runs with one seed differ: %v %v", a, b)
		}
		seen[a[i]] = true
	}
	if len(seen) < 2 {
		t.Fatalf("random placed everything on %v", a)
	}
}

// FragModel on hand-made nodes (see the study's definition).
func TestFrag(t *testing.T) {
	m := policy.NewFragModel(typical)
	t4 := m.Class("T4")
	for _, tc := range []struct {
		name string
		cpu  int
		free []int
		want float64
	}{
		{"no GPUs", 32000, nil, 0},
		{"idle node: only the CPU-only quarter", 32000, []int{1000, 1000}, 0.25 * 2000},
		// 300 free on GPU 0: too small for both GPU tasks (0.75 × 300),
		// plus the CPU-only quarter of all 1300 idle.
		{"partial GPU", 32000, []int{300, 1000}, 0.75*300 + 0.25*1300},
		// Too little CPU for any typical task: all idle is fragment.
		{"no CPU", 1000, []int{1000, 1000}, 2000},
		// 600 and 500 free: the 1-GPU task fits nowhere (all 1100 × 0.5);
		// the share fits, nothing smaller than 500 (0); CPU-only 0.25 × 1100.
		{"shares only", 32000, []int{600, 500}, 0.5*1100 + 0.25*1100},
	} {
		if got := m.Frag(t4, tc.cpu, tc.free); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("%s: frag %v, want %v", tc.name, got, tc.want)
		}
	}
	// A model the typical tasks do not accept: all idle is fragment.
	mv := policy.NewFragModel([]policy.Typical{{Shape: policy.Shape{CPU: 1, Milli: 1000, Count: 1, Model: "V100M16|V100M32"}, Weight: 1}})
	if got := mv.Frag(mv.Class("T4"), 32000, []int{1000}); got != 1000 {
		t.Errorf("inaccessible model: frag %v, want 1000", got)
	}
	if got := mv.Frag(mv.Class("V100M32"), 32000, []int{1000}); got != 0 {
		t.Errorf("accessible model: frag %v, want 0", got)
	}
}

func TestTypicalTasks(t *testing.T) {
	a := policy.Shape{CPU: 1000, Milli: 500, Count: 1}
	b := policy.Shape{CPU: 2000, Milli: 1000, Count: 1}
	c := policy.Shape{CPU: 3000}
	d := policy.Shape{CPU: 500, Milli: 1000, Count: 8}
	var tasks []policy.Shape
	for i := 0; i < 50; i++ {
		tasks = append(tasks, a)
	}
	for i := 0; i < 30; i++ {
		tasks = append(tasks, b)
	}
	for i := 0; i < 17; i++ {
		tasks = append(tasks, c)
	}
	for i := 0; i < 3; i++ {
		tasks = append(tasks, d)
	}
	got := policy.TypicalTasks(tasks, 0.95)
	if len(got) != 3 || got[0].Shape != a || got[1].Shape != b || got[2].Shape != c {
		t.Fatalf("typical %+v", got)
	}
	if w := got[0].Weight; math.Abs(w-50.0/97) > 1e-12 {
		t.Fatalf("weight %v, want 50/97 (renormalised)", w)
	}
}

func TestNewRejects(t *testing.T) {
	if _, err := policy.New("tetris", policy.Env{}); err == nil {
		t.Fatal("unknown policy accepted")
	}
	if _, err := policy.New(policy.FGD, policy.Env{}); err == nil {
		t.Fatal("fgd without typical tasks accepted")
	}
}
