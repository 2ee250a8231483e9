package ui

import (
	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/vsphere"
)

// VirtualizationPage is the Virtualization page: every vCenter with its
// hosts, their VMs (and which are Gantry nodes), datastore fill and the
// hosts' history.
type VirtualizationPage struct {
	Base
	VCenters []VCenterView
	// Gantry is Gantry's own VMs (qemu tasks), the section beside the
	// vCenters.
	Gantry GantryView
	// NotLeader is set on a server that does not lead and could not
	// forward the page to the leader, which alone collects.
	NotLeader bool
}

// VCenterView is one connection on the Virtualization page.
type VCenterView struct {
	Status     api.VSphereStatus
	Hosts      []HostView
	Datastores []DatastoreView
	Charts     []Chart
	// Shown and Total count the hosts listed (the page lists at most
	// MaxHosts of them).
	Shown, Total int
}

// DatastoreView is a datastore with its capacity in GiB.
type DatastoreView struct {
	api.VSphereDatastore
	CapacityGiB float64
}

// HostView is a host with its VMs.
type HostView struct {
	Host api.VSphereHost
	VMs  []api.VSphereVM
}

// MaxHosts bounds the hosts one vCenter lists on the page; the API and
// CLI have them all.
const MaxHosts = 50

// maxChartHosts bounds the hosts drawn in one chart.
const maxChartHosts = 8

// BuildVCenter groups a status's VMs under their hosts and draws the
// history of the first hosts: CPU usage, CPU ready and memory usage.
func BuildVCenter(st api.VSphereStatus, history func(hostID string) []api.VSphereSample) VCenterView {
	v := VCenterView{Status: st, Total: len(st.Hosts)}
	byHost := map[string][]api.VSphereVM{}
	for _, vm := range st.VMs {
		byHost[vm.Host] = append(byHost[vm.Host], vm)
	}
	for i, h := range st.Hosts {
		if i >= MaxHosts {
			break
		}
		v.Hosts = append(v.Hosts, HostView{Host: h, VMs: byHost[h.Name]})
	}
	v.Shown = len(v.Hosts)
	for _, d := range st.Datastores {
		v.Datastores = append(v.Datastores, DatastoreView{VSphereDatastore: d, CapacityGiB: float64(d.CapacityBytes) / (1 << 30)})
	}
	prefix := "vs-" + st.Connection.Name
	cpu := Chart{ID: prefix + "-cpu", Title: "Host CPU usage", Unit: "%", Max: 100}
	ready := Chart{ID: prefix + "-ready", Title: "Host CPU ready", Unit: "%"}
	mem := Chart{ID: prefix + "-mem", Title: "Host memory usage", Unit: "%", Max: 100}
	for i, h := range st.Hosts {
		if i >= maxChartHosts {
			break
		}
		sc, sr, sm := Series{Name: h.Name}, Series{Name: h.Name}, Series{Name: h.Name}
		for _, s := range history(h.ID) {
			sc.Points = append(sc.Points, Point{s.Time, float64(s.CPUUsage)})
			sr.Points = append(sr.Points, Point{s.Time, float64(s.CPUReady)})
			sm.Points = append(sm.Points, Point{s.Time, float64(s.MemUsage)})
		}
		if len(sc.Points) > 0 {
			cpu.Series, ready.Series, mem.Series = append(cpu.Series, sc), append(ready.Series, sr), append(mem.Series, sm)
		}
	}
	if len(cpu.Series) > 0 {
		v.Charts = []Chart{cpu, ready, mem}
	}
	return v
}

// GantryView is the Virtualization page's Gantry section: Gantry's own
// VMs under the nodes that run them, in the columns of a vCenter's VMs,
// and the history of their CPU and memory usage.
type GantryView struct {
	Hosts  []GantryHost
	Charts []Chart
	// Count is how many VMs there are; Shown how many are listed (at
	// most MaxGantryVMs).
	Count, Shown int
}

// GantryHost is a Gantry node with the VMs it runs.
type GantryHost struct {
	Name   string
	NodeID string
	VMs    []vsphere.GantryVM
}

// MaxGantryVMs bounds the Gantry VMs the page lists.
const MaxGantryVMs = 200

// BuildGantry groups Gantry's VMs (sorted by host, as vsphere.GantryVMs
// returns them) under their nodes and draws the history of the first
// ones from their nodes' samples: CPU usage in percent of their vCPUs
// and memory usage in percent of their RAM, as in their Latest figures.
func BuildGantry(vms []vsphere.GantryVM, history func(nodeID string) []api.NodeSample) GantryView {
	v := GantryView{Count: len(vms)}
	for i, vm := range vms {
		if i >= MaxGantryVMs {
			break
		}
		if n := len(v.Hosts); n == 0 || v.Hosts[n-1].NodeID != vm.NodeID {
			v.Hosts = append(v.Hosts, GantryHost{Name: vm.Host, NodeID: vm.NodeID})
		}
		h := &v.Hosts[len(v.Hosts)-1]
		h.VMs = append(h.VMs, vm)
		v.Shown++
	}
	cpu := Chart{ID: "gantry-vm-cpu", Title: "Gantry VM CPU usage", Unit: "%", Max: 100}
	mem := Chart{ID: "gantry-vm-mem", Title: "Gantry VM memory usage", Unit: "%"}
	hist := map[string][]api.NodeSample{}
	for i, vm := range vms {
		if i >= maxChartHosts {
			break
		}
		samples, ok := hist[vm.NodeID]
		if !ok {
			samples = history(vm.NodeID)
			hist[vm.NodeID] = samples
		}
		sc, sm := Series{Name: vm.Name}, Series{Name: vm.Name}
		for _, ns := range samples {
			for _, t := range ns.Allocs {
				if t.Alloc != vm.Alloc || t.Task != vm.Task {
					continue
				}
				x := vsphere.GantrySample(vm.VSphereVM, ns.Time, t)
				if t.CPUUsed != nil {
					sc.Points = append(sc.Points, Point{ns.Time, float64(x.CPUUsage)})
				}
				sm.Points = append(sm.Points, Point{ns.Time, float64(x.MemUsage)})
			}
		}
		if len(sc.Points) > 0 {
			cpu.Series = append(cpu.Series, sc)
		}
		if len(sm.Points) > 0 {
			mem.Series = append(mem.Series, sm)
		}
	}
	for _, c := range []Chart{cpu, mem} {
		if len(c.Series) > 0 {
			v.Charts = append(v.Charts, c)
		}
	}
	return v
}
