package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/scheduler/policy"
	"github.com/gantryhq/gantry/internal/state"
)

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestGPUPolicyConfig(t *testing.T) {
	if err := CheckGPUPolicy("tetris"); err == nil {
		t.Error("CheckGPUPolicy accepted tetris")
	}
	for _, name := range append([]string{""}, GPUPolicies...) {
		if err := CheckGPUPolicy(name); err != nil {
			t.Errorf("%q: %v", name, err)
		}
	}
	for _, tc := range []struct{ name, want string }{
		{"", policy.Gantry}, {"fgd", policy.FGD}, {"bestfit", ""}, {"tetris", policy.Gantry},
	} {
		s := New(Config{GPUPolicy: tc.name}, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if got := s.gpu.policy; got != tc.want {
			t.Errorf("GPUPolicy %q: the default scheduler's evaluations are given %q, want %q", tc.name, got, tc.want)
		}
	}
}

// gpuNode is a node with count T4 GPUs.
func gpuNode(id string, cpu, count int) *api.Node {
	n := &api.Node{ID: id, Name: "gpu-" + id, Resources: api.NodeResources{CPU: cpu, Memory: 65536},
		Drivers: map[string]api.DriverInfo{api.DriverExec: {Detected: true, Healthy: true}}}
	for i := range count {
		n.GPUs = append(n.GPUs, api.GPUDevice{UUID: fmt.Sprintf("GPU-%s-%d", id, i), Index: i, Model: "Tesla T4", Memory: 15360})
	}
	return n
}

// gpuJob is a job of one group of count replicas of one task.
func gpuJob(name string, count, cpu int, gpu *api.GPURequest) *api.Job {
	return &api.Job{Name: name, Namespace: api.DefaultNamespace, Type: api.JobBatch, Priority: 50, Groups: []*api.Group{{
		Name: "g", Count: count, Tasks: []*api.Task{{Name: "t", Driver: api.DriverExec, Config: api.TaskConfig{Command: "/bin/sleep"},
			Resources: api.Resources{CPU: cpu, Memory: 64, GPU: gpu}}}}}}
}

func shareOf(milli int) *api.GPURequest { return &api.GPURequest{Share: &api.GPUShare{Milli: milli}} }

// where lists allocations as "index node GPU" lines, by index.
func where(allocs []*api.Allocation) []string {
	var out []string
	for _, a := range allocs {
		dev := "-"
		if g := a.Resources["t"].GPU; g != nil {
			switch {
			case g.Share != nil:
				dev = fmt.Sprintf("%s/%d", g.Share.GPU, g.Share.Milli)
			default:
				dev = fmt.Sprint(g.Devices)
			}
		}
		out = append(out, fmt.Sprintf("%d %s %s", a.Index, a.NodeID, dev))
	}
	sort.Strings(out)
	return out
}

// register submits a job as `job run` does and waits until its
// evaluation is done; it returns the evaluation and the job's live
// allocations.
func register(t *testing.T, s *Server, job *api.Job) (*api.Evaluation, []*api.Allocation) {
	t.Helper()
	ctx := context.Background()
	e := s.newEval(job.Namespace, job.Name, api.TriggerJobRegister)
	if _, err := s.store.RegisterJob(ctx, job, e, time.Now()); err != nil {
		t.Fatal(err)
	}
	var cur *api.Evaluation
	waitFor(t, "evaluation of "+job.Name, func() bool {
		c, ok := s.store.Eval(e.ID)
		cur = c
		return ok && c.Status != api.EvalPending
	})
	return cur, s.store.Allocs(state.AllocFilter{Namespace: job.Namespace, Job: job.Name, Live: true})
}

// The default scheduler places GPU shares with gantry, on the typical
// tasks of the jobs in the store: the evaluation records the version of
// what it placed with, and a stopped job no longer counts.
func TestDefaultGPUPolicyPlacesSharesAndLearns(t *testing.T) {
	s := startTestServer(t, Config{})
	ctx := context.Background()
	if s.gpu == nil || s.gpu.policy != policy.Gantry {
		t.Fatalf("default GPU policy: %+v", s.gpu)
	}
	waitFor(t, "leadership", s.IsLeader)
	node := gpuNode("n1", 16000, 2)
	if err := s.store.RegisterNode(ctx, node, time.Minute, time.Now()); err != nil {
		t.Fatal(err)
	}
	job := gpuJob("infer", 3, 500, shareOf(250))
	e, allocs := register(t, s, job)
	if len(allocs) != 3 {
		t.Fatalf("%d allocations, want 3 (evaluation %s: %s)", len(allocs), e.Status, e.StatusDescription)
	}
	perGPU := map[string]int{}
	for _, a := range allocs {
		g := a.Resources["t"].GPU
		if a.NodeID != node.ID || g == nil || g.Share == nil || g.Share.Milli != 250 {
			t.Fatalf("%s: node %s, GPU %+v", a.Name(), a.NodeID, g)
		}
		perGPU[g.Share.GPU] += g.Share.Milli
	}
	if len(perGPU) != 1 {
		t.Fatalf("shares spread over %v: they leave no fragment on one GPU (750 of 1000 milli), so they should pack there", perGPU)
	}
	_, learnt := s.gpuInput(nil)
	want := []policy.Typical{{Shape: policy.Shape{CPU: 500, Milli: 250, Count: 1}, Weight: 1}}
	if !slices.Equal(learnt.Typical, want) || learnt.Jobs != 1 || learnt.Replicas != 3 {
		t.Fatalf("learnt %+v, want typical %+v of 1 job, 3 replicas", learnt, want)
	}
	if e.GPUWorkload != learnt.Version || e.GPUWorkload != policy.TypicalVersion(want) {
		t.Fatalf("the evaluation placed with GPU workload %q, want %q", e.GPUWorkload, learnt.Version)
	}

	if _, _, err := s.store.StopJob(ctx, job.Namespace, job.Name, s.newEval(job.Namespace, job.Name, api.TriggerJobDeregister)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the stopped job in the view", func() bool { j, ok := s.store.Job(job.Namespace, job.Name); return ok && j.Stop })
	if _, learnt := s.gpuInput(nil); len(learnt.Typical) != 0 || learnt.Version != "w1-empty" {
		t.Fatalf("a stopped job still counts: %+v", learnt)
	}
}

// planState builds a cluster with GPU work placed through the leader's
// worker: two GPU nodes, whole GPUs and shares in use.
func planState(t *testing.T) *Server {
	t.Helper()
	s := startTestServer(t, Config{})
	waitFor(t, "leadership", s.IsLeader)
	for _, n := range []*api.Node{gpuNode("n1", 32000, 4), gpuNode("n2", 16000, 2), gpuNode("n3", 12000, 2)} {
		if err := s.store.RegisterNode(context.Background(), n, time.Minute, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	for _, j := range []*api.Job{
		gpuJob("train", 3, 4000, &api.GPURequest{Count: 1}),
		gpuJob("infer", 5, 2000, shareOf(300)),
		gpuJob("etl", 2, 6000, nil),
		gpuJob("small", 4, 1000, shareOf(150)),
	} {
		if e, allocs := register(t, s, j); len(allocs) != j.Groups[0].Count {
			t.Fatalf("%s: %d of %d placed (%s)", j.Name, len(allocs), j.Groups[0].Count, e.StatusDescription)
		}
	}
	return s
}

// `job plan` and `job run` of the same job on the same state give the
// same plan: the plan counts the job as submitted in the learnt GPU
// workload, exactly as the worker does once it is in the store, and
// reports the version the evaluation then records.
func TestPlanMatchesRun(t *testing.T) {
	s := planState(t)
	job := gpuJob("new", 6, 1500, shareOf(200))
	planned := *job
	p, ref, err := s.planJob(context.Background(), &planned, s.now())
	if err != nil {
		t.Fatal(err)
	}
	if ref == nil || ref.Policy != policy.Gantry || ref.Jobs != 5 || ref.Replicas != 20 {
		t.Fatalf("plan's GPU workload %+v, want gantry over 5 jobs, 20 replicas (the planned job counted)", ref)
	}
	if len(p.Placed) != 6 {
		t.Fatalf("plan placed %d of 6: %+v", len(p.Placed), p.Failed)
	}
	e, allocs := register(t, s, job)
	if e.GPUWorkload != ref.Version {
		t.Fatalf("job run placed with GPU workload %q, job plan with %q", e.GPUWorkload, ref.Version)
	}
	if got, want := where(allocs), where(p.Placed); !slices.Equal(got, want) {
		t.Fatalf("job run placed\n%v\njob plan said\n%v", got, want)
	}
}

// Two servers over the same store (a follower answering `job plan`
// beside the leader whose worker placed everything so far, or the next
// leader) derive the same learnt GPU workload and place alike, though
// only one of them ever evaluated anything.
func TestServersAgreeOnGPUPlacement(t *testing.T) {
	s := planState(t)
	other := New(Config{ID: "s2"}, s.store, slog.New(slog.NewTextHandler(io.Discard, nil)))
	job := gpuJob("new", 6, 1500, shareOf(200))
	plan := func(srv *Server) ([]string, *api.GPUWorkload) {
		planned := *job
		p, ref, err := srv.planJob(context.Background(), &planned, s.now())
		if err != nil {
			t.Fatal(err)
		}
		return where(p.Placed), ref
	}
	a, refA := plan(s)
	b, refB := plan(other)
	if refA == nil || refA.Typical == 0 || refA.Jobs != 5 {
		t.Fatalf("the leader planned with %+v, want gantry on the typical tasks of 5 jobs", refA)
	}
	if refB == nil || *refA != *refB {
		t.Fatalf("two servers over one store learnt different GPU workloads: %+v, %+v", refA, refB)
	}
	if !slices.Equal(a, b) {
		t.Fatalf("two servers over one store placed differently:\n%v\n%v", a, b)
	}
}

// The learner's cache gives what folding the jobs afresh gives, through
// arrivals (folded on), a changed job and a removed one (folded again).
func TestGPULearnerCacheIsTheFunction(t *testing.T) {
	l := newGPULearner(policy.Gantry)
	at := func(j *api.Job, i int64) *api.Job { c := *j; c.ModifyIndex = i; return &c }
	a := at(gpuJob("a", 50, 1000, &api.GPURequest{Count: 1}), 1)
	b := at(gpuJob("b", 50, 1000, shareOf(500)), 2)
	c := at(gpuJob("c", 8, 1000, &api.GPURequest{Count: 1}), 3)
	d := at(gpuJob("d", 6, 1000, &api.GPURequest{Count: 1}), 4)
	for i, jobs := range [][]*api.Job{
		{a}, {a, b}, {a, b, c}, {a, b, c, d},
		{a, b, at(c, 5), d}, // c changed: it moves after d
		{a, at(c, 5), d},    // b went
		{d, a},
	} {
		got, want := l.learnt(jobs, nil), policy.Learn(jobs...)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("step %d: cached %+v, afresh %+v", i, got, want)
		}
	}
}
