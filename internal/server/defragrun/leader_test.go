package defragrun

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/scheduler"
	"github.com/gantryhq/gantry/internal/state"
	"github.com/gantryhq/gantry/internal/state/statetest"
)

// cutter is a leader's Writer that loses the leadership right after the
// first write that at picks has committed, as a leader deposed between
// two steps of a move would.
type cutter struct {
	*state.Store
	at  func(p *state.PlanCommit, r *api.DefragRecord) bool
	l   *state.Leadership
	mu  sync.Mutex
	cut bool
}

func (c *cutter) after(p *state.PlanCommit, r *api.DefragRecord) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.cut && c.at(p, r) {
		c.cut = true
		c.l.Resign(context.Background())
	}
}

func (c *cutter) done() bool { c.mu.Lock(); defer c.mu.Unlock(); return c.cut }

func (c *cutter) ApplyPlan(ctx context.Context, p *state.PlanCommit) (int64, error) {
	rev, err := c.Store.ApplyPlan(ctx, p)
	if err == nil {
		c.after(p, nil)
	}
	return rev, err
}

func (c *cutter) PutDefragRecord(ctx context.Context, fence *state.Fence, r *api.DefragRecord) error {
	err := c.Store.PutDefragRecord(ctx, fence, r)
	if err == nil {
		c.after(nil, r)
	}
	return err
}

// secondServer opens another store on st's etcd, as a second server of
// the cluster would.
func secondServer(t *testing.T, st *state.Store) *state.Store {
	t.Helper()
	ctx := context.Background()
	cli, err := state.Dial(ctx, st.Endpoints())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	s2, err := state.Open(ctx, cli, "/test/", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s2.Close)
	return s2
}

// seed writes the cluster of the in-memory store from into st: its
// nodes, its jobs (train with its blocked evaluation), its allocations.
func seed(t *testing.T, st *state.Store, from *store, now time.Time) {
	t.Helper()
	ctx := context.Background()
	for _, n := range from.Snapshot().Nodes {
		if err := st.RegisterNode(ctx, n, time.Hour, now); err != nil {
			t.Fatal(err)
		}
	}
	for _, j := range from.Jobs("") {
		e := &api.Evaluation{ID: "register-" + j.Name, Namespace: j.Namespace, Job: j.Name, Status: api.EvalComplete}
		if ev := from.Evals(j.Namespace, j.Name); len(ev) > 0 {
			e = ev[len(ev)-1]
		}
		if _, err := st.RegisterJob(ctx, j, e, now); err != nil {
			t.Fatal(err)
		}
	}
	rev, err := st.ApplyPlan(ctx, &state.PlanCommit{Place: from.sortedAllocs()})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.WaitIndex(ctx, rev); err != nil {
		t.Fatal(err)
	}
}

