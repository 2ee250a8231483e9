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
