package tasklife

import (
	"fmt"

	"github.com/gantryhq/gantry/internal/api"
)

// Found is a task a driver found on the node when the agent started: left
// from the agent's earlier run.
type Found struct {
	AllocID, Task, ID string
	Running           bool // it runs now
	Started           bool // it ran at some point (a container only created never did)
}

// Action is what becomes of a task found at start.
type Action int

const (
	// Leave the task as it is, and decide again on a later answer: the
	// servers' answer omits its allocation but may lag.
	Leave Action = iota
	// Adopt re-attaches to the running task.
	Adopt
	// RestartExited hands the task, which exited while the agent was
	// down, to its runner: the exit is reported and the restart policy
	// applied.
	RestartExited
	// Keep holds the task of a finished allocation for its logs; nothing
	// runs.
	Keep
	// Destroy stops the task if it runs and removes it.
	Destroy
)

func (a Action) String() string {
	switch a {
	case Leave:
		return "leave"
	case Adopt:
		return "adopt"
	case RestartExited:
		return "restart"
	case Keep:
		return "keep"
	case Destroy:
		return "destroy"
	}
	return fmt.Sprintf("Action(%d)", int(a))
}

// Adoption is the planner's decision for one task found at start.
type Adoption struct {
	Action Action
	Reason string
	// Runner says the allocation's runner carries the decision out: the
	// task belongs to an allocation that runs or finished here (adopted,
	// restarted, kept, or a duplicate its runner removes before it
	// starts). Otherwise the agent does (Destroy) or waits (Leave).
	Runner bool
}

// Want is what the servers want of an allocation, as adoption sees it.
type Want int

const (
	// WantRun: the allocation should run (desired run, not ended on the
	// client).
	WantRun Want = iota
	// WantStop: it was stopped, or the servers marked it lost.
	WantStop
	// WantFinished: it ended on a node and the servers keep it (its logs
	// stay readable).
	WantFinished
)

// WantOf classifies an allocation the servers hold for this node.
func WantOf(al *api.Allocation) Want {
	switch {
	case al.DesiredStatus == api.AllocDesiredRun && !al.ClientTerminal():
		return WantRun
	case al.DesiredStatus == api.AllocDesiredStop || al.ClientStatus == api.AllocLost:
		return WantStop
	}
	return WantFinished
}

// PlanAdoption decides, for each task found at start, what the agent does
// with it, given what the servers hold for the node (allocation ID →
// what they want of it) and whether their answer is consistent (reflects
// the latest state; see api.NodeAllocsResponse.Consistent). The answer
// has one Adoption per found task, in the same order.
//
//   - An allocation that should run gets, per task, the pick of AdoptTask:
//     a running task is adopted, an exited one restarted, the others
//     destroyed.
//   - A stopped or lost allocation's tasks are destroyed.
//   - A finished allocation's tasks are kept for their logs.
//   - A task whose allocation the answer omits is an orphan: destroyed on
//     a consistent answer only, left for a later answer otherwise.
func PlanAdoption(found []Found, held map[string]Want, consistent bool) []Adoption {
	out := make([]Adoption, len(found))
	type key struct{ alloc, task string }
	groups := map[key][]int{}
	var order []key
	for i, f := range found {
		w, ok := held[f.AllocID]
		switch {
		case !ok && consistent:
			out[i] = Adoption{Destroy, "its allocation is no longer on this node", false}
		case !ok:
			out[i] = Adoption{Leave, "the servers' answer omits its allocation but may lag", false}
		case w == WantStop:
			out[i] = Adoption{Destroy, "its allocation was stopped", false}
		case w == WantFinished:
			out[i] = Adoption{Keep, "its allocation finished; kept for its logs", true}
		default:
			k := key{f.AllocID, f.Task}
			if groups[k] == nil {
				order = append(order, k)
			}
			groups[k] = append(groups[k], i)
		}
	}
	for _, k := range order {
		idx := groups[k]
		same := make([]Found, len(idx))
		for j, i := range idx {
			same[j] = found[i]
		}
		for j, a := range AdoptTask(same) {
			a.Runner = true
			out[idx[j]] = a
		}
	}
	return out
}

// AdoptTask decides what becomes of the tasks found for one task of an
// allocation that should run (more than one is a duplicate left by a
// crash between starts). It keeps at most one: the first running, else
// the first that ran and exited (restarted: its exit is reported, the
// policy applied). A task created but never started ran nothing and is
// destroyed, so the task starts anew with no exit reported; every other
// one is a duplicate and destroyed. The answer is in the order given.
func AdoptTask(found []Found) []Adoption {
	out := make([]Adoption, len(found))
	keep := -1
	for i, f := range found {
		if f.Running {
			keep = i
			break
		}
	}
	if keep < 0 {
		for i, f := range found {
			if f.Started {
				keep = i
				break
			}
		}
	}
	for i, f := range found {
		switch {
		case i == keep && f.Running:
			out[i] = Adoption{Adopt, "re-attached after agent restart", false}
		case i == keep:
			out[i] = Adoption{RestartExited, "exited while the agent was down", false}
		case !f.Running && !f.Started:
			out[i] = Adoption{Destroy, "created but never started", false}
		default:
			out[i] = Adoption{Destroy, "a duplicate of the task adopted", false}
		}
	}
	return out
}
