package ui

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/vsphere"
)

// TestVirtualizationGantrySection: Gantry's own VMs are listed under
// their nodes beside the vCenters, in vCenter's columns, with charts of
// their history drawn from their nodes' samples.
func TestVirtualizationGantrySection(t *testing.T) {
	cpu := func(v int) *int { return &v }
	vms := []vsphere.GantryVM{
		{Alloc: "a1", Task: "vm", NodeID: "n1", VSphereVM: api.VSphereVM{ID: "a1/vm", Name: "legacy.app[1].vm", Host: "node-1", PowerState: "poweredOff", VCPU: 2, MemoryMiB: 512}},
		{Alloc: "a0", Task: "vm", NodeID: "n2", VSphereVM: api.VSphereVM{ID: "a0/vm", Name: "legacy.app[0].vm", Host: "node-2", PowerState: "poweredOn", VCPU: 2, MemoryMiB: 512,
			Latest: &api.VSphereSample{Time: t0, CPUUsage: 37.5, MemUsage: 75}}},
	}
	history := func(node string) []api.NodeSample {
		if node != "n2" {
			return nil
		}
		return []api.NodeSample{
			{Time: t0.Add(-10 * time.Second), Allocs: []api.AllocSample{{Alloc: "a0", Task: "vm", MemoryBytes: 256 << 20}}},
			{Time: t0, Allocs: []api.AllocSample{{Alloc: "a0", Task: "vm", CPUUsed: cpu(750), MemoryBytes: 384 << 20}, {Alloc: "other", Task: "vm", CPUUsed: cpu(1)}}},
		}
	}
	g := BuildGantry(vms, history)
	if g.Count != 2 || g.Shown != 2 || len(g.Hosts) != 2 || g.Hosts[0].Name != "node-1" || g.Hosts[1].VMs[0].Alloc != "a0" {
		t.Fatalf("view %+v", g)
	}
	if len(g.Charts) != 2 || g.Charts[0].ID != "gantry-vm-cpu" || len(g.Charts[0].Series) != 1 || len(g.Charts[0].Series[0].Points) != 1 ||
		g.Charts[0].Series[0].Points[0].V != 37.5 || len(g.Charts[1].Series[0].Points) != 2 || g.Charts[1].Series[0].Points[0].V != 50 {
		t.Errorf("charts %+v (CPU from the one sample that has a rate, memory from both)", g.Charts)
	}

	var b bytes.Buffer
	p := VirtualizationPage{Base: Base{Page: "virtualization", Title: "Virtualization", Index: 7, Now: t0}, Gantry: g}
	if err := Render(&b, "virtualization", p); err != nil {
		t.Fatal(err)
	}
	h := b.String()
	for _, want := range []string{`id="vc-gantry"`, `data-gantry-host="node-2"`, `data-gantry-vm="legacy.app[0].vm"`, "poweredOn", "poweredOff",
		`<td>37.5</td><td>75.0</td>`, `href="/ui/allocations/a0"`, `href="/ui/nodes/n2"`, "No vCenter connected", `gantry-vm-cpu`} {
		if !strings.Contains(h, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	b.Reset()
	p.Gantry = BuildGantry(nil, history)
	if err := Render(&b, "virtualization", p); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "Gantry runs no VM now") {
		t.Error("no sentence for a cluster without VMs")
	}
}
