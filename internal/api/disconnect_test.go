package api

import (
	"testing"
	"time"
)

// TestDisconnectFor: the defaults of a group without a disconnect block
// (batch with GPUs: stop after the heartbeat TTL; everything else: never
// stopped by its agent), and a given block winning over them.
func TestDisconnectFor(t *testing.T) {
	no := false
	gpu := func(g *Group) *Group {
		g.Tasks = append(g.Tasks, &Task{Name: "t", Resources: Resources{GPU: &GPURequest{Count: 1}}})
		return g
	}
	plain := func(g *Group) *Group { g.Tasks = append(g.Tasks, &Task{Name: "t"}); return g }
	const ttl = 15 * time.Second
	cases := []struct {
		name string
		typ  JobType
		g    *Group
		want DisconnectPolicy
	}{
		{"service, no block", JobService, plain(&Group{}), DisconnectPolicy{Replace: true, Default: true}},
		{"service with GPUs, no block", JobService, gpu(&Group{}), DisconnectPolicy{Replace: true, Default: true}},
		{"batch without GPUs, no block", JobBatch, plain(&Group{}), DisconnectPolicy{Replace: true, Default: true}},
		{"batch with GPUs, no block", JobBatch, gpu(&Group{}), DisconnectPolicy{StopAfter: ttl, Replace: true, Default: true}},
		{"batch with GPUs, block without stop_after", JobBatch, gpu(&Group{Disconnect: &Disconnect{Replace: &no}}), DisconnectPolicy{}},
		{"service, stop_after", JobService, plain(&Group{Disconnect: &Disconnect{StopAfter: Duration(time.Minute)}}), DisconnectPolicy{StopAfter: time.Minute, Replace: true}},
		{"service, replace false", JobService, plain(&Group{Disconnect: &Disconnect{StopAfter: Duration(3 * time.Second), Replace: &no}}), DisconnectPolicy{StopAfter: 3 * time.Second}},
	}
	for _, c := range cases {
		if got := DisconnectFor(c.typ, c.g, ttl); got != c.want {
			t.Errorf("%s: got %+v, want %+v", c.name, got, c.want)
		}
	}
}
