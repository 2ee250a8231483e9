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
