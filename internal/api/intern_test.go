package api

import (
	"testing"
	"unsafe"
)

func TestAllocationInternSharesRepeatedStrings(t *testing.T) {
	mk := func(node string) *Allocation {
		// Built from fresh byte slices, as a decoder would.
		s := func(v string) string { return string([]byte(v)) }
		return &Allocation{
			ID: s("a-" + node), Namespace: s("default"), Job: s("web"), Group: s("g"), NodeID: s(node),
			DesiredStatus: s(AllocDesiredRun), ClientStatus: s(AllocRunning),
			TaskStates: map[string]*TaskState{"t": {State: s(TaskRunning), Events: []TaskEvent{{Type: s(TaskEventStarted), Message: s("hello")}}}},
		}
	}
	a, b := mk("n1"), mk("n1")
	before := *a
	a.Intern()
	b.Intern()
	same := func(x, y string) bool { return unsafe.StringData(x) == unsafe.StringData(y) }
	for _, c := range []struct {
		name string
		x, y string
	}{
		{"namespace", a.Namespace, b.Namespace},
		{"job", a.Job, b.Job},
		{"group", a.Group, b.Group},
		{"node", a.NodeID, b.NodeID},
		{"desired status", a.DesiredStatus, b.DesiredStatus},
		{"client status", a.ClientStatus, b.ClientStatus},
		{"task state", a.TaskStates["t"].State, b.TaskStates["t"].State},
		{"event type", a.TaskStates["t"].Events[0].Type, b.TaskStates["t"].Events[0].Type},
	} {
		if !same(c.x, c.y) {
			t.Errorf("%s not shared after Intern", c.name)
		}
	}
	if same(a.TaskStates["t"].Events[0].Message, b.TaskStates["t"].Events[0].Message) {
		t.Error("free-text message was interned")
	}
	if a.Namespace != before.Namespace || a.Job != before.Job || a.NodeID != before.NodeID || a.ClientStatus != before.ClientStatus {
		t.Errorf("Intern changed values: %+v", a)
	}
}
