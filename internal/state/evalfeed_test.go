package state

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
)

func ids(es []*api.Evaluation) string {
	var out []string
	for _, e := range es {
		out = append(out, e.ID+":"+e.Status)
	}
	sort.Strings(out)
	return fmt.Sprint(out)
}

// TestEvalChangesFollowsTheView: the broker's feed gives everything once,
// then only what changed after the revision it last saw, deletions
// included.
func TestEvalChangesFollowsTheView(t *testing.T) {
	s := openTest(t, 0)
	ctx := context.Background()
	rev, err := s.ApplyPlan(ctx, &PlanCommit{FollowUps: []*api.Evaluation{eval("e1")}})
	if err != nil {
		t.Fatal(err)
	}
	s.WaitIndex(ctx, rev)
	all, gone, upTo, whole := s.EvalChanges(-1)
	if !whole || ids(all) != "[e1:pending]" || len(gone) != 0 {
		t.Fatalf("first call: %s gone %v whole %v; want everything, whole", ids(all), gone, whole)
	}
	if ch, gone, up, whole := s.EvalChanges(upTo); whole || len(ch)+len(gone) != 0 || up != upTo {
		t.Fatalf("nothing changed, yet %s gone %v whole %v up %d (was %d)", ids(ch), gone, whole, up, upTo)
	}
	rev, err = s.ApplyPlan(ctx, &PlanCommit{FollowUps: []*api.Evaluation{eval("e2"), eval("e3")}})
	if err != nil {
		t.Fatal(err)
	}
	s.WaitIndex(ctx, rev)
	l := lead(t, s, "s1")
	done, _ := s.Eval("e2")
	c := *done
	c.Status = api.EvalComplete
	rev, err = s.ApplyPlan(ctx, &PlanCommit{Fence: l.Fence, Eval: &c})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteEvals(ctx, l.Fence, []string{"e1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	ch, gone, _, whole := s.EvalChanges(upTo)
	if whole || ids(ch) != "[e2:complete e3:pending]" || fmt.Sprint(gone) != "[e1]" {
		t.Errorf("changes: %s gone %v whole %v; want e2 complete and e3 pending, e1 gone", ids(ch), gone, whole)
	}
}

// TestEvalLogBound: a reader further behind than the bounded log reads
// everything again.
func TestEvalLogBound(t *testing.T) {
	s := &Store{evals: map[string]*api.Evaluation{"e": {ID: "e"}}}
	for i := 1; i <= maxEvalLog+1; i++ {
		s.logEvalLocked(int64(i), "e")
		s.rev = int64(i)
	}
	if len(s.evalLog) > maxEvalLog {
		t.Fatalf("log holds %d entries, bound %d", len(s.evalLog), maxEvalLog)
	}
	if _, _, _, whole := s.EvalChanges(1); !whole {
		t.Error("a reader behind the log's start was not told to start over")
	}
	if ch, _, _, whole := s.EvalChanges(s.rev - 1); whole || len(ch) != 1 {
		t.Errorf("a recent reader: %d changes, whole %v; want 1, false", len(ch), whole)
	}
}

// TestReadyEvals: the overload sampler's evaluation backlog counts the
// pending evaluations due now, and neither blocked ones nor those delayed
// past now.
func TestReadyEvals(t *testing.T) {
	s := openTest(t, 0)
	ctx := context.Background()
	now := time.Now()
	due, running, delayed, blocked, done := eval("due"), eval("running"), eval("delayed"), eval("blocked"), eval("done")
	running.WaitUntil = now.Add(-time.Minute)
	delayed.WaitUntil = now.Add(time.Hour)
	blocked.Status, done.Status = api.EvalBlocked, api.EvalComplete
	rev, err := s.ApplyPlan(ctx, &PlanCommit{FollowUps: []*api.Evaluation{due, running, delayed, blocked, done}})
	if err != nil {
		t.Fatal(err)
	}
	s.WaitIndex(ctx, rev)
	if got := s.ReadyEvals(now); got != 2 {
		t.Errorf("%d ready evaluations, want 2 (due, running)", got)
	}
	if got := s.ReadyEvals(now.Add(2 * time.Hour)); got != 3 {
		t.Errorf("%d ready evaluations two hours on, want 3 (the delayed one is due)", got)
	}
}
