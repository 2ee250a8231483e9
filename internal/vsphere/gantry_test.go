package vsphere_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/metrics"
	"github.com/gantryhq/gantry/internal/vsphere"
	dto "github.com/prometheus/client_model/go"
)

var gantryT0 = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)

// gantryState is a cluster with one job mixing a VM and a process, two
// replicas on two nodes (one VM running, one restarting), a stopped
// replica, and a job without VMs.
func gantryState() vsphere.GantryState {
	mixed := &api.Job{Name: "legacy", Namespace: "default", Groups: []*api.Group{{Name: "app", Tasks: []*api.Task{
		{Name: "vm", Driver: api.DriverQEMU, Resources: api.Resources{CPU: 1500, Memory: 512}},
		{Name: "sidecar", Driver: api.DriverExec, Resources: api.Resources{CPU: 100, Memory: 32}},
	}}}}
	plain := &api.Job{Name: "web", Namespace: "default", Groups: []*api.Group{{Name: "web", Tasks: []*api.Task{{Name: "t", Driver: api.DriverDocker}}}}}
	running := map[string]*api.TaskState{"vm": {State: api.TaskRunning}, "sidecar": {State: api.TaskRunning}}
	allocs := []*api.Allocation{
		{ID: "a0", Namespace: "default", Job: "legacy", Group: "app", Index: 0, NodeID: "n2", ClientStatus: api.AllocRunning, TaskStates: running,
			Resources: map[string]*api.AllocatedResources{"vm": {CPU: 1500, Memory: 512 + api.QEMUMemoryOverhead}}},
		{ID: "a1", Namespace: "default", Job: "legacy", Group: "app", Index: 1, NodeID: "n1", ClientStatus: api.AllocRunning,
			TaskStates: map[string]*api.TaskState{"vm": {State: api.TaskPending}}},
		{ID: "a2", Namespace: "default", Job: "legacy", Group: "app", Index: 2, NodeID: "n1", ClientStatus: api.AllocComplete},
		{ID: "w0", Namespace: "default", Job: "web", Group: "web", NodeID: "n1", ClientStatus: api.AllocRunning},
	}
	cpu := 750
	return vsphere.GantryState{
		Allocs: allocs,
		Job: func(ns, name string) (*api.Job, bool) {
			for _, j := range []*api.Job{mixed, plain} {
				if j.Namespace == ns && j.Name == name {
					return j, true
				}
			}
			return nil, false
		},
		NodeName: func(id string) string { return map[string]string{"n1": "node-1", "n2": "node-2"}[id] },
		Latest: func(node string) (api.NodeSample, bool) {
			if node != "n2" {
				return api.NodeSample{}, false
			}
			return api.NodeSample{Time: gantryT0, Allocs: []api.AllocSample{
				{Alloc: "a0", Task: "vm", CPUUsed: &cpu, MemoryBytes: 384 << 20},
				{Alloc: "a0", Task: "sidecar", MemoryBytes: 1 << 20},
			}}, true
		},
	}
}

