package deploywatch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/state"
)

var now = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func dep(id, job, status string, version uint64) *api.Deployment {
	return &api.Deployment{ID: id, Namespace: "default", Job: job, Status: status, JobVersion: version}
}

func u64(v uint64) *uint64 { return &v }

func TestWatch(t *testing.T) {
	running := []*api.Allocation{{ID: "a1", ClientStatus: api.AllocRunning, Health: api.HealthHealthy}}
	sig := Signature(running)
	failedRevert := func(id, job string, v uint64) *api.Deployment {
		d := dep(id, job, api.DeploymentFailed, v)
		d.RevertTo = u64(v - 1)
		return d
	}
	reverted := failedRevert("done", "web", 3)
	reverted.RevertedAs = u64(4)
	noRevert := dep("plain-failed", "web", api.DeploymentFailed, 3)
	jobs := map[string]*api.Job{
		"web":     {Name: "web", Version: 3, Priority: 70},
		"moved":   {Name: "moved", Version: 5},
		"stopped": {Name: "stopped", Version: 3, Stop: true},
	}
	evals := map[string][]*api.Evaluation{
		"due":   {{ID: "e", Status: api.EvalPending, WaitUntil: now}},
		"later": {{ID: "e", Status: api.EvalPending, WaitUntil: now.Add(time.Second)}},
	}
	r := Reads{
		Signature: func(_, job string) uint64 { return sig },
		Evals:     func(_, job string) []*api.Evaluation { return evals[job] },
		Job:       func(_, name string) (*api.Job, bool) { j, ok := jobs[name]; return j, ok },
	}
	type evalWant struct {
		id   string
		prio int
	}
	for _, tc := range []struct {
		name     string
		open     []*api.Deployment
		seen     map[string]uint64
		evaluate []evalWant
		revert   []Revert
		forget   []string
	}{
		{name: "nothing open", seen: map[string]uint64{}},
		{name: "new running deployment: evaluate at the job's priority",
			open: []*api.Deployment{dep("d1", "web", api.DeploymentRunning, 3)}, seen: map[string]uint64{},
			evaluate: []evalWant{{"d1", 70}}},
		{name: "job gone: the default priority",
			open: []*api.Deployment{dep("d1", "gone", api.DeploymentRunning, 3)}, seen: map[string]uint64{},
			evaluate: []evalWant{{"d1", api.DefaultPriority}}},
		{name: "allocations unchanged since the last evaluation",
			open: []*api.Deployment{dep("d1", "web", api.DeploymentRunning, 3)}, seen: map[string]uint64{"d1": sig}},
		{name: "allocations changed",
			open: []*api.Deployment{dep("d1", "web", api.DeploymentRunning, 3)}, seen: map[string]uint64{"d1": sig + 1},
			evaluate: []evalWant{{"d1", 70}}},
		{name: "an evaluation due now already",
			open: []*api.Deployment{dep("d1", "due", api.DeploymentRunning, 3)}, seen: map[string]uint64{}},
		{name: "an evaluation due later does not count",
			open: []*api.Deployment{dep("d1", "later", api.DeploymentRunning, 3)}, seen: map[string]uint64{},
			evaluate: []evalWant{{"d1", api.DefaultPriority}}},
		{name: "finished deployments are forgotten",
			open: []*api.Deployment{dep("d1", "web", api.DeploymentRunning, 3)}, seen: map[string]uint64{"d1": sig, "d0": sig},
			forget: []string{"d0"}},
		{name: "failed with auto_revert, job unchanged: revert",
			open: []*api.Deployment{failedRevert("f", "web", 3)}, seen: map[string]uint64{},
			revert: []Revert{{Version: 3}}},
		{name: "failed with auto_revert, job changed since: noted only",
			open: []*api.Deployment{failedRevert("f", "moved", 3)}, seen: map[string]uint64{},
			revert: []Revert{{Version: 5, Skip: "; not rolled back: the job was stopped or changed meanwhile"}}},
		{name: "failed with auto_revert, job stopped: noted only",
			open: []*api.Deployment{failedRevert("f", "stopped", 3)}, seen: map[string]uint64{},
			revert: []Revert{{Version: 3, Skip: "; not rolled back: the job was stopped or changed meanwhile"}}},
		{name: "failed with auto_revert, job gone: noted as version 0",
			open: []*api.Deployment{failedRevert("f", "gone", 3)}, seen: map[string]uint64{},
			revert: []Revert{{Version: 0, Skip: "; not rolled back: the job was stopped or changed meanwhile"}}},
		{name: "already reverted, or no auto_revert: nothing",
			open: []*api.Deployment{reverted, noRevert}, seen: map[string]uint64{}},
	} {
		d := Watch(tc.open, tc.seen, r, now)
		var ev []evalWant
		for _, e := range d.Evaluate {
			ev = append(ev, evalWant{e.Deployment.ID, e.Priority})
			if e.Signature != sig {
				t.Errorf("%s: signature %x, want %x", tc.name, e.Signature, sig)
			}
		}
		if !slices.Equal(ev, tc.evaluate) {
			t.Errorf("%s: evaluate %v, want %v", tc.name, ev, tc.evaluate)
		}
		var rv []Revert
		for _, x := range d.Revert {
			rv = append(rv, Revert{Version: x.Version, Skip: x.Skip})
		}
		if !slices.Equal(rv, tc.revert) {
			t.Errorf("%s: revert %+v, want %+v", tc.name, rv, tc.revert)
		}
		sort.Strings(d.Forget)
		if !slices.Equal(d.Forget, tc.forget) {
			t.Errorf("%s: forget %v, want %v", tc.name, d.Forget, tc.forget)
		}
	}
}

