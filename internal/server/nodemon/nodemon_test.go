package nodemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/state"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// TestDownGraceAfterTakeover: a new leader marked a node down as soon as
// the view showed its lease gone, 17 s after a restart of gantry dev,
// before the restarted agent had registered again, and every allocation
// on it was replaced. A leader now gives every node a full TTL from its
// takeover.
func TestDownGraceAfterTakeover(t *testing.T) {
	const ttl = 15 * time.Second
	nodes := []*api.Node{
		{ID: "silent", Status: api.NodeStatusReady},
		{ID: "beating", Status: api.NodeStatusReady},
		{ID: "already-down", Status: api.NodeStatusDown},
		{ID: "initializing", Status: api.NodeStatusInit},
		{ID: "silent-too", Status: api.NodeStatusReady},
	}
	alive := func(id string) bool { return id == "beating" }
	for _, tc := range []struct {
		name        string
		leaderSince time.Time
		now         time.Time
		want        []string
	}{
		{"at takeover", t0, t0, nil},
		{"within the grace", t0, t0.Add(ttl - time.Millisecond), nil},
		{"grace over", t0, t0.Add(ttl), []string{"silent", "silent-too"}},
		{"long after takeover", t0.Add(-time.Hour), t0, []string{"silent", "silent-too"}},
	} {
		var ids []string
		for _, d := range Down(nodes, alive, tc.leaderSince, tc.now, ttl) {
			ids = append(ids, d.Node.ID)
			if !strings.Contains(d.Reason, "no heartbeat within its TTL (15s") {
				t.Errorf("%s: node %s down for %q, want the TTL named", tc.name, d.Node.ID, d.Reason)
			}
		}
		if !slices.Equal(ids, tc.want) {
			t.Errorf("%s: down %v, want %v", tc.name, ids, tc.want)
		}
	}
}

func alloc(id, ns, job string, prio int, client string) *api.Allocation {
	return &api.Allocation{ID: id, Namespace: ns, Job: job, Priority: prio, ClientStatus: client, DesiredStatus: api.AllocDesiredRun}
}

