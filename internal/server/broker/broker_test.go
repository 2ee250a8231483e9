package broker

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"pgregory.net/rapid"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func ev(id string, prio int, idx int64, status string, wait time.Duration) *api.Evaluation {
	e := &api.Evaluation{ID: id, Job: "j-" + id, Priority: prio, ModifyIndex: idx, Status: status}
	if wait != 0 {
		e.WaitUntil = t0.Add(wait)
	}
	return e
}

// drain picks and removes until nothing is ready at now.
func drain(q *Queue, now time.Time, capIndex int64) []string {
	var out []string
	for {
		e, _ := q.Next(now, capIndex)
		if e == nil {
			return out
		}
		out = append(out, e.ID)
		q.Remove(e.ID)
	}
}

func TestOrder(t *testing.T) {
	for _, tc := range []struct {
		name     string
		evals    []*api.Evaluation
		now      time.Duration
		capIndex int64
		want     []string
	}{
		{"priority first, then oldest",
			[]*api.Evaluation{ev("a", 50, 3, api.EvalPending, 0), ev("b", 70, 9, api.EvalPending, 0), ev("c", 50, 1, api.EvalPending, 0)},
			0, 0, []string{"b", "c", "a"}},
		{"equal priority and index: by ID",
			[]*api.Evaluation{ev("z", 50, 4, api.EvalPending, 0), ev("m", 50, 4, api.EvalPending, 0)},
			0, 0, []string{"m", "z"}},
		{"a delayed one waits for its time",
			[]*api.Evaluation{ev("later", 90, 1, api.EvalPending, time.Minute), ev("now", 10, 2, api.EvalPending, 0)},
			0, 0, []string{"now"}},
		{"a delayed one that is due competes by priority",
			[]*api.Evaluation{ev("due", 90, 5, api.EvalPending, time.Minute), ev("now", 10, 2, api.EvalPending, 0)},
			time.Minute, 0, []string{"due", "now"}},
		{"blocked runs only after capacity changed since",
			[]*api.Evaluation{ev("b1", 50, 10, api.EvalBlocked, 0), ev("b2", 50, 20, api.EvalBlocked, 0)},
			0, 20, []string{"b1"}},
		{"blocked and pending share one order",
			[]*api.Evaluation{ev("b", 80, 10, api.EvalBlocked, 0), ev("p", 50, 1, api.EvalPending, 0)},
			0, 11, []string{"b", "p"}},
		{"finished ones are not queued",
			[]*api.Evaluation{ev("done", 90, 1, api.EvalComplete, 0), ev("failed", 90, 2, api.EvalFailed, 0), ev("p", 50, 3, api.EvalPending, 0)},
			0, 0, []string{"p"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := New()
			for _, e := range tc.evals {
				q.Upsert(e)
			}
			if got := drain(q, t0.Add(tc.now), tc.capIndex); fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("picked %v, want %v", got, tc.want)
			}
		})
	}
}

func TestUpsertReplacesByID(t *testing.T) {
	q := New()
	q.Upsert(ev("a", 50, 1, api.EvalPending, 0))
	q.Upsert(ev("b", 60, 2, api.EvalPending, 0))
	// a is written again with a higher priority: one entry, moved.
	q.Upsert(ev("a", 90, 3, api.EvalPending, 0))
	if q.Len() != 2 {
		t.Fatalf("len %d, want 2", q.Len())
	}
	if got := drain(q, t0, 0); fmt.Sprint(got) != "[a b]" {
		t.Errorf("picked %v, want [a b]", got)
	}
	// Completing removes it; so does an unknown ID do nothing.
	q.Upsert(ev("c", 50, 4, api.EvalPending, 0))
	q.Upsert(ev("c", 50, 5, api.EvalComplete, 0))
	q.Remove("nobody")
	if q.Len() != 0 {
		t.Errorf("len %d after completion, want 0", q.Len())
	}
}

// TestNoDedupPerJob: the queue keeps every open evaluation of a job (the
// step that runs first supersedes the others), as the broker did before.
func TestNoDedupPerJob(t *testing.T) {
	q := New()
	a, b := ev("a", 50, 1, api.EvalPending, 0), ev("b", 50, 2, api.EvalPending, 0)
	a.Job, b.Job = "web", "web"
	q.Upsert(a)
	q.Upsert(b)
	if got := drain(q, t0, 0); fmt.Sprint(got) != "[a b]" {
		t.Errorf("picked %v, want [a b]", got)
	}
}

