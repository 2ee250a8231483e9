// Package vspheredrain decides, for the vSphere monitor, which Gantry
// nodes run in which vSphere VMs, which nodes' vsphere.* attributes
// change, and which nodes to drain because their ESXi host entered
// maintenance mode. It owns that decision only and is pure (no I/O, no
// clock, no goroutines): internal/server/vspheremon reads the collectors
// and the store, calls Decide, and carries the decision out.
package vspheredrain

import (
	"maps"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/vsphere"
)

// World is what one round reads from the vSphere collectors.
type World struct {
	Conns   map[string]bool // configured connections, by name
	Known   map[string]bool // connections whose inventory was read
	DrainOn map[string]bool // connections that drain on maintenance
	Maint   map[string]bool // "vcenter/host" of hosts in maintenance
	VMs     []vsphere.VMRef
}

// AttrChange sets a node's vsphere.* attributes to Want (none when
// empty); Matched says the node was matched to a VM this round.
type AttrChange struct {
	Node    *api.Node
	Want    map[string]string
	Matched bool
}

// DrainStep drains a node whose ESXi host entered maintenance; Key
// remembers that it was done, for this maintenance of this host.
type DrainStep struct {
	Node          *api.Node
	VCenter, Host string
	Key           string
}

// Decision is one round, decided.
type Decision struct {
	Match        vsphere.Matches
	NewConflicts []string     // ambiguous matches not reported before
	Attrs        []AttrChange // in the nodes' order
	Drains       []DrainStep  // in the nodes' order
	Forget       []string     // drained keys whose host left maintenance
}

// Decide matches nodes to VMs by BIOS UUID and says which nodes'
// attributes change and which nodes to drain, from the collectors' world,
// the nodes, the conflicts reported in earlier rounds and the keys of the
// drains already done. A node whose vCenter has not been read yet keeps
// its attributes; one whose connection was removed loses them. A node is
// drained once per maintenance of its host, only where its connection
// drains on maintenance and the node is not draining already.
func Decide(w World, nodes []*api.Node, reported []string, drained map[string]bool) Decision {
	var refs []vsphere.NodeUUID
	for _, n := range nodes {
		if u := n.Attributes[api.AttrBIOSUUID]; u != "" {
			refs = append(refs, vsphere.NodeUUID{ID: n.ID, Name: n.Name, UUID: u})
		}
	}
	d := Decision{Match: vsphere.Match(refs, w.VMs)}
	d.NewConflicts = without(d.Match.Conflicts, reported)
	for _, n := range nodes {
		cur := vsphere.VSphereAttrs(n.Attributes)
		want, matched := d.Match.Attrs[n.ID]
		if !matched {
			if vc := cur[api.AttrVSphereVCenter]; vc != "" && w.Conns[vc] && !w.Known[vc] {
				continue
			}
			want = map[string]string{}
		}
		if !maps.Equal(cur, want) {
			d.Attrs = append(d.Attrs, AttrChange{Node: n, Want: want, Matched: matched})
		}
		if !matched {
			continue
		}
		vc, host := want[api.AttrVSphereVCenter], want[api.AttrVSphereHost]
		key := n.ID + "/" + vc + "/" + host
		switch {
		case !w.Maint[vc+"/"+host]:
			if drained[key] {
				d.Forget = append(d.Forget, key)
			}
		case w.DrainOn[vc] && !drained[key] && n.Drain == nil:
			d.Drains = append(d.Drains, DrainStep{Node: n, VCenter: vc, Host: host, Key: key})
		}
	}
	return d
}

// without is cur less what old holds, in cur's order.
func without(cur, old []string) []string {
	seen := map[string]bool{}
	for _, o := range old {
		seen[o] = true
	}
	var out []string
	for _, c := range cur {
		if !seen[c] {
			out = append(out, c)
		}
	}
	return out
}
