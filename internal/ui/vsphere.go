package ui

import (
	"github.com/gantryhq/gantry/internal/api"
)

// VirtualizationPage is the Virtualization page: every vCenter with its
// hosts, their VMs (and which are Gantry nodes), datastore fill and the
// hosts' history.
type VirtualizationPage struct {
	Base
	VCenters []VCenterView
	// NotLeader is set on a server that does not lead: only the leader
	// collects.
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