func TestWake(t *testing.T) {
	q := New()
	if e, wake := q.Next(t0, 0); e != nil || wake != MaxWait {
		t.Errorf("empty queue: %v, %s; want nil, %s", e, wake, MaxWait)
	}
	q.Upsert(ev("d", 50, 1, api.EvalPending, 2*time.Second))
	if e, wake := q.Next(t0, 0); e != nil || wake != 2*time.Second {
		t.Errorf("delayed: %v, %s; want nil, 2s", e, wake)
	}
	q.Upsert(ev("far", 50, 2, api.EvalPending, time.Hour))
	q.Remove("d")
	if _, wake := q.Next(t0, 0); wake != MaxWait {
		t.Errorf("far: wake %s, want %s", wake, MaxWait)
	}
}

// TestBlockedWaitsForChangeAfterItsView: a blocked evaluation is
// retried once capacity changed after the view it was planned with, even
// when that change landed before its blocked status was written (the
// lost wake-up of a change made while the plan was being made).
func TestBlockedWaitsForChangeAfterItsView(t *testing.T) {
	q := New()
	old := ev("old", 50, 10, api.EvalBlocked, 0) // written before SnapshotIndex existed
	late := ev("late", 50, 10, api.EvalBlocked, 0)
	late.SnapshotIndex = 7 // planned at 7; capacity changed at 8; written at 10
	q.Upsert(old)
	q.Upsert(late)
	if got := drain(q, t0, 7); len(got) != 0 {
		t.Errorf("capacity index 7: %v ready, want none", got)
	}
	if got := strings.Join(drain(q, t0, 8), " "); got != "late" {
		t.Errorf("capacity index 8: %q ready, want late", got)
	}
	if got := strings.Join(drain(q, t0, 11), " "); got != "old" {
		t.Errorf("capacity index 11: %q ready, want old", got)
	}
}

// TestPickOrderIsSortedPendingSet: whatever is upserted, removed and
// re-upserted, the order of picks equals a sort of what is ready, by
// priority, then modify index, then ID (the order the broker sorted in
// before it kept a heap).
func TestPickOrderIsSortedPendingSet(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		q := New()
		model := map[string]*api.Evaluation{}
		ids := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
		statuses := []string{api.EvalPending, api.EvalPending, api.EvalBlocked, api.EvalComplete}
		n := rapid.IntRange(0, 40).Draw(t, "ops")
		for i := 0; i < n; i++ {
			id := rapid.SampledFrom(ids).Draw(t, "id")
			if rapid.IntRange(0, 4).Draw(t, "remove") == 0 {
				q.Remove(id)
				delete(model, id)
				continue
			}
			e := ev(id, rapid.IntRange(0, 3).Draw(t, "prio")*10, rapid.Int64Range(1, 6).Draw(t, "idx"),
				rapid.SampledFrom(statuses).Draw(t, "status"), time.Duration(rapid.IntRange(0, 3).Draw(t, "wait"))*time.Second)
			if e.Status == api.EvalBlocked {
				e.SnapshotIndex = rapid.Int64Range(0, e.ModifyIndex).Draw(t, "snapshot")
			}
			q.Upsert(e)
			if e.Status == api.EvalPending || e.Status == api.EvalBlocked {
				model[id] = e
			} else {
				delete(model, id)
			}
		}
		now := t0.Add(time.Duration(rapid.IntRange(0, 3).Draw(t, "now")) * time.Second)
		capIndex := rapid.Int64Range(0, 7).Draw(t, "cap")
		var want []*api.Evaluation
		for _, e := range model {
			if e.Status == api.EvalPending && now.Before(e.WaitUntil) || e.Status == api.EvalBlocked && capIndex <= e.BlockedAt() {
				continue
			}
			want = append(want, e)
		}
		sort.Slice(want, func(i, j int) bool {
			a, b := want[i], want[j]
			if a.Priority != b.Priority {
				return a.Priority > b.Priority
			}
			if a.ModifyIndex != b.ModifyIndex {
				return a.ModifyIndex < b.ModifyIndex
			}
			return a.ID < b.ID
		})
		var wantIDs []string
		for _, e := range want {
			wantIDs = append(wantIDs, e.ID)
		}
		ready := q.Ready(now, capIndex)
		var readyIDs []string
		for _, e := range ready {
			readyIDs = append(readyIDs, e.ID)
		}
		if fmt.Sprint(readyIDs) != fmt.Sprint(wantIDs) {
			t.Fatalf("Ready %v, want %v", readyIDs, wantIDs)
		}
		if got := drain(q, now, capIndex); fmt.Sprint(got) != fmt.Sprint(wantIDs) {
			t.Fatalf("picked %v, want %v", got, wantIDs)
		}
		if q.Len() != len(model)-len(want) {
			t.Fatalf("%d left queued, want %d", q.Len(), len(model)-len(want))
		}
	})
}
