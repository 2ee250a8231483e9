package vfio

import (
	"fmt"
	"sort"
	"strings"

	"github.com/gantryhq/gantry/internal/api"
)

// Driver names that matter to passthrough.
const (
	DriverVFIO    = "vfio-pci"
	driverPCIStub = "pci-stub"
)

// PCI classes: the class file is 0xCCSSPP (class, subclass, interface).
const (
	classDisplay = 0x03   // VGA 0x0300, 3D controller 0x0302, …
	classBridge  = 0x0604 // PCI-to-PCI bridges and PCIe ports
)

// NoGroup is the IOMMU group of a device that is in none (no IOMMU, or it
// is off).
const NoGroup = -1

// PCIDevice is one PCI device as sysfs shows it.
type PCIDevice struct {
	Address    string // 0000:01:00.0
	Class      uint32 // 0x030200
	Vendor     uint16 // 0x10de
	Device     uint16 // 0x2330
	Driver     string // the bound kernel driver; "" when none
	IOMMUGroup int    // NoGroup when none
}

// Snapshot is what ReadSysfs read: every PCI device, and the members of
// each IOMMU group that holds a display device. A group whose member
// list could not be read is in GroupErrors.
type Snapshot struct {
	Devices     []PCIDevice
	Groups      map[int][]string
	GroupErrors map[int]string
}

// GPU is a display-class PCI device and whether it can be passed through.
type GPU struct {
	Address    string
	Vendor     uint16
	Device     uint16
	Model      string // the known model's name, or "<vendor> <vvvv:dddd>"
	Memory     int    // MiB: the known model's nominal memory; 0 unknown
	Driver     string // "" when none
	IOMMUGroup int    // NoGroup when none
	// With are the other devices of the IOMMU group bound to vfio-pci
	// (the GPU's audio function): QEMU takes them with the GPU.
	With []string
	// Ready says whether a VM can take the GPU; NotReady says why not,
	// in words for the operator.
	Ready    bool
	NotReady string
}

// Classify decides, from a snapshot alone, which display devices are
// passthrough-ready, sorted by address.
func Classify(s Snapshot) []GPU {
	byAddr := make(map[string]*PCIDevice, len(s.Devices))
	for i := range s.Devices {
		byAddr[s.Devices[i].Address] = &s.Devices[i]
	}
	var out []GPU
	for i := range s.Devices {
		d := &s.Devices[i]
		if d.Class>>16 != classDisplay {
			continue
		}
		model, mem := ModelOf(d.Vendor, d.Device)
		g := GPU{
			Address: d.Address, Vendor: d.Vendor, Device: d.Device, Model: model, Memory: mem,
			Driver: d.Driver, IOMMUGroup: d.IOMMUGroup,
		}
		switch {
		case d.Driver != DriverVFIO:
			drv := d.Driver
			if drv == "" {
				drv = "no driver"
			}
			g.NotReady = fmt.Sprintf("bound to %s, not vfio-pci (bind it to vfio-pci, e.g. driverctl set-override %s vfio-pci)", drv, d.Address)
		case d.IOMMUGroup == NoGroup:
			g.NotReady = "in no IOMMU group: the IOMMU is off (boot with intel_iommu=on or amd_iommu=on)"
		default:
			g.With, g.NotReady = groupCheck(s, byAddr, d)
		}
		g.Ready = g.NotReady == ""
		if !g.Ready {
			g.With = nil
		}
		out = append(out, g)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Address < out[j].Address })
	return out
}

