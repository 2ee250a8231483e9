package scheduler_test

import (
	"strings"
	"testing"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/scheduler"
	. "github.com/gantryhq/gantry/internal/scheduler/schedtest"
)

func qemuNode(kvm string) NodeOpt {
	return func(n *api.Node) {
		n.Drivers[api.DriverQEMU] = api.DriverInfo{Detected: true, Healthy: true, Version: "7.2.22"}
		if n.Attributes == nil {
			n.Attributes = map[string]string{}
		}
		n.Attributes["driver.qemu.kvm"] = kvm
	}
}

func vm(accel string) TaskOpt {
	return func(t *api.Task) {
		t.Driver = api.DriverQEMU
		t.Config = api.TaskConfig{Kernel: "/k", Accelerator: accel}
	}
}

// TestQEMUKVMPlacement: accelerator kvm goes only to nodes whose qemu
// driver found KVM, and with none the explanation names the accelerator.
func TestQEMUKVMPlacement(t *testing.T) {
	h := New(scheduler.Config{})
	h.AddNodes(Nodes(2, "tcg", qemuNode("false"))...)
	p := mustRun(t, h, Job("soft", Group("g", 1, Task("vm", 1000, 256, vm(api.AccelAuto)))))
	if len(p.Placed) != 1 {
		t.Fatalf("accelerator auto placed %d, want 1 on a node without KVM", len(p.Placed))
	}
	p, err := h.Schedule(Job("hw", Group("g", 1, Task("vm", 1000, 256, vm(api.AccelKVM)))))
	if err != nil {
		t.Fatal(err)
	}
	ex := p.Failed["g"]
	if len(p.Placed) != 0 || ex == nil || !strings.Contains(ex.String(), `accelerator kvm of task "vm"`) {
		t.Fatalf("placed %d, explanation %v; want none placed and the accelerator named", len(p.Placed), ex)
	}
	h.AddNodes(Node("kvm", qemuNode("true")))
	p = mustRun(t, h, Job("hw", Group("g", 1, Task("vm", 1000, 256, vm(api.AccelKVM)))))
	if len(p.Placed) != 1 || p.Placed[0].NodeName != "kvm" {
		t.Fatalf("placed %v, want the KVM node", NodeNames(p))
	}
}

// TestQEMUMemoryOverhead: a VM's allocation holds its guest memory plus
// the per-VM overhead, and a node fits only as many VMs as that allows.
func TestQEMUMemoryOverhead(t *testing.T) {
	h := New(scheduler.Config{})
	h.AddNodes(Node("n", CPU(16000), Memory(3*(256+api.QEMUMemoryOverhead)+100), qemuNode("false")))
	p, err := h.Schedule(Job("vms", Group("g", 4, Task("vm", 100, 256, vm("")))))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Placed) != 3 {
		t.Fatalf("placed %d VMs, want 3: each accounts 256 MiB + %d MiB overhead", len(p.Placed), api.QEMUMemoryOverhead)
	}
	if got := p.Placed[0].Resources["vm"].Memory; got != 256+api.QEMUMemoryOverhead {
		t.Errorf("allocated memory %d, want %d", got, 256+api.QEMUMemoryOverhead)
	}
}

