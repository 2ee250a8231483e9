package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/state/codec"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// openTest starts a real embedded etcd in a temp dir and opens a store on
// it.
func openTest(t testing.TB, retention int64) *Store {
	t.Helper()
	e, err := StartEmbedded(EmbedConfig{
		DataDir:             t.TempDir(),
		ClientURL:           fmt.Sprintf("http://127.0.0.1:%d", freePort(t)),
		PeerURL:             fmt.Sprintf("http://127.0.0.1:%d", freePort(t)),
		CompactionRetention: retention,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	ctx := context.Background()
	cli, err := Dial(ctx, []string{e.ClientURL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	s, err := Open(ctx, cli, "/test/", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func testJob(image string) *api.Job {
	return &api.Job{Name: "web", Namespace: "default", Type: api.JobService, Priority: 50,
		Groups: []*api.Group{{Name: "web", Count: 1, Tasks: []*api.Task{{Name: "t", Driver: "docker", Config: api.TaskConfig{Image: image}}}}}}
}

func eval(id string) *api.Evaluation {
	return &api.Evaluation{ID: id, Namespace: "default", Job: "web", Status: api.EvalPending}
}

func TestRegisterJobKeepsVersions(t *testing.T) {
	s := openTest(t, 0)
	ctx := context.Background()
	now := time.Unix(1700000000, 0)
	r1, err := s.RegisterJob(ctx, testJob("a"), eval("e1"), now)
	if err != nil || r1.Job.Version != 0 || !r1.Changed {
		t.Fatalf("first register: %+v %v", r1, err)
	}
	r2, err := s.RegisterJob(ctx, testJob("a"), eval("e2"), now)
	if err != nil || r2.Changed || r2.Job.Version != 0 {
		t.Fatalf("same spec must not make a version: %+v %v", r2, err)
	}
	r3, err := s.RegisterJob(ctx, testJob("b"), eval("e3"), now)
	if err != nil || !r3.Changed || r3.Job.Version != 1 {
		t.Fatalf("changed spec must make version 1: %+v %v", r3, err)
	}
	if _, _, err := s.StopJob(ctx, "default", "web", eval("e4")); err != nil {
		t.Fatal(err)
	}
	r5, err := s.RegisterJob(ctx, testJob("b"), eval("e5"), now)
	if err != nil || !r5.Changed || r5.Job.Version != 2 || r5.Job.Stop {
		t.Fatalf("re-registering a stopped job must make a running version: %+v %v", r5, err)
	}
	vs, err := s.JobVersions(ctx, "default", "web")
	if err != nil || len(vs) != 3 || vs[0].Version != 2 || vs[2].Version != 0 {
		t.Fatalf("versions: %v %v", len(vs), err)
	}
	s.WaitIndex(ctx, r5.Index)
	if j, ok := s.Job("default", "web"); !ok || j.Version != 2 {
		t.Fatalf("view has %+v", j)
	}
	if len(s.Evals("default", "web")) != 5 {
		t.Fatalf("want 5 evaluations, got %d", len(s.Evals("default", "web")))
	}
}

// TestConcurrentRegisterLosesNothing registers many versions from many
// goroutines: every change must get its own version, none lost.
func TestConcurrentRegisterLosesNothing(t *testing.T) {
	s := openTest(t, 0)
	ctx := context.Background()
	var wg sync.WaitGroup
	seen := sync.Map{}
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := s.RegisterJob(ctx, testJob(fmt.Sprintf("img%d", i)), eval(fmt.Sprintf("e%d", i)), time.Now())
			if err != nil {
				t.Error(err)
				return
			}
			if _, dup := seen.LoadOrStore(r.Job.Version, i); dup {
				t.Errorf("version %d handed out twice", r.Job.Version)
			}
		}()
	}
	wg.Wait()
	vs, _ := s.JobVersions(ctx, "default", "web")
	if len(vs) != 20 {
		t.Fatalf("want 20 versions, got %d", len(vs))
	}
}

func TestApplyPlanGuardsNodes(t *testing.T) {
	s := openTest(t, 0)
	ctx := context.Background()
	e := eval("e1")
	if err := s.CreateEvals(ctx, nil, e); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { _, ok := s.Eval("e1"); return ok })
	snap := s.Snapshot()
	cur, _ := s.Eval("e1")
	a1 := &api.Allocation{ID: "a1", Namespace: "default", Job: "web", NodeID: "n1", DesiredStatus: api.AllocDesiredRun, ClientStatus: api.AllocPending}
	rev, err := s.ApplyPlan(ctx, &PlanCommit{Eval: cur, Place: []*api.Allocation{a1}, NodeGuards: map[string]int64{"n1": snap.NodePlan["n1"]}})
	if err != nil {
		t.Fatal(err)
	}
	// A second plan made from the same (now stale) snapshot must fail.
	a2 := &api.Allocation{ID: "a2", Namespace: "default", Job: "web", NodeID: "n1"}
	_, err = s.ApplyPlan(ctx, &PlanCommit{Place: []*api.Allocation{a2}, NodeGuards: map[string]int64{"n1": snap.NodePlan["n1"]}})
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("stale node guard: want ErrConflict, got %v", err)
	}
	// Applying the same evaluation twice must fail too.
	_, err = s.ApplyPlan(ctx, &PlanCommit{Eval: cur})
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("evaluation applied twice: want ErrConflict, got %v", err)
	}
	s.WaitIndex(ctx, rev)
	if _, ok := s.Alloc("a1"); !ok {
		t.Fatal("placed allocation missing from the view")
	}
	if _, ok := s.Alloc("a2"); ok {
		t.Fatal("conflicting allocation was written")
	}
	// A fenced write with a fence that does not hold says so.
	_, err = s.ApplyPlan(ctx, &PlanCommit{Fence: &Fence{Key: "/test/leader/nobody", Rev: 1}, Place: []*api.Allocation{a2}})
	if !errors.Is(err, ErrNotLeader) {
		t.Fatalf("broken fence: want ErrNotLeader, got %v", err)
	}
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestClientUpdatesMergeAndTriggerEvals(t *testing.T) {
	s := openTest(t, 0)
	ctx := context.Background()
	a := &api.Allocation{ID: "a1", Namespace: "default", Job: "web", NodeID: "n1", DesiredStatus: api.AllocDesiredRun, ClientStatus: api.AllocPending}
	if _, err := s.ApplyPlan(ctx, &PlanCommit{Place: []*api.Allocation{a}}); err != nil {
		t.Fatal(err)
	}
	made := 0
	newEval := func(a *api.Allocation) *api.Evaluation { made++; return eval(fmt.Sprintf("f%d", made)) }
	up := []api.AllocUpdate{{ID: "a1", ClientStatus: api.AllocRunning}}
	if err := s.UpdateAllocsFromClient(ctx, "n1", up, time.Now(), newEval); err != nil {
		t.Fatal(err)
	}
	if made != 0 {
		t.Fatal("running must not trigger an evaluation")
	}
	// A report from another node is ignored.
	if err := s.UpdateAllocsFromClient(ctx, "n2", []api.AllocUpdate{{ID: "a1", ClientStatus: api.AllocFailed}}, time.Now(), newEval); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateAllocsFromClient(ctx, "n1", []api.AllocUpdate{{ID: "a1", ClientStatus: api.AllocFailed}}, time.Now(), newEval); err != nil {
		t.Fatal(err)
	}
	if made != 1 {
		t.Fatalf("failure must trigger one evaluation, got %d", made)
	}
	waitFor(t, func() bool { x, ok := s.Alloc("a1"); return ok && x.ClientStatus == api.AllocFailed })
	waitFor(t, func() bool { _, ok := s.Eval("f1"); return ok })
}

func TestEventsResumeExactlyOnce(t *testing.T) {
	s := openTest(t, 0)
	ctx := context.Background()
	var last int64
	for i := range 5 {
		r, err := s.RegisterJob(ctx, testJob(fmt.Sprintf("v%d", i)), eval(fmt.Sprintf("e%d", i)), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			last = r.Index
		}
	}
	collect := func(from int64, want int) []api.Event {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		var got []api.Event
		err := s.Events(cctx, from, EventFilter{Topics: map[string]bool{api.TopicJob: true}, Keys: map[string]bool{"web": true}}, time.Now, func(es []api.Event) error {
			got = append(got, es...)
			if len(got) >= want {
				cancel()
			}
			return nil
		})
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Fatal(err)
		}
		return got
	}
	got := collect(last, 3)
	if len(got) != 3 {
		t.Fatalf("want the 3 job events after index %d, got %d", last, len(got))
	}
	for i, e := range got {
		if e.Index <= last || (i > 0 && e.Index <= got[i-1].Index) || e.Type != "JobUpdated" || e.Key != "web" {
			t.Fatalf("event %d: %+v", i, e)
		}
	}
}

// TestEventsCompactedIndexIsGone: a stream from an index etcd compacted
// away, and older than the view's recent changes, is refused with the
// oldest index to resume from; one the recent changes still reach back to
// is served from them, whole.
func TestEventsCompactedIndexIsGone(t *testing.T) {
	s := openTest(t, 0)
	ctx := context.Background()
	for i := range 5 {
		if _, err := s.RegisterJob(ctx, testJob(fmt.Sprintf("v%d", i)), eval(fmt.Sprintf("e%d", i)), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	last, err := s.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.cli.Compact(ctx, last); err != nil {
		t.Fatal(err)
	}
	got := collectEvents(t, last, func(ctx context.Context, fn func([]api.Event) error) error {
		return s.Events(ctx, 1, EventFilter{Topics: map[string]bool{api.TopicJob: true}}, time.Now, fn)
	})
	if len(got) != 5 {
		t.Fatalf("from the recent changes: %d batches of job events, want 5", len(got))
	}

	defer func(n int) { maxRecent = n }(maxRecent)
	maxRecent = 4
	for i := range 3 { // the recent changes drop what came before
		if _, err := s.RegisterJob(ctx, testJob(fmt.Sprintf("w%d", i)), eval(fmt.Sprintf("f%d", i)), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool { _, _, _, ok := s.recentAfter(1); return !ok })
	err = s.Events(ctx, 1, EventFilter{}, time.Now, func([]api.Event) error { return nil })
	var ce *CompactedError
	if !errors.As(err, &ce) || !errors.Is(err, ErrIndexCompacted) || ce.Oldest <= 1 {
		t.Fatalf("want a CompactedError, got %v", err)
	}
}

func TestNodeHeartbeatLease(t *testing.T) {
	s := openTest(t, 0)
	ctx := context.Background()
	n := &api.Node{ID: "n1", Name: "n1", Resources: api.NodeResources{CPU: 1000, Memory: 1024}}
	if err := s.RegisterNode(ctx, n, 2*time.Second, time.Now()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return s.Alive("n1") })
	if err := s.Heartbeat(ctx, "n1"); err != nil {
		t.Fatal(err)
	}
	s.mu.RLock()
	lease := clientv3.LeaseID(s.leases["n1"])
	s.mu.RUnlock()
	if _, err := s.cli.Revoke(ctx, lease); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return !s.Alive("n1") })
	if err := s.Heartbeat(ctx, "n1"); !errors.Is(err, ErrLeaseExpired) {
		t.Fatalf("want ErrLeaseExpired, got %v", err)
	}
	// Re-registering keeps the operator's decisions.
	if _, err := s.UpdateNode(ctx, nil, "n1", func(n *api.Node) error { n.Ineligible = true; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.RegisterNode(ctx, n, 2*time.Second, time.Now()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { x, ok := s.Node("n1"); return ok && x.Ineligible && x.Status == api.NodeStatusReady })
	// A view that still names the revoked lease (the node registered
	// again through another server) finds the new one in etcd.
	s.mu.Lock()
	s.leases["n1"] = int64(lease)
	s.mu.Unlock()
	if err := s.Heartbeat(ctx, "n1"); err != nil {
		t.Fatalf("heartbeat after registering again: %v", err)
	}
}

// TestLateReportsDoNotReviveAllocations: the store applies only the
// agent transitions the lifecycle table allows, so a report that arrives
// late (or reordered) never takes a terminal allocation back to running.
func TestLateReportsDoNotReviveAllocations(t *testing.T) {
	s := openTest(t, 0)
	ctx := context.Background()
	read := func(id string) *api.Allocation {
		t.Helper()
		resp, err := s.cli.Get(ctx, s.keys.alloc(id))
		if err != nil || len(resp.Kvs) != 1 {
			t.Fatalf("read %s: %v", id, err)
		}
		var a api.Allocation
		if err := codec.DecodeAllocation(resp.Kvs[0].Value, &a); err != nil {
			t.Fatal(err)
		}
		return &a
	}
	place := []*api.Allocation{
		{ID: "done", Namespace: "default", Job: "web", NodeID: "n1", DesiredStatus: api.AllocDesiredRun, ClientStatus: api.AllocPending},
		{ID: "gone", Namespace: "default", Job: "web", NodeID: "n1", DesiredStatus: api.AllocDesiredStop, ClientStatus: api.AllocLost},
	}
	if _, err := s.ApplyPlan(ctx, &PlanCommit{Place: place}); err != nil {
		t.Fatal(err)
	}
	report := func(id, status string) {
		t.Helper()
		if err := s.UpdateAllocsFromClients(ctx, []NodeReport{{NodeID: "n1", Update: api.AllocUpdate{ID: id, ClientStatus: status}}}, time.Now(), nil); err != nil {
			t.Fatal(err)
		}
	}
	report("done", api.AllocRunning)
	report("done", api.AllocFailed)
	for _, late := range []string{api.AllocRunning, api.AllocPending, api.AllocComplete} {
		report("done", late)
		if got := read("done").ClientStatus; got != api.AllocFailed {
			t.Fatalf("a late %q report changed a failed allocation to %q", late, got)
		}
		report("gone", late)
		if got := read("gone").ClientStatus; got != api.AllocLost {
			t.Fatalf("a late %q report changed a lost allocation to %q", late, got)
		}
	}
}

// TestReportsFromALaggingView: reports are committed against the
// server's view without reading etcd, guarded by the revision the view
// saw. A view that lags behind etcd must fail that guard, and the report
// then lands on the newest allocation, losing nothing written meanwhile.
func TestReportsFromALaggingView(t *testing.T) {
	s := openTest(t, 0)
	ctx := context.Background()
	a := &api.Allocation{ID: "a1", Namespace: "default", Job: "web", NodeID: "n1", DesiredStatus: api.AllocDesiredRun, ClientStatus: api.AllocPending}
	if _, err := s.ApplyPlan(ctx, &PlanCommit{Place: []*api.Allocation{a}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { _, ok := s.Alloc("a1"); return ok })
	stale, _ := s.Alloc("a1")
	// The servers change the allocation; the view catches up, and is then
	// put back to what it was, as if it had not seen the change yet.
	newer := *stale
	newer.DesiredStatus, newer.DesiredReason = api.AllocDesiredStop, "job stopped"
	if _, err := s.cli.Put(ctx, s.keys.alloc("a1"), s.encodeAlloc(&newer)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { x, _ := s.Alloc("a1"); return x.DesiredStatus == api.AllocDesiredStop })
	s.mu.Lock()
	s.allocs["a1"] = stale
	s.mu.Unlock()

	report := []NodeReport{{NodeID: "n1", Update: api.AllocUpdate{ID: "a1", ClientStatus: api.AllocRunning}}}
	if err := s.clientBatchCached(ctx, report, time.Now(), nil); !errors.Is(err, ErrConflict) {
		t.Fatalf("a report against a lagging view: want ErrConflict, got %v", err)
	}
	if err := s.UpdateAllocsFromClients(ctx, report, time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	resp, err := s.cli.Get(ctx, s.keys.alloc("a1"))
	if err != nil {
		t.Fatal(err)
	}
	var got api.Allocation
	if err := codec.DecodeAllocation(resp.Kvs[0].Value, &got); err != nil {
		t.Fatal(err)
	}
	if got.ClientStatus != api.AllocRunning || got.DesiredStatus != api.AllocDesiredStop || got.DesiredReason != "job stopped" {
		t.Fatalf("after the retry: client %q, desired %q (%q); want running on top of the servers' stop", got.ClientStatus, got.DesiredStatus, got.DesiredReason)
	}
}

// TestReportsNeverWriteTheView: a report that names a MIG instance
// changes the allocation's resources; the view's allocation, shared with
// every reader, must stay as it was until the watch replaces it.
func TestReportsNeverWriteTheView(t *testing.T) {
	s := openTest(t, 0)
	ctx := context.Background()
	a := &api.Allocation{ID: "m1", Namespace: "default", Job: "train", NodeID: "n1", DesiredStatus: api.AllocDesiredRun, ClientStatus: api.AllocPending,
		Resources: map[string]*api.AllocatedResources{"t": {GPU: &api.AllocatedGPU{MIG: &api.MIGAssignment{Create: true}}}}}
	if _, err := s.ApplyPlan(ctx, &PlanCommit{Place: []*api.Allocation{a}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { _, ok := s.Alloc("m1"); return ok })
	seen, _ := s.Alloc("m1")
	mig := seen.Resources["t"].GPU.MIG
	report := []NodeReport{{NodeID: "n1", Update: api.AllocUpdate{ID: "m1", ClientStatus: api.AllocRunning, MIGInstances: map[string]string{"t": "MIG-1"}}}}
	if err := s.UpdateAllocsFromClients(ctx, report, time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	if now := seen.Resources["t"].GPU.MIG; now != mig || mig.InstanceUUID != "" || !mig.Create || seen.ClientStatus != api.AllocPending {
		t.Fatalf("the report wrote into the view's allocation: %+v, status %q", now, seen.ClientStatus)
	}
	waitFor(t, func() bool {
		x, _ := s.Alloc("m1")
		return x.ClientStatus == api.AllocRunning && x.Resources["t"].GPU.MIG.InstanceUUID == "MIG-1" && !x.Resources["t"].GPU.MIG.Create
	})
	// The same report again, MIG instance included, writes nothing.
	written, _ := s.Alloc("m1")
	if err := s.UpdateAllocsFromClients(ctx, report, time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	resp, err := s.cli.Get(ctx, s.keys.alloc("m1"))
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("read m1: %v", err)
	}
	if resp.Kvs[0].ModRevision != written.ModifyIndex {
		t.Fatalf("the same report with its MIG instance again wrote the allocation (revision %d, then %d)", written.ModifyIndex, resp.Kvs[0].ModRevision)
	}
}

// TestRepeatedReportWritesNothing: a node that resends a report (its
// request timed out while the server was busy) must not cost a write.
func TestRepeatedReportWritesNothing(t *testing.T) {
	s := openTest(t, 0)
	ctx := context.Background()
	a := &api.Allocation{ID: "r1", Namespace: "default", Job: "web", NodeID: "n1", DesiredStatus: api.AllocDesiredRun, ClientStatus: api.AllocPending}
	if _, err := s.ApplyPlan(ctx, &PlanCommit{Place: []*api.Allocation{a}}); err != nil {
		t.Fatal(err)
	}
	up := api.AllocUpdate{ID: "r1", ClientStatus: api.AllocRunning, TaskStates: map[string]*api.TaskState{"t": {State: "running", StartedAt: time.Unix(1700000000, 0).UTC()}}}
	report := []NodeReport{{NodeID: "n1", Update: up}}
	if err := s.UpdateAllocsFromClients(ctx, report, time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	modRev := func() int64 {
		resp, err := s.cli.Get(ctx, s.keys.alloc("r1"))
		if err != nil || len(resp.Kvs) != 1 {
			t.Fatalf("read r1: %v", err)
		}
		return resp.Kvs[0].ModRevision
	}
	first := modRev()
	waitFor(t, func() bool { x, ok := s.Alloc("r1"); return ok && x.ModifyIndex == first })
	if err := s.UpdateAllocsFromClients(ctx, report, time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	if again := modRev(); again != first {
		t.Fatalf("the same report again wrote the allocation (revision %d, then %d)", first, again)
	}
	up.Health = api.HealthHealthy
	if err := s.UpdateAllocsFromClients(ctx, []NodeReport{{NodeID: "n1", Update: up}}, time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	if modRev() == first {
		t.Fatal("a report that changes the health wrote nothing")
	}
}

// An agent's long-poll carries every allocation ID only when one may have
// left the node after the index it asked from; placements alone send just
// what changed.
func TestNodeAllocsSinceSendsIDsOnlyAfterARemoval(t *testing.T) {
	s := openTest(t, 0)
	ctx := context.Background()
	place := func(id, node string) int64 {
		t.Helper()
		a := &api.Allocation{ID: id, Namespace: "default", Job: "web", NodeID: node, DesiredStatus: api.AllocDesiredRun, ClientStatus: api.AllocPending}
		rev, err := s.ApplyPlan(ctx, &PlanCommit{Place: []*api.Allocation{a}})
		if err != nil {
			t.Fatal(err)
		}
		s.WaitIndex(ctx, rev)
		return rev
	}
	ids := func(a []*api.Allocation) []string {
		var out []string
		for _, x := range a {
			out = append(out, x.ID)
		}
		return out
	}
	place("a1", "n1")
	changed, all, idx, _ := s.NodeAllocsSince("n1", 0)
	if fmt.Sprint(ids(changed)) != "[a1]" || fmt.Sprint(all) != "[a1]" {
		t.Fatalf("first query: changed %v, ids %v; want [a1] and [a1]", ids(changed), all)
	}

	place("a2", "n1")
	changed, all, idx2, _ := s.NodeAllocsSince("n1", idx)
	if fmt.Sprint(ids(changed)) != "[a2]" || all != nil {
		t.Fatalf("after a placement: changed %v, ids %v; want [a2] and no ids", ids(changed), all)
	}
	place("b1", "n2") // another node's change sends nothing new to n1
	if _, all, _, _ := s.NodeAllocsSince("n1", idx2); all != nil {
		t.Fatalf("another node's placement sent n1 its ids: %v", all)
	}

	if err := s.DeleteAllocs(ctx, lead(t, s, "s1").Fence, []string{"a1"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { _, ok := s.Alloc("a1"); return !ok })
	changed, all, idx3, _ := s.NodeAllocsSince("n1", idx2)
	if len(changed) != 0 || fmt.Sprint(all) != "[a2]" {
		t.Fatalf("after a removal: changed %v, ids %v; want none and [a2]", ids(changed), all)
	}
	if idx3 <= idx2 {
		t.Fatalf("a removal did not advance the node's index: %d then %d", idx2, idx3)
	}
	// From the index after the removal, the IDs are not needed again.
	if _, all, _, _ := s.NodeAllocsSince("n1", idx3); all != nil {
		t.Fatalf("ids sent again after the agent saw the removal: %v", all)
	}
	// After a full reload the view no longer knows what was removed
	// before it: an agent that had not seen the removal (index idx2) gets
	// every ID, and one that had (idx3, the load's revision) needs none.
	if err := s.load(ctx); err != nil {
		t.Fatal(err)
	}
	if _, all, _, _ := s.NodeAllocsSince("n1", idx2); fmt.Sprint(all) != "[a2]" || all == nil {
		t.Fatalf("after a reload, from before the removal: ids %v, want [a2]", all)
	}
	if _, all, _, _ := s.NodeAllocsSince("n1", idx3); all != nil {
		t.Fatalf("after a reload, from the load's revision: ids %v, want none", all)
	}
}

// TestComponentVersionChangedEvents: a node that registers again with
// another Docker engine and a GPU driver it did not have gets, beside its
// NodeUpdated event, one ComponentVersionChanged event per component with
// the old and new version; an update that changes no version gets none,
// and neither does the first registration.
func TestComponentVersionChangedEvents(t *testing.T) {
	s := openTest(t, 0)
	ctx := context.Background()
	before := s.Index()
	n := &api.Node{ID: "n1", Name: "node-1", Resources: api.NodeResources{CPU: 1000, Memory: 1024},
		Attributes: map[string]string{"driver.docker.version": "24.0.7", "kernel.version": "6.1.0-28-cloud-amd64"}}
	if err := s.RegisterNode(ctx, n, time.Minute, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateNode(ctx, nil, "n1", func(n *api.Node) error { n.Ineligible = true; return nil }); err != nil {
		t.Fatal(err)
	}
	up := *n
	up.Attributes = map[string]string{"driver.docker.version": "25.0.3", "kernel.version": "6.1.0-28-cloud-amd64", "gpu.driver.version": "580.159.04"}
	if err := s.RegisterNode(ctx, &up, time.Minute, time.Now()); err != nil {
		t.Fatal(err)
	}
	// The view may not hold the last write yet: read etcd's revision.
	last, err := s.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}

	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var got []api.Event
	err = s.Events(cctx, before, EventFilter{Topics: map[string]bool{api.TopicNode: true}}, time.Now, func(es []api.Event) error {
		got = append(got, es...)
		if es[0].Index >= last {
			cancel()
		}
		return nil
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	var changes []api.ComponentVersionChange
	var types []string
	for _, e := range got {
		types = append(types, e.Type)
		if e.Type != api.EventComponentVersionChanged {
			continue
		}
		if e.Index != last || e.Key != "n1" || e.Topic != api.TopicNode || e.Time.IsZero() {
			t.Errorf("a ComponentVersionChanged event not of the last update: %+v", e)
		}
		var c api.ComponentVersionChange
		if err := json.Unmarshal(e.Payload, &c); err != nil {
			t.Fatal(err)
		}
		changes = append(changes, c)
	}
	want := []api.ComponentVersionChange{
		{NodeID: "n1", Node: "node-1", Component: "docker", Old: "24.0.7", New: "25.0.3"},
		{NodeID: "n1", Node: "node-1", Component: "nvidia-driver", Old: "", New: "580.159.04"},
	}
	if fmt.Sprint(changes) != fmt.Sprint(want) {
		t.Fatalf("component changes %+v, want %+v (event types %v)", changes, want, types)
	}
	if types[0] != "NodeRegistered" || types[len(types)-3] != "NodeUpdated" {
		t.Fatalf("event types %v: want NodeRegistered first, the version changes after the last NodeUpdated", types)
	}
}

// TestHeartbeatRecordKeepsCapacityIndex: a node write that moves only its
// last heartbeat time (what servers write for every node every 30 s)
// leaves CapacityIndex where it was, so the leader keeps its scheduling
// view and blocked evaluations stay blocked; any other change to the node
// moves it.
func TestHeartbeatRecordKeepsCapacityIndex(t *testing.T) {
	s := openTest(t, 0)
	ctx := context.Background()
	n := &api.Node{ID: "n1", Name: "node-1", Resources: api.NodeResources{CPU: 1000, Memory: 1024},
		Attributes: map[string]string{"kernel.version": "6.1.0"}}
	if err := s.RegisterNode(ctx, n, time.Minute, time.Now()); err != nil {
		t.Fatal(err)
	}
	caught := func() int64 { t.Helper(); return syncView(t, s) }
	caught()
	registered := s.CapacityIndex()
	if registered == 0 {
		t.Fatal("registering a node left CapacityIndex at 0")
	}
	for i := 1; i <= 3; i++ {
		if _, err := s.UpdateNode(ctx, nil, "n1", func(n *api.Node) error {
			n.LastHeartbeat = n.LastHeartbeat.Add(time.Duration(i) * 30 * time.Second)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if rev := caught(); s.CapacityIndex() != registered {
		t.Errorf("heartbeat records moved CapacityIndex from %d to %d (view at %d)", registered, s.CapacityIndex(), rev)
	}
	changes := map[string]func(n *api.Node){
		"ineligible":        func(n *api.Node) { n.Ineligible = true },
		"more memory":       func(n *api.Node) { n.Resources.Memory *= 2 },
		"an attribute":      func(n *api.Node) { n.Attributes["kernel.version"] = "6.12.0" },
		"status and a beat": func(n *api.Node) { n.Status = api.NodeStatusDown; n.LastHeartbeat = time.Now() },
	}
	for _, name := range []string{"ineligible", "more memory", "an attribute", "status and a beat"} {
		before := s.CapacityIndex()
		if _, err := s.UpdateNode(ctx, nil, "n1", func(n *api.Node) error { changes[name](n); return nil }); err != nil {
			t.Fatal(err)
		}
		if rev := caught(); s.CapacityIndex() != rev || rev <= before {
			t.Errorf("%s: CapacityIndex %d, want the write's revision %d", name, s.CapacityIndex(), rev)
		}
	}
}

// TestEvalsByJob: a job's evaluations are listed from its own index, in
// revision order, follow updates and deletions, and survive a full load;
// an empty job lists every evaluation.
func TestEvalsByJob(t *testing.T) {
	s := openTest(t, 0)
	ctx := context.Background()
	l := lead(t, s, "s1")
	mk := func(id, job string) *api.Evaluation {
		return &api.Evaluation{ID: id, Namespace: "default", Job: job, Status: api.EvalPending}
	}
	for _, e := range []*api.Evaluation{mk("w1", "web"), mk("d1", "db"), mk("w2", "web"), mk("w3", "web")} {
		if err := s.CreateEvals(ctx, l.Fence, e); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool { _, ok := s.Eval("w3"); return ok })
	cur, _ := s.Eval("w2")
	w2 := *cur
	w2.Status = api.EvalComplete
	if err := s.UpdateEval(ctx, l.Fence, &w2); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteEvals(ctx, l.Fence, []string{"w1"}); err != nil {
		t.Fatal(err)
	}
	list := func(job string) string {
		var ids []string
		for _, e := range s.Evals("default", job) {
			ids = append(ids, e.ID+"/"+e.Status)
		}
		return strings.Join(ids, " ")
	}
	waitFor(t, func() bool { return list("web") == "w3/pending w2/complete" })
	if got := list("db"); got != "d1/pending" {
		t.Errorf("db's evaluations: %s, want d1/pending", got)
	}
	if got := len(s.Evals("", "")); got != 3 {
		t.Errorf("every evaluation: %d, want 3", got)
	}
	if err := s.load(ctx); err != nil {
		t.Fatal(err)
	}
	if got := list("web"); got != "w3/pending w2/complete" {
		t.Errorf("after a full load, web's evaluations: %s", got)
	}
	if got := list("gone"); got != "" {
		t.Errorf("a job without evaluations lists %s", got)
	}
}

// TestViewRevision: a watch response with events moves the view to its
// last event, never to its header, which is ahead while a lagging watch
// catches up; a progress notification moves it to its header; the
// response that says the watch was created does not move it.
func TestViewRevision(t *testing.T) {
	ev := func(rev int64) *clientv3.Event { return &clientv3.Event{Kv: &mvccpb.KeyValue{ModRevision: rev}} }
	hdr := func(rev int64) etcdserverpb.ResponseHeader { return etcdserverpb.ResponseHeader{Revision: rev} }
	for _, tc := range []struct {
		name string
		resp clientv3.WatchResponse
		want int64
	}{
		{"a batch of a lagging watch", clientv3.WatchResponse{Header: hdr(500), Events: []*clientv3.Event{ev(101), ev(102), ev(140)}}, 140},
		{"a synced event", clientv3.WatchResponse{Header: hdr(141), Events: []*clientv3.Event{ev(141)}}, 141},
		{"a progress notification", clientv3.WatchResponse{Header: hdr(600)}, 600},
		{"the watch created", clientv3.WatchResponse{Header: hdr(700), Created: true}, 0},
		{"canceled", clientv3.WatchResponse{Header: hdr(800), Canceled: true}, 0},
	} {
		if got := viewRevision(tc.resp); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
}

// TestWaitIndexForAWriteOutsideThePrefix: a revision made by a write
// outside the store's prefix (an etcd shared with something else) carries
// no event the view sees; WaitIndex still returns, once etcd's progress
// notification says the watch has everything up to it.
func TestWaitIndexForAWriteOutsideThePrefix(t *testing.T) {
	s := openTest(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := s.cli.Put(ctx, "/elsewhere/key", "v")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.WaitIndex(ctx, resp.Header.Revision); err != nil {
		t.Fatalf("WaitIndex(%d) for a write outside the prefix: %v", resp.Header.Revision, err)
	}
	if _, err := s.Sync(ctx); err != nil {
		t.Fatalf("Sync after a write outside the prefix: %v", err)
	}
}

// syncView brings s's view up to etcd's current revision and returns it.
func syncView(t *testing.T, s *Store) int64 {
	t.Helper()
	rev, err := s.Sync(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return rev
}
