package vsphere

import (
	"fmt"
	"time"

	"github.com/gantryhq/gantry/internal/api"
)

// Diff lists the inventory changes from old to cur that become events:
// VMs powered on, off or suspended, moved to another host (vMotion),
// added or removed; hosts into or out of maintenance, disconnected or
// connected again, added or removed. It is pure: now stamps the changes.
// A nil old (the first inventory) gives no changes.
func Diff(vcenter string, old, cur *Inventory, now time.Time) []api.VSphereChange {
	if old == nil || cur == nil {
		return nil
	}
	var out []api.VSphereChange
	add := func(kind, id, name, typ, from, to, msg string) {
		out = append(out, api.VSphereChange{VCenter: vcenter, Kind: kind, ID: id, Name: name, Type: typ, From: from, To: to, Message: msg, Time: now})
	}
	oldHosts := make(map[string]*api.VSphereHost, len(old.Hosts))
	for i := range old.Hosts {
		oldHosts[old.Hosts[i].ID] = &old.Hosts[i]
	}
	seen := make(map[string]bool, len(cur.Hosts))
	for i := range cur.Hosts {
		h := &cur.Hosts[i]
		seen[h.ID] = true
		o, ok := oldHosts[h.ID]
		if !ok {
			add("host", h.ID, h.Name, api.VSphereHostAdded, "", h.Cluster, fmt.Sprintf("host %s appeared in %s", h.Name, where(h.Datacenter, h.Cluster)))
			continue
		}
		if !o.Maintenance && h.Maintenance {
			add("host", h.ID, h.Name, api.VSphereHostEnteredMaint, "", "", fmt.Sprintf("host %s entered maintenance mode", h.Name))
		}
		if o.Maintenance && !h.Maintenance {
			add("host", h.ID, h.Name, api.VSphereHostExitedMaint, "", "", fmt.Sprintf("host %s left maintenance mode", h.Name))
		}
		if o.ConnectionState != h.ConnectionState {
			switch {
			case h.ConnectionState == "connected":
				add("host", h.ID, h.Name, api.VSphereHostConnected, o.ConnectionState, h.ConnectionState, fmt.Sprintf("host %s is connected again", h.Name))
			case o.ConnectionState == "connected":
				add("host", h.ID, h.Name, api.VSphereHostDisconnected, o.ConnectionState, h.ConnectionState, fmt.Sprintf("host %s is %s", h.Name, h.ConnectionState))
			}
		}
	}
	for _, h := range old.Hosts {
		if !seen[h.ID] {
			add("host", h.ID, h.Name, api.VSphereHostRemoved, "", "", fmt.Sprintf("host %s was removed from the inventory", h.Name))
		}
	}
	oldVMs := make(map[string]*api.VSphereVM, len(old.VMs))
	for i := range old.VMs {
		oldVMs[old.VMs[i].ID] = &old.VMs[i]
	}
	clear(seen)
	for i := range cur.VMs {
		v := &cur.VMs[i]
		seen[v.ID] = true
		o, ok := oldVMs[v.ID]
		if !ok {
			add("vm", v.ID, v.Name, api.VSphereVMAdded, "", v.Host, fmt.Sprintf("VM %s appeared on host %s", v.Name, v.Host))
			continue
		}
		if o.PowerState != v.PowerState {
			typ := map[string]string{"poweredOn": api.VSphereVMPoweredOn, "poweredOff": api.VSphereVMPoweredOff, "suspended": api.VSphereVMSuspended}[v.PowerState]
			if typ != "" {
				add("vm", v.ID, v.Name, typ, o.PowerState, v.PowerState, fmt.Sprintf("VM %s went from %s to %s", v.Name, o.PowerState, v.PowerState))
			}
		}
		if o.Host != v.Host && o.Host != "" && v.Host != "" {
			add("vm", v.ID, v.Name, api.VSphereVMMigrated, o.Host, v.Host, fmt.Sprintf("VM %s moved from host %s to %s", v.Name, o.Host, v.Host))
		}
	}
	for _, v := range old.VMs {
		if !seen[v.ID] {
			add("vm", v.ID, v.Name, api.VSphereVMRemoved, v.Host, "", fmt.Sprintf("VM %s was removed from the inventory", v.Name))
		}
	}
	return out
}

func where(dc, cluster string) string {
	if cluster == "" {
		return "datacenter " + dc
	}
	return "cluster " + cluster + " of datacenter " + dc
}
