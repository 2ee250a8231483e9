package reconcile

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/jobspec"
	"pgregory.net/rapid"
)

// rollJob is a service job at version with an update block; image tells
// versions apart.
func rollJob(version uint64, count int, image string, u api.UpdateStrategy) *api.Job {
	j := job(api.JobService, version, count)
	j.Groups[0].Tasks[0].Config.Image = image
	j.Groups[0].Update = &u
	return j
}

// healthy marks an allocation running and healthy since at.
func healthy(a *api.Allocation, at time.Time) *api.Allocation {
	a.ClientStatus, a.Health = api.AllocRunning, api.HealthHealthy
	a.TaskStates = map[string]*api.TaskState{"server": {State: api.TaskRunning, Health: api.HealthHealthy,
		Events: []api.TaskEvent{{Time: at, Type: api.TaskEventStarted}, {Time: at, Type: api.TaskEventHealthy}}}}
	return a
}

func inDeployment(a *api.Allocation, id string, canary bool) *api.Allocation {
	a.DeploymentID, a.Canary = id, canary
	return a
}

// rollSummary adds the deployment the result writes to summary():
// "dep:<status>[ revert:<v>][ canaries:<healthy>/<desired>]".
func rollSummary(r *Result) string {
	s := summary(r)
	for _, p := range r.Place {
		if p.Canary {
			s += fmt.Sprintf(" canary:%d", p.Index)
		}
	}
	for _, d := range r.Deployments {
		s += " dep:" + d.ID + "=" + d.Status
		if d.RevertTo != nil {
			s += fmt.Sprintf(" revert:%d", *d.RevertTo)
		}
		if g := d.Groups["web"]; g != nil && g.DesiredCanaries > 0 {
			s += fmt.Sprintf(" canaries:%d/%d", g.HealthyCanaries, g.DesiredCanaries)
		}
	}
	return strings.TrimSpace(s)
}

func runningDeployment(id string, version uint64, count, maxParallel int) *api.Deployment {
	return &api.Deployment{ID: id, Namespace: "default", Job: "web", JobVersion: version, Status: api.DeploymentRunning,
		Groups:     map[string]*api.DeploymentGroup{"web": {Desired: count, MaxParallel: maxParallel}},
		CreateTime: t0, ModifyTime: t0, ModifyIndex: 7}
}

