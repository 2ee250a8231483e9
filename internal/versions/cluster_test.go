package versions

import (
	"reflect"
	"testing"

	"github.com/gantryhq/gantry/internal/api"
)

func TestClusterFrom(t *testing.T) {
	nodes := []*api.Node{
		{ID: "1", Name: "b", Resources: api.NodeResources{CPU: 2000}, Attributes: map[string]string{"driver.docker.version": "27.3.1", "component.runc": "1.2.5", "kernel.version": "6.1.0-28-cloud-amd64"}},
		{ID: "2", Name: "a", Resources: api.NodeResources{CPU: 1000}, Attributes: map[string]string{"driver.docker.version": "20.10.24+dfsg1"}},
	}
	jobs := []*api.Job{
		{Name: "web", Namespace: "default", Type: api.JobService, Groups: []*api.Group{{Name: "web", Count: 3, Update: &api.UpdateStrategy{MaxParallel: 2}}}},
		{Name: "db", Namespace: "default", Type: api.JobService, Groups: []*api.Group{{Name: "db", Count: 1}}},
		{Name: "train", Namespace: "ml", Type: api.JobBatch, Groups: []*api.Group{{Name: "w", Count: 2, Gang: &api.Gang{Min: 2}}}},
		{Name: "old", Namespace: "default", Type: api.JobService, Stop: true, Groups: []*api.Group{{Name: "old", Count: 1}}},
	}
	alloc := func(ns, job, group, node, status, health string) *api.Allocation {
		return &api.Allocation{Namespace: ns, Job: job, Group: group, NodeID: node, DesiredStatus: api.AllocDesiredRun, ClientStatus: status, Health: health}
	}
	allocs := []*api.Allocation{
		alloc("default", "web", "web", "1", api.AllocRunning, api.HealthHealthy),
		alloc("default", "web", "web", "1", api.AllocRunning, api.HealthHealthy),
		alloc("default", "web", "web", "2", api.AllocRunning, api.HealthUnhealthy), // not healthy: not counted
		alloc("default", "db", "db", "2", api.AllocRunning, api.HealthHealthy),
		alloc("ml", "train", "w", "1", api.AllocRunning, ""),
		alloc("ml", "train", "w", "2", api.AllocRunning, ""),
		alloc("default", "old", "old", "2", api.AllocComplete, ""), // terminal
	}
	queues := []*api.Queue{{Name: "a", Guarantee: api.QueueLimits{CPU: 500}}, {Name: "b", Guarantee: api.QueueLimits{CPU: 250}}}
	c := ClusterFrom(nodes, jobs, allocs, queues)
	want := Cluster{
		Nodes: []PlanNode{{"a", 1000}, {"b", 2000}},
		Services: []PlanService{
			{Name: "default/db.db", Count: 1, MaxParallel: 1, Healthy: map[string]int{"a": 1}},
			{Name: "default/web.web", Count: 3, MaxParallel: 2, Healthy: map[string]int{"b": 2}},
		},
		Gangs:      []PlanGang{{Name: "ml/train.w", Nodes: []string{"a", "b"}}},
		Guaranteed: 750,
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("cluster:\n got %+v\nwant %+v", c, want)
	}
	inv := FromNodes(nodes)
	if inv["b"][Docker] != "27.3.1" || inv["b"][Runc] != "1.2.5" || inv["b"][Kernel] != "6.1.0-28-cloud-amd64" || inv["a"][Docker] != "20.10.24+dfsg1" {
		t.Errorf("inventory %v", inv)
	}
	if d := Drifting(inv); !d[Docker] || d[Runc] {
		t.Errorf("drift %v: docker differs, runc is on one node only", d)
	}
}

// TestOfNodeReadsEveryComponent: every attribute the agent's fingerprint
// sets for a component version lands under that component, the GPU ones
// (driver, CUDA, NVML) included.
func TestOfNodeReadsEveryComponent(t *testing.T) {
	attrs := map[string]string{}
	for attr := range attributeComponents {
		attrs[attr] = "v-" + attr
	}
	attrs["unrelated"] = "x"
	got := OfNode(&api.Node{Name: "n", Attributes: attrs})
	for attr, comp := range attributeComponents {
		if got[comp] != "v-"+attr {
			t.Errorf("component %s = %q, want the value of %s", comp, got[comp], attr)
		}
	}
	for _, comp := range []string{NVIDIA, CUDA, NVML, QEMU, Wasm, Docker} {
		if _, ok := got[comp]; !ok {
			t.Errorf("component %s is not read from any attribute", comp)
		}
	}
	if len(got) != len(attributeComponents) {
		t.Errorf("%d components from %d attributes: %v", len(got), len(attributeComponents), got)
	}
}
