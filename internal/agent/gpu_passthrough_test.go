package agent

import (
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/internal/api"
	vt "github.com/gantryhq/gantry/internal/vfio/vfiotest"
)

// TestPassthroughFingerprint: the GPUs bound to vfio-pci that a fake
// sysfs shows (no machine here has an IOMMU or a GPU) are in the node's
// fingerprint, by PCI address with their IOMMU group, marked
// passthrough; one that is not ready is unhealthy with the reason; the
// attribute gpu.passthrough sums it up; a node told NoPassthrough lists
// none of them; and prepare lets a VM's
// passthrough GPU through to the qemu driver, which checks its binding.
func TestPassthroughFingerprint(t *testing.T) {
	root := t.TempDir()
	err := vt.Write(root, []vt.Dev{
		{Addr: "0000:01:00.0", Class: vt.Class3D, Driver: "vfio-pci", Group: 12},
		{Addr: "0000:02:00.0", Class: vt.ClassVGA, Vendor: "0x10de", Device: "0x1eb8", Driver: "vfio-pci", Group: 13},
		{Addr: "0000:02:00.1", Class: vt.ClassAudio, Driver: "snd_hda_intel", Group: 13},
		{Addr: "0000:03:00.0", Class: vt.Class3D, Driver: "nvidia", Group: 14},
	})
	if err != nil {
		t.Fatal(err)
	}
	g := newGPUManager(GPUConfig{SysfsRoot: root, MPSPipeDir: t.TempDir()}, t.TempDir(), slog.New(slog.NewTextHandler(io.Discard, nil)), func() {})
	n := &api.Node{Attributes: map[string]string{}}
	g.fingerprint(n)
	if len(n.GPUs) != 2 {
		t.Fatalf("GPUs %+v, want the two on vfio-pci", n.GPUs)
	}
	ready, sick := n.GPUs[0], n.GPUs[1]
	if ready.UUID != "0000:01:00.0" || ready.Index != 0 || !ready.Passthrough || ready.IOMMUGroup != 12 ||
		ready.Model != "NVIDIA H100 80GB HBM3" || ready.Memory != 81920 || ready.Unhealthy {
		t.Errorf("ready GPU %+v", ready)
	}
	if sick.UUID != "0000:02:00.0" || sick.Index != 1 || !sick.Passthrough || !sick.Unhealthy || sick.Model != "Tesla T4" ||
		sick.HealthReason != "not passthrough-ready: IOMMU group 13 also holds 0000:02:00.1, bound to snd_hda_intel; bind it to vfio-pci too" {
		t.Errorf("GPU that is not ready %+v", sick)
	}
	if got := n.Attributes["gpu.count"]; got != "2" {
		t.Errorf("gpu.count = %q", got)
	}
	s := n.Attributes["gpu.passthrough"]
	for _, part := range []string{"1 ready: 0000:01:00.0 (IOMMU group 12)", "0000:02:00.0 IOMMU group 13 also holds", "0000:03:00.0 bound to nvidia"} {
		if !strings.Contains(s, part) {
			t.Errorf("gpu.passthrough = %q, lacks %q", s, part)
		}
	}
	// A simulated node (NoPassthrough) does not look at the same tree.
	sim := newGPUManager(GPUConfig{SysfsRoot: root, MPSPipeDir: t.TempDir(), NoPassthrough: true}, t.TempDir(), slog.New(slog.NewTextHandler(io.Discard, nil)), func() {})
	sn := &api.Node{Attributes: map[string]string{}}
	sim.fingerprint(sn)
	if len(sn.GPUs) != 0 || sn.Attributes["gpu.passthrough"] != "" {
		t.Errorf("a node with NoPassthrough fingerprinted GPUs %+v, gpu.passthrough %q", sn.GPUs, sn.Attributes["gpu.passthrough"])
	}
	vm := &api.AllocatedResources{GPU: &api.AllocatedGPU{Devices: []string{"0000:01:00.0"}}}
	if out, _, _, err := g.prepare(vm); err != nil || out != vm {
		t.Errorf("prepare of a passthrough GPU: %v, %v", out, err)
	}
	if _, _, _, err := g.prepare(&api.AllocatedResources{GPU: &api.AllocatedGPU{Devices: []string{"0000:09:00.0"}}}); err == nil {
		t.Error("prepare accepted a GPU the node does not have")
	}
}
