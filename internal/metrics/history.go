package metrics

import (
	"sync"
	"time"

	"github.com/gantryhq/gantry/internal/api"
)

// DefaultHistory is how many samples History keeps per node: an hour at
// the agents' default 10-second sampling.
const DefaultHistory = 360

// History keeps the latest samples of each node, at most max per node,
// in memory. It is safe for concurrent use.
type History struct {
	max   int
	every time.Duration // keep at most one sample per every (SetInterval)
	mu    sync.Mutex
	nodes map[string][]api.NodeSample
}

// NewHistory keeps max samples per node (DefaultHistory when max <= 0).
func NewHistory(max int) *History {
	if max <= 0 {
		max = DefaultHistory
	}
	return &History{max: max, nodes: map[string][]api.NodeSample{}}
}

// Add appends a sample of a node, dropping the oldest beyond the bound. A
// sample not newer than the last one kept is ignored (a heartbeat retried
// with the same sample).
func (h *History) Add(node string, s api.NodeSample) {
	h.mu.Lock()
	defer h.mu.Unlock()
	cur := h.nodes[node]
	if n := len(cur); n > 0 && (!s.Time.After(cur[n-1].Time) || s.Time.Sub(cur[n-1].Time) < h.every) {
		return
	}
	intern(&s)
	if len(cur) >= h.max {
		cur = append(cur[:0:0], cur[len(cur)-h.max+1:]...)
	}
	h.nodes[node] = append(cur, s)
}

// Get returns a copy of a node's samples, oldest first.
func (h *History) Get(node string) []api.NodeSample {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]api.NodeSample(nil), h.nodes[node]...)
}

// Len is how many nodes have samples.
func (h *History) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.nodes)
}

// Retain forgets every node for which keep returns false.
func (h *History) Retain(keep func(node string) bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for n := range h.nodes {
		if !keep(n) {
			delete(h.nodes, n)
		}
	}
}
