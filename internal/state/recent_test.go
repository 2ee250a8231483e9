package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// randomChanges writes n random changes under the store's prefix, as raw
// keys: jobs, evaluations and nodes put, updated and deleted, some of
// them several in one transaction (one revision), nodes changing their
// component versions. It returns etcd's revision after the last.
func randomChanges(t *testing.T, s *Store, rng *rand.Rand, n int) int64 {
	t.Helper()
	ctx := context.Background()
	put := func(key string, v any) clientv3.Op {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return clientv3.OpPut(key, string(b))
	}
	op := func() clientv3.Op {
		id := fmt.Sprint(rng.IntN(4))
		ns := []string{"default", "other"}[rng.IntN(2)]
		switch rng.IntN(7) {
		case 0:
			return put(s.keys.job(ns, "web"+id), &api.Job{Name: "web" + id, Namespace: ns, Type: api.JobService, Stop: rng.IntN(3) == 0})
		case 1, 2:
			return put(s.keys.eval("e"+id), &api.Evaluation{ID: "e" + id, Namespace: ns, Job: "web" + id, Status: api.EvalPending,
				ModifyTime: time.Unix(1700000000+int64(rng.IntN(100)), 0)})
		case 3, 4:
			return put(s.keys.node("n"+id), &api.Node{ID: "n" + id, Name: "node-" + id,
				Attributes: map[string]string{"driver.docker.version": fmt.Sprintf("2%d.0.0", rng.IntN(3))}})
		case 5:
			return clientv3.OpDelete(s.keys.eval("e" + id))
		default:
			return clientv3.OpDelete(s.keys.node("n" + id))
		}
	}
	var rev int64
	for range n {
		ops := []clientv3.Op{op()}
		if rng.IntN(4) == 0 { // one revision, several keys (distinct: etcd refuses a key twice)
			if o := op(); string(o.KeyBytes()) != string(ops[0].KeyBytes()) {
				ops = append(ops, o)
			}
		}
		resp, err := s.cli.Txn(ctx).Then(ops...).Commit()
		if err != nil {
			t.Fatal(err)
		}
		rev = resp.Header.Revision
	}
	return rev
}

// markerChange writes one revision every filter of eventFilters selects
// and returns it.
func markerChange(t *testing.T, s *Store) int64 {
	t.Helper()
	node, _ := json.Marshal(&api.Node{ID: "n9", Name: "node-9"})
	ev, _ := json.Marshal(&api.Evaluation{ID: "e9", Namespace: "other", Job: "web1", Status: api.EvalComplete})
	resp, err := s.cli.Txn(context.Background()).Then(clientv3.OpPut(s.keys.node("n9"), string(node)), clientv3.OpPut(s.keys.eval("e9"), string(ev))).Commit()
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

// collectEvents gathers the batches a stream hands over after index,
// until one reaches revision last.
func collectEvents(t *testing.T, last int64, stream func(ctx context.Context, fn func([]api.Event) error) error) [][]api.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var got [][]api.Event
	err := stream(ctx, func(es []api.Event) error {
		got = append(got, es)
		if es[0].Index >= last {
			cancel()
		}
		return nil
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	if ctx.Err() != context.Canceled {
		t.Fatalf("the stream did not reach revision %d (%d batches)", last, len(got))
	}
	return got
}

var eventFilters = []EventFilter{
	{},
	{Topics: map[string]bool{api.TopicNode: true}},
	{Topics: map[string]bool{api.TopicEvaluation: true, api.TopicJob: true}, Keys: map[string]bool{"web1": true}},
	{Namespace: "other"},
}

// TestRecentEventsMatchTheWatch: a stream served from the view's recent
// changes hands over exactly the batches an etcd watch from the same
// index does (deletions with their last value, component version
// changes of nodes, several changes of one revision together), for any
// filter.
func TestRecentEventsMatchTheWatch(t *testing.T) {
	s := openTest(t, 0)
	now := func() time.Time { return time.Unix(1800000000, 0).UTC() }
	for seed := range uint64(4) {
		rng := rand.New(rand.NewPCG(seed, 7))
		before := s.Index()
		randomChanges(t, s, rng, 60)
		last := markerChange(t, s)
		for _, f := range eventFilters {
			recent := collectEvents(t, last, func(ctx context.Context, fn func([]api.Event) error) error {
				if _, _, _, ok := s.recentAfter(before); !ok {
					t.Fatalf("the recent changes do not reach back to %d", before)
				}
				return s.Events(ctx, before, f, now, fn)
			})
			watched := collectEvents(t, last, func(ctx context.Context, fn func([]api.Event) error) error {
				return s.watchEvents(ctx, before+1, eventConverter{s: s, f: f, now: now, fn: fn})
			})
			if !reflect.DeepEqual(recent, watched) {
				t.Fatalf("seed %d, filter %+v: from the recent changes\n%v\nfrom the watch\n%v", seed, f, recent, watched)
			}
		}
	}
}

// TestStreamFallingBehindGoesOnFromEtcd: a reader that falls behind the
// recent changes (they dropped what it had not read yet) goes on with an
// etcd watch from where it was, and still gets every batch once, in
// order.
func TestStreamFallingBehindGoesOnFromEtcd(t *testing.T) {
	s := openTest(t, 0)
	defer func(n int) { maxRecent = n }(maxRecent)
	maxRecent = 8
	now := func() time.Time { return time.Unix(1800000000, 0).UTC() }
	before := s.Index()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	held, release := make(chan struct{}), make(chan struct{})
	var last atomic.Int64
	last.Store(math.MaxInt64)
	var got [][]api.Event
	done := make(chan error)
	go func() {
		done <- s.Events(ctx, before, EventFilter{}, now, func(es []api.Event) error {
			got = append(got, es)
			if len(got) == 1 {
				close(held)
				<-release // hold the reader while the recent changes move on
			}
			if es[0].Index >= last.Load() {
				cancel()
			}
			return nil
		})
	}()
	markerChange(t, s)
	<-held
	randomChanges(t, s, rand.New(rand.NewPCG(3, 3)), 60)
	end := markerChange(t, s)
	last.Store(end)
	waitFor(t, func() bool { _, _, _, ok := s.recentAfter(before + 1); return !ok })
	close(release)
	if err := <-done; !errors.Is(err, context.Canceled) || ctx.Err() != context.Canceled {
		t.Fatalf("the stream ended with %v before revision %d", err, end)
	}
	want := collectEvents(t, end, func(ctx context.Context, fn func([]api.Event) error) error {
		return s.watchEvents(ctx, before+1, eventConverter{s: s, now: now, fn: fn})
	})
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("a reader that fell behind got\n%v\nan etcd watch from the same index\n%v", got, want)
	}
}