// TestJobsOnNode: one evaluation per job with allocations the client has
// not finished, namespaces kept apart, in the allocations' order.
func TestJobsOnNode(t *testing.T) {
	for _, tc := range []struct {
		name   string
		allocs []*api.Allocation
		want   []JobRef
	}{
		{"no allocations", nil, nil},
		{"finished allocations only", []*api.Allocation{
			alloc("a1", "default", "web", 50, api.AllocComplete),
			alloc("a2", "default", "db", 50, api.AllocFailed),
		}, nil},
		{"one job twice, another once", []*api.Allocation{
			alloc("a1", "default", "web", 70, api.AllocRunning),
			alloc("a2", "default", "web", 70, api.AllocPending),
			alloc("a3", "default", "db", 40, api.AllocRunning),
		}, []JobRef{{"default", "web", 70}, {"default", "db", 40}}},
		{"same name in two namespaces", []*api.Allocation{
			alloc("a1", "default", "web", 50, api.AllocRunning),
			alloc("a2", "team", "web", 60, api.AllocRunning),
		}, []JobRef{{"default", "web", 50}, {"team", "web", 60}}},
		{"a finished one does not hide a live one", []*api.Allocation{
			alloc("a1", "default", "web", 50, api.AllocLost),
			alloc("a2", "default", "web", 50, api.AllocRunning),
		}, []JobRef{{"default", "web", 50}}},
	} {
		if got := JobsOnNode(tc.allocs); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// fakeStore holds nodes, their leases and allocations, and records the
// writes. notLeader makes every write fail as after a leadership change.
type fakeStore struct {
	nodes     map[string]*api.Node
	alive     map[string]bool
	allocs    map[string][]*api.Allocation
	evals     []*api.Evaluation
	notLeader bool
	// renewOnWrite renews a node's lease between the monitor's read and
	// its write, as a re-registration racing the round does.
	renewOnWrite string
}

func (f *fakeStore) Nodes() []*api.Node {
	var out []*api.Node
	for _, id := range []string{"n1", "n2", "n3"} {
		if n, ok := f.nodes[id]; ok {
			c := *n
			out = append(out, &c)
		}
	}
	return out
}
func (f *fakeStore) Alive(id string) bool { return f.alive[id] }
func (f *fakeStore) NodeAllocs(id string) ([]*api.Allocation, int64) {
	return f.allocs[id], 1
}
func (f *fakeStore) UpdateNode(_ context.Context, fence *state.Fence, id string, fn func(n *api.Node) error) (*api.Node, error) {
	if fence == nil {
		return nil, errors.New("unfenced leader write")
	}
	if f.notLeader {
		return nil, state.ErrNotLeader
	}
	if id == f.renewOnWrite {
		f.alive[id] = true
	}
	c := *f.nodes[id]
	if err := fn(&c); err != nil {
		return nil, err
	}
	f.nodes[id] = &c
	return &c, nil
}
func (f *fakeStore) CreateEvals(_ context.Context, fence *state.Fence, evals ...*api.Evaluation) error {
	if fence == nil {
		return errors.New("unfenced leader write")
	}
	if f.notLeader {
		return state.ErrNotLeader
	}
	f.evals = append(f.evals, evals...)
	return nil
}

// TestMonitorRound drives the shell one round at a time: nothing before
// the grace ends; then the silent node, and only it, is marked down with
// its reason and the time, one evaluation per job on it is created, and
// the log says so; a node whose lease is renewed under the write stays
// ready; a lost leadership comes back as state.ErrNotLeader.
func TestMonitorRound(t *testing.T) {
	const ttl = 10 * time.Second
	f := &fakeStore{
		nodes: map[string]*api.Node{
			"n1": {ID: "n1", Name: "silent", Status: api.NodeStatusReady},
			"n2": {ID: "n2", Name: "beating", Status: api.NodeStatusReady},
			"n3": {ID: "n3", Name: "late", Status: api.NodeStatusReady},
		},
		alive: map[string]bool{"n2": true},
		allocs: map[string][]*api.Allocation{
			"n1": {alloc("a1", "default", "web", 70, api.AllocRunning), alloc("a2", "default", "web", 70, api.AllocRunning),
				alloc("a3", "default", "db", 30, api.AllocComplete)},
		},
		renewOnWrite: "n3",
	}
	clock := t0
	var logs bytes.Buffer
	ids := 0
	newEval := func(ns, job, trigger string) *api.Evaluation {
		ids++
		return &api.Evaluation{ID: fmt.Sprint("e", ids), Namespace: ns, Job: job, TriggeredBy: trigger, Priority: api.DefaultPriority}
	}
	m := New(f, &state.Fence{}, func() time.Time { return clock }, func() time.Duration { return ttl }, nil, newEval,
		slog.New(slog.NewTextHandler(&logs, nil)))
	ctx := context.Background()

	if err := m.Round(ctx, t0.Add(ttl-time.Second)); err != nil {
		t.Fatal(err)
	}
	if f.nodes["n1"].Status != api.NodeStatusReady || len(f.evals) != 0 {
		t.Fatalf("within the grace after takeover: n1 %s, %d evaluations", f.nodes["n1"].Status, len(f.evals))
	}

	clock = t0.Add(ttl)
	if err := m.Round(ctx, clock); err != nil {
		t.Fatal(err)
	}
	n1 := f.nodes["n1"]
	if n1.Status != api.NodeStatusDown || !strings.Contains(n1.StatusReason, "no heartbeat") || !n1.StatusChanged.Equal(clock) {
		t.Errorf("silent node: %s %q at %v, want down for no heartbeat at %v", n1.Status, n1.StatusReason, n1.StatusChanged, clock)
	}
	for _, id := range []string{"n2", "n3"} {
		if st := f.nodes[id].Status; st != api.NodeStatusReady {
			t.Errorf("node %s %s, want ready: its lease is alive", id, st)
		}
	}
	if len(f.evals) != 1 {
		t.Fatalf("%d evaluations, want 1 (web; db finished): %+v", len(f.evals), f.evals)
	}
	if e := f.evals[0]; e.Job != "web" || e.NodeID != "n1" || e.Priority != 70 || e.TriggeredBy != api.TriggerNodeUpdate {
		t.Errorf("evaluation %+v, want web on n1 at priority 70 for a node update", e)
	}
	if !strings.Contains(logs.String(), "node down") || !strings.Contains(logs.String(), "node=silent") {
		t.Errorf("log %q does not say node silent went down", logs.String())
	}

	// A further round changes nothing: n1 is down already.
	if err := m.Round(ctx, clock.Add(time.Second)); err != nil || len(f.evals) != 1 {
		t.Errorf("second round: err %v, %d evaluations, want none new", err, len(f.evals))
	}

	f.nodes["n2"].Status, f.alive["n2"], f.notLeader = api.NodeStatusReady, false, true
	if err := m.Round(ctx, clock.Add(2*time.Second)); !errors.Is(err, state.ErrNotLeader) {
		t.Errorf("round after leadership moved: %v, want state.ErrNotLeader", err)
	}
}

// TestLapsed: a ready node without its lease keeps the time it was first
// seen so; one alive again, or no longer ready, is dropped.
func TestLapsed(t *testing.T) {
	nodes := []*api.Node{
		{ID: "old", Status: api.NodeStatusReady},
		{ID: "new", Status: api.NodeStatusReady},
		{ID: "back", Status: api.NodeStatusReady},
		{ID: "down", Status: api.NodeStatusDown},
	}
	alive := func(id string) bool { return id == "back" }
	prev := map[string]time.Time{"old": t0, "back": t0, "down": t0, "gone": t0}
	now := t0.Add(time.Minute)
	got := Lapsed(prev, nodes, alive, now)
	want := map[string]time.Time{"old": t0, "new": now}
	if len(got) != len(want) || !got["old"].Equal(want["old"]) || !got["new"].Equal(want["new"]) {
		t.Errorf("lapsed %v, want %v", got, want)
	}
	if len(prev) != 4 {
		t.Errorf("prev was changed: %v", prev)
	}
}

// TestSpare: an overloaded server keeps a silent node ready for level ×
// TTL after it was first seen silent, then marks it down saying so; for a
// TTL after the overload ended it keeps every node; otherwise it spares
// nothing.
func TestSpare(t *testing.T) {
	const ttl = 10 * time.Second
	down := []DownNode{
		{Node: &api.Node{ID: "fresh"}, Reason: "no heartbeat"},
		{Node: &api.Node{ID: "stale"}, Reason: "no heartbeat"},
		{Node: &api.Node{ID: "unseen"}, Reason: "no heartbeat"},
	}
	lapsed := map[string]time.Time{"fresh": t0.Add(-5 * time.Second), "stale": t0.Add(-25 * time.Second)}
	for _, tc := range []struct {
		name         string
		o            Overload
		mark, spared []string
	}{
		{"never overloaded", Overload{}, []string{"fresh", "stale", "unseen"}, nil},
		{"overload long over", Overload{Last: t0.Add(-ttl)}, []string{"fresh", "stale", "unseen"}, nil},
		{"overload ended within a TTL", Overload{Last: t0.Add(-ttl + time.Millisecond)}, nil, []string{"fresh", "stale", "unseen"}},
		{"level 1: 10s more", Overload{Level: 1, Last: t0}, []string{"stale"}, []string{"fresh", "unseen"}},
		{"level 3: 30s more", Overload{Level: 3, Last: t0}, nil, []string{"fresh", "stale", "unseen"}},
	} {
		mark, spared := Spare(down, lapsed, tc.o, t0, ttl)
		ids := func(ds []DownNode) []string {
			var out []string
			for _, d := range ds {
				out = append(out, d.Node.ID)
			}
			return out
		}
		if !slices.Equal(ids(mark), tc.mark) || !slices.Equal(ids(spared), tc.spared) {
			t.Errorf("%s: mark %v spare %v, want mark %v spare %v", tc.name, ids(mark), ids(spared), tc.mark, tc.spared)
		}
		for _, d := range mark {
			if tc.o.Level > 0 && !strings.Contains(d.Reason, "more that the overloaded server gave it") {
				t.Errorf("%s: %s marked down for %q, want the extra grace named", tc.name, d.Node.ID, d.Reason)
			}
		}
	}
}

// TestMonitorRoundOverloaded: while the server is overloaded the round
// that finds a node silent keeps it ready and counts it; the node is
// marked down once level × TTL passed, or a TTL after the overload ended.
func TestMonitorRoundOverloaded(t *testing.T) {
	const ttl = 10 * time.Second
	for _, tc := range []struct {
		name    string
		levelAt func(now time.Time) int // the overload level at each round
		downAt  time.Duration           // after takeover + TTL
	}{
		{"lasting overload at level 2", func(time.Time) int { return 2 }, 2 * ttl},
		{"overload that ends", func(now time.Time) int {
			if now.Before(t0.Add(ttl + 5*time.Second)) {
				return 1
			}
			return 0
		}, 4*time.Second /* last overloaded round */ + ttl},
	} {
		f := &fakeStore{nodes: map[string]*api.Node{"n1": {ID: "n1", Name: "silent", Status: api.NodeStatusReady}}, alive: map[string]bool{}}
		clock := t0
		var logs bytes.Buffer
		m := New(f, &state.Fence{}, func() time.Time { return clock }, func() time.Duration { return ttl },
			func() int { return tc.levelAt(clock) },
			func(ns, job, trigger string) *api.Evaluation {
				return &api.Evaluation{ID: "e", Namespace: ns, Job: job}
			},
			slog.New(slog.NewTextHandler(&logs, nil)))
		var wentDown time.Duration = -1
		for step := time.Duration(0); step <= 4*ttl; step += time.Second {
			clock = t0.Add(ttl + step)
			if err := m.Round(context.Background(), clock); err != nil {
				t.Fatal(err)
			}
			if f.nodes["n1"].Status == api.NodeStatusDown {
				wentDown = step
				break
			}
			if m.Spared() != 1 {
				t.Fatalf("%s: at +%s the node is ready but %d nodes counted as spared", tc.name, step, m.Spared())
			}
		}
		if wentDown != tc.downAt {
			t.Errorf("%s: marked down at takeover+TTL+%s, want +%s", tc.name, wentDown, tc.downAt)
		}
		if m.Spared() != 0 {
			t.Errorf("%s: %d spared after the node went down", tc.name, m.Spared())
		}
		if !strings.Contains(logs.String(), "kept ready") {
			t.Errorf("%s: log %q does not say nodes were kept ready", tc.name, logs.String())
		}
	}
}