func TestGantryVMs(t *testing.T) {
	got := vsphere.GantryVMs(gantryState())
	want := []vsphere.GantryVM{
		{Alloc: "a1", Task: "vm", NodeID: "n1", VSphereVM: api.VSphereVM{ID: "a1/vm", Name: "legacy.app[1].vm", Host: "node-1",
			PowerState: "poweredOff", VCPU: 2, MemoryMiB: 512,
			Gantry: &api.VSphereGantryTask{Namespace: "default", Job: "legacy", Group: "app", Alloc: "a1", Task: "vm", NodeID: "n1"}}},
		{Alloc: "a0", Task: "vm", NodeID: "n2", VSphereVM: api.VSphereVM{ID: "a0/vm", Name: "legacy.app[0].vm", Host: "node-2",
			PowerState: "poweredOn", VCPU: 2, MemoryMiB: 512,
			Latest: &api.VSphereSample{Time: gantryT0, CPUUsage: 37.5, MemUsage: 75},
			Gantry: &api.VSphereGantryTask{Namespace: "default", Job: "legacy", Group: "app", Alloc: "a0", Task: "vm", NodeID: "n2"}}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%+v\nwant\n%+v", got, want)
		for _, v := range got {
			t.Logf("%s latest %+v", v.Name, v.Latest)
		}
	}
}

// TestGantryVMSeries: Gantry's VMs are in the gantry_vsphere_vm_* series
// with vcenter="gantry" and the VM's node as host; of the performance
// series only CPU and memory usage, and only for a VM that runs and has
// been sampled.
func TestGantryVMSeries(t *testing.T) {
	st := gantryState()
	reg := metrics.NewBareRegistry()
	reg.MustRegister(vsphere.NewMetrics(func() []*vsphere.Collector { return nil }, func() []vsphere.GantryVM { return vsphere.GantryVMs(st) }))
	fams, err := reg.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]map[string]float64{}
	for _, f := range fams {
		for _, m := range f.Metric {
			got[f.GetName()+labelString(m)] = map[string]float64{"": m.GetGauge().GetValue()}
		}
	}
	l := func(host, vm string) string {
		return `{cluster="",datacenter="",host="` + host + `",vcenter="gantry",vm="` + vm + `"}`
	}
	want := map[string]float64{
		"gantry_vsphere_vm_powered_on" + l("node-2", "legacy.app[0].vm"):           1,
		"gantry_vsphere_vm_powered_on" + l("node-1", "legacy.app[1].vm"):           0,
		"gantry_vsphere_vm_cpu_usage_percent" + l("node-2", "legacy.app[0].vm"):    37.5,
		"gantry_vsphere_vm_memory_usage_percent" + l("node-2", "legacy.app[0].vm"): 75,
	}
	if len(got) != len(want) {
		t.Errorf("%d series, want %d: %v", len(got), len(want), got)
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g[""] != v {
			t.Errorf("%s = %v, want %v", k, g, v)
		}
	}
}

func labelString(m *dto.Metric) string {
	s := "{"
	for i, p := range m.GetLabel() {
		if i > 0 {
			s += ","
		}
		s += p.GetName() + `="` + p.GetValue() + `"`
	}
	return s + "}"
}

// TestGantryStatus: Gantry's VMs as an entry of the vSphere status count
// the nodes that run them as hosts, and list the VMs only when asked for
// the full status.
func TestGantryStatus(t *testing.T) {
	vm := func(id, node string) vsphere.GantryVM {
		return vsphere.GantryVM{Alloc: id, Task: "vm", NodeID: node, VSphereVM: api.VSphereVM{ID: id + "/vm", Name: id, Host: "name-" + node}}
	}
	for _, tc := range []struct {
		name         string
		vms          []vsphere.GantryVM
		full         bool
		hosts, count int
		listed       []string
	}{
		{name: "none", full: true},
		{name: "two on one node, counts only", vms: []vsphere.GantryVM{vm("a", "n1"), vm("b", "n1")}, hosts: 1, count: 2},
		{name: "two on one node, full", vms: []vsphere.GantryVM{vm("a", "n1"), vm("b", "n1")}, full: true, hosts: 1, count: 2, listed: []string{"a/vm", "b/vm"}},
		{name: "three on two nodes", vms: []vsphere.GantryVM{vm("a", "n1"), vm("b", "n2"), vm("c", "n2")}, full: true, hosts: 2, count: 3, listed: []string{"a/vm", "b/vm", "c/vm"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := vsphere.GantryStatus(tc.vms, tc.full)
			if st.Connection.Name != vsphere.GantrySource || !st.Connected {
				t.Errorf("connection %q connected %v, want %q and connected", st.Connection.Name, st.Connected, vsphere.GantrySource)
			}
			if st.Counts.Hosts != tc.hosts || st.Counts.VMs != tc.count {
				t.Errorf("counts %d hosts %d VMs, want %d and %d", st.Counts.Hosts, st.Counts.VMs, tc.hosts, tc.count)
			}
			var listed []string
			for _, v := range st.VMs {
				listed = append(listed, v.ID)
			}
			if !reflect.DeepEqual(listed, tc.listed) {
				t.Errorf("listed %v, want %v", listed, tc.listed)
			}
		})
	}
}