// TestPassthroughGPUs: GPUs bound to vfio-pci go to VMs only, and VMs get
// no other GPUs; a request no node can serve is an explanation that says
// which kind of GPU is missing, not a wait.
func TestPassthroughGPUs(t *testing.T) {
	nvml := GPUs(2, "NVIDIA A100-SXM4-80GB", 81920)
	pt := GPUs(2, "NVIDIA H100 80GB HBM3", 81920, Passthrough())
	ptSick := GPUs(1, "NVIDIA H100 80GB HBM3", 81920, Passthrough(), Unhealthy(0))
	vmGPUs := func(n int, model string) TaskOpt {
		return func(t *api.Task) { vm("")(t); WholeGPUs(n, model)(t) }
	}
	exec := func(n int) TaskOpt {
		return func(t *api.Task) { Driver(api.DriverExec)(t); WholeGPUs(n, "")(t) }
	}
	tests := []struct {
		name  string
		nodes []*api.Node
		tasks []GroupOpt
		// want: the node of the one replica and, per task, whether its
		// GPUs are passthrough ones; or the explanation's words.
		node    string
		ptTasks map[string]bool
		explain string
	}{
		{
			name:  "a VM goes to the node with passthrough GPUs",
			nodes: []*api.Node{Node("nv", qemuNode("true"), nvml), Node("pt", qemuNode("true"), pt)},
			tasks: []GroupOpt{Task("vm", 1000, 256, vmGPUs(2, ""))},
			node:  "pt", ptTasks: map[string]bool{"vm": true},
		},
		{
			name:  "a process goes to the NVML GPUs",
			nodes: []*api.Node{Node("nv", qemuNode("true"), nvml), Node("pt", qemuNode("true"), pt)},
			tasks: []GroupOpt{Task("p", 100, 64, exec(2))},
			node:  "nv", ptTasks: map[string]bool{"p": false},
		},
		{
			name:  "a model glob matches a passthrough GPU's model from its PCI ids",
			nodes: []*api.Node{Node("nv", qemuNode("true"), GPUs(2, "NVIDIA H100 80GB HBM3", 81920)), Node("pt", qemuNode("true"), pt)},
			tasks: []GroupOpt{Task("vm", 1000, 256, vmGPUs(1, "H100*"))},
			node:  "pt", ptTasks: map[string]bool{"vm": true},
		},
		{
			name:  "one node with both kinds: a VM and a process of one group each get their own kind",
			nodes: []*api.Node{Node("both", qemuNode("true"), nvml, pt)},
			tasks: []GroupOpt{Task("vm", 1000, 256, vmGPUs(2, "")), Task("p", 100, 64, exec(2))},
			node:  "both", ptTasks: map[string]bool{"vm": true, "p": false},
		},
		{
			name:    "a process on a cluster whose only GPUs are passed through",
			nodes:   []*api.Node{Node("pt", qemuNode("true"), pt)},
			tasks:   []GroupOpt{Task("p", 100, 64, exec(1))},
			explain: "GPUs bound to vfio-pci, for VMs only",
		},
		{
			name:    "a VM on a cluster without passthrough GPUs",
			nodes:   []*api.Node{Node("nv", qemuNode("true"), nvml)},
			tasks:   []GroupOpt{Task("vm", 1000, 256, vmGPUs(1, ""))},
			explain: "no GPU bound to vfio-pci for passthrough to a VM",
		},
		{
			name:    "a VM asking more passthrough GPUs than a node has, though NVML GPUs would make up the count",
			nodes:   []*api.Node{Node("both", qemuNode("true"), nvml, pt)},
			tasks:   []GroupOpt{Task("vm", 1000, 256, vmGPUs(3, ""))},
			explain: "GPUs exhausted: 3 idle needed",
		},
		{
			name:    "a passthrough GPU that is not ready is not given",
			nodes:   []*api.Node{Node("pt", qemuNode("true"), ptSick)},
			tasks:   []GroupOpt{Task("vm", 1000, 256, vmGPUs(1, ""))},
			explain: "passthrough GPUs not ready",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := New(scheduler.Config{})
			h.AddNodes(tc.nodes...)
			p, err := h.Schedule(Job("j", Group("g", 1, tc.tasks...)))
			if err != nil {
				t.Fatal(err)
			}
			if tc.explain != "" {
				ex := p.Failed["g"]
				if len(p.Placed) != 0 || ex == nil || !strings.Contains(ex.String(), tc.explain) {
					t.Fatalf("placed %v, explanation %v; want none placed and %q", NodeNames(p), ex, tc.explain)
				}
				return
			}
			if len(p.Placed) != 1 || p.Placed[0].NodeName != tc.node {
				t.Fatalf("placed on %v (%v), want %s", NodeNames(p), p.Failed["g"], tc.node)
			}
			a := p.Placed[0]
			kind := map[string]bool{}
			for _, g := range h.Snapshot().Nodes {
				for _, d := range g.GPUs {
					kind[d.UUID] = d.Passthrough
				}
			}
			for task, wantPT := range tc.ptTasks {
				g := a.Resources[task].GPU
				if g == nil || len(g.Devices) == 0 {
					t.Fatalf("task %s holds no GPU", task)
				}
				for _, u := range g.Devices {
					if kind[u] != wantPT {
						t.Errorf("task %s was given %s (passthrough %v), want passthrough %v", task, u, kind[u], wantPT)
					}
				}
			}
		})
	}
}
