package lifecycle

import (
	"fmt"

	"github.com/gantryhq/gantry/internal/api"
)

// State is an allocation's pair of statuses. The zero State is "none":
// the allocation does not exist yet.
type State struct {
	Desired string // api.AllocDesiredRun or api.AllocDesiredStop
	Client  string // api.AllocPending … api.AllocLost
}

// None is the state before an allocation exists.
var None = State{}

func (s State) String() string {
	if s == None {
		return "none"
	}
	return s.Desired + "/" + s.Client
}

// Of returns an allocation's state.
func Of(a *api.Allocation) State { return State{Desired: a.DesiredStatus, Client: a.ClientStatus} }

// Actor is who takes a transition.
type Actor int

const (
	// Server transitions are written by the leader's plan applier.
	Server Actor = iota + 1
	// Agent transitions are reports of the allocation's node.
	Agent
)

func (a Actor) String() string {
	switch a {
	case Server:
		return "server"
	case Agent:
		return "agent"
	}
	return fmt.Sprintf("actor(%d)", int(a))
}

// Transition is one allowed change of state.
type Transition struct {
	From, To State
	By       Actor
	Event    string // what causes it, as a short identifier
}

// Desired and Clients list the two halves of a State in a fixed order
// (the model encodes a state as 8 × (desired position + 1) + client
// position + 1, with 0 for None).
var (
	Desired = []string{api.AllocDesiredRun, api.AllocDesiredStop}
	Clients = []string{api.AllocPending, api.AllocRunning, api.AllocComplete, api.AllocFailed, api.AllocLost}
)

// States lists every state an allocation can be in, in a fixed order
// (the model numbers them in this order, from 1; 0 is None).
var States = []State{
	{api.AllocDesiredRun, api.AllocPending},
	{api.AllocDesiredRun, api.AllocRunning},
	{api.AllocDesiredRun, api.AllocComplete},
	{api.AllocDesiredRun, api.AllocFailed},
	{api.AllocDesiredStop, api.AllocPending},
	{api.AllocDesiredStop, api.AllocRunning},
	{api.AllocDesiredStop, api.AllocComplete},
	{api.AllocDesiredStop, api.AllocFailed},
	{api.AllocDesiredStop, api.AllocLost},
}

// Table is the allocation lifecycle. Reading it:
//
//   - the servers place an allocation as run/pending;
//   - the agent moves it between pending and running (a task restarting
//     in place is pending again) and ends it as complete or failed;
//     complete, failed and lost are terminal: nothing leaves them, so a
//     late or reordered report never revives an allocation;
//   - the servers stop it (run → stop, the client status unchanged), and
//     mark one whose node is gone lost, which stops it at once;
//   - nothing goes from stop back to run: a replacement is a new
//     allocation.
//
// Repeating a state (a report that changes only health or task states)
// is always allowed and is not listed.
var Table = func() []Transition {
	t := []Transition{{From: None, To: State{api.AllocDesiredRun, api.AllocPending}, By: Server, Event: "place"}}
	for _, d := range []string{api.AllocDesiredRun, api.AllocDesiredStop} {
		for _, tr := range []struct{ from, to, event string }{
			{api.AllocPending, api.AllocRunning, "started"},
			{api.AllocPending, api.AllocComplete, "completed"},
			{api.AllocPending, api.AllocFailed, "failed"},
			{api.AllocRunning, api.AllocPending, "restarting"},
			{api.AllocRunning, api.AllocComplete, "completed"},
			{api.AllocRunning, api.AllocFailed, "failed"},
		} {
			t = append(t, Transition{From: State{d, tr.from}, To: State{d, tr.to}, By: Agent, Event: tr.event})
		}
	}
	for _, c := range []string{api.AllocPending, api.AllocRunning, api.AllocComplete, api.AllocFailed} {
		t = append(t, Transition{From: State{api.AllocDesiredRun, c}, To: State{api.AllocDesiredStop, c}, By: Server, Event: "stop"})
	}
	for _, d := range []string{api.AllocDesiredRun, api.AllocDesiredStop} {
		for _, c := range []string{api.AllocPending, api.AllocRunning} {
			t = append(t, Transition{From: State{d, c}, To: State{api.AllocDesiredStop, api.AllocLost}, By: Server, Event: "lost"})
		}
	}
	return t
}()

// Allowed reports whether an allocation may go from one state to another,
// by anyone. Staying in the same state is allowed.
func Allowed(from, to State) bool {
	if from == to && from != None {
		return true
	}
	for _, t := range Table {
		if t.From == from && t.To == to {
			return true
		}
	}
	return false
}

// AllowedBy reports whether actor may move an allocation from one state
// to another. Staying in the same state is allowed.
func AllowedBy(actor Actor, from, to State) bool {
	if from == to && from != None {
		return true
	}
	for _, t := range Table {
		if t.By == actor && t.From == from && t.To == to {
			return true
		}
	}
	return false
}

// ClientAllowed reports whether an agent may report client status to for
// an allocation in state from (its desired status stays as it is).
func ClientAllowed(from State, to string) bool {
	return AllowedBy(Agent, from, State{Desired: from.Desired, Client: to})
}

// Check returns an error naming the transition when it is not allowed.
func Check(from, to State) error {
	if Allowed(from, to) {
		return nil
	}
	return fmt.Errorf("allocation lifecycle: %s → %s is not an allowed transition", from, to)
}
