package server

import (
	"math"
	"time"

	"github.com/gantryhq/gantry/internal/api"
)

// DefaultMaxHeartbeatsPerSecond is how many heartbeats per second the
// servers take from all nodes together before they hand out longer TTLs
// (Nomad's max_heartbeats_per_second).
const DefaultMaxHeartbeatsPerSecond = 50

// beatsPerTTL is how many heartbeats an agent sends per TTL: it beats
// every third of it (internal/agent), so that one lost beat never costs
// the node.
const beatsPerTTL = 3

// HeartbeatTTL is the TTL the servers hand a node: the configured one,
// grown with the number of nodes so that all of them together, each
// beating beatsPerTTL times per TTL, send at most maxPerSecond heartbeats
// a second: max(configured, nodes × 3 / maxPerSecond), rounded up to a
// whole second (etcd leases count whole seconds). maxPerSecond ≤ 0 turns
// the growth off. It is pure.
func HeartbeatTTL(configured time.Duration, nodes int, maxPerSecond float64) time.Duration {
	if maxPerSecond <= 0 || nodes <= 0 {
		return configured
	}
	secs := math.Ceil(float64(nodes) * beatsPerTTL / maxPerSecond)
	return max(configured, time.Duration(secs)*time.Second)
}

// heartbeatTTL is the TTL for the cluster as it is now: the nodes that are
// not down, plus joining, one that is registering.
func (s *Server) heartbeatTTL(joining bool) time.Duration {
	n := 0
	for _, node := range s.store.Nodes() {
		if node.Status != api.NodeStatusDown {
			n++
		}
	}
	if joining {
		n++
	}
	return HeartbeatTTL(s.cfg.HeartbeatTTL, n, s.cfg.MaxHeartbeatsPerSecond)
}
