package gc

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

var now = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func eval(id, job, status string, age time.Duration) *api.Evaluation {
	return &api.Evaluation{ID: id, Namespace: "default", Job: job, Status: status, ModifyTime: now.Add(-age)}
}

// finished returns n finished evaluations of job, oldest first, named
// prefix0 … prefixN-1, each age old.
func finished(prefix, job string, n int, age time.Duration) []*api.Evaluation {
	var out []*api.Evaluation
	for i := range n {
		out = append(out, eval(fmt.Sprint(prefix, i), job, api.EvalComplete, age))
	}
	return out
}

func TestEvals(t *testing.T) {
	old := EvalAge + time.Second
	for _, tc := range []struct {
		name  string
		evals []*api.Evaluation
		want  []string
	}{
		{"none", nil, nil},
		{"old but within the kept few", finished("e", "web", KeepEvalsPerJob, old), nil},
		{"beyond the kept few, old: oldest go", finished("e", "web", KeepEvalsPerJob+2, old), []string{"e1", "e0"}},
		{"beyond the kept few, young: kept", finished("e", "web", KeepEvalsPerJob+2, EvalAge), nil},
		{"counted per job", append(finished("w", "web", KeepEvalsPerJob, old), finished("d", "db", KeepEvalsPerJob, old)...), nil},
		{"pending and blocked neither count nor go", append([]*api.Evaluation{
			eval("p", "web", api.EvalPending, old), eval("b", "web", api.EvalBlocked, old),
			eval("f", "web", api.EvalFailed, old),
		}, finished("e", "web", KeepEvalsPerJob, old)...), []string{"f"}},
		{"same job name in another namespace counts apart", append(finished("e", "web", KeepEvalsPerJob, old),
			&api.Evaluation{ID: "other", Namespace: "team", Job: "web", Status: api.EvalComplete, ModifyTime: now.Add(-old)}), nil},
	} {
		if got := Evals(tc.evals, now); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func alloc(id, job, client, desired, prev string, age time.Duration) *api.Allocation {
	return &api.Allocation{ID: id, Namespace: "default", Job: job, ClientStatus: client, DesiredStatus: desired,
		PreviousAlloc: prev, ModifyTime: now.Add(-age)}
}

func TestAllocs(t *testing.T) {
	old := AllocAge
	jobs := map[string]*api.Job{"web": {Name: "web"}, "stopped": {Name: "stopped", Stop: true}}
	job := func(_, name string) (*api.Job, bool) { j, ok := jobs[name]; return j, ok }
	run, stop := api.AllocDesiredRun, api.AllocDesiredStop
	for _, tc := range []struct {
		name   string
		allocs []*api.Allocation
		want   []string
	}{
		{"none", nil, nil},
		{"replaced, old", []*api.Allocation{alloc("a", "web", api.AllocFailed, run, "", old), alloc("b", "web", api.AllocRunning, run, "a", 0)}, []string{"a"}},
		{"replaced, young", []*api.Allocation{alloc("a", "web", api.AllocFailed, run, "", old-time.Second), alloc("b", "web", api.AllocRunning, run, "a", 0)}, nil},
		{"finished, not replaced, job runs", []*api.Allocation{alloc("a", "web", api.AllocComplete, run, "", 2*old)}, nil},
		{"finished, asked to stop", []*api.Allocation{alloc("a", "web", api.AllocComplete, stop, "", old)}, []string{"a"}},
		{"job stopped", []*api.Allocation{alloc("a", "stopped", api.AllocComplete, run, "", old)}, []string{"a"}},
		{"job gone", []*api.Allocation{alloc("a", "gone", api.AllocLost, run, "", old)}, []string{"a"}},
		{"running, job gone: the client still runs it", []*api.Allocation{alloc("a", "gone", api.AllocRunning, stop, "", 2*old)}, nil},
	} {
		if got := Allocs(tc.allocs, job, now); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// fakeStore holds evaluations, allocations and jobs and records the
// deletes; failEvals fails the evaluations' delete with err.
type fakeStore struct {
	evals        []*api.Evaluation
	allocs       []*api.Allocation
	jobs         map[string]*api.Job
	failEvals    error
	deletedEvals []string
	deletedAlloc []string
	moves        []string // replicas with a defrag move record
	deletedMoves []string
}

func (f *fakeStore) Evals(_, _ string) []*api.Evaluation { return f.evals }
func (f *fakeStore) AllocsUnsorted(state.AllocFilter) []*api.Allocation {
	return f.allocs
}
func (f *fakeStore) Job(_, name string) (*api.Job, bool) { j, ok := f.jobs[name]; return j, ok }
func (f *fakeStore) Alloc(id string) (*api.Allocation, bool) {
	for _, a := range f.allocs {
		if a.ID == id {
			return a, true
		}
	}
	return nil, false
}
func (f *fakeStore) DefragMoveAllocs(context.Context) ([]string, error) { return f.moves, nil }
func (f *fakeStore) DeleteDefragMoves(_ context.Context, fence *state.Fence, ids []string) error {
	if fence == nil {
		return errors.New("unfenced leader write")
	}
	f.deletedMoves = append(f.deletedMoves, ids...)
	return nil
}
func (f *fakeStore) DeleteEvals(_ context.Context, fence *state.Fence, ids []string) error {
	if fence == nil {
		return errors.New("unfenced leader write")
	}
	if f.failEvals != nil {
		return f.failEvals
	}
	f.deletedEvals = append(f.deletedEvals, ids...)
	return nil
}
func (f *fakeStore) DeleteAllocs(_ context.Context, fence *state.Fence, ids []string) error {
	if fence == nil {
		return errors.New("unfenced leader write")
	}
	f.deletedAlloc = append(f.deletedAlloc, ids...)
	return nil
}

// TestCollectorRound drives the shell one round at a time: it deletes
// what the decision names with the fence; a failed evaluation delete is
// logged and the allocations are still collected; a lost delete fence
// and a moved leadership both come back as state.ErrNotLeader.
func TestCollectorRound(t *testing.T) {
	f := &fakeStore{
		evals:  finished("e", "web", KeepEvalsPerJob+1, EvalAge+time.Minute),
		allocs: []*api.Allocation{alloc("a", "gone", api.AllocComplete, api.AllocDesiredRun, "", AllocAge)},
		jobs:   map[string]*api.Job{"web": {Name: "web"}},
		moves:  []string{"moved-long-ago", "a"},
	}
	leading := true
	var logs bytes.Buffer
	c := New(f, &state.Fence{}, func() bool { return leading }, slog.New(slog.NewTextHandler(&logs, nil)))
	ctx := context.Background()
	if err := c.Round(ctx, now); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(f.deletedEvals, []string{"e0"}) || !slices.Equal(f.deletedAlloc, []string{"a"}) {
		t.Fatalf("deleted evaluations %v and allocations %v, want [e0] and [a]", f.deletedEvals, f.deletedAlloc)
	}
	// The move record of a replica the store no longer holds goes; that of
	// a replica still there (its move may be under way) stays.
	if !slices.Equal(f.deletedMoves, []string{"moved-long-ago"}) {
		t.Fatalf("deleted move records %v, want [moved-long-ago]", f.deletedMoves)
	}

	f.deletedAlloc, f.failEvals = nil, errors.New("etcd: request timed out")
	if err := c.Round(ctx, now); err != nil {
		t.Fatalf("a failed delete ended the round: %v", err)
	}
	if !strings.Contains(logs.String(), "garbage-collect evaluations") || !slices.Equal(f.deletedAlloc, []string{"a"}) {
		t.Errorf("after a failed evaluation delete: log %q, allocations deleted %v", logs.String(), f.deletedAlloc)
	}

	f.failEvals = fmt.Errorf("delete: %w", state.ErrNotLeader)
	if err := c.Round(ctx, now); !errors.Is(err, state.ErrNotLeader) {
		t.Errorf("fenced delete refused: %v, want state.ErrNotLeader", err)
	}

	f.failEvals, leading = nil, false
	f.deletedEvals = nil
	if err := c.Round(ctx, now); !errors.Is(err, state.ErrNotLeader) || f.deletedEvals != nil {
		t.Errorf("after leadership moved: %v, deleted %v; want state.ErrNotLeader and nothing deleted", err, f.deletedEvals)
	}
}

// TestDefragMoves: a move record goes once its replica is gone from the
// store, never while the replica is there.
func TestDefragMoves(t *testing.T) {
	held := map[string]bool{"running": true, "stopped-recently": true}
	exists := func(id string) bool { return held[id] }
	for _, tc := range []struct {
		name     string
		recorded []string
		want     []string
	}{
		{"none recorded", nil, nil},
		{"all replicas held", []string{"running", "stopped-recently"}, nil},
		{"some gone", []string{"gone-1", "running", "gone-2"}, []string{"gone-1", "gone-2"}},
	} {
		if got := DefragMoves(tc.recorded, exists); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