func TestRollingUpdate(t *testing.T) {
	u := api.UpdateStrategy{MaxParallel: 1, MinHealthyTime: api.Duration(10 * time.Second)}
	v1 := rollJob(1, 3, "demo:v1", u)
	v2 := rollJob(2, 3, "demo:v2", u)
	versions := map[uint64]*api.Job{1: v1}
	old := func(spec string) *api.Allocation { return healthy(alloc(spec), t0.Add(-time.Hour)) }
	one := uint64(1)

	cases := []struct {
		name   string
		job    *api.Job
		allocs []*api.Allocation
		dep    *api.Deployment
		stable *uint64
		now    time.Duration // after t0
		want   string
	}{
		{name: "first version places everything under a new deployment", job: rollJob(0, 3, "demo:v1", u),
			want: "place:0 place:1 place:2 dep:D=running"},
		{name: "new version replaces max_parallel at a time", job: v2,
			allocs: []*api.Allocation{old("a:0:running:1"), old("b:1:running:1"), old("c:2:running:1")},
			want:   "place:0 stop:a dep:D=running"},
		{name: "max_parallel 2 replaces two", job: rollJob(2, 3, "demo:v2", api.UpdateStrategy{MaxParallel: 2}),
			allocs: []*api.Allocation{old("a:0:running:1"), old("b:1:running:1"), old("c:2:running:1")},
			want:   "place:0 place:1 stop:a stop:b dep:D=running"},
		{name: "unhealthy old replicas are replaced first", job: v2,
			allocs: []*api.Allocation{old("a:0:running:1"), alloc("b:1:running:1"), old("c:2:running:1")},
			want:   "place:1 stop:b dep:D=running"},
		{name: "waits while the new replica is not healthy", job: v2, dep: runningDeployment("d2", 2, 3, 1),
			allocs: []*api.Allocation{inDeployment(alloc("n0:0:pending:2"), "d2", false), old("b:1:running:1"), old("c:2:running:1")},
			want:   "dep:d2=running"},
		{name: "waits out min_healthy_time", job: v2, dep: runningDeployment("d2", 2, 3, 1), now: 5 * time.Second,
			allocs: []*api.Allocation{inDeployment(healthy(alloc("n0:0:running:2"), t0), "d2", false), old("b:1:running:1"), old("c:2:running:1")},
			want:   "retry:10s dep:d2=running"},
		{name: "moves on once healthy long enough", job: v2, dep: runningDeployment("d2", 2, 3, 1), now: 11 * time.Second,
			allocs: []*api.Allocation{inDeployment(healthy(alloc("n0:0:running:2"), t0), "d2", false), old("b:1:running:1"), old("c:2:running:1")},
			want:   "place:1 stop:b dep:d2=running"},
		{name: "succeeds when every replica is new and healthy", job: v2, dep: runningDeployment("d2", 2, 3, 1), now: time.Minute,
			allocs: []*api.Allocation{
				inDeployment(healthy(alloc("n0:0:running:2"), t0), "d2", false),
				inDeployment(healthy(alloc("n1:1:running:2"), t0), "d2", false),
				inDeployment(healthy(alloc("n2:2:running:2"), t0), "d2", false)},
			want: "dep:d2=successful"},
		{name: "an unhealthy replica fails the deployment and names the rollback", job: v2, stable: &one,
			dep: func() *api.Deployment {
				d := runningDeployment("d2", 2, 3, 1)
				d.Groups["web"].AutoRevert = true
				return d
			}(),
			allocs: func() []*api.Allocation {
				n := inDeployment(alloc("n0:0:running:2"), "d2", false)
				n.Health = api.HealthUnhealthy
				return []*api.Allocation{n, old("b:1:running:1"), old("c:2:running:1")}
			}(),
			want: "dep:d2=failed revert:1"},
		{name: "a failed deployment stops rolling", job: v2,
			dep: func() *api.Deployment {
				d := runningDeployment("d2", 2, 3, 1)
				d.Status = api.DeploymentFailed
				return d
			}(),
			allocs: func() []*api.Allocation {
				n := inDeployment(alloc("n0:0:running:2"), "d2", false)
				n.Health = api.HealthUnhealthy
				return []*api.Allocation{n, old("b:1:running:1"), old("c:2:running:1")}
			}(),
			want: ""},
		{name: "healthy_deadline fails a replica that never got healthy", now: 3 * time.Minute, job: rollJob(2, 3, "demo:v2", api.UpdateStrategy{MaxParallel: 1, HealthyDeadline: api.Duration(time.Minute)}),
			dep:    runningDeployment("d2", 2, 3, 1),
			allocs: []*api.Allocation{inDeployment(alloc("n0:0:pending:2"), "d2", false), old("b:1:running:1"), old("c:2:running:1")},
			want:   "dep:d2=failed"},
		{name: "progress_deadline fails a stalled deployment", now: 3 * time.Minute, job: rollJob(2, 3, "demo:v2", api.UpdateStrategy{MaxParallel: 1, ProgressDeadline: api.Duration(time.Minute)}),
			dep: func() *api.Deployment {
				d := runningDeployment("d2", 2, 3, 1)
				d.Groups["web"].RequireProgressBy = t0.Add(time.Minute)
				return d
			}(),
			allocs: []*api.Allocation{inDeployment(alloc("n0:0:pending:2"), "d2", false), old("b:1:running:1"), old("c:2:running:1")},
			want:   "dep:d2=failed"},
		{name: "a newer version cancels the running deployment", job: rollJob(3, 3, "demo:v3", u), dep: runningDeployment("d2", 2, 3, 1),
			allocs: []*api.Allocation{old("a:0:running:1"), old("b:1:running:1"), old("c:2:running:1")},
			want:   "place:0 stop:a dep:d2=cancelled dep:D=running"},
		{name: "rollback moves old-spec replicas in place and replaces the bad one", job: rollJob(3, 3, "demo:v1", u),
			dep: func() *api.Deployment {
				d := runningDeployment("d2", 2, 3, 1)
				d.Status = api.DeploymentFailed
				return d
			}(),
			allocs: func() []*api.Allocation {
				n := inDeployment(alloc("n0:0:running:2"), "d2", false)
				n.Health = api.HealthUnhealthy
				return []*api.Allocation{n, old("b:1:running:1"), old("c:2:running:1")}
			}(),
			want: "inplace:b inplace:c place:0 stop:n0 dep:D=running"},
		{name: "stopping the job cancels its deployment", job: func() *api.Job { j := rollJob(2, 3, "demo:v2", u); j.Stop = true; return j }(),
			dep:    runningDeployment("d2", 2, 3, 1),
			allocs: []*api.Allocation{old("a:0:running:1")},
			want:   "stop:a dep:d2=cancelled"},
		{name: "empty slots are filled without waiting", job: v2, dep: runningDeployment("d2", 2, 3, 1),
			allocs: []*api.Allocation{old("b:1:running:1"), old("c:2:running:1")},
			want:   "place:0 dep:d2=running"},
		{name: "canaries start beside the old replicas", job: rollJob(2, 3, "demo:v2", api.UpdateStrategy{MaxParallel: 1, Canary: 1}),
			allocs: []*api.Allocation{old("a:0:running:1"), old("b:1:running:1"), old("c:2:running:1")},
			want:   "place:0 canary:0 dep:D=running canaries:0/1"},
		{name: "healthy canaries wait for promotion", job: rollJob(2, 3, "demo:v2", api.UpdateStrategy{MaxParallel: 1, Canary: 1}), now: time.Minute,
			dep: func() *api.Deployment {
				d := runningDeployment("d2", 2, 3, 1)
				d.Groups["web"].DesiredCanaries = 1
				return d
			}(),
			allocs: []*api.Allocation{old("a:0:running:1"), inDeployment(healthy(alloc("k:0:running:2"), t0), "d2", true),
				old("b:1:running:1"), old("c:2:running:1")},
			want: "dep:d2=running canaries:1/1"},
		{name: "promotion retires the replica beside the canary and rolls on", job: rollJob(2, 3, "demo:v2", api.UpdateStrategy{MaxParallel: 1, Canary: 1}), now: time.Minute,
			dep: func() *api.Deployment {
				d := runningDeployment("d2", 2, 3, 1)
				d.Groups["web"].DesiredCanaries, d.Groups["web"].Promoted, d.Groups["web"].HealthyCanaries = 1, true, 1
				return d
			}(),
			allocs: []*api.Allocation{old("a:0:running:1"), inDeployment(healthy(alloc("k:0:running:2"), t0), "d2", true),
				old("b:1:running:1"), old("c:2:running:1")},
			want: "place:1 stop:a stop:b dep:d2=running canaries:1/1"},
		{name: "no canaries for a first version", job: rollJob(0, 2, "demo:v1", api.UpdateStrategy{MaxParallel: 1, Canary: 1}),
			want: "place:0 place:1 dep:D=running"},
		{name: "scaling up in place places the new slots", job: rollJob(2, 4, "demo:v1", u),
			allocs: []*api.Allocation{old("a:0:running:1"), old("b:1:running:1"), old("c:2:running:1")},
			want:   "inplace:a inplace:b inplace:c place:3 dep:D=running"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := &Input{Job: tc.job, Allocs: tc.allocs, Nodes: nodes("n1"), Versions: versions, Now: t0.Add(tc.now),
				Deployment: tc.dep, DeploymentID: "D", Stable: tc.stable}
			got := rollSummary(Reconcile(in))
			if got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}

// world is a simulated cluster for the property test: the reconciler's
// decisions are applied, new replicas start and turn healthy (or, for a
// bad version, unhealthy) after random delays, and time moves on.
type world struct {
	t        *rapid.T
	now      time.Time
	allocs   []*api.Allocation
	versions map[uint64]*api.Job
	job      *api.Job
	dep      *api.Deployment
	history  []*api.Deployment
	bad      map[uint64]bool // versions whose replicas fail their checks
	next     int
	depN     int
	ready    map[string]time.Time // alloc → when it turns healthy (or unhealthy)
}

func (w *world) serving() int {
	n := 0
	for _, a := range w.allocs {
		if a.DesiredStatus == api.AllocDesiredRun && serving(a) {
			n++
		}
	}
	return n
}

func (w *world) stable() *uint64 {
	var best *uint64
	for _, d := range w.deps() {
		if d.Status == api.DeploymentSuccessful && d.JobVersion < w.job.Version && (best == nil || d.JobVersion > *best) {
			v := d.JobVersion
			best = &v
		}
	}
	return best
}

func (w *world) deps() []*api.Deployment {
	if w.dep == nil {
		return nil
	}
	return append(w.history, w.dep)
}

// step runs the reconciler once and applies its result.
func (w *world) step() *Result {
	w.depN++
	r := Reconcile(&Input{Job: w.job, Allocs: w.allocs, Nodes: nodes("n1"), Versions: w.versions, Now: w.now,
		Deployment: w.dep, DeploymentID: fmt.Sprintf("d%d", w.depN), Stable: w.stable()})
	for _, s := range r.Stop {
		s.Alloc.DesiredStatus = api.AllocDesiredStop
	}
	for _, a := range r.InPlace {
		a.JobVersion = w.job.Version
	}
	seen := map[string]bool{}
	for _, p := range r.Place {
		key := fmt.Sprintf("%s/%d", p.Group, p.Index)
		if seen[key] {
			w.t.Fatalf("two placements for %s in one plan", key)
		}
		seen[key] = true
		w.next++
		a := alloc(fmt.Sprintf("x%d:%d:pending:%d", w.next, p.Index, w.job.Version))
		a.CreateTime, a.ModifyTime, a.DeploymentID, a.Canary = w.now, w.now, p.Deployment, p.Canary
		w.allocs = append(w.allocs, a)
		w.ready[a.ID] = w.now.Add(time.Duration(rapid.IntRange(0, 20).Draw(w.t, "startup")) * time.Second)
	}
	for _, d := range r.Deployments {
		if w.dep != nil && d.ID != w.dep.ID {
			w.history = append(w.history, w.dep)
		}
		w.dep = d
		w.dep.ModifyIndex = int64(w.depN)
	}
	return r
}

// tick moves time on and lets replicas that are due start.
func (w *world) tick(d time.Duration) {
	w.now = w.now.Add(d)
	for _, a := range w.allocs {
		due, ok := w.ready[a.ID]
		if !ok || a.DesiredStatus != api.AllocDesiredRun || w.now.Before(due) {
			continue
		}
		delete(w.ready, a.ID)
		if w.bad[a.JobVersion] {
			a.ClientStatus, a.Health = api.AllocRunning, api.HealthUnhealthy
			continue
		}
		healthy(a, due)
	}
}

// TestRollingFloorProperty: whatever the count, max_parallel, timings
// and whether the new version is bad (and rolled back), at no moment do
// fewer than count - max_parallel healthy replicas serve, and the rollout
// ends: with every replica on the new version, or on the old spec again.
func TestRollingFloorProperty(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		count := rapid.IntRange(1, 8).Draw(rt, "count")
		u := api.UpdateStrategy{
			MaxParallel:     rapid.IntRange(1, count).Draw(rt, "max_parallel"),
			MinHealthyTime:  api.Duration(time.Duration(rapid.IntRange(0, 15).Draw(rt, "min_healthy_s")) * time.Second),
			HealthyDeadline: api.Duration(5 * time.Minute),
			AutoRevert:      true,
			Canary:          rapid.IntRange(0, 2).Draw(rt, "canary"),
		}
		bad := rapid.Bool().Draw(rt, "bad")
		v1 := rollJob(1, count, "demo:v1", u)
		w := &world{t: rt, now: t0, versions: map[uint64]*api.Job{1: v1}, job: v1, bad: map[uint64]bool{}, ready: map[string]time.Time{}}
		// Version 1 deployed and healthy.
		w.step()
		w.tick(time.Hour)
		w.step()
		if w.dep.Status != api.DeploymentSuccessful {
			rt.Fatalf("version 1 deployment: %s (%s)", w.dep.Status, w.dep.StatusDescription)
		}
		floor := count - u.MaxParallel
		v2 := rollJob(2, count, "demo:v2", u)
		w.versions[2] = v2
		w.job, w.bad[2] = v2, bad
		promoted := false
		for round := 0; round < 400; round++ {
			w.step()
			if got := w.serving(); got < floor {
				rt.Fatalf("round %d: %d healthy replicas serve, floor is %d (count %d, max_parallel %d)", round, got, floor, count, u.MaxParallel)
			}
			d := w.dep
			switch {
			case d.Status == api.DeploymentFailed && d.RevertTo != nil && d.RevertedAs == nil:
				// The server registers the stable version again.
				as := w.job.Version + 1
				d.RevertedAs = &as
				back := rollJob(as, count, w.versions[*d.RevertTo].Groups[0].Tasks[0].Config.Image, u)
				w.versions[w.job.Version] = w.job
				w.versions[back.Version] = back
				w.job = back
			case d.RequiresPromotion() && d.Groups["web"].HealthyCanaries >= d.Groups["web"].DesiredCanaries && !promoted:
				d.Groups["web"].Promoted, promoted = true, true
			case d.Status == api.DeploymentSuccessful && d.JobVersion == w.job.Version:
				want := "demo:v2"
				if bad {
					want = "demo:v1"
				}
				if got := w.job.Groups[0].Tasks[0].Config.Image; got != want {
					rt.Fatalf("ended on %s, want %s", got, want)
				}
				live := 0
				for _, a := range w.allocs {
					if a.DesiredStatus == api.AllocDesiredRun && !a.ClientTerminal() {
						live++
						if a.JobVersion != w.job.Version {
							rt.Fatalf("allocation %s still on version %d", a.ID, a.JobVersion)
						}
					}
				}
				if live != count {
					rt.Fatalf("%d live allocations at the end, want %d", live, count)
				}
				return
			}
			w.tick(time.Duration(rapid.IntRange(1, 4).Draw(rt, "tick_s")) * time.Second)
		}
		rt.Fatalf("rollout did not finish: deployment %s %s", w.dep.Status, w.dep.StatusDescription)
	})
}

