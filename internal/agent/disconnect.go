package agent

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/gantryhq/gantry/internal/api"
)

// contact is what the agent knows of its link to the servers: when a
// server last accepted its registration or heartbeat, and whether an
// attempt failed since.
type contact struct {
	Last   time.Time // the latest accepted registration or heartbeat
	Failed bool      // a registration or heartbeat failed after Last
}

// disconnectWatch is one allocation as the disconnect decision sees it.
type disconnectWatch struct {
	ID        string
	StopAfter time.Duration // the group's disconnect.stop_after; 0: never
	Done      bool          // already stopped or finished on this node
}

// disconnectStop is an allocation to stop because its node is cut off.
type disconnectStop struct {
	ID     string
	Reason string
}

// disconnectStops decides which allocations the agent stops itself
// because it has not reached any server for their group's stop_after.
// The node counts as cut off only once an attempt failed after the last
// accepted one (heartbeats are spaced a third of the TTL apart, so a
// quiet gap alone says nothing), and then since that last accepted one:
// Nomad's stop_on_client_after counts the same way. It is pure: the
// caller reads the clock and acts on the answer, in the order given (by
// ID).
func disconnectStops(allocs []disconnectWatch, c contact, now time.Time) []disconnectStop {
	if !c.Failed || c.Last.IsZero() {
		return nil
	}
	cut := now.Sub(c.Last)
	var out []disconnectStop
	for _, a := range allocs {
		if a.Done || a.StopAfter <= 0 || cut < a.StopAfter {
			continue
		}
		out = append(out, disconnectStop{ID: a.ID, Reason: fmt.Sprintf(
			"stopped because the node was disconnected: no server reachable for %s since %s (disconnect.stop_after %s)",
			cut.Round(time.Second), c.Last.UTC().Format(time.RFC3339), a.StopAfter)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// noteContact records the outcome of a registration or heartbeat.
func (a *Agent) noteContact(ok bool, now time.Time) {
	a.contactMu.Lock()
	defer a.contactMu.Unlock()
	if ok {
		a.contact = contact{Last: now}
		return
	}
	if !a.contact.Failed {
		select {
		case a.contactLost <- struct{}{}:
		default:
		}
	}
	a.contact.Failed = true
}

func (a *Agent) currentContact() contact {
	a.contactMu.Lock()
	defer a.contactMu.Unlock()
	return a.contact
}

// disconnectCheck is how often the agent looks whether a cut-off node
// must stop work.
const disconnectCheck = 500 * time.Millisecond

// disconnectLoop stops the allocations whose group's disconnect.stop_after
// passed without the agent reaching any server (disconnectStops). They
// are reported failed, with the reason, once a server answers again.
// While the servers answer it sleeps until an attempt fails (noteContact
// signals contactLost); from then on it looks every disconnectCheck by
// the agent's clock, which also gives the time the decision measures
// against (the contact times are the same clock's), until a server
// answers again. (Looking every half second all the time cost the load
// tool's 10,000 simulated nodes 8% of its CPU in timers and wake-ups.)
func (a *Agent) disconnectLoop(ctx context.Context) {
	for {
		c := a.currentContact()
		if !c.Failed {
			select {
			case <-ctx.Done():
				return
			case <-a.contactLost:
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-a.clock.after(disconnectCheck):
		}
		c = a.currentContact()
		if !c.Failed || c.Last.IsZero() {
			// Not cut off (any more, or never registered): disconnectStops
			// would stop nothing, so the allocations are not gathered.
			continue
		}
		a.regMu.Lock()
		ttl := a.heartbeatTTL
		a.regMu.Unlock()
		a.mu.Lock()
		watch := make([]disconnectWatch, 0, len(a.runners))
		byID := make(map[string]*allocRunner, len(a.runners))
		for id, r := range a.runners {
			w, ok := r.disconnectWatch(ttl)
			if ok {
				watch = append(watch, w)
				byID[id] = r
			}
		}
		a.mu.Unlock()
		for _, s := range disconnectStops(watch, c, a.clock.now()) {
			r := byID[s.ID]
			a.log.Warn("stopping an allocation: the node cannot reach any server", "alloc", api.ShortID(s.ID), "reason", s.Reason)
			go r.stopDisconnected(context.WithoutCancel(ctx), s.Reason)
		}
	}
}
