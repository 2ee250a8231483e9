package qemu

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// PassthroughGPU is a GPU as sysfs shows it for VFIO passthrough.
type PassthroughGPU struct {
	Address    string // PCI address, 0000:01:00.0
	Vendor     string // 0x10de
	Device     string
	Driver     string // the bound kernel driver; vfio-pci when ready
	IOMMUGroup int    // -1: none (no IOMMU, or it is off)
	// Ready says whether QEMU can take the GPU: bound to vfio-pci, in an
	// IOMMU group whose every other endpoint is bound to vfio-pci too (or
	// to no driver). NotReady says why not.
	Ready    bool
	NotReady string
}

// PCI classes (the upper 16 bits of the class file).
const (
	pciClassDisplay = 0x03 // VGA 0x0300, 3D controller 0x0302, ...
	pciClassBridge  = 0x0604
)

// DiscoverGPUs reads sysfs under root ("/sys" on a node, a fake tree in
// tests) for display-class PCI devices and says which can be passed
// through. A missing PCI bus is no GPU, not an error.
func DiscoverGPUs(root string) ([]PassthroughGPU, error) {
	devs, err := os.ReadDir(filepath.Join(root, "bus", "pci", "devices"))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read PCI devices: %w", err)
	}
	var out []PassthroughGPU
	for _, e := range devs {
		dir := filepath.Join(root, "bus", "pci", "devices", e.Name())
		class, ok := readHex(filepath.Join(dir, "class"))
		if !ok || class>>16 != pciClassDisplay {
			continue
		}
		g := PassthroughGPU{
			Address:    e.Name(),
			Vendor:     readString(filepath.Join(dir, "vendor")),
			Device:     readString(filepath.Join(dir, "device")),
			Driver:     linkBase(filepath.Join(dir, "driver")),
			IOMMUGroup: -1,
		}
		if n, err := strconv.Atoi(linkBase(filepath.Join(dir, "iommu_group"))); err == nil {
			g.IOMMUGroup = n
		}
		switch {
		case g.Driver != "vfio-pci":
			drv := g.Driver
			if drv == "" {
				drv = "no driver"
			}
			g.NotReady = fmt.Sprintf("bound to %s, not vfio-pci", drv)
		case g.IOMMUGroup < 0:
			g.NotReady = "in no IOMMU group (is the IOMMU on? intel_iommu=on or amd_iommu=on)"
		default:
			g.NotReady = groupProblem(root, g.IOMMUGroup, g.Address)
		}
		g.Ready = g.NotReady == ""
		out = append(out, g)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Address < out[j].Address })
	return out, nil
}

// groupProblem says why the IOMMU group cannot be handed to a VM: an
// endpoint in it still bound to a host driver. Bridges stay with the host.
func groupProblem(root string, group int, self string) string {
	members, err := os.ReadDir(filepath.Join(root, "kernel", "iommu_groups", strconv.Itoa(group), "devices"))
	if err != nil {
		return fmt.Sprintf("IOMMU group %d cannot be read: %v", group, err)
	}
	for _, m := range members {
		if m.Name() == self {
			continue
		}
		dir := filepath.Join(root, "bus", "pci", "devices", m.Name())
		if class, ok := readHex(filepath.Join(dir, "class")); ok && class>>8 == pciClassBridge {
			continue
		}
		if drv := linkBase(filepath.Join(dir, "driver")); drv != "" && drv != "vfio-pci" {
			return fmt.Sprintf("IOMMU group %d also holds %s, bound to %s; bind it to vfio-pci too", group, m.Name(), drv)
		}
	}
	return ""
}

func readString(path string) string {
	b, _ := os.ReadFile(path)
	return strings.TrimSpace(string(b))
}

func readHex(path string) (uint64, bool) {
	s := strings.TrimPrefix(readString(path), "0x")
	v, err := strconv.ParseUint(s, 16, 64)
	return v, err == nil
}

func linkBase(path string) string {
	t, err := os.Readlink(path)
	if err != nil {
		return ""
	}
	return filepath.Base(t)
}

// vfioDevices maps the GPUs allocated to a task (PCI addresses, as a
// node reports passthrough GPUs) to the devices QEMU takes, or says which
// one is not ready.
func vfioDevices(allocated []string, gpus []PassthroughGPU) ([]string, error) {
	byAddr := map[string]PassthroughGPU{}
	for _, g := range gpus {
		byAddr[g.Address] = g
	}
	var out []string
	for _, id := range allocated {
		g, ok := byAddr[id]
		switch {
		case !ok:
			return nil, fmt.Errorf("GPU %s is not a PCI GPU this node can pass through to a VM", id)
		case !g.Ready:
			return nil, fmt.Errorf("GPU %s cannot be passed through: %s", id, g.NotReady)
		}
		out = append(out, g.Address)
	}
	return out, nil
}
