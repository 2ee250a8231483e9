package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/state/codec"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func rawAlloc(t *testing.T, s *Store, id string) []byte {
	t.Helper()
	resp, err := s.cli.Get(context.Background(), s.keys.alloc(id))
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("read allocation %s from etcd: %v", id, err)
	}
	return resp.Kvs[0].Value
}

func allocEvents(t *testing.T, s *Store, after int64) []api.Event {
	t.Helper()
	ctx := context.Background()
	last, err := s.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var got []api.Event
	err = s.Events(cctx, after, EventFilter{Topics: map[string]bool{api.TopicAllocation: true}}, time.Now, func(es []api.Event) error {
		got = append(got, es...)
		if es[0].Index >= last {
			cancel()
		}
		return nil
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	return got
}

// TestAllocationsStoredCompact: plans and reports write allocations in
// the compact form; the view, the merge of reports and the event stream
// (JSON, as before) read them.
func TestAllocationsStoredCompact(t *testing.T) {
	s := openTest(t, 0)
	ctx := context.Background()
	before := s.Index()
	a := &api.Allocation{ID: "a1", Namespace: "default", Job: "web", Group: "web", NodeID: "n1", DesiredStatus: api.AllocDesiredRun,
		ClientStatus: api.AllocPending, Resources: map[string]*api.AllocatedResources{"t": {CPU: 100, Memory: 64, Ports: []api.AllocatedPort{{Name: "http", Host: 20001, To: 8080}}}},
		CreateTime: time.Unix(1700000000, 5).UTC()}
	if _, err := s.ApplyPlan(ctx, &PlanCommit{Place: []*api.Allocation{a}}); err != nil {
		t.Fatal(err)
	}
	if b := rawAlloc(t, s, "a1"); b[0] != codec.Version {
		t.Fatalf("a placed allocation is stored as %q, want the compact form", b)
	}
	started := time.Unix(1700000010, 0).UTC()
	u := api.AllocUpdate{ID: "a1", ClientStatus: api.AllocRunning, TaskStates: map[string]*api.TaskState{"t": {State: api.TaskRunning, StartedAt: started,
		Events: []api.TaskEvent{{Time: started, Type: api.TaskEventStarted}}}}}
	if err := s.UpdateAllocsFromClient(ctx, "n1", []api.AllocUpdate{u}, started, nil); err != nil {
		t.Fatal(err)
	}
	if b := rawAlloc(t, s, "a1"); b[0] != codec.Version {
		t.Fatalf("a reported allocation is stored as %q, want the compact form", b)
	}
	waitFor(t, func() bool { x, _ := s.Alloc("a1"); return x != nil && x.ClientStatus == api.AllocRunning })
	got, _ := s.Alloc("a1")
	if got.Resources["t"].Ports[0].Host != 20001 || !got.TaskStates["t"].StartedAt.Equal(started) || !got.CreateTime.Equal(a.CreateTime) {
		t.Fatalf("the view holds %+v", got)
	}
	events := allocEvents(t, s, before)
	if len(events) != 2 || events[0].Type != "AllocationCreated" || events[1].Type != "AllocationUpdated" {
		t.Fatalf("events %+v", events)
	}
	for _, e := range events {
		var x api.Allocation
		if err := json.Unmarshal(e.Payload, &x); err != nil || x.ID != "a1" || e.Namespace != "default" {
			t.Fatalf("event payload %s: %v", e.Payload, err)
		}
	}
	if !events[1].Time.Equal(started) {
		t.Errorf("event time %v, want the allocation's modify time %v", events[1].Time, started)
	}
}

// TestPreviousReleaseJSONAllocations: allocations a previous release
// wrote as JSON are read by the view, merge reports (which write them
// back compact) and make JSON events unchanged.
func TestPreviousReleaseJSONAllocations(t *testing.T) {
	s := openTest(t, 0)
	ctx := context.Background()
	old, err := os.ReadFile("codec/testdata/alloc-json-v0.json")
	if err != nil {
		t.Fatal(err)
	}
	var want api.Allocation
	if err := json.Unmarshal(old, &want); err != nil {
		t.Fatal(err)
	}
	before := s.Index()
	if _, err := s.cli.Put(ctx, s.keys.alloc(want.ID), string(old)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { _, ok := s.Alloc(want.ID); return ok })
	got, _ := s.Alloc(want.ID)
	if got.NodeID != want.NodeID || got.Resources["task"].GPU.MIG.Profile != "3g.40gb" || len(got.TaskStates["task"].Events) != 3 {
		t.Fatalf("the view holds %+v", got)
	}
	if ids, _, _, _ := s.NodeAllocsSince(want.NodeID, 0); len(ids) != 1 {
		t.Fatalf("the node's allocations: %v", ids)
	}
	events := allocEvents(t, s, before)
	if len(events) != 1 || string(events[0].Payload) != string(old) {
		t.Fatalf("a JSON allocation's event must carry the stored JSON; got %+v", events)
	}
	u := api.AllocUpdate{ID: want.ID, ClientStatus: api.AllocComplete}
	if err := s.UpdateAllocsFromClient(ctx, want.NodeID, []api.AllocUpdate{u}, time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	b := rawAlloc(t, s, want.ID)
	var merged api.Allocation
	if err := codec.DecodeAllocation(b, &merged); err != nil || b[0] != codec.Version {
		t.Fatalf("the merged report is stored as %q: %v", b, err)
	}
	if merged.ClientStatus != api.AllocComplete || merged.Resources["task"].GPU.MIG.InstanceUUID != want.Resources["task"].GPU.MIG.InstanceUUID {
		t.Fatalf("merged %+v", merged)
	}
}

// TestUnreadableAllocationLeavesTheView: a value this release cannot
// read (a newer release's form) is logged and leaves the view as it
// was, indexes included.
func TestUnreadableAllocationLeavesTheView(t *testing.T) {
	s := openTest(t, 0)
	ctx := context.Background()
	a := &api.Allocation{ID: "a1", Namespace: "default", Job: "web", NodeID: "n1", DesiredStatus: api.AllocDesiredRun, ClientStatus: api.AllocPending}
	if _, err := s.ApplyPlan(ctx, &PlanCommit{Place: []*api.Allocation{a}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { _, ok := s.Alloc("a1"); return ok })
	if _, err := s.cli.Put(ctx, s.keys.alloc("a1"), "\x7fnewer"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if x, ok := s.Alloc("a1"); !ok || x.ClientStatus != api.AllocPending {
		t.Fatalf("the view lost or changed the allocation: %+v", x)
	}
	if len(s.NodeAllocsUnsorted("n1")) != 1 || len(s.Allocs(AllocFilter{Job: "web", Namespace: "default"})) != 1 {
		t.Fatal("the view's indexes lost the allocation")
	}
	err := s.UpdateAllocsFromClient(ctx, "n1", []api.AllocUpdate{{ID: "a1", ClientStatus: api.AllocRunning}}, time.Now(), nil)
	if !errors.Is(err, codec.ErrUnknownFormat) {
		t.Fatalf("a report on an unreadable allocation: want ErrUnknownFormat, got %v", err)
	}
}

// TestCompactWaitsForEveryServer: while a server of the previous release
// campaigns (an election key, no advertised format), allocations are
// written as JSON; once it is gone, or advertises the format, compact.
// A server of this release advertises it when it campaigns.
func TestCompactWaitsForEveryServer(t *testing.T) {
	s := openTest(t, 0)
	ctx := context.Background()
	if !s.WritesCompact() {
		t.Fatal("a store that sees no server must write the compact form")
	}
	l := lead(t, s, "new-1")
	waitFor(t, func() bool { _, err := s.Sync(ctx); return err == nil && s.WritesCompact() })

	// An old server campaigns: its election key, under its lease.
	lease, err := s.cli.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.cli.Put(ctx, s.keys.leader()+"694d7c1e5a3b2f01", "old-1", clientv3.WithLease(lease.ID)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return !s.WritesCompact() })
	place := func(id string) []byte {
		t.Helper()
		a := &api.Allocation{ID: id, Namespace: "default", Job: "web", NodeID: "n1", DesiredStatus: api.AllocDesiredRun, ClientStatus: api.AllocPending}
		if _, err := s.ApplyPlan(ctx, &PlanCommit{Fence: l.Fence, Place: []*api.Allocation{a}}); err != nil {
			t.Fatal(err)
		}
		return rawAlloc(t, s, id)
	}
	if b := place("mixed"); !codec.IsJSON(b) {
		t.Fatalf("with an old server campaigning, an allocation was stored as %q", b)
	}
	if err := s.UpdateAllocsFromClient(ctx, "n1", []api.AllocUpdate{{ID: "mixed", ClientStatus: api.AllocRunning}}, time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	if b := rawAlloc(t, s, "mixed"); !codec.IsJSON(b) {
		t.Fatalf("with an old server campaigning, a report was stored as %q", b)
	}
	// It is upgraded in place: same lease, now advertising the format.
	if _, err := s.cli.Put(ctx, s.keys.encodings("old-1"), fmt.Sprint(codec.Version), clientv3.WithLease(lease.ID)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return s.WritesCompact() })
	// An old server again, then it leaves: its lease ends.
	if _, err := s.cli.Delete(ctx, s.keys.encodings("old-1")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return !s.WritesCompact() })
	if _, err := s.cli.Revoke(ctx, lease.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return s.WritesCompact() })
	if b := place("upgraded"); b[0] != codec.Version {
		t.Fatalf("after the old server left, an allocation was stored as %q", b)
	}
	// A reload (as after the watch falls behind compaction) keeps the gate.
	if err := s.load(ctx); err != nil || !s.WritesCompact() {
		t.Fatalf("after a reload: compact %v, %v", s.WritesCompact(), err)
	}
}
