package vfio_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/vfio"
	vt "github.com/gantryhq/gantry/internal/vfio/vfiotest"
)

// The trees are fake (vfiotest): no machine here has an IOMMU or a GPU,
// so discovery has never read a real /sys with a GPU bound to vfio-pci.

// state is one GPU's verdict, compared as a string: "ready" (with the
// devices that go with it) or the reason it is not.
func state(g vfio.GPU) string {
	if !g.Ready {
		return g.NotReady
	}
	if len(g.With) > 0 {
		return "ready with " + strings.Join(g.With, ",")
	}
	return "ready"
}

func TestDiscover(t *testing.T) {
	gpu := func(addr, driver string, group int) vt.Dev {
		return vt.Dev{Addr: addr, Class: vt.Class3D, Driver: driver, Group: group}
	}
	tests := []struct {
		name string
		devs []vt.Dev
		want map[string]string // address → state
	}{
		{
			name: "a GPU on vfio-pci alone in its group is ready",
			devs: []vt.Dev{gpu("0000:01:00.0", "vfio-pci", 12)},
			want: map[string]string{"0000:01:00.0": "ready"},
		},
		{
			name: "a GPU on the NVIDIA driver is NVML's, not passthrough's",
			devs: []vt.Dev{gpu("0000:02:00.0", "nvidia", 13)},
			want: map[string]string{"0000:02:00.0": "bound to nvidia, not vfio-pci (bind it to vfio-pci, e.g. driverctl set-override 0000:02:00.0 vfio-pci)"},
		},
		{
			name: "a VGA device with no driver",
			devs: []vt.Dev{{Addr: "0000:02:00.0", Class: vt.ClassVGA, Vendor: "0x1002", Device: "0x740f", Group: 3}},
			want: map[string]string{"0000:02:00.0": "bound to no driver, not vfio-pci (bind it to vfio-pci, e.g. driverctl set-override 0000:02:00.0 vfio-pci)"},
		},
		{
			name: "the GPU's audio function still on the host's sound driver",
			devs: []vt.Dev{
				{Addr: "0000:03:00.0", Class: vt.ClassVGA, Driver: "vfio-pci", Group: 14},
				{Addr: "0000:03:00.1", Class: vt.ClassAudio, Driver: "snd_hda_intel", Group: 14},
			},
			want: map[string]string{"0000:03:00.0": "IOMMU group 14 also holds 0000:03:00.1, bound to snd_hda_intel; bind it to vfio-pci too"},
		},
		{
			name: "the audio function on vfio-pci too goes to the VM with the GPU",
			devs: []vt.Dev{
				{Addr: "0000:03:00.0", Class: vt.ClassVGA, Driver: "vfio-pci", Group: 14},
				{Addr: "0000:03:00.1", Class: vt.ClassAudio, Driver: "vfio-pci", Group: 14},
			},
			want: map[string]string{"0000:03:00.0": "ready with 0000:03:00.1"},
		},
		{
			name: "no IOMMU group: the IOMMU is off",
			devs: []vt.Dev{gpu("0000:04:00.0", "vfio-pci", vt.NoGroup)},
			want: map[string]string{"0000:04:00.0": "in no IOMMU group: the IOMMU is off (boot with intel_iommu=on or amd_iommu=on)"},
		},
		{
			name: "a bridge, an unbound device and one on pci-stub may share the group",
			devs: []vt.Dev{
				gpu("0000:05:00.0", "vfio-pci", 15),
				{Addr: "0000:00:1c.0", Class: vt.ClassBridge, Driver: "pcieport", Group: 15},
				{Addr: "0000:05:00.2", Class: "0x0c0330", Group: 15},
				{Addr: "0000:05:00.3", Class: "0x0c8000", Driver: "pci-stub", Group: 15},
			},
			want: map[string]string{"0000:05:00.0": "ready"},
		},
		{
			name: "two GPUs in one group are not offered",
			devs: []vt.Dev{gpu("0000:06:00.0", "vfio-pci", 16), gpu("0000:07:00.0", "vfio-pci", 16)},
			want: map[string]string{
				"0000:06:00.0": "IOMMU group 16 also holds the GPU 0000:07:00.0; a group goes to one VM whole and Gantry places GPUs one by one, so GPUs that share a group are not offered (put the cards in slots with their own groups, or enable ACS)",
				"0000:07:00.0": "IOMMU group 16 also holds the GPU 0000:06:00.0; a group goes to one VM whole and Gantry places GPUs one by one, so GPUs that share a group are not offered (put the cards in slots with their own groups, or enable ACS)",
			},
		},
		{
			name: "a NIC on vfio-pci is not a GPU",
			devs: []vt.Dev{{Addr: "0000:08:00.0", Class: vt.ClassNIC, Driver: "vfio-pci", Group: 17}},
			want: map[string]string{},
		},
		{
			name: "a machine without a PCI bus has no GPUs",
			want: map[string]string{},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			if err := vt.Write(root, tc.devs); err != nil {
				t.Fatal(err)
			}
			gpus, err := vfio.Discover(root)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, g := range gpus {
				got[g.Address] = state(g)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("discovered\n%v\nwant\n%v", got, tc.want)
			}
		})
	}
}

