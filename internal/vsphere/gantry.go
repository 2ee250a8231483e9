package vsphere

import (
	"sort"
	"time"

	"github.com/gantryhq/gantry/internal/api"
)

// GantrySource is the name Gantry's own VMs go by beside the vCenter
// connections: the vcenter label of their gantry_vsphere_vm_* series and
// the Virtualization page's section. No connection may take it.
const GantrySource = "gantry"

// GantryVM is one of Gantry's own VMs, a qemu task of a live allocation,
// in the fields of a vCenter VM where they apply: name, power state,
// vCPUs, memory, host (the Gantry node), CPU and memory usage, and in
// VSphereVM.Gantry the allocation and job behind it. What has no Gantry
// meaning or measure (datacenter, cluster, guest OS — a qemu task does
// not declare one —, tools, CPU ready, ballooning, swapping, disk
// latency, network) stays empty.
type GantryVM struct {
	api.VSphereVM
	Alloc  string // allocation ID
	Task   string
	NodeID string
}

// GantryState is what the server knows of its VMs, for GantryVMs.
type GantryState struct {
	// Allocs are the allocations to consider; the client-terminal ones
	// are left out (nothing of a stopped VM remains).
	Allocs []*api.Allocation
	// Job is the job's current version, whose tasks name their drivers.
	Job func(namespace, name string) (*api.Job, bool)
	// NodeName names a node by ID ("" when unknown: the ID is shown).
	NodeName func(id string) string
	// Latest is a node's last usage sample, if any.
	Latest func(nodeID string) (api.NodeSample, bool)
}

// GantryVMs lists the qemu tasks of the live allocations, sorted by host
// and name. A VM is poweredOn while its task runs and poweredOff while it
// is pending or restarting; its Latest sample is its task's reading in
// its node's last sample (absent until the node has read it).
func GantryVMs(st GantryState) []GantryVM {
	var out []GantryVM
	for _, a := range st.Allocs {
		if a.ClientTerminal() {
			continue
		}
		j, ok := st.Job(a.Namespace, a.Job)
		if !ok {
			continue
		}
		var g *api.Group
		for _, x := range j.Groups {
			if x.Name == a.Group {
				g = x
			}
		}
		if g == nil {
			continue
		}
		host := st.NodeName(a.NodeID)
		if host == "" {
			host = a.NodeID
		}
		var sample api.NodeSample
		var haveSample bool
		if st.Latest != nil {
			sample, haveSample = st.Latest(a.NodeID)
		}
		for _, t := range g.Tasks {
			if t.Driver != api.DriverQEMU {
				continue
			}
			cpu := t.Resources.CPU
			if r := a.Resources[t.Name]; r != nil && r.CPU > 0 {
				cpu = r.CPU
			}
			vm := GantryVM{Alloc: a.ID, Task: t.Name, NodeID: a.NodeID, VSphereVM: api.VSphereVM{
				ID: a.ID + "/" + t.Name, Name: a.Name() + "." + t.Name, Host: host, PowerState: "poweredOff",
				VCPU: api.QEMUVCPUs(cpu), MemoryMiB: t.Resources.Memory,
				Gantry: &api.VSphereGantryTask{Namespace: a.Namespace, Job: a.Job, Group: a.Group, Alloc: a.ID, Task: t.Name, NodeID: a.NodeID},
			}}
			if ts := a.TaskStates[t.Name]; ts != nil && ts.State == api.TaskRunning {
				vm.PowerState = "poweredOn"
			}
			if haveSample && vm.PowerState == "poweredOn" {
				for _, s := range sample.Allocs {
					if s.Alloc == a.ID && s.Task == t.Name {
						x := GantrySample(vm.VSphereVM, sample.Time, s)
						vm.Latest = &x
					}
				}
			}
			out = append(out, vm)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Host != out[j].Host {
			return out[i].Host < out[j].Host
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// GantrySample is one reading of a Gantry VM in vCenter's terms: CPU usage
// in percent of its vCPUs (vCenter's cpu.usage of a VM), memory usage as
// QEMU's resident memory in percent of the guest's RAM. The second counts
// QEMU's own memory too (device models, and under software emulation its
// translation cache), so it can pass 100; vCenter's figure is the guest's
// active memory, which Gantry cannot see without an agent in the guest.
func GantrySample(vm api.VSphereVM, at time.Time, s api.AllocSample) api.VSphereSample {
	x := api.VSphereSample{Time: at}
	if s.CPUUsed != nil && vm.VCPU > 0 {
		x.CPUUsage = float32(float64(*s.CPUUsed) / float64(vm.VCPU*1000) * 100)
	}
	if vm.MemoryMiB > 0 {
		x.MemUsage = float32(float64(s.MemoryBytes) / float64(int64(vm.MemoryMiB)<<20) * 100)
	}
	return x
}

// GantryStatus is Gantry's own VMs as one more entry of the vSphere
// status, named GantrySource: always connected (the VMs are the
// cluster's own), its hosts the nodes that run them; with full, the VMs
// themselves, as GantryVMs listed them. It is the API's and the CLI's
// view of the list the Virtualization page and the gantry_vsphere_vm_*
// series show.
func GantryStatus(vms []GantryVM, full bool) api.VSphereStatus {
	st := api.VSphereStatus{Connection: api.VSphereConnection{Name: GantrySource}, Connected: true}
	hosts := map[string]bool{}
	for _, vm := range vms {
		hosts[vm.NodeID] = true
		if full {
			st.VMs = append(st.VMs, vm.VSphereVM)
		}
	}
	st.Counts.Hosts, st.Counts.VMs = len(hosts), len(vms)
	return st
}
