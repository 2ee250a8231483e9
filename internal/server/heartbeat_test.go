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

// TestHeartbeatTTLGrowsWithNodes (issue 19): heartbeat TTLs stayed at the
// configured value whatever the cluster's size, so 5,000 nodes beating
// every 5 s sent 1,000 heartbeats a second. The TTL handed out now grows
// so that all nodes together, beating three times per TTL, stay under
// the rate (default 50 a second).
func TestHeartbeatTTLGrowsWithNodes(t *testing.T) {
	const configured = 15 * time.Second
	for _, tc := range []struct {
		nodes int
		rate  float64
		want  time.Duration
	}{
		{0, 50, configured},
		{1, 50, configured},
		{250, 50, configured},                    // 250 × 3 / 50 = 15 s: exactly the configured TTL
		{251, 50, 16 * time.Second},              // 15.06 s, rounded up to whole seconds
		{1000, 50, time.Minute},                  // 1,000 × 3 / 50
		{5000, 50, 5 * time.Minute},              // 5,000 × 3 / 50
		{5000, 500, configured + 15*time.Second}, // a faster rate keeps it shorter: 30 s
		{5000, 0, configured},                    // growth off
		{5000, -1, configured},                   // growth off
	} {
		got := HeartbeatTTL(configured, tc.nodes, tc.rate)
		if got != tc.want {
			t.Errorf("%d nodes at %v/s: TTL %s, want %s", tc.nodes, tc.rate, got, tc.want)
		}
		if tc.rate > 0 && tc.nodes > 0 {
			if perSecond := float64(tc.nodes) * beatsPerTTL / got.Seconds(); perSecond > tc.rate {
				t.Errorf("%d nodes at TTL %s send %.1f heartbeats a second, over %v", tc.nodes, got, perSecond, tc.rate)
			}
		}
	}
}
