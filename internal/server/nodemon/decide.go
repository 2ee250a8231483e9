// Package nodemon is the leader's node monitor: it marks down the ready
// nodes whose heartbeat lease expired and asks for an evaluation of every
// job that had live allocations on them, so that the scheduler replaces
// what ran there. While its server is overloaded, and for a TTL after,
// it gives silent nodes extra grace instead (Spare): a node the server
// was too busy to hear from has not failed.
//
// Down, Lapsed, Spare and JobsOnNode are the decision, pure functions of
// what the monitor reads, the server's overload level and the time.
// Monitor is the thin shell: one Round reads the store through Store
// (five methods), applies the decision with the leader's fence, and
// logs. The package never reads the clock (the time comes in as a func
// and the ticks as a channel), starts no goroutine and does no I/O but
// through Store; it never writes without the fence and never marks a
// node down whose lease is alive again at the write.
package nodemon

import (
	"fmt"
	"time"

	"github.com/gantryhq/gantry/internal/api"
)

// DownNode is a node to mark down and why.
type DownNode struct {
	Node   *api.Node
	Reason string
}

// Down is the node monitor's decision: the ready nodes whose heartbeat
// lease is gone, unless the leader took over less than a heartbeat TTL
// ago. A new leader's view of the leases says little about the nodes: a
// restart of the only server (gantry dev) restarts its agent too, and
// leases of a cluster whose leader died were not renewed while no server
// answered. Every node therefore gets a full TTL from the takeover to
// heartbeat or register again, as Nomad's failover TTL gives. ttl is the
// TTL the cluster's nodes were handed, grown with their number.
func Down(nodes []*api.Node, alive func(id string) bool, leaderSince, now time.Time, ttl time.Duration) []DownNode {
	if now.Before(leaderSince.Add(ttl)) {
		return nil
	}
	var out []DownNode
	for _, n := range nodes {
		if n.Status == api.NodeStatusReady && !alive(n.ID) {
			out = append(out, DownNode{Node: n, Reason: fmt.Sprintf("no heartbeat within its TTL (%s for a cluster of this size)", ttl)})
		}
	}
	return out
}

// Lapsed is when the monitor first saw each ready node without its
// lease: the time in prev for a node still without one, now for a node
// newly seen so. Nodes that are alive again or no longer ready are
// dropped. prev is not changed.
func Lapsed(prev map[string]time.Time, nodes []*api.Node, alive func(id string) bool, now time.Time) map[string]time.Time {
	out := map[string]time.Time{}
	for _, n := range nodes {
		if n.Status != api.NodeStatusReady || alive(n.ID) {
			continue
		}
		if t, ok := prev[n.ID]; ok {
			out[n.ID] = t
		} else {
			out[n.ID] = now
		}
	}
	return out
}

// Overload is what the monitor knows of its server's overload at a round
// (internal/server/overload).
type Overload struct {
	// Level is the server's overload level now; 0: not overloaded.
	Level int
	// Last is the last round at which the server was overloaded (zero:
	// never while this monitor ran).
	Last time.Time
}

// Spare splits the nodes Down names into those to mark down and those an
// overloaded server keeps ready, because a node it was too busy to hear
// from is not a node that failed:
//
//   - while the server is overloaded at level L, a node whose lease has
//     been gone for less than L × ttl (from when lapsed says the monitor
//     first saw it gone) is spared; one gone longer is marked down, so
//     that a node that did fail is still replaced under lasting overload;
//   - for a ttl after the overload ended, every node is spared: as after a
//     takeover, each gets a full TTL from the moment the server could
//     listen again to heartbeat or register.
//
// Without overload now or within a ttl, every node is marked down.
func Spare(down []DownNode, lapsed map[string]time.Time, o Overload, now time.Time, ttl time.Duration) (mark, spared []DownNode) {
	switch {
	case o.Level > 0:
		extra := time.Duration(o.Level) * ttl
		for _, d := range down {
			since, ok := lapsed[d.Node.ID]
			if !ok {
				since = now
			}
			if now.Before(since.Add(extra)) {
				spared = append(spared, d)
				continue
			}
			d.Reason = fmt.Sprintf("%s, nor within the %s more that the overloaded server gave it", d.Reason, extra)
			mark = append(mark, d)
		}
		return mark, spared
	case !o.Last.IsZero() && now.Before(o.Last.Add(ttl)):
		return nil, down
	}
	return down, nil
}

// JobRef names a job to evaluate and the priority its evaluation takes.
type JobRef struct {
	Namespace, Job string
	Priority       int
}

// JobsOnNode lists, once each and in the order of allocs, the jobs with
// allocations on a node that the client has not finished: the jobs a
// change of the node must evaluate.
func JobsOnNode(allocs []*api.Allocation) []JobRef {
	seen := map[string]bool{}
	var out []JobRef
	for _, a := range allocs {
		if a.ClientTerminal() || seen[a.JobKey()] {
			continue
		}
		seen[a.JobKey()] = true
		out = append(out, JobRef{Namespace: a.Namespace, Job: a.Job, Priority: a.Priority})
	}
	return out
}
