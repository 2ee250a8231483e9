package policy_test

import (
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/gpu"
	"github.com/gantryhq/gantry/internal/scheduler"
	"github.com/gantryhq/gantry/internal/scheduler/policy"
)

// typicalJobs are jobs whose replicas have the shapes of typical, in its
// proportions.
func typicalJobs() []*api.Job {
	return []*api.Job{
		jobOf("train", grp(2, tsk(4000, whole(1)))),
		jobOf("infer", grp(1, tsk(4000, share(500)))),
		jobOf("etl", grp(1, tsk(8000, nil))),
	}
}

func newOnline(t *testing.T, name string, jobs ...*api.Job) *policy.Online {
	t.Helper()
	o, err := policy.NewOnline(name)
	if err != nil {
		t.Fatal(err)
	}
	o.Observe(jobs...)
	return o
}

func TestOnlineRejectsUnknownPolicy(t *testing.T) {
	if _, err := policy.NewOnline("tetris"); err == nil {
		t.Fatal("NewOnline accepted an unknown policy")
	}
}

// Until a job is observed fgd and gantry have no typical tasks: GPU work
// is placed by BestFit. Policies that need none start at once.
func TestOnlineWithoutHistoryIsBestFit(t *testing.T) {
	c, _ := cluster(t, []node{{"a", 32000, "", []int{0, 0}}})
	for _, name := range []string{policy.Gantry, policy.FGD} {
		if got := newOnline(t, name).ForPlan(c); got != (scheduler.BestFit{}) {
			t.Errorf("%s with no job observed: %T, want BestFit", name, got)
		}
		if got := newOnline(t, name, typicalJobs()...).ForPlan(c); got == (scheduler.BestFit{}) {
			t.Errorf("%s with jobs observed: still BestFit", name)
		}
	}
	if got := newOnline(t, policy.Packing).ForPlan(c); got == (scheduler.BestFit{}) {
		t.Error("packing needs no history but got BestFit")
	}
}

// One instance per Cluster, kept while the cluster and the typical set
// stay; a new one for another cluster or a changed set.
func TestOnlineInstances(t *testing.T) {
	o := newOnline(t, policy.Gantry, typicalJobs()...)
	c1, _ := cluster(t, []node{{"a", 32000, "", []int{0, 0}}})
	c2, _ := cluster(t, []node{{"a", 32000, "", []int{0, 0}}})
	first := o.ForPlan(c1)
	if o.ForPlan(c1) != first {
		t.Fatal("a second plan on the same cluster got a new instance: its caches are lost")
	}
	if o.ForPlan(c2) == first {
		t.Fatal("another cluster got the same instance: caches keyed by node index and Gen would be shared")
	}
	cur := o.ForPlan(c1)
	o.Observe(typicalJobs()...) // the same jobs again
	o.Observe(jobOf("train", grp(2, tsk(4000, whole(1)))))
	if o.ForPlan(c1) != cur {
		t.Fatal("observing the same jobs again rebuilt the instance")
	}
	o.Observe(jobOf("more", grp(1, tsk(4000, whole(1))))) // 1-GPU tasks: 2/4 → 3/5 of the replicas
	if o.ForPlan(c1) == cur {
		t.Fatal("a changed typical set kept the old instance")
	}
	if got := o.Typical(); got[0].Shape != (policy.Shape{CPU: 4000, Milli: 1000, Count: 1}) || got[0].Weight != 0.6 {
		t.Fatalf("typical %+v", got)
	}
}

// The set in use follows the learnt one only once it drifted
// RebuildDrift away; Reset adopts the learnt set at once.
func TestOnlineRebuildsOnDrift(t *testing.T) {
	o := newOnline(t, policy.Gantry, jobOf("a", grp(50, tsk(1000, whole(1)))), jobOf("b", grp(50, tsk(1000, share(500)))))
	c, _ := cluster(t, []node{{"a", 32000, "", []int{0, 0}}})
	inUse := o.Typical()
	first := o.ForPlan(c)
	o.Observe(jobOf("c", grp(8, tsk(1000, whole(1))))) // 58/108: a drift of 0.037
	if o.ForPlan(c) != first || !slices.Equal(o.Typical(), inUse) {
		t.Fatalf("a drift under %v replaced the set: %+v", policy.RebuildDrift, o.Typical())
	}
	o.Observe(jobOf("d", grp(6, tsk(1000, whole(1))))) // 64/114: 0.061 from the set in use
	if o.ForPlan(c) == first {
		t.Fatal("a drift over RebuildDrift kept the old instance")
	}
	if got := o.Typical(); math.Abs(got[0].Weight-64.0/114) > 1e-12 {
		t.Fatalf("typical %+v, want the learnt one", got)
	}
	o.Reset(jobOf("x", grp(1, tsk(1000, share(100)))))
	if got := o.Typical(); len(got) != 1 || got[0].Shape != (policy.Shape{CPU: 1000, Milli: 100, Count: 1}) {
		t.Fatalf("after Reset: %+v", got)
	}
	o.Reset()
	if got := o.ForPlan(c); got != (scheduler.BestFit{}) {
		t.Fatalf("after Reset with no jobs: %T, want BestFit", got)
	}
}

