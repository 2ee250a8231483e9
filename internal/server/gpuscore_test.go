package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
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
		got := ""
		if s.gpu != nil {
			got = s.gpu.Name()
		}
		if got != tc.want {
			t.Errorf("GPUPolicy %q: the default scheduler learns with %q, want %q", tc.name, got, tc.want)
		}
	}
}

// The default scheduler places GPU shares with gantry, learning the
// typical tasks from the jobs submitted: the leader counts the jobs in the
// store when it starts and each job when its evaluation runs; a stopped
// job no longer counts.
func TestDefaultGPUPolicyPlacesSharesAndLearns(t *testing.T) {
	s := startTestServer(t, Config{})
	ctx := context.Background()
	if s.gpu == nil || s.gpu.Name() != policy.Gantry {
		t.Fatalf("default GPU policy: %v", s.gpu)
	}
	waitFor(t, "leadership", s.IsLeader)
	node := &api.Node{ID: "n1", Name: "gpu-1", Resources: api.NodeResources{CPU: 16000, Memory: 65536},
		Drivers: map[string]api.DriverInfo{api.DriverExec: {Detected: true, Healthy: true}}}
	for i := range 2 {
		node.GPUs = append(node.GPUs, api.GPUDevice{UUID: fmt.Sprintf("GPU-%d", i), Index: i, Model: "Tesla T4", Memory: 15360})
	}
	if err := s.store.RegisterNode(ctx, node, time.Minute, time.Now()); err != nil {
		t.Fatal(err)
	}
	job := &api.Job{Name: "infer", Namespace: api.DefaultNamespace, Type: api.JobService, Priority: 50, Groups: []*api.Group{{
		Name: "g", Count: 3, Tasks: []*api.Task{{Name: "t", Driver: api.DriverExec, Config: api.TaskConfig{Command: "/bin/sleep"},
			Resources: api.Resources{CPU: 500, Memory: 64, GPU: &api.GPURequest{Share: &api.GPUShare{Milli: 250}}}}}}}}
	if _, err := s.store.RegisterJob(ctx, job, s.newEval(job.Namespace, job.Name, api.TriggerJobRegister), time.Now()); err != nil {
		t.Fatal(err)
	}
	var allocs []*api.Allocation
	waitFor(t, "three allocations", func() bool {
		allocs = s.store.Allocs(state.AllocFilter{Namespace: job.Namespace, Job: job.Name})
		return len(allocs) == 3
	})
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
	want := []policy.Typical{{Shape: policy.Shape{CPU: 500, Milli: 250, Count: 1}, Weight: 1}}
	if got := s.gpu.Typical(); !slices.Equal(got, want) {
		t.Fatalf("learnt typical tasks %+v, want %+v", got, want)
	}

	if _, _, err := s.store.StopJob(ctx, job.Namespace, job.Name, s.newEval(job.Namespace, job.Name, api.TriggerJobDeregister)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the stopped job to be forgotten", func() bool { return len(s.gpu.Typical()) == 0 })

	// A new leader starts from the jobs in the store.
	other := &api.Job{Name: "train", Namespace: api.DefaultNamespace, Type: api.JobBatch, Priority: 50, Groups: []*api.Group{{
		Name: "g", Count: 1, Tasks: []*api.Task{{Name: "t", Driver: api.DriverExec, Config: api.TaskConfig{Command: "/bin/true"},
			Resources: api.Resources{CPU: 1000, Memory: 64, GPU: &api.GPURequest{Count: 1}}}}}}}
	if _, err := s.store.RegisterJob(ctx, other, s.newEval(other.Namespace, other.Name, api.TriggerJobRegister), time.Now()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the job in the store", func() bool { _, ok := s.store.Job(other.Namespace, other.Name); return ok })
	s.gpu.Reset()
	s.learnJobs()
	want = []policy.Typical{{Shape: policy.Shape{CPU: 1000, Milli: 1000, Count: 1}, Weight: 1}}
	if got := s.gpu.Typical(); !slices.Equal(got, want) {
		t.Fatalf("after learnJobs: %+v, want %+v", got, want)
	}
}
