package evalstep

import (
	"fmt"
	"testing"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/state"
	"pgregory.net/rapid"
)

// walkView is a View over a fixed set of nodes and allocations.
type walkView struct {
	nodes  map[string]*api.Node
	allocs []*api.Allocation
}

func (v walkView) Node(id string) (*api.Node, bool) { n, ok := v.nodes[id]; return n, ok }
func (v walkView) NodePlanIndex(id string) int64    { return int64(len(id)) }
func (v walkView) Alloc(id string) (*api.Allocation, bool) {
	for _, a := range v.allocs {
		if a.ID == id {
			return a, true
		}
	}
	return nil, false
}
func (v walkView) NodeAllocsUnsorted(id string) []*api.Allocation {
	var out []*api.Allocation
	for _, a := range v.allocs {
		if a.NodeID == id {
			out = append(out, a)
		}
	}
	return out
}

// sumView also sums each node's usage, as the leader's store does.
type sumView struct{ walkView }

func (v sumView) NodeChecks(ids []string) []state.NodeCheck {
	out := make([]state.NodeCheck, len(ids))
	for i, id := range ids {
		out[i].Node, out[i].PlanIndex = v.nodes[id], v.NodePlanIndex(id)
		for _, a := range v.NodeAllocsUnsorted(id) {
			if !a.Terminal() {
				out[i].Usage.Add(a, 1)
			}
		}
	}
	return out
}

// Property: the re-check decides the same with summed usage as by
// walking every allocation: the same first error (or none) and the same
// guards, whatever the nodes hold (ports included), what the plan
// places, stops and preempts.
func TestPropertyRecheckSumsAgreeWithWalking(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		v := walkView{nodes: map[string]*api.Node{}}
		nodes := rapid.IntRange(1, 3).Draw(t, "nodes")
		for i := range nodes {
			id := fmt.Sprintf("n%d", i)
			v.nodes[id] = &api.Node{ID: id, Name: id, Resources: api.NodeResources{
				CPU: rapid.IntRange(500, 4000).Draw(t, "cpu"), Memory: rapid.IntRange(256, 4096).Draw(t, "mem"),
				Disk: rapid.IntRange(0, 2000).Draw(t, "disk")}}
		}
		res := func(label string) map[string]*api.AllocatedResources {
			r := &api.AllocatedResources{CPU: rapid.IntRange(0, 1500).Draw(t, label+"cpu"), Memory: rapid.IntRange(0, 1500).Draw(t, label+"mem"),
				Disk: rapid.IntRange(0, 800).Draw(t, label+"disk")}
			if rapid.IntRange(0, 5).Draw(t, label+"port") == 0 {
				r.Ports = []api.AllocatedPort{{Name: "http", Host: rapid.IntRange(20000, 20003).Draw(t, label+"host")}}
			}
			return map[string]*api.AllocatedResources{"t": r}
		}
		status := []string{api.AllocRunning, api.AllocPending, api.AllocComplete, api.AllocFailed}
		for i := range rapid.IntRange(0, 8).Draw(t, "existing") {
			v.allocs = append(v.allocs, &api.Allocation{ID: fmt.Sprintf("e%d", i), NodeID: fmt.Sprintf("n%d", rapid.IntRange(0, nodes-1).Draw(t, "on")),
				DesiredStatus: api.AllocDesiredRun, ClientStatus: rapid.SampledFrom(status).Draw(t, "status"), Resources: res("e")})
		}
		p := &Planned{}
		for i := range rapid.IntRange(1, 5).Draw(t, "placed") {
			p.Placed = append(p.Placed, &api.Allocation{ID: fmt.Sprintf("p%d", i), NodeID: fmt.Sprintf("n%d", rapid.IntRange(0, nodes-1).Draw(t, "to")),
				DesiredStatus: api.AllocDesiredRun, ClientStatus: api.AllocPending, Resources: res("p")})
		}
		for _, a := range v.allocs {
			switch rapid.IntRange(0, 5).Draw(t, "stop") {
			case 0:
				c := *a
				c.DesiredStatus = api.AllocDesiredStop
				p.Updates = append(p.Updates, &c)
			case 1:
				c := *a
				c.DesiredStatus, c.DesiredReason = api.AllocDesiredStop, "preempted"
				p.Preempt = append(p.Preempt, &c)
			}
		}
		walkGuards, walkErr := recheck(v, p)
		sumGuards, sumErr := recheck(sumView{v}, p)
		if fmt.Sprint(walkErr) != fmt.Sprint(sumErr) {
			t.Fatalf("walking: %v; summing: %v", walkErr, sumErr)
		}
		if fmt.Sprint(walkGuards) != fmt.Sprint(sumGuards) {
			t.Fatalf("guards walking %v, summing %v", walkGuards, sumGuards)
		}
	})
}
