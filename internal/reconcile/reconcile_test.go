package reconcile

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
)

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

func job(typ api.JobType, version uint64, count int) *api.Job {
	return &api.Job{
		Name: "web", Namespace: "default", Type: typ, Version: version,
		Groups: []*api.Group{{Name: "web", Count: count, Tasks: []*api.Task{{Name: "server", Driver: "docker", Config: api.TaskConfig{Image: "demo"}}}}},
	}
}

// alloc builds an allocation: "id:index:client[:version[:node]]".
func alloc(spec string) *api.Allocation {
	parts := strings.Split(spec, ":")
	a := &api.Allocation{ID: parts[0], Namespace: "default", Job: "web", Group: "web", NodeID: "n1", NodeName: "n1",
		DesiredStatus: api.AllocDesiredRun, ClientStatus: parts[2], CreateTime: t0, ModifyTime: t0}
	fmt.Sscan(parts[1], &a.Index)
	if len(parts) > 3 {
		fmt.Sscan(parts[3], &a.JobVersion)
	}
	if len(parts) > 4 {
		a.NodeID, a.NodeName = parts[4], parts[4]
	}
	return a
}

func nodes(specs ...string) map[string]*api.Node {
	m := map[string]*api.Node{}
	for _, s := range specs {
		id, status, _ := strings.Cut(s, "=")
		n := &api.Node{ID: id, Name: id, Status: api.NodeStatusReady}
		switch status {
		case "down":
			n.Status = api.NodeStatusDown
		case "drain":
			n.Drain = &api.Drain{}
		}
		m[id] = n
	}
	return m
}