// TestDiscoverUnreadableGroup: a group whose member list is gone (the
// kernel changed it between reads) leaves its GPU not ready, saying so.
func TestDiscoverUnreadableGroup(t *testing.T) {
	root := t.TempDir()
	if err := vt.Write(root, []vt.Dev{{Addr: "0000:01:00.0", Class: vt.Class3D, Driver: "vfio-pci", Group: 9}}); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(root, "kernel", "iommu_groups", "9", "devices")); err != nil {
		t.Fatal(err)
	}
	gpus, err := vfio.Discover(root)
	if err != nil || len(gpus) != 1 || gpus[0].Ready || !strings.HasPrefix(gpus[0].NotReady, "IOMMU group 9 cannot be read: ") {
		t.Fatalf("Discover = %+v, %v; want one GPU, not ready because its group cannot be read", gpus, err)
	}
}

func TestModelOf(t *testing.T) {
	for _, tc := range []struct {
		vendor, device uint16
		model          string
		memory         int
	}{
		{0x10de, 0x2330, "NVIDIA H100 80GB HBM3", 81920},
		{0x10de, 0x20b2, "NVIDIA A100-SXM4-80GB", 81920},
		{0x10de, 0x1eb8, "Tesla T4", 15360},
		{0x10de, 0x1234, "NVIDIA 10de:1234", 0},
		{0x1002, 0x740f, "AMD 1002:740f", 0},
		{0x1af4, 0x1050, "PCI 1af4:1050", 0},
	} {
		if m, mem := vfio.ModelOf(tc.vendor, tc.device); m != tc.model || mem != tc.memory {
			t.Errorf("ModelOf(%04x, %04x) = %q, %d; want %q, %d", tc.vendor, tc.device, m, mem, tc.model, tc.memory)
		}
	}
}

// A node reports the GPUs on vfio-pci after its NVML GPUs, by PCI
// address; one that is not ready is unhealthy with the reason, and GPUs
// on other drivers stay out of the list but in the summary.
func TestNodesAndSummary(t *testing.T) {
	gpus := vfio.Classify(vfio.Snapshot{
		Devices: []vfio.PCIDevice{
			{Address: "0000:01:00.0", Class: 0x030200, Vendor: 0x10de, Device: 0x2330, Driver: "vfio-pci", IOMMUGroup: 12},
			{Address: "0000:02:00.0", Class: 0x030200, Vendor: 0x10de, Device: 0x2330, Driver: "nvidia", IOMMUGroup: 13},
			{Address: "0000:04:00.0", Class: 0x030200, Vendor: 0x10de, Device: 0x20b2, Driver: "vfio-pci", IOMMUGroup: vfio.NoGroup},
		},
		Groups: map[int][]string{12: {"0000:01:00.0"}, 13: {"0000:02:00.0"}},
	})
	got := vfio.Nodes(gpus, 2)
	want := []api.GPUDevice{
		{UUID: "0000:01:00.0", Index: 2, Model: "NVIDIA H100 80GB HBM3", Memory: 81920, PCIBusID: "0000:01:00.0", NUMANode: -1, Passthrough: true, IOMMUGroup: 12},
		{UUID: "0000:04:00.0", Index: 3, Model: "NVIDIA A100-SXM4-80GB", Memory: 81920, PCIBusID: "0000:04:00.0", NUMANode: -1, Passthrough: true, IOMMUGroup: vfio.NoGroup,
			Unhealthy: true, HealthReason: "not passthrough-ready: in no IOMMU group: the IOMMU is off (boot with intel_iommu=on or amd_iommu=on)"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Nodes\n got %+v\nwant %+v", got, want)
	}
	s := vfio.Summary(gpus)
	for _, part := range []string{"1 ready: 0000:01:00.0 (IOMMU group 12)", "0000:02:00.0 bound to nvidia", "0000:04:00.0 in no IOMMU group"} {
		if !strings.Contains(s, part) {
			t.Errorf("summary %q lacks %q", s, part)
		}
	}
	if vfio.Summary(nil) != "" {
		t.Error("a node without display devices has a passthrough summary")
	}
}

func TestQEMUDevices(t *testing.T) {
	gpus := []vfio.GPU{
		{Address: "0000:01:00.0", Ready: true, With: []string{"0000:01:00.1"}},
		{Address: "0000:02:00.0", Ready: true},
		{Address: "0000:03:00.0", NotReady: "bound to nvidia, not vfio-pci"},
	}
	tests := []struct {
		alloc   []string
		want    []string
		wantErr string
	}{
		{alloc: []string{"0000:02:00.0"}, want: []string{"0000:02:00.0"}},
		{alloc: []string{"0000:01:00.0", "0000:02:00.0"}, want: []string{"0000:01:00.0", "0000:01:00.1", "0000:02:00.0"}},
		{alloc: []string{"0000:03:00.0"}, wantErr: "GPU 0000:03:00.0 cannot be passed through to a VM: bound to nvidia, not vfio-pci"},
		{alloc: []string{"GPU-8a1f"}, wantErr: "GPU GPU-8a1f is not a PCI display device of this node"},
	}
	for _, tc := range tests {
		got, err := vfio.QEMUDevices(tc.alloc, gpus)
		switch {
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%v: error %v, want %q", tc.alloc, err, tc.wantErr)
		case tc.wantErr == "" && (err != nil || !reflect.DeepEqual(got, tc.want)):
			t.Errorf("%v: %v, %v; want %v", tc.alloc, got, err, tc.want)
		}
	}
}
