package state

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
)

// lead wins the election for id on s, resigning at the end of the test.
func lead(t *testing.T, s *Store, id string) *Leadership {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := s.Campaign(ctx, id, "", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Resign(context.Background()) })
	return l
}

// deposed returns the fence of a leadership that s1 won and resigned,
// and the leadership s2 then won.
func deposed(t *testing.T, s *Store) (*Fence, *Leadership) {
	t.Helper()
	first, err := s.Campaign(context.Background(), "s1", "", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	stale := first.Fence
	first.Resign(context.Background())
	return stale, lead(t, s, "s2")
}

// TestDeposedLeaderCannotCollectGarbage: garbage collection deletes carry
// the leader fence like every other leader write, so a leader that lost
// its election (here it resigned and another server won) deletes nothing
// with its old fence, and a delete without a fence is refused outright.
func TestDeposedLeaderCannotCollectGarbage(t *testing.T) {
	s := openTest(t, 0)
	ctx := context.Background()
	a := &api.Allocation{ID: "a1", Namespace: "default", Job: "web", NodeID: "n1", DesiredStatus: api.AllocDesiredStop, ClientStatus: api.AllocComplete}
	e := &api.Evaluation{ID: "e1", Namespace: "default", Job: "web", Status: api.EvalComplete}
	d := &api.Deployment{ID: "d1", Namespace: "default", Job: "web"}
	rev, err := s.ApplyPlan(ctx, &PlanCommit{Place: []*api.Allocation{a}, FollowUps: []*api.Evaluation{e}, Deployments: []*api.Deployment{d}})
	if err != nil {
		t.Fatal(err)
	}
	s.WaitIndex(ctx, rev)

	stale, second := deposed(t, s)
	if *second.Fence == *stale {
		t.Fatalf("the second leadership has the first one's fence %+v", *stale)
	}

	for what, del := range map[string]func(*Fence) error{
		"allocation": func(f *Fence) error { return s.DeleteAllocs(ctx, f, []string{"a1"}) },
		"evaluation": func(f *Fence) error { return s.DeleteEvals(ctx, f, []string{"e1"}) },
		"deployment": func(f *Fence) error { return s.DeleteDeployments(ctx, f, []string{"d1"}) },
	} {
		if err := del(stale); !errors.Is(err, ErrNotLeader) {
			t.Errorf("%s deleted by a deposed leader: want ErrNotLeader, got %v", what, err)
		}
		if err := del(nil); err == nil {
			t.Errorf("%s deleted without a fence", what)
		}
	}
	if _, err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Alloc("a1"); !ok {
		t.Fatal("a deposed leader's garbage collection removed an allocation")
	}
	if _, ok := s.Eval("e1"); !ok {
		t.Fatal("a deposed leader's garbage collection removed an evaluation")
	}
	if _, ok := s.Deployment("d1"); !ok {
		t.Fatal("a deposed leader's garbage collection removed a deployment")
	}

	// The leader in office collects.
	for what, err := range map[string]error{
		"allocation": s.DeleteAllocs(ctx, second.Fence, []string{"a1"}),
		"evaluation": s.DeleteEvals(ctx, second.Fence, []string{"e1"}),
		"deployment": s.DeleteDeployments(ctx, second.Fence, []string{"d1"}),
	} {
		if err != nil {
			t.Errorf("the leader's delete of a %s: %v", what, err)
		}
	}
	waitFor(t, func() bool {
		_, a := s.Alloc("a1")
		_, e := s.Eval("e1")
		_, d := s.Deployment("d1")
		return !a && !e && !d
	})
}

// TestLeaderAPIAddress: Leader names the server that won the election and
// the API URL it campaigned with; with no candidate it says ErrNoLeader,
// and once the leader resigns it names the next one.
func TestLeaderAPIAddress(t *testing.T) {
	s := openTest(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if id, u, err := s.Leader(ctx); !errors.Is(err, ErrNoLeader) {
		t.Fatalf("no candidate: got %q %q %v, want ErrNoLeader", id, u, err)
	}
	first, err := s.Campaign(ctx, "s1", "http://127.0.0.1:7701", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	second := make(chan *Leadership, 1)
	go func() {
		l, err := s.Campaign(ctx, "s2", "http://127.0.0.1:7702", 5*time.Second)
		if err != nil {
			t.Error(err)
		}
		second <- l
	}()
	if id, u, err := s.Leader(ctx); err != nil || id != "s1" || u != "http://127.0.0.1:7701" {
		t.Fatalf("leader %q at %q (%v), want s1 at http://127.0.0.1:7701", id, u, err)
	}
	first.Resign(ctx)
	l := <-second
	if l == nil {
		t.Fatal("s2 did not win after s1 resigned")
	}
	defer l.Resign(context.Background())
	if id, u, err := s.Leader(ctx); err != nil || id != "s2" || u != "http://127.0.0.1:7702" {
		t.Fatalf("after s1 resigned: leader %q at %q (%v), want s2 at http://127.0.0.1:7702", id, u, err)
	}
}

// TestDeposedLeaderCannotRegister: the leader's own registrations (a
// deployment's automatic rollback) carry the fence: with a deposed
// leader's fence nothing is written and ErrNotLeader says why; with the
// current one the job is registered.
func TestDeposedLeaderCannotRegister(t *testing.T) {
	s := openTest(t, 0)
	ctx := context.Background()
	stale, second := deposed(t, s)
	job := &api.Job{Name: "web", Namespace: "default", Type: api.JobService}
	eval := func(id string) *api.Evaluation {
		return &api.Evaluation{ID: id, Namespace: "default", Job: "web", Status: api.EvalPending}
	}
	if _, err := s.RegisterJobFenced(ctx, stale, job, eval("e1"), time.Now()); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("registration by a deposed leader: want ErrNotLeader, got %v", err)
	}
	if resp, err := s.cli.Get(ctx, s.keys.job("default", "web")); err != nil || len(resp.Kvs) != 0 {
		t.Fatalf("a deposed leader's registration was written: %v %v", resp, err)
	}
	if _, err := s.RegisterJobFenced(ctx, nil, job, eval("e2"), time.Now()); err == nil {
		t.Fatal("a fenced registration without a fence was accepted")
	}
	res, err := s.RegisterJobFenced(ctx, second.Fence, job, eval("e3"), time.Now())
	if err != nil || !res.Changed || res.Job.Version != 0 {
		t.Fatalf("registration by the leader: %+v %v", res, err)
	}
}

// TestDefragMoveRecordsCollected: the move records are listed by replica
// and deleted with the leader's fence; a deposed leader deletes nothing.
func TestDefragMoveRecordsCollected(t *testing.T) {
	s := openTest(t, 0)
	ctx := context.Background()
	stale, l := deposed(t, s)
	for _, id := range []string{"a1", "a2"} {
		r := &api.DefragRecord{Type: api.DefragEventCompleted, Move: &api.DefragMove{Alloc: id, Job: "small", Namespace: "default"}}
		if err := s.PutDefragRecord(ctx, l.Fence, r); err != nil {
			t.Fatal(err)
		}
	}
	ids, err := s.DefragMoveAllocs(ctx)
	if err != nil || len(ids) != 2 || ids[0] != "a1" || ids[1] != "a2" {
		t.Fatalf("move records: %v %v, want [a1 a2]", ids, err)
	}
	if err := s.DeleteDefragMoves(ctx, stale, []string{"a1"}); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("delete by a deposed leader: want ErrNotLeader, got %v", err)
	}
	if err := s.DeleteDefragMoves(ctx, l.Fence, []string{"a1"}); err != nil {
		t.Fatal(err)
	}
	if ids, err := s.DefragMoveAllocs(ctx); err != nil || len(ids) != 1 || ids[0] != "a2" {
		t.Fatalf("after the delete: %v %v, want [a2]", ids, err)
	}
}
