package qemu

import (
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// fakeSysfs builds a sysfs tree: the real /sys cannot be used, since no
// machine here has an IOMMU or a GPU. Each device is address → class,
// driver ("" none) and IOMMU group (-1 none).
type fakeDev struct {
	class, driver string
	group         int
}

func fakeSysfs(t *testing.T, devs map[string]fakeDev) string {
	t.Helper()
	root := t.TempDir()
	drivers := filepath.Join(root, "bus", "pci", "drivers")
	for addr, d := range devs {
		dir := filepath.Join(root, "devices", "pci0000:00", addr)
		must(t, os.MkdirAll(dir, 0o755))
		must(t, os.WriteFile(filepath.Join(dir, "class"), []byte(d.class+"\n"), 0o644))
		must(t, os.WriteFile(filepath.Join(dir, "vendor"), []byte("0x10de\n"), 0o644))
		must(t, os.WriteFile(filepath.Join(dir, "device"), []byte("0x2330\n"), 0o644))
		if d.driver != "" {
			must(t, os.MkdirAll(filepath.Join(drivers, d.driver), 0o755))
			must(t, os.Symlink(filepath.Join(drivers, d.driver), filepath.Join(dir, "driver")))
		}
		if d.group >= 0 {
			g := filepath.Join(root, "kernel", "iommu_groups", itoa(d.group))
			must(t, os.MkdirAll(filepath.Join(g, "devices"), 0o755))
			must(t, os.Symlink(g, filepath.Join(dir, "iommu_group")))
			must(t, os.Symlink(dir, filepath.Join(g, "devices", addr)))
		}
		must(t, os.MkdirAll(filepath.Join(root, "bus", "pci", "devices"), 0o755))
		must(t, os.Symlink(dir, filepath.Join(root, "bus", "pci", "devices", addr)))
	}
	return root
}

func itoa(n int) string { return strconv.Itoa(n) }

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestDiscoverGPUs(t *testing.T) {
	root := fakeSysfs(t, map[string]fakeDev{
		"0000:01:00.0": {"0x030200", "vfio-pci", 12}, // ready
		"0000:02:00.0": {"0x030200", "nvidia", 13},   // host driver
		"0000:03:00.0": {"0x030000", "vfio-pci", 14}, // its audio function is still on the host
		"0000:03:00.1": {"0x040300", "snd_hda_intel", 14},
		"0000:04:00.0": {"0x030200", "vfio-pci", -1}, // no IOMMU
		"0000:05:00.0": {"0x030200", "vfio-pci", 15}, // shares a group with a bridge: fine
		"0000:00:1c.0": {"0x060400", "pcieport", 15},
		"0000:06:00.0": {"0x020000", "e1000e", 16}, // a NIC: not a GPU
	})
	gpus, err := DiscoverGPUs(root)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, g := range gpus {
		state := "ready"
		if !g.Ready {
			state = g.NotReady
		}
		got[g.Address] = state
	}
	want := map[string]string{
		"0000:01:00.0": "ready",
		"0000:02:00.0": "bound to nvidia, not vfio-pci",
		"0000:03:00.0": "IOMMU group 14 also holds 0000:03:00.1, bound to snd_hda_intel; bind it to vfio-pci too",
		"0000:04:00.0": "in no IOMMU group (is the IOMMU on? intel_iommu=on or amd_iommu=on)",
		"0000:05:00.0": "ready",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("discovered\n%v\nwant\n%v", got, want)
	}
	if gpus[0].IOMMUGroup != 12 || gpus[0].Vendor != "0x10de" {
		t.Errorf("first GPU %+v", gpus[0])
	}

	devs, err := vfioDevices([]string{"0000:01:00.0", "0000:05:00.0"}, gpus)
	if err != nil || !reflect.DeepEqual(devs, []string{"0000:01:00.0", "0000:05:00.0"}) {
		t.Errorf("vfioDevices = %v, %v", devs, err)
	}
	if _, err := vfioDevices([]string{"0000:02:00.0"}, gpus); err == nil || !strings.Contains(err.Error(), "bound to nvidia") {
		t.Errorf("a GPU on the host driver: %v", err)
	}
	if _, err := vfioDevices([]string{"GPU-1234"}, gpus); err == nil {
		t.Error("an unknown GPU was accepted")
	}
}

func TestDiscoverGPUsNoPCI(t *testing.T) {
	gpus, err := DiscoverGPUs(t.TempDir())
	if err != nil || len(gpus) != 0 {
		t.Fatalf("no PCI bus: %v, %v", gpus, err)
	}
}