func TestOld(t *testing.T) {
	// finishedN returns n finished deployments of job, newest first:
	// prefix0 is the newest.
	finishedN := func(prefix, job, status string, n int) []*api.Deployment {
		var out []*api.Deployment
		for i := range n {
			out = append(out, dep(fmt.Sprint(prefix, i), job, status, uint64(n-i)))
		}
		return out
	}
	for _, tc := range []struct {
		name string
		deps []*api.Deployment
		want []string
	}{
		{"none", nil, nil},
		{"up to the bound", finishedN("f", "web", api.DeploymentFailed, KeepPerJob), nil},
		{"beyond the bound: the oldest go", finishedN("f", "web", api.DeploymentFailed, KeepPerJob+2), []string{"f10", "f11"}},
		{"counted per job", append(finishedN("w", "web", api.DeploymentFailed, KeepPerJob), finishedN("d", "db", api.DeploymentFailed, KeepPerJob)...), nil},
		{"the newest successful one stays however old",
			append(finishedN("f", "web", api.DeploymentFailed, KeepPerJob+1), dep("ok", "web", api.DeploymentSuccessful, 0), dep("ok-older", "web", api.DeploymentSuccessful, 0)),
			[]string{"f10", "ok-older"}},
		{"a running one stays however old",
			append(finishedN("f", "web", api.DeploymentFailed, KeepPerJob), dep("run", "web", api.DeploymentRunning, 0)), nil},
	} {
		if got := Old(tc.deps); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// fakeStore holds one job with its versions, deployments, allocations
// and evaluations: the watcher's Reader.
type fakeStore struct {
	job      *api.Job
	versions map[uint64]*api.Job
	deps     []*api.Deployment
	allocs   []*api.Allocation
	evals    []*api.Evaluation
}

func (f *fakeStore) Changed() <-chan struct{} { return make(chan struct{}) }
func (f *fakeStore) OpenDeployments() []*api.Deployment {
	var out []*api.Deployment
	for _, d := range f.deps {
		if d.Active() || (d.Status == api.DeploymentFailed && d.RevertedAs == nil) {
			out = append(out, d)
		}
	}
	return out
}
func (f *fakeStore) Deployments(_, _ string) []*api.Deployment { return f.deps }
func (f *fakeStore) JobSignature(_, _ string) uint64           { return Signature(f.allocs) }
func (f *fakeStore) Evals(_, _ string) []*api.Evaluation       { return f.evals }
func (f *fakeStore) Job(_, name string) (*api.Job, bool) {
	return f.job, f.job != nil && f.job.Name == name
}
func (f *fakeStore) JobVersion(_ context.Context, _, _ string, v uint64) (*api.Job, error) {
	if j, ok := f.versions[v]; ok {
		return j, nil
	}
	return nil, state.ErrNotFound
}

// fakeWrites is the watcher's Writer onto a fakeStore: it applies the
// fenced writes to the store and records the registrations and
// deletions; once notLeader is set every write fails with
// state.ErrNotLeader.
type fakeWrites struct {
	s          *fakeStore
	registered []*api.Job
	deleted    []string
	notLeader  bool
}

func (f *fakeWrites) write(fence *state.Fence) error {
	if fence == nil {
		return errors.New("unfenced leader write")
	}
	if f.notLeader {
		return state.ErrNotLeader
	}
	return nil
}
func (f *fakeWrites) CreateEvals(_ context.Context, fence *state.Fence, evals ...*api.Evaluation) error {
	if err := f.write(fence); err != nil {
		return err
	}
	f.s.evals = append(f.s.evals, evals...)
	return nil
}
func (f *fakeWrites) UpdateDeployment(_ context.Context, fence *state.Fence, id string, fn func(d *api.Deployment) error, _ ...*api.Evaluation) (*api.Deployment, int64, error) {
	if err := f.write(fence); err != nil {
		return nil, 0, err
	}
	for _, d := range f.s.deps {
		if d.ID == id {
			if err := fn(d); err != nil {
				return nil, 0, err
			}
			return d, 1, nil
		}
	}
	return nil, 0, state.ErrNotFound
}
func (f *fakeWrites) DeleteDeployments(_ context.Context, fence *state.Fence, ids []string) error {
	if err := f.write(fence); err != nil {
		return err
	}
	f.deleted = append(f.deleted, ids...)
	return nil
}
func (f *fakeWrites) RegisterJobFenced(_ context.Context, fence *state.Fence, job *api.Job, eval *api.Evaluation, _ time.Time) (*state.RegisterResult, error) {
	if err := f.write(fence); err != nil {
		return nil, err
	}
	job.Version = f.s.job.Version + 1
	f.s.job = job
	f.registered = append(f.registered, job)
	return &state.RegisterResult{Job: job, Eval: eval, Changed: true}, nil
}

// TestWatcherRound drives the shell one round at a time: a running
// deployment gets one evaluation, not a second while its allocations
// stay the same, another when they change; a failed deployment with
// auto_revert registers the stable version again as a new version, notes
// it on the deployment and logs it; old deployments go after a minute; a
// lost leadership comes back as state.ErrNotLeader.
func TestWatcherRound(t *testing.T) {
	f := &fakeStore{
		job:      &api.Job{Name: "web", Version: 1, Priority: 70},
		versions: map[uint64]*api.Job{0: {Name: "web", Version: 0, Stop: true, Groups: []*api.Group{{Name: "g", Count: 1}}}},
		deps:     []*api.Deployment{dep("d1", "web", api.DeploymentRunning, 1)},
		allocs:   []*api.Allocation{{ID: "a1", ClientStatus: api.AllocPending}},
	}
	clock := now
	var logs bytes.Buffer
	ids := 0
	newEval := func(ns, job, trigger string) *api.Evaluation {
		ids++
		return &api.Evaluation{ID: fmt.Sprint("e", ids), Namespace: ns, Job: job, TriggeredBy: trigger, Status: api.EvalComplete}
	}
	wr := &fakeWrites{s: f}
	w := New(f, wr, &state.Fence{}, func() time.Time { return clock }, newEval, slog.New(slog.NewTextHandler(&logs, nil)))
	ctx := context.Background()
	round := func(what string) {
		t.Helper()
		if err := w.Round(ctx, clock); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}

	round("first round")
	if len(f.evals) != 1 || f.evals[0].TriggeredBy != api.TriggerDeployment || f.evals[0].Priority != 70 || f.evals[0].JobVersion != 1 {
		t.Fatalf("first round: evaluations %+v, want one for the deployment at priority 70, version 1", f.evals)
	}
	round("same allocations")
	if len(f.evals) != 1 {
		t.Fatalf("same allocations: %d evaluations, want still 1", len(f.evals))
	}
	f.allocs = []*api.Allocation{{ID: "a1", ClientStatus: api.AllocRunning, Health: api.HealthHealthy}}
	round("allocations changed")
	if len(f.evals) != 2 {
		t.Fatalf("allocations changed: %d evaluations, want 2", len(f.evals))
	}

	f.deps[0].Status, f.deps[0].RevertTo, f.deps[0].StatusDescription = api.DeploymentFailed, u64(0), "failed: progress deadline"
	round("deployment failed")
	if len(wr.registered) != 1 || wr.registered[0].Stop || wr.registered[0].Version != 2 {
		t.Fatalf("auto-revert registered %+v, want version 0's spec, running, as version 2", wr.registered)
	}
	if d := f.deps[0]; d.RevertedAs == nil || *d.RevertedAs != 2 || !strings.HasSuffix(d.StatusDescription, " (registered as version 2)") || !d.ModifyTime.Equal(clock) {
		t.Errorf("deployment after the revert: %+v", d)
	}
	if !strings.Contains(logs.String(), "deployment failed; rolled back") {
		t.Errorf("log %q does not say the deployment was rolled back", logs.String())
	}
	round("after the revert")
	if len(wr.registered) != 1 {
		t.Errorf("reverted twice: %d registrations", len(wr.registered))
	}

	for i := range KeepPerJob + 1 {
		f.deps = append(f.deps, dep(fmt.Sprint("old", i), "web", api.DeploymentFailed, 0))
	}
	round("before a minute passed")
	if len(wr.deleted) != 0 {
		t.Fatalf("deleted %v before a minute passed", wr.deleted)
	}
	clock = now.Add(gcEvery + time.Second)
	round("a minute later")
	if !slices.Equal(wr.deleted, []string{"old9", "old10"}) {
		t.Errorf("deleted %v, want [old9 old10]", wr.deleted)
	}

	wr.notLeader = true
	f.allocs = nil
	f.deps = append(f.deps, dep("d2", "web", api.DeploymentRunning, 2))
	if err := w.Round(ctx, clock); !errors.Is(err, state.ErrNotLeader) {
		t.Errorf("round after leadership moved: %v, want state.ErrNotLeader", err)
	}
}

// TestSignature: the same allocations in any order sign the same; a
// change to any field the deployment's progress depends on, an allocation
// more or one fewer, signs differently; fields it does not depend on do
// not count.
func TestSignature(t *testing.T) {
	base := func() []*api.Allocation {
		return []*api.Allocation{
			{ID: "a1", JobVersion: 2, DesiredStatus: api.AllocDesiredRun, ClientStatus: api.AllocRunning, Health: api.HealthHealthy},
			{ID: "a2", JobVersion: 2, DesiredStatus: api.AllocDesiredRun, ClientStatus: api.AllocPending},
			{ID: "a3", JobVersion: 1, DesiredStatus: api.AllocDesiredStop, ClientStatus: api.AllocComplete},
		}
	}
	sig := Signature(base())
	reversed := base()
	slices.Reverse(reversed)
	if got := Signature(reversed); got != sig {
		t.Errorf("reversed order signs %x, want %x", got, sig)
	}
	other := base()
	other[0].NodeID, other[0].ModifyIndex = "elsewhere", 99
	if got := Signature(other); got != sig {
		t.Errorf("a field progress does not depend on changed the signature")
	}
	if Signature(nil) != 0 {
		t.Errorf("no allocations sign %x, want 0 (the watcher's value for a deployment never seen)", Signature(nil))
	}
	changes := map[string]func(as []*api.Allocation) []*api.Allocation{
		"id":             func(as []*api.Allocation) []*api.Allocation { as[1].ID = "a4"; return as },
		"job version":    func(as []*api.Allocation) []*api.Allocation { as[1].JobVersion = 3; return as },
		"desired status": func(as []*api.Allocation) []*api.Allocation { as[1].DesiredStatus = api.AllocDesiredStop; return as },
		"client status":  func(as []*api.Allocation) []*api.Allocation { as[1].ClientStatus = api.AllocRunning; return as },
		"health":         func(as []*api.Allocation) []*api.Allocation { as[1].Health = api.HealthUnhealthy; return as },
		"one more":       func(as []*api.Allocation) []*api.Allocation { return append(as, &api.Allocation{ID: "a5"}) },
		"one fewer":      func(as []*api.Allocation) []*api.Allocation { return as[:2] },
		"fields swapped": func(as []*api.Allocation) []*api.Allocation {
			as[1].ID, as[1].ClientStatus = as[1].ClientStatus, as[1].ID
			return as
		},
		"two swapped statuses": func(as []*api.Allocation) []*api.Allocation {
			as[0].ClientStatus, as[1].ClientStatus = as[1].ClientStatus, as[0].ClientStatus
			return as
		},
	}
	for name, change := range changes {
		if got := Signature(change(base())); got == sig {
			t.Errorf("%s: the signature did not change", name)
		}
	}
}
