package vsphere

import (
	"fmt"
	"sort"
	"strings"

	"github.com/gantryhq/gantry/internal/api"
)

// NodeUUID is a Gantry node and the BIOS UUID its agent read.
type NodeUUID struct {
	ID, Name, UUID string
}

// VMRef is a VM of one vCenter, for matching.
type VMRef struct {
	VCenter string
	VM      *api.VSphereVM
}

// Matches is the outcome of Match.
type Matches struct {
	// Attrs are the vsphere.* attributes each matched node must carry.
	Attrs map[string]map[string]string
	// VMNode names the node matched to each VM (by vCenter/VM ID).
	VMNode map[string]string
	// Conflicts describes UUIDs that match more than one node or more
	// than one VM: those nodes get no attributes.
	Conflicts []string
}

// NormalizeUUID lower-cases a UUID and drops dashes and spaces; the SMBIOS
// form some older VMs show (the first three fields byte-swapped, "VMware-
// 42 1c …" serials) is not guessed at: see SwappedUUID.
func NormalizeUUID(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	s = strings.TrimPrefix(s, "vmware-")
	return strings.NewReplacer("-", "", " ", "").Replace(s)
}

// SwappedUUID is u (normalized, 32 hex digits) with its first three fields
// byte-swapped: how /sys/class/dmi/id/product_uuid shows a VM's UUID on
// VM hardware versions before 13 (SMBIOS before 2.6 stored them little-
// endian). "" when u is not 32 hex digits.
func SwappedUUID(u string) string {
	if len(u) != 32 {
		return ""
	}
	rev := func(s string) string {
		b := []byte(s)
		var out []byte
		for i := len(b) - 2; i >= 0; i -= 2 {
			out = append(out, b[i], b[i+1])
		}
		return string(out)
	}
	return rev(u[0:8]) + rev(u[8:12]) + rev(u[12:16]) + u[16:]
}

// Match pairs nodes with VMs by BIOS UUID. It is pure. A UUID shared by
// two nodes, or by two VMs (clones keep their UUID), is reported in
// Conflicts and matched to nothing: a guess could spread replicas onto
// one host.
func Match(nodes []NodeUUID, vms []VMRef) Matches {
	m := Matches{Attrs: map[string]map[string]string{}, VMNode: map[string]string{}}
	byUUID := map[string][]VMRef{}
	for _, v := range vms {
		if v.VM.Template {
			continue
		}
		u := NormalizeUUID(v.VM.UUID)
		if u == "" {
			continue
		}
		byUUID[u] = append(byUUID[u], v)
	}
	nodesByUUID := map[string][]NodeUUID{}
	for _, n := range nodes {
		u := NormalizeUUID(n.UUID)
		if u == "" {
			continue
		}
		key := u
		if _, ok := byUUID[u]; !ok {
			if s := SwappedUUID(u); s != "" {
				if _, ok := byUUID[s]; ok {
					key = s
				}
			}
		}
		nodesByUUID[key] = append(nodesByUUID[key], n)
	}
	keys := make([]string, 0, len(nodesByUUID))
	for k := range nodesByUUID {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, u := range keys {
		ns, vs := nodesByUUID[u], byUUID[u]
		if len(vs) == 0 {
			continue
		}
		if len(ns) > 1 {
			names := make([]string, len(ns))
			for i, n := range ns {
				names[i] = n.Name
			}
			sort.Strings(names)
			m.Conflicts = append(m.Conflicts, fmt.Sprintf("BIOS UUID %s of VM %s is reported by %d nodes (%s): none of them is matched; give each VM its own UUID", vs[0].VM.UUID, vs[0].VM.Name, len(ns), strings.Join(names, ", ")))
			continue
		}
		if len(vs) > 1 {
			names := make([]string, len(vs))
			for i, v := range vs {
				names[i] = v.VCenter + "/" + v.VM.Name
			}
			sort.Strings(names)
			m.Conflicts = append(m.Conflicts, fmt.Sprintf("BIOS UUID %s of node %s belongs to %d VMs (%s): the node is not matched; give each VM its own UUID", vs[0].VM.UUID, ns[0].Name, len(vs), strings.Join(names, ", ")))
			continue
		}
		v := vs[0]
		attrs := map[string]string{
			api.AttrVSphereVCenter: v.VCenter,
			api.AttrVSphereVM:      v.VM.Name,
			api.AttrVSphereHost:    v.VM.Host,
		}
		if v.VM.Cluster != "" {
			attrs[api.AttrVSphereCluster] = v.VM.Cluster
		}
		if len(v.VM.Datastores) > 0 {
			attrs[api.AttrVSphereDatastore] = v.VM.Datastores[0]
		}
		m.Attrs[ns[0].ID] = attrs
		m.VMNode[v.VCenter+"/"+v.VM.ID] = ns[0].Name
	}
	return m
}

// VSphereAttrs returns the vsphere.* attributes of a node's attribute map.
func VSphereAttrs(all map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range all {
		if strings.HasPrefix(k, "vsphere.") {
			out[k] = v
		}
	}
	return out
}
