package ownwrites

import (
	"testing"

	"github.com/gantryhq/gantry/internal/api"
)

func alloc(id, node string) *api.Allocation { return &api.Allocation{ID: id, NodeID: node} }

func ids(as []*api.Allocation) []string {
	out := []string{}
	for _, a := range as {
		out = append(out, a.ID)
	}
	return out
}

func TestLogFollowsCommitsUntilTheViewHoldsThem(t *testing.T) {
	var l Log
	a := l.Begin("default/a", []*api.Allocation{alloc("a1", "n1"), alloc("a2", "n2")})
	// In flight: the job waits for ever, its placements count, and no
	// node revision is known yet (the guard comes from the view).
	if got := l.JobRev("default/a"); got != Unknown {
		t.Fatalf("JobRev in flight = %d, want Unknown", got)
	}
	if got := l.JobRev("default/b"); got != 0 {
		t.Fatalf("JobRev of another job = %d, want 0", got)
	}
	if got := ids(l.Placed("n1")); len(got) != 1 || got[0] != "a1" {
		t.Fatalf("Placed(n1) in flight = %v", got)
	}
	if got := l.NodeRev("n1"); got != 0 {
		t.Fatalf("NodeRev in flight = %d, want 0", got)
	}
	if got := l.Oldest(); got != 0 {
		t.Fatalf("Oldest with only a commit in flight = %d, want 0", got)
	}
	l.Prune(1 << 40)
	if l.Len() != 1 {
		t.Fatal("Prune dropped a commit in flight")
	}

	a.Done(10, map[string]int64{"n1": 9, "n2": 10})
	b := l.Begin("default/b", []*api.Allocation{alloc("b1", "n1")})
	b.Done(12, map[string]int64{"n1": 12})
	for _, tc := range []struct {
		name      string
		got, want int64
	}{
		{"JobRev(a)", l.JobRev("default/a"), 10},
		{"JobRev(b)", l.JobRev("default/b"), 12},
		{"NodeRev(n1), the later commit's", l.NodeRev("n1"), 12},
		{"NodeRev(n2)", l.NodeRev("n2"), 10},
		{"NodeRev(n3)", l.NodeRev("n3"), 0},
		{"Last", l.Last(), 12},
		{"Oldest", l.Oldest(), 10},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %d, want %d", tc.name, tc.got, tc.want)
		}
	}
	if got := ids(l.Placed("n1")); len(got) != 2 || got[0] != "a1" || got[1] != "b1" {
		t.Fatalf("Placed(n1) = %v, want [a1 b1]", got)
	}

	// The view reached a's commit: only b's is left.
	l.Prune(10)
	if l.Len() != 1 || l.JobRev("default/a") != 0 || l.NodeRev("n2") != 0 || len(l.Placed("n2")) != 0 {
		t.Fatalf("after Prune(10): len %d, JobRev(a) %d, NodeRev(n2) %d, Placed(n2) %v",
			l.Len(), l.JobRev("default/a"), l.NodeRev("n2"), ids(l.Placed("n2")))
	}
	l.Prune(12)
	if l.Len() != 0 || l.Last() != 0 {
		t.Fatalf("after Prune(12): len %d, last %d", l.Len(), l.Last())
	}
}

func TestAbortForgetsThePlan(t *testing.T) {
	var l Log
	a := l.Begin("default/a", []*api.Allocation{alloc("a1", "n1")})
	a.Done(5, map[string]int64{"n1": 5})
	b := l.Begin("default/b", []*api.Allocation{alloc("b1", "n1")})
	b.Abort()
	if got := ids(l.Placed("n1")); len(got) != 1 || got[0] != "a1" {
		t.Fatalf("Placed(n1) after abort = %v, want [a1]", got)
	}
	if l.JobRev("default/b") != 0 || l.Last() != 5 {
		t.Fatalf("after abort: JobRev(b) %d, Last %d", l.JobRev("default/b"), l.Last())
	}
}