func TestRollingIsDeterministic(t *testing.T) {
	u := api.UpdateStrategy{MaxParallel: 2}
	allocs := []*api.Allocation{}
	for i := 0; i < 5; i++ {
		allocs = append(allocs, healthy(alloc(fmt.Sprintf("a%d:%d:running:1", i, i)), t0))
	}
	in := &Input{Job: rollJob(2, 5, "demo:v2", u), Allocs: allocs, Nodes: nodes("n1"), Now: t0, DeploymentID: "D",
		Versions: map[uint64]*api.Job{1: rollJob(1, 5, "demo:v1", u)}}
	first := rollSummary(Reconcile(in))
	for i := 0; i < 20; i++ {
		sort.Slice(in.Allocs, func(a, b int) bool { return in.Allocs[a].ID > in.Allocs[b].ID })
		if got := rollSummary(Reconcile(in)); got != first {
			t.Fatalf("same input, different plan:\n%s\n%s", first, got)
		}
	}
}

// TestAutoRevertGoesToWhatRanBefore (issue 15): a job ran 5 replicas of
// version 3, which never went through a rolling deployment (submitted
// with -d and no update block); version 1 was the last successful
// deployment. A failed rollout of version 4 rolls back to version 3, what
// ran healthy before it, not to version 1.
func TestAutoRevertGoesToWhatRanBefore(t *testing.T) {
	u := api.UpdateStrategy{MaxParallel: 1, AutoRevert: true}
	v3 := job(api.JobService, 3, 5)
	v4 := rollJob(4, 5, "demo:v4", u)
	one := uint64(1)
	var allocs []*api.Allocation
	for i := range 5 {
		allocs = append(allocs, healthy(alloc(fmt.Sprintf("o%d:%d:running:3", i, i)), t0.Add(-time.Hour)))
	}
	versions := map[uint64]*api.Job{3: v3}
	r := Reconcile(&Input{Job: v4, Allocs: allocs, Nodes: nodes("n1"), Versions: versions, Now: t0, DeploymentID: "D", Stable: &one})
	if len(r.Deployments) != 1 || r.Deployments[0].Previous == nil || *r.Deployments[0].Previous != 3 {
		t.Fatalf("new deployment %+v: want previous version 3", r.Deployments)
	}
	d := r.Deployments[0]
	d.ModifyIndex = 9
	n := inDeployment(alloc("n0:0:running:4"), "D", false)
	n.Health = api.HealthUnhealthy
	allocs[0].DesiredStatus = api.AllocDesiredStop
	r = Reconcile(&Input{Job: v4, Allocs: append(allocs, n), Nodes: nodes("n1"), Versions: versions, Now: t0.Add(time.Minute),
		Deployment: d, DeploymentID: "E", Stable: &one})
	if got := rollSummary(r); !strings.Contains(got, "dep:D=failed revert:3") {
		t.Fatalf("got %q, want the deployment failed with a rollback to version 3", got)
	}
	// With a mix of versions running there is no "what ran before": the
	// last successful deployment is the fallback.
	mixed := append([]*api.Allocation(nil), allocs[1:]...)
	mixed = append(mixed, healthy(alloc("x:0:running:2"), t0))
	if p := healthyVersion(mixed, 4); p != nil {
		t.Fatalf("mixed versions gave previous %d", *p)
	}
}

