package metrics

import (
	"sort"
	"time"
	"unique"

	"github.com/gantryhq/gantry/internal/api"
)

// SetInterval makes the history keep at most one sample per every: a
// sample closer than that to the last one kept is dropped, so a bounded
// history spans max × every even when agents sample more often. 0 keeps
// every sample.
func (h *History) SetInterval(every time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.every = every
}

// Max is how many samples are kept per node.
func (h *History) Max() int { return h.max }

// Dump copies every node's samples, for saving across a restart.
func (h *History) Dump() map[string][]api.NodeSample {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string][]api.NodeSample, len(h.nodes))
	for n, s := range h.nodes {
		out[n] = append([]api.NodeSample(nil), s...)
	}
	return out
}

// Restore puts saved samples back: for each node, the saved samples older
// than the ones already held go first, and the bound applies.
func (h *History) Restore(saved map[string][]api.NodeSample) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for n, old := range saved {
		old = append([]api.NodeSample(nil), old...)
		sort.SliceStable(old, func(i, j int) bool { return old[i].Time.Before(old[j].Time) })
		cur := h.nodes[n]
		if len(cur) > 0 {
			k := sort.Search(len(old), func(i int) bool { return !old[i].Time.Before(cur[0].Time) })
			old = old[:k]
		}
		merged := append(old, cur...)
		if len(merged) > h.max {
			merged = merged[len(merged)-h.max:]
		}
		if len(merged) > 0 {
			h.nodes[n] = merged
		}
	}
}

// intern makes the sample's repeated strings (GPU UUIDs, allocation IDs,
// task names) share one copy across samples, so a history costs its
// numbers, not one copy of every ID per sample.
func intern(s *api.NodeSample) {
	for i := range s.GPUs {
		s.GPUs[i].UUID = unique.Make(s.GPUs[i].UUID).Value()
	}
	for i := range s.Allocs {
		s.Allocs[i].Alloc = unique.Make(s.Allocs[i].Alloc).Value()
		s.Allocs[i].Task = unique.Make(s.Allocs[i].Task).Value()
	}
}
