package policy_test

import (
	"encoding/json"
	"fmt"
	"reflect"
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

func serve(t *testing.T, name string, jobs ...*api.Job) *policy.Served {
	t.Helper()
	s, err := policy.Serve(name, policy.Learn(jobs...))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestServeRejectsUnknownPolicy(t *testing.T) {
	if _, err := policy.Serve("tetris", nil); err == nil {
		t.Fatal("Serve accepted an unknown policy")
	}
}

// With no job in the store fgd and gantry have no typical tasks: GPU work
// is placed by BestFit. Policies that need none start at once.
func TestServedWithoutJobsIsBestFit(t *testing.T) {
	c, _ := cluster(t, []node{{"a", 32000, "", []int{0, 0}}})
	for _, name := range []string{policy.Gantry, policy.FGD} {
		if got := serve(t, name).ForPlan(c); got != (scheduler.BestFit{}) {
			t.Errorf("%s with no job: %T, want BestFit", name, got)
		}
		if got := serve(t, name, typicalJobs()...).ForPlan(c); got == (scheduler.BestFit{}) {
			t.Errorf("%s with jobs: still BestFit", name)
		}
	}
	if got := serve(t, policy.Packing).ForPlan(c); got == (scheduler.BestFit{}) {
		t.Error("packing needs no jobs but got BestFit")
	}
}

// Learnt is a function of the set of jobs: order, versions that came and
// went, and the index read at do not change its version; the jobs'
// shapes do.
func TestLearntVersion(t *testing.T) {
	jobs := append(typicalJobs(), jobOf("x", grp(3, tsk(2000, share(300)))))
	for i, j := range jobs {
		j.ModifyIndex = int64(10 + i)
	}
	a := policy.Learn(jobs...)
	b := policy.Learn(jobs[3], jobs[2], jobs[1], jobs[0])
	if a.Version != b.Version || !slices.Equal(a.Typical, b.Typical) {
		t.Fatalf("same jobs, different Learnt:\n%+v\n%+v", a, b)
	}
	if a.Jobs != 4 || a.Replicas != 7 || a.Index != 13 {
		t.Fatalf("counted %d jobs, %d replicas at %d; want 4, 7 at 13", a.Jobs, a.Replicas, a.Index)
	}
	c := policy.Learn(append(jobs, jobOf("y", grp(1, tsk(2000, share(300)))))...)
	if c.Version == a.Version {
		t.Fatalf("another job of a typical shape moved the weights but not the version %s", a.Version)
	}
	if e := policy.Learn(); e.Version != "w1-empty" || len(e.Typical) != 0 {
		t.Fatalf("nothing learnt: %+v", e)
	}
	stopped := jobOf("x", grp(3, tsk(2000, share(300))))
	stopped.Stop = true
	if d := policy.Learn(append(jobs[:3:3], stopped)...); d.Version != policy.Learn(jobs[:3]...).Version {
		t.Fatal("a stopped job still counts")
	}
}

// LearntWith is what Learnt gives after Add of a new job, and leaves the
// Learner as it was: what `job plan` plans with matches what the worker
// plans with once the job is in the store.
func TestLearntWith(t *testing.T) {
	base := func() *policy.Learner {
		var jobs []*api.Job
		for i, j := range typicalJobs() {
			j.ModifyIndex = int64(i + 1)
			jobs = append(jobs, j)
		}
		return policy.LearnerOf(jobs...)
	}
	l := base()
	before := l.Learnt()
	for _, job := range []*api.Job{
		jobOf("new", grp(4, tsk(1000, share(250)))), // drifts far: adopted
		jobOf("few", grp(1, tsk(4000, whole(1)))),   // drifts little: the set in use stays
		jobOf("cpu", grp(0, tsk(1000, nil))),        // no replicas
	} {
		job.ModifyIndex = 100
		got := l.LearntWith(job)
		if after := l.Learnt(); !reflect.DeepEqual(after, before) {
			t.Fatalf("%s: LearntWith changed the Learner: %+v", job.Name, after)
		}
		l2 := base()
		l2.Add(job)
		if want := l2.Learnt(); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: LearntWith %+v, Add gives %+v", job.Name, got, want)
		}
	}
}

// The typical set in use follows the learnt one only once it drifted
// RebuildDrift away, in the order of the jobs' ModifyIndex.
func TestLearnerDrift(t *testing.T) {
	a, b := jobOf("a", grp(50, tsk(1000, whole(1)))), jobOf("b", grp(50, tsk(1000, share(500))))
	c, d := jobOf("c", grp(8, tsk(1000, whole(1)))), jobOf("d", grp(6, tsk(1000, whole(1))))
	for i, j := range []*api.Job{a, b, c, d} {
		j.ModifyIndex = int64(i + 1)
	}
	inUse := policy.Learn(a, b)
	if got := policy.Learn(a, b, c); got.Version != inUse.Version || got.Replicas != 108 { // 58/108: a drift of 0.037
		t.Fatalf("a drift under %v replaced the set: %+v", policy.RebuildDrift, got)
	}
	got := policy.Learn(d, c, b, a) // 64/114: 0.061 from the set in use
	if got.Version == inUse.Version || got.Typical[0].Weight != 64.0/114 {
		t.Fatalf("a drift over RebuildDrift kept the old set: %+v", got)
	}
}

// A Learnt survives JSON exactly: the weights' bits, and so the version
// and the plans made with it.
func TestLearntJSON(t *testing.T) {
	l := policy.Learn(append(typicalJobs(), jobOf("x", grp(3, tsk(2000, share(333)))))...)
	b, err := json.Marshal(l)
	if err != nil {
		t.Fatal(err)
	}
	var back policy.Learnt
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&back, l) || policy.TypicalVersion(back.Typical) != l.Version {
		t.Fatalf("round trip changed it:\n%+v\n%+v", l, &back)
	}
}