// TestNewLeaderTakesTheMoveOver runs fragmented's move on two servers of
// one real etcd. The first leads and starts the move (apply, or the
// background defragmenter); it is deposed between two steps: right after
// the replacement is placed, after the replacement's healthy record (the
// old replica not stopped yet), or right after the old replica's stop
// commits. The second server then leads and follows the move from what
// the store holds: the replacement becomes healthy and the old replica
// stops, or, reported unhealthy, the replacement is stopped and the old
// replica stays. After every step no GPU is over-allocated (scheduler.Fit
// on every node) and small has one live replica, two only while the
// move's replacement runs beside it; at the end it has one, the move's
// record says how it ended, and each of the move's events was emitted
// once, in order. The deposed leader's next step does nothing or
// fails with state.ErrNotLeader.
func TestNewLeaderTakesTheMoveOver(t *testing.T) {
	placed := func(p *state.PlanCommit, _ *api.DefragRecord) bool { return p != nil && len(p.Place) > 0 }
	healthy := func(_ *state.PlanCommit, r *api.DefragRecord) bool {
		return r != nil && r.Type == api.DefragEventHealthy
	}
	stopped := func(p *state.PlanCommit, _ *api.DefragRecord) bool { return p != nil && len(p.Update) > 0 }
	moved := []string{api.DefragEventProposed, api.DefragEventStarted, api.DefragEventHealthy, api.DefragEventCompleted}
	gaveUp := []string{api.DefragEventProposed, api.DefragEventStarted, api.DefragEventAbandoned}
	for _, tc := range []struct {
		name       string
		background bool
		cut        func(*state.PlanCommit, *api.DefragRecord) bool
		unhealthy  bool // the replacement's health check fails on its node
		want       []string
		stays      string // the node of small's one replica at the end
	}{
		{"apply, deposed once the replacement is placed", false, placed, false, moved, "gpu-b"},
		{"apply, deposed after the healthy record", false, healthy, false, moved, "gpu-b"},
		{"apply, deposed once the old replica's stop commits", false, stopped, false, moved, "gpu-b"},
		{"apply, deposed once placed, the replacement unhealthy", false, placed, true, gaveUp, "gpu-a"},
		{"background, deposed once the replacement is placed", true, placed, false, moved, "gpu-b"},
		{"background, deposed once placed, the replacement unhealthy", true, placed, true, gaveUp, "gpu-a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			c := newClock()
			st1 := statetest.Open(t, "/test/")
			st2 := secondServer(t, st1)
			seed(t, st1, fragmented(), c.Now())

			l1, err := st1.Campaign(ctx, "s1", "", 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l1.Resign(context.Background()) })
			w1 := &cutter{Store: st1, at: tc.cut, l: l1}
			r1 := New(Ports{View: st1, Writer: w1, Front: front{}, Fence: leading(l1.Fence), NewEval: realEval, Now: c.Now, Log: discard()},
				Config{Interval: time.Minute})
			step := func(r *Runner, st *state.Store, f *state.Fence) error {
				t.Helper()
				if _, err := st.Sync(ctx); err != nil {
					t.Fatal(err)
				}
				var err error
				if tc.background {
					err = r.Round(ctx, f)
				} else {
					_, err = r.Apply(ctx, f, api.DefragRequest{Job: "train"})
				}
				agent(t, st, c.Now(), tc.unhealthy)
				check(t, st2)
				c.Add(time.Minute)
				return err
			}

			for i := 0; !w1.done(); i++ {
				if i == 10 {
					t.Fatal("the first leader made ten steps and was never cut off")
				}
				if err := step(r1, st1, l1.Fence); err != nil && !(w1.done() && errors.Is(err, state.ErrNotLeader)) {
					t.Fatalf("step %d of the first leader: %v", i, err)
				}
			}
			if err := step(r1, st1, l1.Fence); err != nil && !errors.Is(err, state.ErrNotLeader) {
				t.Errorf("the deposed leader's next step: %v, want nothing done or state.ErrNotLeader", err)
			}

			l2, err := st2.Campaign(ctx, "s2", "", 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l2.Resign(context.Background()) })
			r2 := New(Ports{View: st2, Writer: st2, Front: front{}, Fence: leading(l2.Fence), NewEval: realEval, Now: c.Now, Log: discard()},
				Config{Interval: time.Minute})
			var rec *api.DefragRecord
			for i := 0; ; i++ {
				if rec, err = st2.DefragMove(ctx, "small-0"); err != nil {
					t.Fatal(err)
				}
				if rec != nil && (rec.Type == api.DefragEventCompleted || rec.Type == api.DefragEventAbandoned) {
					break
				}
				if i == 10 {
					t.Fatalf("the new leader made ten steps and the move is still %+v", rec)
				}
				if err := step(r2, st2, l2.Fence); err != nil {
					t.Fatalf("step %d of the new leader: %v", i, err)
				}
			}

			// small has one replica, where the move's outcome says.
			var live []*api.Allocation
			for _, a := range st2.Allocs(state.AllocFilter{}) {
				if a.Job == "small" && a.DesiredStatus == api.AllocDesiredRun && !a.ClientTerminal() {
					live = append(live, a)
				}
			}
			repl, _ := st2.Alloc(rec.Replacement)
			switch {
			case len(live) != 1 || live[0].NodeName != tc.stays:
				t.Errorf("small's live replicas %v, want one on %s", names(live), tc.stays)
			case repl == nil:
				t.Errorf("the move's record names replacement %q, which is not in the store", rec.Replacement)
			case tc.unhealthy && (live[0].ID != "small-0" || repl.DesiredStatus != api.AllocDesiredStop):
				t.Errorf("abandoned: %s runs, the replacement is %s; want small-0 running and the replacement stopped", live[0].ID, repl.DesiredStatus)
			case !tc.unhealthy && live[0].ID != repl.ID:
				t.Errorf("completed: %s runs, want the replacement %s", live[0].ID, repl.ID)
			}
			if l1.Fence.Rev >= l2.Fence.Rev {
				t.Errorf("fences %d then %d: the second leadership is not the later one", l1.Fence.Rev, l2.Fence.Rev)
			}

			got := defragEvents(t, st2, l2.Fence)
			var types []string
			for _, e := range got {
				types = append(types, e.Type)
				if e.Type != api.DefragEventProposed && e.Replacement != rec.Replacement {
					t.Errorf("%s names replacement %s, the move's is %s", e.Type, e.Replacement, rec.Replacement)
				}
			}
			if !slices.Equal(types, tc.want) {
				t.Errorf("defrag events %v, want %v, each once", types, tc.want)
			}
		})
	}
}

