package agent

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"

	"pgregory.net/rapid"

	"github.com/gantryhq/gantry/internal/api"
)

// TestPropertySyncChangedAgreesWithFullSync: after any sequence of
// answers (placements, stops, client-side ends, removals), an agent that
// applies each answer by looking only at what changed (syncChanged) holds
// the same runners, each with the same allocation, as one that syncs
// every known allocation each time.
func TestPropertySyncChangedAgreesWithFullSync(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		// A context that already ended: runners start no work.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		inc, full := testAgent(t), testAgent(t)
		wi, wf := newAllocWatch(), newAllocWatch()
		held := map[string]*api.Allocation{}
		index := int64(0)
		for step := range rapid.IntRange(1, 30).Draw(rt, "steps") {
			index++
			resp := &api.NodeAllocsResponse{Index: index, Consistent: true}
			ids := slices.Sorted(maps.Keys(held))
			switch op := rapid.IntRange(0, 4).Draw(rt, "op"); {
			case op <= 1 || len(ids) == 0: // place
				al := &api.Allocation{ID: fmt.Sprintf("a%d", step), Namespace: "default", Job: "j", Group: "g",
					DesiredStatus: api.AllocDesiredRun, ClientStatus: api.AllocPending}
				held[al.ID] = al
				resp.Allocs = []*api.Allocation{al}
			case op == 2: // the servers stop one
				c := *held[rapid.SampledFrom(ids).Draw(rt, "stop")]
				c.DesiredStatus = api.AllocDesiredStop
				held[c.ID] = &c
				resp.Allocs = []*api.Allocation{&c}
			case op == 3: // one ended on the client side (failed, complete, lost)
				c := *held[rapid.SampledFrom(ids).Draw(rt, "end")]
				c.ClientStatus = rapid.SampledFrom([]string{api.AllocFailed, api.AllocComplete, api.AllocLost, api.AllocRunning}).Draw(rt, "status")
				held[c.ID] = &c
				resp.Allocs = []*api.Allocation{&c}
			default: // one is gone from the node
				delete(held, rapid.SampledFrom(ids).Draw(rt, "remove"))
			}
			resp.IDs = slices.Sorted(maps.Keys(held))
			inc.apply(ctx, wi, resp)
			fc := *resp
			full.applyFull(ctx, wf, &fc)

			got, want := runnersOf(inc), runnersOf(full)
			if !maps.Equal(got, want) {
				rt.Fatalf("step %d: looking at what changed leaves runners %v, a full sync %v", step, got, want)
			}
		}
	})
}

// applyFull is apply with a sync of every known allocation each time.
func (a *Agent) applyFull(ctx context.Context, w *allocWatch, resp *api.NodeAllocsResponse) {
	for _, al := range resp.Allocs {
		w.put(al)
	}
	if resp.IDs != nil {
		keep := map[string]bool{}
		for _, id := range resp.IDs {
			keep[id] = true
		}
		for id := range w.known {
			if !keep[id] {
				w.drop(id)
			}
		}
	}
	a.sync(ctx, w.all(), w.first && resp.Consistent)
	w.first = false
}

// runnersOf is each runner's allocation, by ID.
func runnersOf(a *Agent) map[string]*api.Allocation {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[string]*api.Allocation{}
	for id, r := range a.runners {
		out[id] = r.current()
	}
	return out
}
