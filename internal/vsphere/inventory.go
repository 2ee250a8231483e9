package vsphere

import (
	"fmt"
	"sort"
	"strings"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/vmware/govmomi/vim25/types"
)

// watched lists, per managed object type, the properties the collector
// asks the property collector for. Folders and compute resources are
// there for the parent chain only (datacenter and cluster names).
var watched = map[string][]string{
	"Folder":                 {"name", "parent"},
	"Datacenter":             {"name", "parent"},
	"ComputeResource":        {"name", "parent"},
	"ClusterComputeResource": {"name", "parent"},
	"HostSystem": {"name", "parent", "summary.hardware", "summary.config.product",
		"runtime.connectionState", "runtime.inMaintenanceMode", "runtime.powerState"},
	"VirtualMachine": {"name", "parent", "runtime.host", "runtime.powerState", "config.uuid",
		"config.hardware.numCPU", "config.hardware.memoryMB", "config.guestFullName",
		"config.template", "guest.toolsRunningStatus", "datastore"},
	"Datastore": {"name", "parent", "summary.type", "summary.capacity", "summary.freeSpace"},
}

// watchedTypes is watched's keys in a stable order.
func watchedTypes() []string {
	out := make([]string, 0, len(watched))
	for k := range watched {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Raw is the property values the collector has received, by object: the
// state that incremental updates change. Build turns it into an
// inventory.
type Raw struct {
	objs map[types.ManagedObjectReference]map[string]any
}

// NewRaw returns an empty set of property values.
func NewRaw() *Raw { return &Raw{objs: map[types.ManagedObjectReference]map[string]any{}} }

// Apply folds one batch of property collector updates into r.
func (r *Raw) Apply(updates []types.ObjectUpdate) {
	for _, u := range updates {
		if u.Kind == types.ObjectUpdateKindLeave {
			delete(r.objs, u.Obj)
			continue
		}
		props := r.objs[u.Obj]
		if props == nil {
			props = map[string]any{}
			r.objs[u.Obj] = props
		}
		for _, c := range u.ChangeSet {
			if c.Op == types.PropertyChangeOpRemove || c.Op == types.PropertyChangeOpIndirectRemove || c.Val == nil {
				delete(props, c.Name)
				continue
			}
			props[c.Name] = c.Val
		}
	}
}

// Len is the number of objects known.
func (r *Raw) Len() int { return len(r.objs) }

// Inventory is one vCenter's hosts, VMs, datastores and their places.
type Inventory struct {
	Datacenters []api.VSphereDatacenter
	Clusters    []api.VSphereCluster
	Hosts       []api.VSphereHost
	VMs         []api.VSphereVM
	Datastores  []api.VSphereDatastore
	// refs maps an entity ID (host-21) to its managed object reference,
	// for performance queries.
	refs map[string]types.ManagedObjectReference
}

// Ref is the managed object reference of an entity ID.
func (inv *Inventory) Ref(id string) (types.ManagedObjectReference, bool) {
	r, ok := inv.refs[id]
	return r, ok
}

// Build derives the inventory from the raw property values.
func (r *Raw) Build() *Inventory {
	inv := &Inventory{refs: make(map[string]types.ManagedObjectReference, len(r.objs))}
	str := func(p map[string]any, k string) string {
		switch v := p[k].(type) {
		case string:
			return v
		case interface{ String() string }:
			return v.String()
		}
		if v, ok := p[k]; ok && v != nil {
			return stringOf(v)
		}
		return ""
	}
	name := func(ref types.ManagedObjectReference) string { return str(r.objs[ref], "name") }
	parent := func(ref types.ManagedObjectReference) (types.ManagedObjectReference, bool) {
		p, ok := r.objs[ref]["parent"].(types.ManagedObjectReference)
		return p, ok
	}
	// ancestor finds the nearest ancestor of one of the given types.
	ancestor := func(ref types.ManagedObjectReference, kinds ...string) (types.ManagedObjectReference, bool) {
		for range 64 {
			p, ok := parent(ref)
			if !ok {
				return types.ManagedObjectReference{}, false
			}
			for _, k := range kinds {
				if p.Type == k {
					return p, true
				}
			}
			ref = p
		}
		return types.ManagedObjectReference{}, false
	}
	datacenter := func(ref types.ManagedObjectReference) string {
		if dc, ok := ancestor(ref, "Datacenter"); ok {
			return name(dc)
		}
		return ""
	}
	hostVMs := map[types.ManagedObjectReference]int{}
	for ref, p := range r.objs {
		if ref.Type != "VirtualMachine" {
			continue
		}
		if h, ok := p["runtime.host"].(types.ManagedObjectReference); ok {
			hostVMs[h]++
		}
	}
	hostCluster := func(h types.ManagedObjectReference) string {
		if p, ok := parent(h); ok && p.Type == "ClusterComputeResource" {
			return name(p)
		}
		return ""
	}
	for ref, p := range r.objs {
		inv.refs[ref.Value] = ref
		switch ref.Type {
		case "Datacenter":
			inv.Datacenters = append(inv.Datacenters, api.VSphereDatacenter{ID: ref.Value, Name: name(ref)})
		case "ClusterComputeResource":
			inv.Clusters = append(inv.Clusters, api.VSphereCluster{ID: ref.Value, Name: name(ref), Datacenter: datacenter(ref)})
		case "HostSystem":
			h := api.VSphereHost{
				ID: ref.Value, Name: name(ref), Datacenter: datacenter(ref), Cluster: hostCluster(ref),
				ConnectionState: str(p, "runtime.connectionState"), PowerState: str(p, "runtime.powerState"),
				VMs: hostVMs[ref],
			}
			if m, ok := p["runtime.inMaintenanceMode"].(bool); ok {
				h.Maintenance = m
			}
			if hw, ok := p["summary.hardware"].(types.HostHardwareSummary); ok {
				h.Vendor, h.Model, h.CPUCores, h.CPUMHz, h.MemoryMiB = hw.Vendor, hw.Model, int(hw.NumCpuCores), int(hw.CpuMhz), hw.MemorySize>>20
			}
			if pr, ok := p["summary.config.product"].(types.AboutInfo); ok {
				h.Version, h.Build = pr.Version, pr.Build
			}
			inv.Hosts = append(inv.Hosts, h)
		case "VirtualMachine":
			vm := api.VSphereVM{
				ID: ref.Value, Name: name(ref), Datacenter: datacenter(ref),
				PowerState: str(p, "runtime.powerState"), UUID: str(p, "config.uuid"),
				GuestOS: str(p, "config.guestFullName"), ToolsStatus: str(p, "guest.toolsRunningStatus"),
			}
			if h, ok := p["runtime.host"].(types.ManagedObjectReference); ok {
				vm.Host, vm.Cluster = name(h), hostCluster(h)
			}
			if n, ok := p["config.hardware.numCPU"].(int32); ok {
				vm.VCPU = int(n)
			}
			if n, ok := p["config.hardware.memoryMB"].(int32); ok {
				vm.MemoryMiB = int(n)
			}
			if t, ok := p["config.template"].(bool); ok {
				vm.Template = t
			}
			if ds, ok := p["datastore"].(types.ArrayOfManagedObjectReference); ok {
				for _, d := range ds.ManagedObjectReference {
					vm.Datastores = append(vm.Datastores, name(d))
				}
			}
			inv.VMs = append(inv.VMs, vm)
		case "Datastore":
			d := api.VSphereDatastore{ID: ref.Value, Name: name(ref), Datacenter: datacenter(ref), Type: str(p, "summary.type")}
			d.CapacityBytes, _ = p["summary.capacity"].(int64)
			d.FreeBytes, _ = p["summary.freeSpace"].(int64)
			if d.CapacityBytes > 0 {
				d.UsedPercent = 100 * float64(d.CapacityBytes-d.FreeBytes) / float64(d.CapacityBytes)
			}
			inv.Datastores = append(inv.Datastores, d)
		}
	}
	sort.Slice(inv.Datacenters, func(i, j int) bool { return inv.Datacenters[i].Name < inv.Datacenters[j].Name })
	sort.Slice(inv.Clusters, func(i, j int) bool { return inv.Clusters[i].Name < inv.Clusters[j].Name })
	sort.Slice(inv.Hosts, func(i, j int) bool {
		return less(inv.Hosts[i].Name, inv.Hosts[i].ID, inv.Hosts[j].Name, inv.Hosts[j].ID)
	})
	sort.Slice(inv.VMs, func(i, j int) bool { return less(inv.VMs[i].Name, inv.VMs[i].ID, inv.VMs[j].Name, inv.VMs[j].ID) })
	sort.Slice(inv.Datastores, func(i, j int) bool {
		return less(inv.Datastores[i].Name, inv.Datastores[i].ID, inv.Datastores[j].Name, inv.Datastores[j].ID)
	})
	return inv
}

func less(a, aid, b, bid string) bool {
	if a != b {
		return a < b
	}
	return aid < bid
}

func stringOf(v any) string {
	type stringer interface{ String() string }
	switch x := v.(type) {
	case types.HostSystemConnectionState:
		return string(x)
	case types.HostSystemPowerState:
		return string(x)
	case types.VirtualMachinePowerState:
		return string(x)
	case stringer:
		return x.String()
	}
	return strings.TrimSpace(strings.Trim(strings.ReplaceAll(strings.TrimSpace(fmtAny(v)), "\n", " "), "{}"))
}

func fmtAny(v any) string { return fmt.Sprint(v) }