// summary renders a result compactly: place:<index>[<prev>] stop:<id>(lost) inplace:<id> retry gaveup:<id>.
func summary(r *Result) string {
	var out []string
	for _, p := range r.Place {
		s := fmt.Sprintf("place:%d", p.Index)
		if p.Previous != nil {
			s += "<" + p.Previous.ID
		}
		out = append(out, s)
	}
	for _, s := range r.Stop {
		e := "stop:" + s.Alloc.ID
		if s.Lost {
			e += "(lost)"
		}
		out = append(out, e)
	}
	for _, a := range r.InPlace {
		out = append(out, "inplace:"+a.ID)
	}
	if !r.RetryAt.IsZero() {
		out = append(out, "retry:"+r.RetryAt.Sub(t0).String())
	}
	for _, a := range r.GaveUp {
		out = append(out, "gaveup:"+a.ID)
	}
	for _, w := range r.Waiting {
		out = append(out, "wait:"+w.Alloc.ID)
	}
	for _, a := range r.Resumed {
		out = append(out, "resumed:"+a.ID)
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

func withDisconnect(j *api.Job, replace bool) *api.Job {
	for _, g := range j.Groups {
		g.Disconnect = &api.Disconnect{StopAfter: api.Duration(time.Minute), Replace: &replace}
	}
	return j
}

func noReplace(j *api.Job) *api.Job { return withDisconnect(j, false) }

func TestReconcile(t *testing.T) {
	changed := job(api.JobService, 2, 2)
	changed.Groups[0].Tasks[0].Config.Image = "demo:v2"
	cases := []struct {
		name     string
		job      *api.Job
		allocs   []*api.Allocation
		nodes    map[string]*api.Node
		versions map[uint64]*api.Job
		now      time.Time
		want     string
	}{
		{name: "new job places every replica", job: job(api.JobService, 0, 3), nodes: nodes("n1"),
			want: "place:0 place:1 place:2"},
		{name: "steady state changes nothing", job: job(api.JobService, 0, 2), nodes: nodes("n1"),
			allocs: []*api.Allocation{alloc("a:0:running"), alloc("b:1:pending")}, want: ""},
		{name: "scale up places the missing indexes", job: job(api.JobService, 0, 3), nodes: nodes("n1"),
			allocs: []*api.Allocation{alloc("a:0:running")}, want: "place:1 place:2"},
		{name: "scale down stops the highest indexes", job: job(api.JobService, 0, 1), nodes: nodes("n1"),
			allocs: []*api.Allocation{alloc("a:0:running"), alloc("b:1:running"), alloc("c:2:running")}, want: "stop:b stop:c"},
		{name: "stopped job stops every allocation, finished ones included (their leftovers go)", job: func() *api.Job { j := job(api.JobService, 0, 2); j.Stop = true; return j }(), nodes: nodes("n1"),
			allocs: []*api.Allocation{alloc("a:0:running"), alloc("b:1:failed")}, want: "stop:a stop:b"},
		{name: "missing job stops everything live", job: nil, nodes: nodes("n1"),
			allocs: []*api.Allocation{alloc("a:0:running")}, want: "stop:a"},
		{name: "node down: lost and replaced", job: job(api.JobService, 0, 2), nodes: nodes("n1", "n2=down"),
			allocs: []*api.Allocation{alloc("a:0:running"), alloc("b:1:running:0:n2")}, want: "place:1<b stop:b(lost)"},
		{name: "node down, disconnect.replace false: no replacement, the allocation waits", job: noReplace(job(api.JobService, 0, 2)), nodes: nodes("n1", "n2=down"),
			allocs: []*api.Allocation{alloc("a:0:running"), alloc("b:1:running:0:n2")}, want: "wait:b"},
		{name: "node down, disconnect.replace false, batch: waits, without the lost-batch grace", job: noReplace(job(api.JobBatch, 0, 1)), nodes: nodes("n2=down"),
			allocs: []*api.Allocation{alloc("b:0:running:0:n2")}, want: "wait:b"},
		{name: "node down, disconnect.replace true: lost and replaced", job: withDisconnect(job(api.JobService, 0, 1), true), nodes: nodes("n2=down"),
			allocs: []*api.Allocation{alloc("b:0:running:0:n2")}, want: "place:0<b stop:b(lost)"},
		{name: "node back: the waiting allocation resumes", job: noReplace(job(api.JobService, 0, 1)), nodes: nodes("n2"),
			allocs: []*api.Allocation{func() *api.Allocation {
				a := alloc("b:0:running:0:n2")
				a.DesiredReason = WaitingPrefix + "node n2 is down"
				return a
			}()}, want: "resumed:b"},
		{name: "node back, the waiting allocation reported failed (stopped by its cut-off agent): replaced", job: noReplace(job(api.JobService, 0, 1)), nodes: nodes("n2"), now: t0.Add(time.Minute),
			allocs: []*api.Allocation{func() *api.Allocation {
				a := alloc("b:0:failed:0:n2")
				a.DesiredReason = WaitingPrefix + "node n2 is down"
				return a
			}()}, want: "place:0<b"},
		{name: "node gone, disconnect.replace false: a gone node never comes back, so replaced", job: noReplace(job(api.JobService, 0, 1)), nodes: nodes(),
			allocs: []*api.Allocation{alloc("a:0:running")}, want: "place:0<a stop:a(lost)"},
		{name: "node gone: lost and replaced", job: job(api.JobService, 0, 1), nodes: nodes(),
			allocs: []*api.Allocation{alloc("a:0:running")}, want: "place:0<a stop:a(lost)"},
		{name: "draining node: migrated", job: job(api.JobService, 0, 1), nodes: nodes("n1=drain"),
			allocs: []*api.Allocation{alloc("a:0:running")}, want: "place:0<a stop:a"},
		{name: "failed service replaced once its delay passed", job: job(api.JobService, 0, 1), nodes: nodes("n1"), now: t0.Add(6 * time.Second),
			allocs: []*api.Allocation{alloc("a:0:failed")}, want: "place:0<a"},
		{name: "failed service waits out its delay", job: job(api.JobService, 0, 1), nodes: nodes("n1"), now: t0.Add(time.Second),
			allocs: []*api.Allocation{alloc("a:0:failed")}, want: "retry:5s"},
		{name: "replacement delay doubles along the chain", job: job(api.JobService, 0, 1), nodes: nodes("n1"), now: t0.Add(time.Second),
			allocs: []*api.Allocation{func() *api.Allocation { a := alloc("a:0:failed"); a.Reschedules = 2; return a }()}, want: "retry:20s"},
		{name: "failed replacement chain follows the newest", job: job(api.JobService, 0, 1), nodes: nodes("n1"), now: t0.Add(time.Hour),
			allocs: []*api.Allocation{alloc("a:0:failed"), func() *api.Allocation {
				b := alloc("b:0:failed")
				b.PreviousAlloc, b.Reschedules, b.CreateTime = "a", 1, t0.Add(time.Second)
				return b
			}()}, want: "place:0<b"},
		{name: "finished batch stays finished", job: job(api.JobBatch, 0, 2), nodes: nodes("n1"),
			allocs: []*api.Allocation{alloc("a:0:complete"), alloc("b:1:running")}, want: ""},
		{name: "completed service is replaced", job: job(api.JobService, 0, 1), nodes: nodes("n1"), now: t0.Add(time.Minute),
			allocs: []*api.Allocation{alloc("a:0:complete")}, want: "place:0<a"},
		{name: "batch gives up after its reschedules", job: job(api.JobBatch, 0, 1), nodes: nodes("n1"), now: t0.Add(time.Hour),
			allocs: []*api.Allocation{func() *api.Allocation { a := alloc("a:0:failed"); a.Reschedules = MaxBatchReschedules; return a }()}, want: "gaveup:a"},
		{name: "changed spec replaces old-version allocations", job: changed, nodes: nodes("n1"),
			versions: map[uint64]*api.Job{1: job(api.JobService, 1, 2)},
			allocs:   []*api.Allocation{alloc("a:0:running:1"), alloc("b:1:running:1")}, want: "place:0 place:1 stop:a stop:b"},
		{name: "count-only change updates in place", job: job(api.JobService, 2, 3), nodes: nodes("n1"),
			versions: map[uint64]*api.Job{1: job(api.JobService, 1, 2)},
			allocs:   []*api.Allocation{alloc("a:0:running:1"), alloc("b:1:running:1")}, want: "inplace:a inplace:b place:2"},
		{name: "unknown old version counts as changed", job: job(api.JobService, 2, 1), nodes: nodes("n1"),
			allocs: []*api.Allocation{alloc("a:0:running:1")}, want: "place:0 stop:a"},
		{name: "duplicate replicas: the newer one stops", job: job(api.JobService, 0, 1), nodes: nodes("n1"),
			allocs: []*api.Allocation{alloc("a:0:running"), func() *api.Allocation { b := alloc("b:0:running"); b.CreateTime = t0.Add(time.Second); return b }()},
			want:   "stop:b"},
		{name: "a defrag move in progress is one replica with the one it replaces", job: job(api.JobService, 0, 1), nodes: nodes("n1", "n2"),
			allocs: []*api.Allocation{alloc("a:0:running"), func() *api.Allocation {
				b := alloc("b:0:pending:0:n2")
				b.PreviousAlloc, b.Move, b.CreateTime = "a", "make room", t0.Add(time.Second)
				return b
			}()}, want: ""},
		{name: "a defrag move whose old replica stopped is the replica", job: job(api.JobService, 0, 1), nodes: nodes("n1", "n2"),
			allocs: []*api.Allocation{func() *api.Allocation { a := alloc("a:0:complete"); a.DesiredStatus = api.AllocDesiredStop; return a }(), func() *api.Allocation {
				b := alloc("b:0:running:0:n2")
				b.PreviousAlloc, b.Move, b.CreateTime = "a", "make room", t0.Add(time.Second)
				return b
			}()}, want: ""},
		{name: "a stopped job stops a defrag move too", job: func() *api.Job { j := job(api.JobService, 0, 1); j.Stop = true; return j }(), nodes: nodes("n1", "n2"),
			allocs: []*api.Allocation{alloc("a:0:running"), func() *api.Allocation {
				b := alloc("b:0:pending:0:n2")
				b.PreviousAlloc, b.Move = "a", "make room"
				return b
			}()}, want: "stop:a stop:b"},
		{name: "allocations already stopping are left alone", job: job(api.JobService, 0, 1), nodes: nodes("n1"),
			allocs: []*api.Allocation{func() *api.Allocation { a := alloc("a:0:running"); a.DesiredStatus = api.AllocDesiredStop; return a }(), alloc("b:0:running")},
			want:   ""},
		{name: "removed group is stopped", job: func() *api.Job { j := job(api.JobService, 0, 1); j.Groups[0].Name = "api"; return j }(), nodes: nodes("n1"),
			allocs: []*api.Allocation{alloc("a:0:running")}, want: "place:0 stop:a"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			now := tc.now
			if now.IsZero() {
				now = t0
			}
			got := summary(Reconcile(&Input{Job: tc.job, Allocs: tc.allocs, Nodes: tc.nodes, Versions: tc.versions, Now: now}))
			if got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}

// TestReconcileConverges applies results to a simulated world until
// nothing changes: every desired index ends with exactly one live
// allocation, whatever the starting mess.
func TestReconcileConverges(t *testing.T) {
	j := job(api.JobService, 3, 4)
	allocs := []*api.Allocation{
		alloc("a:0:running:3"), alloc("b:0:running:3"), alloc("c:5:running:3"), alloc("d:2:failed:3"),
		alloc("e:1:running:2:gone"),
	}
	ns := nodes("n1")
	now := t0.Add(time.Hour)
	next := 0
	for round := 0; round < 5; round++ {
		r := Reconcile(&Input{Job: j, Allocs: allocs, Nodes: ns, Now: now})
		if len(r.Place)+len(r.Stop)+len(r.InPlace) == 0 {
			live := map[int]int{}
			for _, a := range allocs {
				if a.DesiredStatus == api.AllocDesiredRun && !a.ClientTerminal() {
					live[a.Index]++
				}
			}
			for i := 0; i < 4; i++ {
				if live[i] != 1 {
					t.Fatalf("index %d has %d live allocations after convergence", i, live[i])
				}
			}
			if len(live) != 4 {
				t.Fatalf("live indexes %v, want 0..3", live)
			}
			return
		}
		for _, s := range r.Stop {
			s.Alloc.DesiredStatus = api.AllocDesiredStop
			if s.Lost {
				s.Alloc.ClientStatus = api.AllocLost
			}
		}
		for _, p := range r.Place {
			next++
			a := alloc(fmt.Sprintf("new%d:%d:pending:3", next, p.Index))
			a.CreateTime = now.Add(time.Duration(next) * time.Second)
			if p.Previous != nil {
				a.PreviousAlloc = p.Previous.ID
			}
			allocs = append(allocs, a)
		}
	}
	t.Fatal("reconciler did not converge in 5 rounds")
}

func TestDrainRespectsMaxParallel(t *testing.T) {
	deadline := t0.Add(time.Hour)
	drainNodes := func() map[string]*api.Node {
		ns := nodes("n1", "n2")
		ns["n1"].Drain = &api.Drain{StartedAt: t0, Deadline: deadline}
		return ns
	}
	svc := job(api.JobService, 0, 3)
	svc.Groups[0].Update = &api.UpdateStrategy{MaxParallel: 1}
	three := func() []*api.Allocation {
		return []*api.Allocation{alloc("a:0:running"), alloc("b:1:running"), alloc("c:2:running")}
	}
	// First look: one allocation moves.
	got := summary(Reconcile(&Input{Job: svc, Allocs: three(), Nodes: drainNodes(), Now: t0}))
	if got != "place:0<a retry:5s stop:a" {
		t.Fatalf("first step: %q", got)
	}
	// Its replacement is not healthy yet: nothing more moves; look again soon.
	as := three()
	as[0].DesiredStatus, as[0].DesiredReason = api.AllocDesiredStop, DrainPrefix+"n1"
	repl := alloc("d:0:running:0:n2")
	repl.PreviousAlloc = "a"
	as = append(as, repl)
	if got := summary(Reconcile(&Input{Job: svc, Allocs: as, Nodes: drainNodes(), Now: t0.Add(time.Second)})); got != "retry:6s" {
		t.Fatalf("while the replacement is unhealthy: %q", got)
	}
	// Healthy: the next one moves.
	repl.Health = api.HealthHealthy
	if got := summary(Reconcile(&Input{Job: svc, Allocs: as, Nodes: drainNodes(), Now: t0.Add(2 * time.Second)})); got != "place:1<b retry:7s stop:b" {
		t.Fatalf("after the replacement is healthy: %q", got)
	}
	// At the deadline everything left goes.
	repl.Health = ""
	if got := summary(Reconcile(&Input{Job: svc, Allocs: as, Nodes: drainNodes(), Now: deadline})); got != "place:1<b place:2<c stop:b stop:c" {
		t.Fatalf("at the deadline: %q", got)
	}
	// Batch work moves at once.
	if got := summary(Reconcile(&Input{Job: job(api.JobBatch, 0, 3), Allocs: three(), Nodes: drainNodes(), Now: t0})); got != "place:0<a place:1<b place:2<c stop:a stop:b stop:c" {
		t.Fatalf("batch: %q", got)
	}
}

func TestLostBatchGrace(t *testing.T) {
	ns := nodes("n1", "n2=down")
	ns["n2"].StatusChanged = t0
	allocs := func() []*api.Allocation { return []*api.Allocation{alloc("a:0:running:0:n2")} }
	in := &Input{Job: job(api.JobBatch, 0, 1), Allocs: allocs(), Nodes: ns, Now: t0.Add(10 * time.Second), LostBatchGrace: time.Minute}
	if got := summary(Reconcile(in)); got != "retry:1m0s" {
		t.Fatalf("within the grace: %q", got)
	}
	in.Now = t0.Add(time.Minute)
	if got := summary(Reconcile(in)); got != "place:0<a stop:a(lost)" {
		t.Fatalf("after the grace: %q", got)
	}
	// Services do not wait.
	svc := &Input{Job: job(api.JobService, 0, 1), Allocs: allocs(), Nodes: ns, Now: t0.Add(time.Second), LostBatchGrace: time.Minute}
	if got := summary(Reconcile(svc)); got != "place:0<a stop:a(lost)" {
		t.Fatalf("service: %q", got)
	}
}
