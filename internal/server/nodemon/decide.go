// Package nodemon is the leader's node monitor: it marks down the ready
// nodes whose heartbeat lease expired and asks for an evaluation of every
// job that had live allocations on them, so that the scheduler replaces
// what ran there.
//
// Down and JobsOnNode are the decision, pure functions of what the monitor
// reads and the time. Monitor is the thin shell: one Round reads the
// store through Store (five methods), applies the decision with the
// leader's fence, and logs. The package never reads the clock (the time
// comes in as a func and the ticks as a channel), starts no goroutine and
// does no I/O but through Store; it never writes without the fence and
// never marks a node down whose lease is alive again at the write.
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
