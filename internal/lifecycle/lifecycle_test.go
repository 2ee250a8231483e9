package lifecycle

import (
	"testing"

	"github.com/gantryhq/gantry/internal/api"
)

func st(d, c string) State { return State{Desired: d, Client: c} }

const (
	run  = api.AllocDesiredRun
	stop = api.AllocDesiredStop
)

func TestTable(t *testing.T) {
	for _, tc := range []struct {
		from, to State
		by       Actor
		ok       bool
	}{
		{None, st(run, api.AllocPending), Server, true},
		{None, st(run, api.AllocRunning), Server, false},
		{None, st(run, api.AllocPending), Agent, false},
		{st(run, api.AllocPending), st(run, api.AllocRunning), Agent, true},
		{st(run, api.AllocRunning), st(run, api.AllocPending), Agent, true}, // restart in place
		{st(run, api.AllocRunning), st(run, api.AllocFailed), Agent, true},
		{st(run, api.AllocRunning), st(run, api.AllocFailed), Server, false},
		{st(stop, api.AllocRunning), st(stop, api.AllocComplete), Agent, true},
		{st(stop, api.AllocPending), st(stop, api.AllocRunning), Agent, true}, // a report sent before the stop arrived
		// Terminal client statuses never go back.
		{st(run, api.AllocComplete), st(run, api.AllocRunning), Agent, false},
		{st(run, api.AllocFailed), st(run, api.AllocPending), Agent, false},
		{st(run, api.AllocFailed), st(run, api.AllocComplete), Agent, false},
		{st(stop, api.AllocLost), st(stop, api.AllocRunning), Agent, false},
		{st(stop, api.AllocLost), st(stop, api.AllocComplete), Agent, false},
		// The servers stop and lose; nothing goes back to run.
		{st(run, api.AllocRunning), st(stop, api.AllocRunning), Server, true},
		{st(run, api.AllocFailed), st(stop, api.AllocFailed), Server, true},
		{st(run, api.AllocRunning), st(stop, api.AllocLost), Server, true},
		{st(stop, api.AllocPending), st(stop, api.AllocLost), Server, true},
		{st(run, api.AllocComplete), st(stop, api.AllocLost), Server, false},
		{st(stop, api.AllocRunning), st(run, api.AllocRunning), Server, false},
		{st(run, api.AllocRunning), st(stop, api.AllocRunning), Agent, false},
		// Repeating a state is always fine, except for "none".
		{st(run, api.AllocRunning), st(run, api.AllocRunning), Agent, true},
		{st(stop, api.AllocLost), st(stop, api.AllocLost), Server, true},
		{None, None, Server, false},
	} {
		if got := AllowedBy(tc.by, tc.from, tc.to); got != tc.ok {
			t.Errorf("AllowedBy(%s, %s, %s) = %v, want %v", tc.by, tc.from, tc.to, got, tc.ok)
		}
		if tc.ok && !Allowed(tc.from, tc.to) {
			t.Errorf("Allowed(%s, %s) = false, but %s may take it", tc.from, tc.to, tc.by)
		}
		if err := Check(tc.from, tc.to); (err == nil) != Allowed(tc.from, tc.to) {
			t.Errorf("Check(%s, %s) = %v disagrees with Allowed", tc.from, tc.to, err)
		}
	}
}

// TestTableShape checks properties of the whole table: every transition
// is between known states, terminal client statuses have no way out, the
// desired status never goes from stop to run, and every state is
// reachable from None.
func TestTableShape(t *testing.T) {
	known := map[State]bool{None: true}
	for _, s := range States {
		known[s] = true
	}
	seen := map[[2]State]bool{}
	for _, tr := range Table {
		if !known[tr.From] || !known[tr.To] || tr.To == None {
			t.Errorf("transition %s → %s uses an unknown state", tr.From, tr.To)
		}
		if tr.From == tr.To {
			t.Errorf("transition %s → %s repeats a state; repeats are implicit", tr.From, tr.To)
		}
		if seen[[2]State{tr.From, tr.To}] {
			t.Errorf("transition %s → %s listed twice", tr.From, tr.To)
		}
		seen[[2]State{tr.From, tr.To}] = true
		if tr.From.Desired == stop && tr.To.Desired == run {
			t.Errorf("transition %s → %s revives a stopped allocation", tr.From, tr.To)
		}
		switch tr.From.Client {
		case api.AllocComplete, api.AllocFailed, api.AllocLost:
			if tr.To.Client != tr.From.Client {
				t.Errorf("transition %s → %s leaves a terminal client status", tr.From, tr.To)
			}
		}
		if tr.By == Agent && tr.From.Desired != tr.To.Desired {
			t.Errorf("agent transition %s → %s changes the desired status", tr.From, tr.To)
		}
		if tr.To.Client == api.AllocLost && tr.By != Server {
			t.Errorf("only the servers mark an allocation lost (%s → %s by %s)", tr.From, tr.To, tr.By)
		}
	}
	reach := map[State]bool{None: true}
	for changed := true; changed; {
		changed = false
		for _, tr := range Table {
			if reach[tr.From] && !reach[tr.To] {
				reach[tr.To], changed = true, true
			}
		}
	}
	for _, s := range States {
		if !reach[s] {
			t.Errorf("state %s is unreachable", s)
		}
	}
}