// Two Served built from the same Learnt (two leaders, or a dry run and
// the worker) place alike, whatever either planned before: a Served of
// fgd or gantry keeps its instance for one Cluster (its memo of ratings
// is a pure function of node states), a new Cluster gets a new one, and
// random gets a fresh instance (its own random source) every plan.
func TestServedSameLearntSamePlacements(t *testing.T) {
	learnt := policy.Learn(append(typicalJobs(), jobOf("x", grp(3, tsk(2000, share(300)))))...)
	nodes := []node{{"a", 32000, "", []int{0, 0, 500, 0}}, {"b", 32000, "", []int{1000, 0}}, {"c", 16000, "", []int{0, 300}}}
	for _, name := range []string{policy.Gantry, policy.FGD, policy.Random} {
		s1, _ := policy.Serve(name, learnt)
		s2, _ := policy.Serve(name, learnt)
		c, _ := cluster(t, nodes)
		c2nd, _ := cluster(t, nodes)
		memo := name != policy.Random
		if same := s1.ForPlan(c) == s1.ForPlan(c); same != memo {
			t.Fatalf("%s: two plans on one cluster shared one instance: %v, want %v", name, same, memo)
		}
		if name != policy.Random && s1.ForPlan(c) == s1.ForPlan(c2nd) {
			t.Fatalf("%s: plans on two clusters shared one instance", name)
		}
		// The first server has planned other work on another cluster
		// before; the second has not.
		other, _ := cluster(t, nodes)
		for i := range 5 {
			placeWith(t, s1, other, 1000+500*i, share(100*(i+1)))
		}
		c1, _ := cluster(t, nodes)
		c2, _ := cluster(t, nodes)
		var got1, got2 []string
		for i := range 8 {
			n, g := placeWith(t, s1, c1, 2000, share(100+100*(i%4)))
			got1 = append(got1, fmt.Sprintf("%s/%d", n, g))
			n, g = placeWith(t, s2, c2, 2000, share(100+100*(i%4)))
			got2 = append(got2, fmt.Sprintf("%s/%d", n, g))
		}
		if !slices.Equal(got1, got2) {
			t.Fatalf("%s: the same Learnt placed differently:\n%v\n%v", name, got1, got2)
		}
	}
}

// placeWith places one replica with sc passed as the request's Scorer on
// an engine whose own scorer is BestFit.
func placeWith(t *testing.T, sc scheduler.GPUScorer, c *scheduler.Cluster, cpu int, gpu *api.GPURequest) (string, int) {
	t.Helper()
	eng := scheduler.New(scheduler.Config{SampleSize: -1, DisablePreemption: true})
	plan, err := eng.Plan(c, &scheduler.Request{
		Job: &api.Job{Name: "new", Namespace: "default", Type: api.JobBatch, Priority: 50,
			Groups: []*api.Group{{Name: "g", Count: 1, Tasks: []*api.Task{{Name: "t", Driver: api.DriverExec,
				Resources: api.Resources{CPU: cpu, Memory: 1, GPU: gpu}}}}}},
		Place:  []scheduler.Placement{{Group: "g"}},
		Scorer: sc,
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

// The request's Scorer wins over the engine's: the same Served through
// Config.GPUScorer and through Request.Scorer places alike, and unlike
// the engine's BestFit where the two differ.
func TestRequestScorerOverridesConfig(t *testing.T) {
	nodes := []node{{"a", 10000, "", []int{1000, 0}}, {"b", 32000, "", []int{1000, 1000}}}
	s := serve(t, policy.Gantry, typicalJobs()...)
	c1, _ := cluster(t, nodes)
	c2, _ := cluster(t, nodes)
	c3, _ := cluster(t, nodes)
	viaConfig, _ := place(t, s, c1, 8000, nil)
	viaRequest, _ := placeWith(t, s, c2, 8000, nil)
	bestFit, _ := placeWith(t, nil, c3, 8000, nil)
	if viaConfig != "b" || viaRequest != viaConfig || bestFit != "a" {
		t.Fatalf("cpu work on GPU nodes: config %s, request %s, BestFit %s; want b, b, a", viaConfig, viaRequest, bestFit)
	}
}

// Through the engine: a share goes to the fullest GPU among equals
// (gantry's rule), work without GPUs to nodes without GPUs first and, on
// GPU nodes, where it leaves the GPUs usable.
func TestServedPlaces(t *testing.T) {
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
			gotNode, gotGPU := placeWith(t, serve(t, policy.Gantry, typicalJobs()...), c, tc.cpu, tc.gpu)
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
func TestServedLeavesWhatItDoesNotModelToBestFit(t *testing.T) {
	c, _ := cluster(t, []node{{"a", 32000, "", []int{300, 0}}})
	sc := serve(t, policy.Gantry, typicalJobs()...).ForPlan(c)
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

// One Served may serve plans on separate clusters at once (the server's
// dry runs beside its worker); go test -race checks it.
func TestServedConcurrentUse(t *testing.T) {
	s := serve(t, policy.Gantry, typicalJobs()...)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			eng := scheduler.New(scheduler.Config{})
			c, _ := cluster(t, []node{{"a", 32000, "", []int{0, 0, 500, 0}}, {"b", 32000, "", []int{1000, 0}}})
			for i := range 20 {
				job := jobOf(fmt.Sprintf("j%d-%d", g, i), grp(1, tsk(1000, share(250))))
				if _, err := eng.Plan(c, &scheduler.Request{Job: job, Place: []scheduler.Placement{{Group: "g"}}, Scorer: s}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
