package state

import (
	"context"
	"reflect"
	"testing"

	"github.com/gantryhq/gantry/internal/api"
)

// The view's summed usage of a node (NodeChecks) follows its allocations as they are
// placed, finish, move and go, and counts the extra allocations it does
// not hold yet (the leader's own, unseen) once.
func TestNodeUsageFollowsAllocations(t *testing.T) {
	s := openTest(t, 0)
	ctx := context.Background()
	mk := func(id, node string, cpu int, ports bool) *api.Allocation {
		r := &api.AllocatedResources{CPU: cpu, Memory: cpu / 10, Disk: 1}
		if ports {
			r.Ports = []api.AllocatedPort{{Name: "http", Host: 20000}}
		}
		return &api.Allocation{ID: id, Namespace: "default", Job: "j", Group: "g", NodeID: node,
			DesiredStatus: api.AllocDesiredRun, ClientStatus: api.AllocPending, Resources: map[string]*api.AllocatedResources{"t": r}}
	}
	commit := func(c *PlanCommit) {
		t.Helper()
		rev, err := s.ApplyPlan(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.WaitIndex(ctx, rev); err != nil {
			t.Fatal(err)
		}
	}
	want := func(node string, extra []*api.Allocation, u api.Usage) {
		t.Helper()
		got := s.NodeChecks([]string{node}, func(n string) []*api.Allocation {
			if n != node {
				t.Errorf("extra asked for %s, want %s", n, node)
			}
			return extra
		})
		if len(got) != 1 || got[0].Usage != u {
			t.Errorf("NodeChecks(%s) = %+v, want usage %+v", node, got, u)
		}
	}
	a, b, c := mk("a", "n1", 100, false), mk("b", "n1", 200, true), mk("c", "n2", 400, false)
	commit(&PlanCommit{Place: []*api.Allocation{a, b, c}})
	want("n1", nil, api.Usage{CPU: 300, Memory: 30, Disk: 2, Itemized: 1})
	want("n2", nil, api.Usage{CPU: 400, Memory: 40, Disk: 1})
	want("n3", nil, api.Usage{})
	if c := s.NodeChecks([]string{"n3"}, nil); c[0].Node != nil || c[0].PlanIndex != 0 {
		t.Errorf("an unknown node reads as %+v, want no record and no plan", c[0])
	}

	// An extra the view holds counts once; one it lacks is added.
	d := mk("d", "n2", 50, false)
	want("n2", []*api.Allocation{c, d}, api.Usage{CPU: 450, Memory: 45, Disk: 2})

	// b finishes: its room (and its port) is free; a moves to n2.
	bDone, _ := s.Alloc("b")
	bc := *bDone
	bc.ClientStatus = api.AllocComplete
	aCur, _ := s.Alloc("a")
	am := *aCur
	am.NodeID = "n2"
	commit(&PlanCommit{Update: []*api.Allocation{&bc, &am}})
	want("n1", nil, api.Usage{})
	want("n2", nil, api.Usage{CPU: 500, Memory: 50, Disk: 2})

	// c is deleted.
	if err := s.DeleteAllocs(ctx, lead(t, s, "s1").Fence, []string{"c"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	want("n2", nil, api.Usage{CPU: 100, Memory: 10, Disk: 1})
}

// The signature the store keeps per job is always what summing its
// allocations gives (deploywatch.Signature: count plus progress hashes),
// and its counts what counting them gives, through placements, reports,
// stops, moves, a full load and deletions.
func TestJobSignatureFollowsAllocations(t *testing.T) {
	s := openTest(t, 0)
	ctx := context.Background()
	summed := func(job string) uint64 {
		as := s.Allocs(AllocFilter{Namespace: "default", Job: job})
		sum := uint64(len(as))
		for _, a := range as {
			sum += a.ProgressHash()
		}
		return sum
	}
	counted := func(job string) JobCounts {
		var c JobCounts
		for _, a := range s.Allocs(AllocFilter{Namespace: "default", Job: job}) {
			if c.Groups == nil {
				c.Groups = map[string]api.GroupSummary{}
			}
			if !a.ClientTerminal() {
				c.Live++
			}
			if a.DesiredStatus != api.AllocDesiredRun {
				continue
			}
			g := c.Groups[a.Group]
			switch a.ClientStatus {
			case api.AllocPending:
				g.Pending++
			case api.AllocRunning:
				g.Running++
			case api.AllocComplete:
				g.Complete++
			case api.AllocFailed:
				g.Failed++
			case api.AllocLost:
				g.Lost++
			}
			if a.Health == api.HealthHealthy && a.ClientStatus == api.AllocRunning {
				g.Healthy++
			}
			c.Groups[a.Group] = g
		}
		return c
	}
	check := func(what string) {
		t.Helper()
		if _, err := s.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		for _, job := range []string{"j", "k", "none"} {
			if got, want := s.JobSignature("default", job), summed(job); got != want {
				t.Errorf("%s: JobSignature(%s) = %x, want %x", what, job, got, want)
			}
			got, want := s.JobCounts("default", job), counted(job)
			for name, g := range got.Groups { // a group whose allocations all stopped counts nothing
				if g == (api.GroupSummary{}) && want.Groups[name] == (api.GroupSummary{}) {
					delete(got.Groups, name)
					delete(want.Groups, name)
				}
			}
			if len(got.Groups) == 0 && len(want.Groups) == 0 {
				got.Groups, want.Groups = nil, nil
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s: JobCounts(%s) = %+v, want %+v", what, job, got, want)
			}
		}
	}
	mk := func(id, job string) *api.Allocation {
		return &api.Allocation{ID: id, Namespace: "default", Job: job, Group: "g", NodeID: "n1",
			DesiredStatus: api.AllocDesiredRun, ClientStatus: api.AllocPending}
	}
	if _, err := s.ApplyPlan(ctx, &PlanCommit{Place: []*api.Allocation{mk("a", "j"), mk("b", "j"), mk("c", "k")}}); err != nil {
		t.Fatal(err)
	}
	check("placed")
	if s.JobSignature("default", "j") == 0 {
		t.Fatal("a job with allocations signs 0")
	}
	before := s.JobSignature("default", "j")
	cur, _ := s.Alloc("a")
	up := *cur
	up.ClientStatus, up.Health = api.AllocRunning, api.HealthHealthy
	if _, err := s.ApplyPlan(ctx, &PlanCommit{Update: []*api.Allocation{&up}}); err != nil {
		t.Fatal(err)
	}
	check("reported running")
	if c := s.JobCounts("default", "j"); c.Live != 2 || c.Groups["g"].Running != 1 || c.Groups["g"].Healthy != 1 || c.Groups["g"].Pending != 1 {
		t.Errorf("after one of two reported running and healthy: %+v", c)
	}
	if s.JobSignature("default", "j") == before {
		t.Error("a report of health left the signature as it was")
	}
	before = s.JobSignature("default", "j")
	if _, err := s.ApplyPlan(ctx, &PlanCommit{Place: []*api.Allocation{mk("d", "k")}}); err != nil {
		t.Fatal(err)
	}
	check("another job's placement")
	cur, _ = s.Alloc("b")
	done := *cur
	done.ClientStatus = api.AllocFailed
	cur, _ = s.Alloc("c")
	stop := *cur
	stop.DesiredStatus = api.AllocDesiredStop
	if _, err := s.ApplyPlan(ctx, &PlanCommit{Update: []*api.Allocation{&done, &stop}}); err != nil {
		t.Fatal(err)
	}
	check("one failed, one stopped")
	before = s.JobSignature("default", "j")
	if s.JobSignature("default", "j") != before {
		t.Error("another job's placement changed the signature")
	}
	if err := s.load(ctx); err != nil {
		t.Fatal(err)
	}
	check("a full load")
	if s.JobSignature("default", "j") != before {
		t.Error("a full load changed the signature")
	}
	if err := s.DeleteAllocs(ctx, lead(t, s, "s1").Fence, []string{"a", "b", "c", "d"}); err != nil {
		t.Fatal(err)
	}
	check("deleted")
	if s.JobSignature("default", "j") != 0 {
		t.Error("a job without allocations does not sign 0")
	}
}
