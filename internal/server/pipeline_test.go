package server

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/scheduler/schedtest"
	"github.com/gantryhq/gantry/internal/server/ownwrites"
	"github.com/gantryhq/gantry/internal/state"
)

// viewStub is a view of two nodes' allocations and plan revisions.
type viewStub struct {
	allocs map[string][]*api.Allocation
	plan   map[string]int64
}

func (v viewStub) Node(id string) (*api.Node, bool) { return &api.Node{ID: id}, true }
func (v viewStub) NodeAllocsUnsorted(id string) []*api.Allocation {
	return append([]*api.Allocation(nil), v.allocs[id]...)
}
func (v viewStub) NodePlanIndex(id string) int64           { return v.plan[id] }
func (v viewStub) Alloc(id string) (*api.Allocation, bool) { return nil, false }

// The re-check sees the leader's own placements the view lacks, once
// each, and the later of the two plan revisions.
func TestOwnViewAddsTheLeadersUnseenPlacements(t *testing.T) {
	a1 := &api.Allocation{ID: "a1", NodeID: "n1"}
	a2 := &api.Allocation{ID: "a2", NodeID: "n1"}
	var own ownwrites.Log
	c := own.Begin("default/a", []*api.Allocation{a1, a2})
	c.Done(20, map[string]int64{"n1": 20})
	// The view already holds a1 (the plan's first step), not a2.
	v := ownView{View: viewStub{allocs: map[string][]*api.Allocation{"n1": {a1}}, plan: map[string]int64{"n1": 15, "n2": 30}}, own: &own}
	got := map[string]int{}
	for _, a := range v.NodeAllocsUnsorted("n1") {
		got[a.ID]++
	}
	if len(got) != 2 || got["a1"] != 1 || got["a2"] != 1 {
		t.Errorf("n1's allocations %v, want a1 and a2 once each", got)
	}
	if n := len(v.NodeAllocsUnsorted("n2")); n != 0 {
		t.Errorf("n2 has %d allocations, want none", n)
	}
	if r := v.NodePlanIndex("n1"); r != 20 {
		t.Errorf("NodePlanIndex(n1) = %d, want the leader's 20", r)
	}
	if r := v.NodePlanIndex("n2"); r != 30 {
		t.Errorf("NodePlanIndex(n2) = %d, want the view's 30", r)
	}
}

// TestPipelineNeverHandsOutRoomTwice registers more work than a small
// cluster holds, all at once, so that the leader decides evaluations
// while the plans before them commit and before its view holds them. No
// node may be given more than it has, every slot of room is used, and
// no job gets more replicas than it asked for.
func TestPipelineNeverHandsOutRoomTwice(t *testing.T) {
	s := startTestServer(t, Config{})
	ctx := context.Background()
	const nodes, perNode, jobs, count = 4, 10, 16, 3 // 40 slots, 48 asked for
	// Half the nodes join while the jobs come in: each changes the
	// cluster's capacity, so the leader rebuilds its working cluster
	// from its view with plans in flight.
	all := schedtest.Nodes(nodes, "n", schedtest.CPU(perNode*100))
	for i, n := range all {
		if i < nodes/2 {
			if err := s.store.RegisterNode(ctx, n, time.Minute, time.Now()); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i := range jobs {
		if k := nodes/2 + i/(jobs/2); i%(jobs/2) == jobs/4 && k < nodes {
			if err := s.store.RegisterNode(ctx, all[k], time.Minute, time.Now()); err != nil {
				t.Fatal(err)
			}
		}
		j := &api.Job{Name: fmt.Sprintf("j%02d", i), Namespace: "default", Type: api.JobService, Priority: 50, Groups: []*api.Group{{Name: "g", Count: count,
			Tasks: []*api.Task{{Name: "t", Driver: api.DriverExec, Config: api.TaskConfig{Command: "/bin/sleep"}, Resources: api.Resources{CPU: 100, Memory: 32}}}}}}
		if _, err := s.store.RegisterJob(ctx, j, s.newEval("default", j.Name, api.TriggerJobRegister), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	live := func() []*api.Allocation {
		var out []*api.Allocation
		for _, a := range s.store.Allocs(state.AllocFilter{}) {
			if a.DesiredStatus == api.AllocDesiredRun && !a.Terminal() {
				out = append(out, a)
			}
		}
		return out
	}
	waitFor(t, "every slot placed", func() bool { return len(live()) >= nodes*perNode })
	// Let whatever was still in flight land.
	waitFor(t, "no evaluation left pending", func() bool { return s.store.ReadyEvals(time.Now()) == 0 })
	if _, err := s.store.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	placed := live()
	if len(placed) != nodes*perNode {
		t.Errorf("%d allocations placed, want exactly the %d slots", len(placed), nodes*perNode)
	}
	cpu, slots := map[string]int{}, map[string]bool{}
	perJob := map[string]int{}
	for _, a := range placed {
		cpu[a.NodeID] += 100
		perJob[a.Job]++
		slot := fmt.Sprintf("%s[%d]", a.Job, a.Index)
		if slots[slot] {
			t.Errorf("slot %s placed twice", slot)
		}
		slots[slot] = true
	}
	for n, used := range cpu {
		if used > perNode*100 {
			t.Errorf("node %s given %d millicores of %d", n, used, perNode*100)
		}
	}
	for j, n := range perJob {
		if n > count {
			t.Errorf("job %s has %d replicas, asked for %d", j, n, count)
		}
	}
	if got := testutil.ToFloat64(s.met.overlapped); got == 0 {
		t.Error("no evaluation was decided while a plan committed: the test did not exercise the pipeline")
	} else {
		t.Logf("%v of %d registrations decided while the plan before committed", got, jobs)
	}
}
