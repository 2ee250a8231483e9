package discovery

import (
	"testing"

	"github.com/gantryhq/gantry/internal/api"
)

func webJob(name string, lb *api.ServiceLB) *api.Job {
	return &api.Job{Name: name, Namespace: "default", Type: api.JobService, Groups: []*api.Group{{
		Name: "web", Count: 3,
		Services: []api.Service{{Name: "web", Port: "http", LB: lb}},
		Tasks:    []*api.Task{{Name: "server", Config: api.TaskConfig{Ports: []api.PortSpec{{Name: "http", To: 8080}}}}},
	}}}
}

func webAlloc(id, job string, index, port int, status, health, desired string) *api.Allocation {
	return &api.Allocation{ID: id, Namespace: "default", Job: job, Group: "web", Index: index, NodeID: "n1", NodeName: "node1",
		DesiredStatus: desired, ClientStatus: status, Health: health,
		Resources: map[string]*api.AllocatedResources{"server": {Ports: []api.AllocatedPort{{Name: "http", Host: port, To: 8080}}}}}
}

func TestBuildListsHealthyEndpointsOnly(t *testing.T) {
	nodes := map[string]*api.Node{"n1": {ID: "n1", Name: "node1", Address: "10.0.0.5", Status: api.NodeStatusReady}}
	allocs := []*api.Allocation{
		webAlloc("a", "web", 0, 20001, api.AllocRunning, api.HealthHealthy, api.AllocDesiredRun),
		webAlloc("b", "web", 1, 20002, api.AllocRunning, api.HealthUnhealthy, api.AllocDesiredRun),
		webAlloc("c", "web", 2, 20003, api.AllocPending, "", api.AllocDesiredRun),
		webAlloc("d", "web", 2, 20004, api.AllocRunning, api.HealthHealthy, api.AllocDesiredStop), // being stopped
		webAlloc("e", "web", 0, 20005, api.AllocFailed, "", api.AllocDesiredRun),
	}
	c := Build(9, []*api.Job{webJob("web", &api.ServiceLB{Port: 8000})}, allocs, nodes)
	s, ok := c.Lookup("default", "web")
	if !ok {
		t.Fatal("service web missing")
	}
	if len(s.Endpoints) != 1 || s.Endpoints[0].AllocID != "a" || s.Endpoints[0].Address != "10.0.0.5" || s.Endpoints[0].Port != 20001 {
		t.Fatalf("endpoints %+v, want only a at 10.0.0.5:20001", s.Endpoints)
	}
	if s.Unhealthy != 2 {
		t.Fatalf("unhealthy %d, want 2 (b and c)", s.Unhealthy)
	}
	if s.LB == nil || s.LB.Port != 8000 {
		t.Fatalf("lb %+v", s.LB)
	}

	// A node that went down takes its endpoints with it; the hash moves.
	nodes["n1"].Status = api.NodeStatusDown
	c2 := Build(10, []*api.Job{webJob("web", nil)}, allocs, nodes)
	if s2, _ := c2.Lookup("default", "web"); len(s2.Endpoints) != 0 {
		t.Fatalf("endpoints on a down node: %+v", s2.Endpoints)
	}
	if c2.Hash == c.Hash {
		t.Fatal("hash did not change with the catalog")
	}
	if c3 := Build(11, []*api.Job{webJob("web", nil)}, allocs, nodes); c3.Hash != c2.Hash {
		t.Fatal("hash changed without a change of content")
	}
}

func TestBuildMergesJobsAndSkipsStopped(t *testing.T) {
	nodes := map[string]*api.Node{"n1": {ID: "n1", Address: "0.0.0.0", Status: api.NodeStatusReady}}
	blue, green := webJob("blue", nil), webJob("green", &api.ServiceLB{Port: 9000, Policy: api.LBP2C})
	stopped := webJob("old", nil)
	stopped.Stop = true
	allocs := []*api.Allocation{
		webAlloc("a", "blue", 0, 1, api.AllocRunning, api.HealthHealthy, api.AllocDesiredRun),
		webAlloc("b", "green", 0, 2, api.AllocRunning, api.HealthHealthy, api.AllocDesiredRun),
		webAlloc("c", "old", 0, 3, api.AllocRunning, api.HealthHealthy, api.AllocDesiredRun),
	}
	c := Build(1, []*api.Job{green, stopped, blue}, allocs, nodes)
	s, _ := c.Lookup("default", "web")
	if len(s.Endpoints) != 2 || s.Endpoints[0].Job != "blue" || s.Endpoints[1].Job != "green" {
		t.Fatalf("endpoints %+v", s.Endpoints)
	}
	if s.Endpoints[0].Address != "127.0.0.1" {
		t.Fatalf("address %q for a node bound to every interface", s.Endpoints[0].Address)
	}
	if len(s.Jobs) != 2 || s.LB == nil || s.LB.Port != 9000 {
		t.Fatalf("jobs %v lb %+v", s.Jobs, s.LB)
	}
	if _, ok := FromWire(c.Wire()).Lookup("default", "web"); !ok {
		t.Fatal("lookup after a round trip through the wire form")
	}
}