// TestUnhealthyWithinHealthyDeadlineWaits (issue 15): a new replica whose
// checks fail while it starts does not fail the deployment while
// healthy_deadline has not passed; once it has, it does.
func TestUnhealthyWithinHealthyDeadlineWaits(t *testing.T) {
	u := api.UpdateStrategy{MaxParallel: 1, HealthyDeadline: api.Duration(15 * time.Second), AutoRevert: true}
	v2 := rollJob(2, 3, "demo:v2", u)
	old := func(spec string) *api.Allocation { return healthy(alloc(spec), t0.Add(-time.Hour)) }
	allocs := func() []*api.Allocation {
		n := inDeployment(alloc("n0:0:running:2"), "d2", false)
		n.CreateTime, n.Health = t0, api.HealthUnhealthy
		return []*api.Allocation{n, old("b:1:running:1"), old("c:2:running:1")}
	}
	dep := func() *api.Deployment {
		d := runningDeployment("d2", 2, 3, 1)
		d.Groups["web"].AutoRevert = true
		return d
	}
	one := uint64(1)
	in := &Input{Job: v2, Allocs: allocs(), Nodes: nodes("n1"), Versions: map[uint64]*api.Job{1: rollJob(1, 3, "demo:v1", u)},
		Now: t0.Add(700 * time.Millisecond), Deployment: dep(), DeploymentID: "D", Stable: &one}
	if got := rollSummary(Reconcile(in)); strings.Contains(got, "failed") {
		t.Fatalf("0.7 s after start, within healthy_deadline 15s: %q", got)
	}
	in.Allocs, in.Deployment, in.Now = allocs(), dep(), t0.Add(16*time.Second)
	if got := rollSummary(Reconcile(in)); !strings.Contains(got, "dep:d2=failed revert:1") {
		t.Fatalf("after healthy_deadline: %q, want failed with the rollback", got)
	}
}

