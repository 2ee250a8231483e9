package tasklife

import (
	"testing"

	"github.com/gantryhq/gantry/internal/api"
)

func running(alloc, task, id string) Found {
	return Found{AllocID: alloc, Task: task, ID: id, Running: true, Started: true}
}
func exited(alloc, task, id string) Found {
	return Found{AllocID: alloc, Task: task, ID: id, Started: true}
}
func created(alloc, task, id string) Found { return Found{AllocID: alloc, Task: task, ID: id} }

// TestPlanAdoption: each task found at start, against what the servers
// hold for the node and whether their answer is consistent.
func TestPlanAdoption(t *testing.T) {
	cases := []struct {
		name       string
		found      []Found
		held       map[string]Want
		consistent bool
		want       []Action
	}{
		{"a running task of an allocation that should run is adopted",
			[]Found{running("a", "web", "c1")}, map[string]Want{"a": WantRun}, true, []Action{Adopt}},
		{"a task that exited while the agent was down is restarted by its runner",
			[]Found{exited("a", "web", "c1")}, map[string]Want{"a": WantRun}, true, []Action{RestartExited}},
		{"a container created but never started is destroyed (the task starts anew)",
			[]Found{created("a", "web", "c1")}, map[string]Want{"a": WantRun}, true, []Action{Destroy}},
		{"of duplicates the running one is adopted, wherever it is",
			[]Found{exited("a", "web", "c1"), running("a", "web", "c2"), running("a", "web", "c3")}, map[string]Want{"a": WantRun}, true,
			[]Action{Destroy, Adopt, Destroy}},
		{"with none running, the first that ran is restarted; one never started is destroyed",
			[]Found{created("a", "web", "c1"), exited("a", "web", "c2"), exited("a", "web", "c3")}, map[string]Want{"a": WantRun}, true,
			[]Action{Destroy, RestartExited, Destroy}},
		{"each task of an allocation is decided on its own",
			[]Found{running("a", "web", "c1"), exited("a", "sidecar", "c2")}, map[string]Want{"a": WantRun}, true,
			[]Action{Adopt, RestartExited}},
		{"the tasks of a stopped allocation are destroyed",
			[]Found{running("a", "web", "c1"), exited("a", "web", "c2")}, map[string]Want{"a": WantStop}, false, []Action{Destroy, Destroy}},
		{"the tasks of a finished allocation are kept for their logs",
			[]Found{exited("a", "web", "c1"), exited("a", "web", "c2")}, map[string]Want{"a": WantFinished}, true, []Action{Keep, Keep}},
		{"an orphan is destroyed on a consistent answer",
			[]Found{running("old", "web", "c1")}, map[string]Want{"a": WantRun}, true, []Action{Destroy}},
		{"an orphan is left on an answer that may lag",
			[]Found{running("old", "web", "c1"), exited("old", "web", "c2")}, map[string]Want{}, false, []Action{Leave, Leave}},
		{"a lagging answer still settles the allocations it holds",
			[]Found{running("old", "web", "c1"), running("a", "web", "c2"), running("b", "web", "c3")},
			map[string]Want{"a": WantRun, "b": WantStop}, false, []Action{Leave, Adopt, Destroy}},
		{"nothing found, nothing to do", nil, map[string]Want{"a": WantRun}, true, []Action{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := PlanAdoption(c.found, c.held, c.consistent)
			if len(got) != len(c.want) {
				t.Fatalf("got %d decisions for %d tasks found", len(got), len(c.found))
			}
			for i := range got {
				if got[i].Action != c.want[i] {
					t.Errorf("%s (%s/%s): got %s (%s), want %s", c.found[i].ID, c.found[i].AllocID, c.found[i].Task, got[i].Action, got[i].Reason, c.want[i])
				}
				f := c.found[i]
				if w, ok := c.held[f.AllocID]; got[i].Runner != (ok && w != WantStop) {
					t.Errorf("%s: Runner %v, want it only for an allocation that runs or finished here", f.ID, got[i].Runner)
				}
				if got[i].Reason == "" {
					t.Errorf("%s: %s without a reason", c.found[i].ID, got[i].Action)
				}
			}
		})
	}
}

// TestPlanAdoptionKeepsAtMostOnePerTask: whatever was found, an
// allocation that should run has at most one task adopted or restarted
// per task name, and one is whenever any of its tasks ran.
func TestPlanAdoptionKeepsAtMostOnePerTask(t *testing.T) {
	kinds := []func(alloc, task, id string) Found{running, exited, created}
	// Every sequence of three found tasks of one task name.
	for x := range 27 {
		var found []Found
		ran := false
		for i, n := 0, x; i < 3; i, n = i+1, n/3 {
			f := kinds[n%3]("a", "web", string(rune('1'+i)))
			ran = ran || f.Started
			found = append(found, f)
		}
		kept := 0
		for _, ad := range PlanAdoption(found, map[string]Want{"a": WantRun}, true) {
			if ad.Action == Adopt || ad.Action == RestartExited {
				kept++
			}
		}
		if kept > 1 || ran && kept != 1 || !ran && kept != 0 {
			t.Errorf("%+v: %d kept", found, kept)
		}
	}
}

// TestWantOf: how an allocation the servers hold reads for adoption.
func TestWantOf(t *testing.T) {
	cases := []struct {
		desired, client string
		want            Want
	}{
		{api.AllocDesiredRun, api.AllocPending, WantRun},
		{api.AllocDesiredRun, api.AllocRunning, WantRun},
		{api.AllocDesiredStop, api.AllocRunning, WantStop},
		{api.AllocDesiredRun, api.AllocLost, WantStop},
		{api.AllocDesiredRun, api.AllocComplete, WantFinished},
		{api.AllocDesiredRun, api.AllocFailed, WantFinished},
	}
	for _, c := range cases {
		if got := WantOf(&api.Allocation{DesiredStatus: c.desired, ClientStatus: c.client}); got != c.want {
			t.Errorf("desired %s, client %s: got %d, want %d", c.desired, c.client, got, c.want)
		}
	}
}