// realEval mints an evaluation as the server does.
func realEval(ns, job, trigger string) *api.Evaluation {
	return &api.Evaluation{ID: fmt.Sprintf("%s-%s-%d", job, trigger, time.Now().UnixNano()), Namespace: ns, Job: job, TriggeredBy: trigger, Status: api.EvalPending}
}

// agent reports what the nodes' agents would: a new allocation runs
// (healthy; a move's replacement unhealthy when unhealthy is set), a
// stopped one is complete.
func agent(t *testing.T, st *state.Store, now time.Time, unhealthy bool) {
	t.Helper()
	ctx := context.Background()
	if _, err := st.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	for _, a := range st.Allocs(state.AllocFilter{}) {
		u := api.AllocUpdate{ID: a.ID}
		switch {
		case a.DesiredStatus == api.AllocDesiredRun && a.ClientStatus == api.AllocPending:
			u.ClientStatus, u.Health = api.AllocRunning, api.HealthHealthy
			if unhealthy && a.Move != "" {
				u.Health = api.HealthUnhealthy
			}
		case a.DesiredStatus == api.AllocDesiredStop && !a.ClientTerminal():
			u.ClientStatus = api.AllocComplete
		default:
			continue
		}
		err := st.UpdateAllocsFromClient(ctx, a.NodeID, []api.AllocUpdate{u}, now, func(a *api.Allocation) *api.Evaluation {
			return realEval(a.Namespace, a.Job, api.TriggerAllocFailure)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.Sync(ctx); err != nil {
		t.Fatal(err)
	}
}

// check asserts what must hold between any two steps: every node's
// allocations fit it (no GPU share over-allocated) and small has one
// live replica, or two while a move's replacement runs beside it.
func check(t *testing.T, st *state.Store) {
	t.Helper()
	if _, err := st.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	snap := st.Snapshot()
	for _, n := range snap.Nodes {
		var on []*api.Allocation
		for _, a := range snap.Allocs {
			if a.NodeID == n.ID && !a.Terminal() {
				on = append(on, a)
			}
		}
		if err := scheduler.Fit(n, on); err != nil {
			t.Fatalf("%s is over-allocated: %v", n.Name, err)
		}
	}
	var live []*api.Allocation
	for _, a := range snap.Allocs {
		if a.Job == "small" && a.DesiredStatus == api.AllocDesiredRun && !a.ClientTerminal() {
			live = append(live, a)
		}
	}
	switch {
	case len(live) == 1:
	case len(live) == 2 && (live[0].Move != "") != (live[1].Move != ""):
	default:
		t.Fatalf("small has live replicas %v: want one, or one and its move's replacement", names(live))
	}
}

func names(as []*api.Allocation) []string {
	var out []string
	for _, a := range as {
		out = append(out, a.ID+"@"+a.NodeName)
	}
	return out
}

// defragEvent is one event of topic defrag, decoded.
type defragEvent struct {
	Index int64
	api.DefragRecord
}

// defragEvents reads the store's defrag events from the first index. A
// marker record written last, with the leader's fence, ends the read.
func defragEvents(t *testing.T, st *state.Store, fence *state.Fence) []defragEvent {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const end = "test-end"
	if err := st.PutDefragRecord(ctx, fence, &api.DefragRecord{Type: end}); err != nil {
		t.Fatal(err)
	}
	var out []defragEvent
	stop := errors.New("stop")
	err := st.Events(ctx, 1, state.EventFilter{Topics: map[string]bool{api.TopicDefrag: true}}, time.Now, func(es []api.Event) error {
		for _, e := range es {
			if e.Type == end {
				return stop
			}
			d := defragEvent{Index: e.Index}
			if err := json.Unmarshal(e.Payload, &d.DefragRecord); err != nil {
				return err
			}
			out = append(out, d)
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Fatalf("read the defrag events: %v", err)
	}
	return out
}
