package server

import (
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
)

// TestDownNodesGraceAfterTakeover: a new leader marked a node down as
// soon as the view showed its lease gone, 17 s after a restart of gantry
// dev, before the restarted agent had registered again, and every
// allocation on it was replaced. A leader now gives every node a full TTL
// from its takeover.
func TestDownNodesGraceAfterTakeover(t *testing.T) {
	const ttl = 15 * time.Second
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	nodes := []*api.Node{
		{ID: "silent", Status: api.NodeStatusReady},
		{ID: "beating", Status: api.NodeStatusReady},
		{ID: "already-down", Status: api.NodeStatusDown},
		{ID: "initializing", Status: api.NodeStatusInit},
	}
	alive := func(id string) bool { return id == "beating" }
	for _, tc := range []struct {
		name        string
		leaderSince time.Time
		now         time.Time
		want        []string
	}{
		{"at takeover", t0, t0, nil},
		{"within the grace", t0, t0.Add(ttl - time.Millisecond), nil},
		{"grace over", t0, t0.Add(ttl), []string{"silent"}},
		{"long after takeover", t0.Add(-time.Hour), t0, []string{"silent"}},
	} {
		got := downNodes(nodes, alive, tc.leaderSince, tc.now, ttl)
		var ids []string
		for _, n := range got {
			ids = append(ids, n.ID)
		}
		if len(ids) != len(tc.want) || (len(ids) > 0 && ids[0] != tc.want[0]) {
			t.Errorf("%s: down %v, want %v", tc.name, ids, tc.want)
		}
	}
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
