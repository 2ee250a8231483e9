package server

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/scheduler/schedtest"
)

// TestHeartbeatMovesLastHeartbeat (issue 15): a node's last_heartbeat
// never moved after registration, so the UI said a live node had not
// heartbeated for ten minutes. Heartbeats now record it, at most
// heartbeatRecord stale.
func TestHeartbeatMovesLastHeartbeat(t *testing.T) {
	var mu sync.Mutex
	clock := time.Date(2026, 12, 6, 5, 0, 0, 0, time.UTC)
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	advance := func(d time.Duration) { mu.Lock(); clock = clock.Add(d); mu.Unlock() }
	s := startTestServer(t, Config{Now: now})
	n := schedtest.Node("n1")
	if err := s.store.RegisterNode(context.Background(), n, time.Minute, now()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the node in the store", func() bool { _, ok := s.store.Node(n.ID); return ok })
	beat := func(body string) {
		req, _ := http.NewRequest(http.MethodPut, "http://"+s.Addr()+"/v1/nodes/"+n.ID+"/heartbeat", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("heartbeat: %s", resp.Status)
		}
	}
	registered := now()
	advance(5 * time.Second)
	beat(`{"lease_id": 7587}`) // an agent from before leases stayed in the store
	if got, _ := s.store.Node(n.ID); !got.LastHeartbeat.Equal(registered) {
		t.Fatalf("a heartbeat 5s after registration rewrote the node (last_heartbeat %s)", got.LastHeartbeat)
	}
	advance(heartbeatRecord)
	beat(`{}`)
	want := now()
	waitFor(t, "last_heartbeat recorded", func() bool { got, _ := s.store.Node(n.ID); return got.LastHeartbeat.Equal(want) })
}
