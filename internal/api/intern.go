package api

import "unique"

// intern returns the canonical copy of s: equal strings decoded from many
// objects then share one backing array instead of one each.
func intern(s string) string {
	if s == "" {
		return s
	}
	return unique.Make(s).Value()
}

// Intern makes the allocation's repeated strings (its job, group, node,
// evaluation, statuses and event types) share storage with every other
// allocation's. A store that holds a million decoded allocations keeps
// each such string once instead of once per allocation. IDs of the
// allocation itself and free-text messages are left alone: they are
// unique.
func (a *Allocation) Intern() {
	a.Namespace, a.Job, a.Group = intern(a.Namespace), intern(a.Job), intern(a.Group)
	a.NodeID, a.NodeName, a.EvalID = intern(a.NodeID), intern(a.NodeName), intern(a.EvalID)
	a.DeploymentID = intern(a.DeploymentID)
	a.DesiredStatus, a.ClientStatus, a.Health = intern(a.DesiredStatus), intern(a.ClientStatus), intern(a.Health)
	for _, st := range a.TaskStates {
		if st == nil {
			continue
		}
		st.State, st.Health = intern(st.State), intern(st.Health)
		for i := range st.Events {
			st.Events[i].Type = intern(st.Events[i].Type)
		}
	}
}
