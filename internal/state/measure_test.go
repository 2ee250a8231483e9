package state

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// BenchmarkAllocationStorage writes 10,000 allocations through the
// store into a fresh embedded etcd, as the scale runs do (placed by plans
// of 100, then reported running with their task's events), once as JSON
// and once compact, and prints what etcd holds. It is a measurement (a
// benchmark, so the test suite does not run it), whatever b.N:
//
//	go test ./internal/state -run '^$' -bench AllocationStorage -benchtime 1x -v
func BenchmarkAllocationStorage(b *testing.B) {
	t := b
	const n = 10000
	for _, form := range []string{"json", "compact"} {
		s := openTest(t, 0)
		ctx := context.Background()
		if form == "json" {
			// A server of the previous release campaigns: the gate
			// keeps every write JSON.
			if _, err := s.cli.Put(ctx, s.keys.leader()+"old", "old-server"); err != nil {
				t.Fatal(err)
			}
			waitFor(t, func() bool { return !s.WritesCompact() })
		}
		t0 := time.Date(2026, 12, 6, 10, 0, 0, 123456789, time.UTC)
		start := time.Now()
		for b := 0; b < n/100; b++ {
			var place []*api.Allocation
			for i := b * 100; i < (b+1)*100; i++ {
				place = append(place, &api.Allocation{
					ID: fmt.Sprintf("6f9c2b1e-4d3a-4e8f-9b7c-%012d", i), Namespace: "default", Job: fmt.Sprintf("load-%03d", i/1000),
					Group: "app", Index: i % 1000, Priority: 50,
					NodeID: fmt.Sprintf("a1b2c3d4-e5f6-4a7b-8c9d-%012d", i%1000), NodeName: fmt.Sprintf("node-%05d", i%1000),
					EvalID:        fmt.Sprintf("0e8f7d6c-5b4a-4938-a7b6-%012d", b),
					Resources:     map[string]*api.AllocatedResources{"task": {CPU: 250, Memory: 128, Disk: 100, Ports: []api.AllocatedPort{{Name: "http", Host: 20000 + i%10000, To: 8080}}}},
					DesiredStatus: api.AllocDesiredRun, ClientStatus: api.AllocPending, CreateTime: t0.Add(time.Duration(i) * time.Millisecond),
				})
			}
			if _, err := s.ApplyPlan(ctx, &PlanCommit{Place: place}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		var reports []NodeReport
		for i := 0; i < n; i++ {
			at := t0.Add(time.Duration(i)*time.Millisecond + time.Second)
			reports = append(reports, NodeReport{NodeID: fmt.Sprintf("a1b2c3d4-e5f6-4a7b-8c9d-%012d", i%1000), Update: api.AllocUpdate{
				ID: fmt.Sprintf("6f9c2b1e-4d3a-4e8f-9b7c-%012d", i), ClientStatus: api.AllocRunning,
				TaskStates: map[string]*api.TaskState{"task": {State: api.TaskRunning, StartedAt: at, Events: []api.TaskEvent{
					{Time: at.Add(-400 * time.Millisecond), Type: api.TaskEventReceived}, {Time: at, Type: api.TaskEventStarted}}}},
			}})
		}
		if err := s.UpdateAllocsFromClients(ctx, reports, t0.Add(time.Hour), nil); err != nil {
			t.Fatal(err)
		}
		took := time.Since(start)
		resp, err := s.cli.Get(ctx, s.keys.prefix+kindAlloc+"/", clientv3.WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		var values int
		for _, kv := range resp.Kvs {
			values += len(kv.Value)
		}
		st, err := s.EndpointStatus(ctx, s.Endpoints()[0])
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%-7s %d allocations: values %.0f B each (%.2f MiB), etcd db %.2f MiB (%.2f MiB in use), written in %v",
			form, len(resp.Kvs), float64(values)/float64(len(resp.Kvs)), float64(values)/(1<<20),
			float64(st.DBSize)/(1<<20), float64(st.DBInUse)/(1<<20), took.Round(time.Millisecond))
	}
}