// Through the engine: a share goes to the fullest GPU among equals
// (gantry's rule), work without GPUs to nodes without GPUs first and, on
// GPU nodes, where it leaves the GPUs usable.
func TestOnlinePlaces(t *testing.T) {
	for _, tc := range []struct {
		name     string
		nodes    []node
		cpu      int
		gpu      *api.GPURequest
		wantNode string
		wantGPU  int
		bestFit  string // where the core's BestFit puts it, for contrast
	}{
		{"share on the fullest GPU among equals",
			[]node{{"a", 32000, "", []int{100, 200, 1000, 1000}}},
			4000, share(100), "a", 1, "a"},
		{"share where it fragments least",
			[]node{{"a", 32000, "", []int{0, 0}}, {"b", 32000, "", []int{500, 1000}}},
			4000, share(500), "b", 0, "b"},
		{"cpu work: nodes without GPUs first",
			[]node{{"a", 12000, "", []int{1000, 1000}}, {"c", 64000, "", nil}},
			8000, nil, "c", -1, "c"},
		{"cpu work on GPU nodes: keeps the cpu next to idle GPUs",
			[]node{{"a", 10000, "", []int{1000, 0}}, {"b", 32000, "", []int{1000, 1000}}},
			8000, nil, "b", -1, "a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := cluster(t, tc.nodes)
			gotNode, gotGPU := place(t, newOnline(t, policy.Gantry, typicalJobs()...), c, tc.cpu, tc.gpu)
			if gotNode != tc.wantNode || (tc.wantGPU >= 0 && gotGPU != tc.wantGPU) {
				t.Fatalf("placed on %s GPU %d, want %s GPU %d", gotNode, gotGPU, tc.wantNode, tc.wantGPU)
			}
			c, _ = cluster(t, tc.nodes)
			if got, _ := place(t, scheduler.BestFit{}, c, tc.cpu, tc.gpu); got != tc.bestFit {
				t.Fatalf("BestFit placed on %s, want %s", got, tc.bestFit)
			}
		})
	}
}

// Spread, MIG and groups with several GPU tasks are rated as BestFit
// rates them.
func TestOnlineLeavesWhatItDoesNotModelToBestFit(t *testing.T) {
	c, _ := cluster(t, []node{{"a", 32000, "", []int{300, 0}}})
	sc := newOnline(t, policy.Gantry, typicalJobs()...).ForPlan(c)
	n := c.Nodes()[0]
	shareAsk := scheduler.GPUAsk{Form: gpu.FormShare, Count: 1, Milli: 100}
	for name, ask := range map[string]*scheduler.Ask{
		"spread":    {CPU: 1000, Memory: 1, GPU: []scheduler.GPUAsk{shareAsk}, Spread: true},
		"MIG":       {CPU: 1000, Memory: 1, GPU: []scheduler.GPUAsk{{Form: gpu.FormMIG, Count: 1, Profile: "1g.5gb"}}},
		"two tasks": {CPU: 1000, Memory: 1, GPU: []scheduler.GPUAsk{shareAsk, shareAsk}},
	} {
		choice := func() *scheduler.Choice {
			return &scheduler.Choice{Eligible: make([][]int, len(ask.GPU)), Picked: make([][]int, len(ask.GPU))}
		}
		got, ok := sc.ScoreGPU(n, ask, choice())
		want, _ := scheduler.BestFit{}.ScoreGPU(n, ask, choice())
		if !ok || got != want {
			t.Errorf("%s: scored %v (ok %v), BestFit %v", name, got, ok, want)
		}
	}
}

// Plans on separate clusters may run while jobs are observed (the
// server's dry runs beside its broker); go test -race checks it.
func TestOnlineConcurrentUse(t *testing.T) {
	o := newOnline(t, policy.Gantry, typicalJobs()...)
	eng := scheduler.New(scheduler.Config{GPUScorer: o})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, _ := cluster(t, []node{{"a", 32000, "", []int{0, 0, 500, 0}}, {"b", 32000, "", []int{1000, 0}}})
			for i := range 20 {
				job := jobOf(fmt.Sprintf("j%d-%d", g, i), grp(1, tsk(1000, share(250))))
				if _, err := eng.Plan(c, &scheduler.Request{Job: job, Place: []scheduler.Placement{{Group: "g"}}}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for i := range 50 {
		o.Observe(jobOf(fmt.Sprintf("o%d", i), grp(1+i%3, tsk(2000, whole(1+i%2)))))
	}
	wg.Wait()
}

// The same jobs, observed in any order before the plans, give the same
// plans.
func TestOnlineDeterministic(t *testing.T) {
	jobs := append(typicalJobs(), jobOf("x", grp(3, tsk(2000, share(300)))), jobOf("y", grp(2, tsk(1000, whole(2)))))
	run := func(order []int) []string {
		o := newOnline(t, policy.Gantry)
		for _, i := range order {
			o.Observe(jobs[i])
		}
		c, _ := cluster(t, []node{{"a", 32000, "", []int{0, 0, 500, 0}}, {"b", 32000, "", []int{1000, 0}}, {"c", 16000, "", []int{0, 300}}})
		var got []string
		for i := range 8 {
			n, g := place(t, o, c, 2000, share(100+100*(i%4)))
			got = append(got, fmt.Sprintf("%s/%d", n, g))
		}
		return got
	}
	a, b := run([]int{0, 1, 2, 3, 4}), run([]int{4, 2, 0, 3, 1})
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatalf("plans differ with the order jobs were observed in:\n%v\n%v", a, b)
	}
}