// TestDefaultUpdateRollsOneAtATime (issue 15): a service job written
// without an update block (and a revert to such a version) replaced every
// replica at once. The spec as parsed now carries the default update
// block, under which a changed version rolls one replica at a time, each
// new one healthy for 10s before the next, under a deployment of its own.
func TestDefaultUpdateRollsOneAtATime(t *testing.T) {
	parse := func(version uint64, image string) *api.Job {
		j, err := jobspec.Parse("web.yaml", []byte(`name: web
groups:
  - name: web
    count: 3
    tasks:
      - name: server
        driver: docker
        config: {image: "`+image+`"}
        resources: {cpu: 100, memory: 32}
`))
		if err != nil {
			t.Fatal(err)
		}
		j.Version = version
		return j
	}
	v1, v2 := parse(1, "demo:v1"), parse(2, "demo:v2")
	if u := v2.Groups[0].Update; u == nil || *u != api.DefaultUpdateStrategy() {
		t.Fatalf("update block of a service group written without one: %+v, want %+v", u, api.DefaultUpdateStrategy())
	}
	old := func(spec string) *api.Allocation { return healthy(alloc(spec), t0.Add(-time.Hour)) }
	versions := map[uint64]*api.Job{1: v1}
	cases := []struct {
		name   string
		allocs []*api.Allocation
		dep    *api.Deployment
		now    time.Duration
		want   string
	}{
		{name: "a changed version replaces one replica", allocs: []*api.Allocation{old("a:0:running:1"), old("b:1:running:1"), old("c:2:running:1")},
			want: "place:0 retry:10m0s stop:a dep:D=running"}, // the retry: progress_deadline 10m
		{name: "the next waits out min_healthy_time 10s", dep: runningDeployment("d2", 2, 3, 1), now: 5 * time.Second,
			allocs: []*api.Allocation{inDeployment(healthy(alloc("n0:0:running:2"), t0), "d2", false), old("b:1:running:1"), old("c:2:running:1")},
			want:   "retry:10s dep:d2=running"},
		{name: "then moves on", dep: runningDeployment("d2", 2, 3, 1), now: 11 * time.Second,
			allocs: []*api.Allocation{inDeployment(healthy(alloc("n0:0:running:2"), t0), "d2", false), old("b:1:running:1"), old("c:2:running:1")},
			want:   "place:1 retry:10m11s stop:b dep:d2=running"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := &Input{Job: v2, Allocs: tc.allocs, Nodes: nodes("n1"), Versions: versions, Now: t0.Add(tc.now),
				Deployment: tc.dep, DeploymentID: "D"}
			if got := rollSummary(Reconcile(in)); got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}

	// A batch job has no update block and no deployment.
	b, err := jobspec.Parse("batch.yaml", []byte(`name: web
type: batch
groups:
  - name: web
    tasks:
      - name: server
        driver: docker
        config: {image: demo}
        resources: {cpu: 100, memory: 32}
`))
	if err != nil {
		t.Fatal(err)
	}
	if b.Groups[0].Update != nil {
		t.Fatalf("a batch group got an update block: %+v", b.Groups[0].Update)
	}
}