// groupCheck looks at the other members of d's IOMMU group: the vfio-pci
// endpoints that go with it, or why the group cannot go to a VM.
func groupCheck(s Snapshot, byAddr map[string]*PCIDevice, d *PCIDevice) (with []string, why string) {
	if msg, bad := s.GroupErrors[d.IOMMUGroup]; bad {
		return nil, fmt.Sprintf("IOMMU group %d cannot be read: %s", d.IOMMUGroup, msg)
	}
	members := append([]string(nil), s.Groups[d.IOMMUGroup]...)
	sort.Strings(members)
	for _, m := range members {
		if m == d.Address {
			continue
		}
		o := byAddr[m]
		switch {
		case o == nil:
			return nil, fmt.Sprintf("IOMMU group %d holds %s, which is not among the PCI devices", d.IOMMUGroup, m)
		case o.Class>>8 == classBridge:
			// Bridges stay with the host; VFIO allows them.
		case o.Class>>16 == classDisplay:
			return nil, fmt.Sprintf("IOMMU group %d also holds the GPU %s; a group goes to one VM whole and Gantry places GPUs one by one, so GPUs that share a group are not offered (put the cards in slots with their own groups, or enable ACS)", d.IOMMUGroup, m)
		case o.Driver == DriverVFIO:
			with = append(with, m)
		case o.Driver == "" || o.Driver == driverPCIStub:
			// Not in use by the host; QEMU need not take it.
		default:
			return nil, fmt.Sprintf("IOMMU group %d also holds %s, bound to %s; bind it to vfio-pci too", d.IOMMUGroup, m, o.Driver)
		}
	}
	return with, ""
}

// Nodes is what a node's fingerprint reports of its passthrough GPUs:
// every display device bound to vfio-pci, numbered from first (after the
// node's NVML GPUs). Its UUID is its PCI address, which is what an
// allocation then names. One that is not ready is unhealthy, with the
// reason, so that the scheduler never places on it and says why.
// Devices on other drivers are left out: NVML reports the ones on the
// NVIDIA driver, and the rest belong to the host (Summary names them).
func Nodes(gpus []GPU, first int) []api.GPUDevice {
	var out []api.GPUDevice
	for _, g := range gpus {
		if g.Driver != DriverVFIO {
			continue
		}
		out = append(out, api.GPUDevice{
			UUID: g.Address, Index: first + len(out), Model: g.Model, Memory: g.Memory,
			PCIBusID: g.Address, NUMANode: -1,
			Passthrough: true, IOMMUGroup: g.IOMMUGroup,
			Unhealthy: !g.Ready, HealthReason: notReady(g),
		})
	}
	return out
}

func notReady(g GPU) string {
	if g.Ready {
		return ""
	}
	return "not passthrough-ready: " + g.NotReady
}

// Summary says in one line what discovery found, for the node attribute
// gpu.passthrough: the ready GPUs, then each other display device and why
// it is not ready. Empty when there is no display device.
func Summary(gpus []GPU) string {
	var ready, not []string
	for _, g := range gpus {
		if g.Ready {
			ready = append(ready, fmt.Sprintf("%s (IOMMU group %d)", g.Address, g.IOMMUGroup))
		} else {
			not = append(not, g.Address+" "+g.NotReady)
		}
	}
	if len(ready)+len(not) == 0 {
		return ""
	}
	s := fmt.Sprintf("%d ready", len(ready))
	if len(ready) > 0 {
		s += ": " + strings.Join(ready, ", ")
	}
	if len(not) > 0 {
		s += "; not ready: " + strings.Join(not, "; ")
	}
	return s
}

// QEMUDevices maps the GPUs allocated to a VM (PCI addresses, as Nodes
// names them) to the devices QEMU must take: each GPU, then the other
// vfio-pci devices of its IOMMU group. It says which GPU is not ready,
// or not a GPU of this node, in one sentence.
func QEMUDevices(allocated []string, gpus []GPU) ([]string, error) {
	byAddr := make(map[string]GPU, len(gpus))
	for _, g := range gpus {
		byAddr[g.Address] = g
	}
	var out []string
	seen := map[string]bool{}
	add := func(a string) {
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	for _, id := range allocated {
		g, ok := byAddr[id]
		switch {
		case !ok:
			return nil, fmt.Errorf("GPU %s is not a PCI display device of this node, so it cannot be passed through to a VM", id)
		case !g.Ready:
			return nil, fmt.Errorf("GPU %s cannot be passed through to a VM: %s", id, g.NotReady)
		}
		add(g.Address)
		for _, w := range g.With {
			add(w)
		}
	}
	return out, nil
}
