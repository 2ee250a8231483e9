// Package vfiotest writes fake sysfs trees for the tests of GPU
// passthrough: no machine the project tests on has an IOMMU or a GPU, so
// the tests of discovery, of the qemu driver and the end-to-end test of
// placement read a tree with the kernel's layout instead of /sys.
//
// The layout is the kernel's, relative links included:
//
//	devices/pci0000:00/<addr>/{class,vendor,device}
//	devices/pci0000:00/<addr>/driver      -> ../../../bus/pci/drivers/<driver>
//	devices/pci0000:00/<addr>/iommu_group -> ../../../kernel/iommu_groups/<N>
//	bus/pci/devices/<addr>                -> ../../../devices/pci0000:00/<addr>
//	bus/pci/drivers/<driver>/<addr>       -> ../../../../devices/pci0000:00/<addr>
//	kernel/iommu_groups/<N>/devices/<addr> -> ../../../../devices/pci0000:00/<addr>
//
// (A real machine nests devices behind their bridges; readers follow the
// links and never depend on the depth.)
package vfiotest

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// NoGroup is the Group of a device in no IOMMU group.
const NoGroup = -1

// Dev is one PCI device of a fake tree.
type Dev struct {
	Addr   string // 0000:01:00.0
	Class  string // 0x030200
	Vendor string // 0x10de; empty: 0x10de
	Device string // 0x2330; empty: 0x2330
	Driver string // empty: none bound
	Group  int    // IOMMU group; NoGroup: none
}

// Common classes.
const (
	Class3D     = "0x030200" // 3D controller: data-centre GPUs
	ClassVGA    = "0x030000"
	ClassAudio  = "0x040300" // a GPU's HDMI audio function
	ClassBridge = "0x060400"
	ClassNIC    = "0x020000"
)

// Write makes the tree of devs under root.
func Write(root string, devs []Dev) error {
	for _, d := range devs {
		if err := write(root, d); err != nil {
			return fmt.Errorf("fake sysfs, device %s: %w", d.Addr, err)
		}
	}
	return nil
}

func write(root string, d Dev) error {
	rel := filepath.Join("devices", "pci0000:00", d.Addr)
	dir := filepath.Join(root, rel)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	vendor, device := d.Vendor, d.Device
	if vendor == "" {
		vendor = "0x10de"
	}
	if device == "" {
		device = "0x2330"
	}
	for name, v := range map[string]string{"class": d.Class, "vendor": vendor, "device": device} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v+"\n"), 0o444); err != nil {
			return err
		}
	}
	links := [][2]string{{filepath.Join(root, "bus", "pci", "devices", d.Addr), filepath.Join("..", "..", "..", rel)}}
	if d.Driver != "" {
		links = append(links,
			[2]string{filepath.Join(dir, "driver"), filepath.Join("..", "..", "..", "bus", "pci", "drivers", d.Driver)},
			[2]string{filepath.Join(root, "bus", "pci", "drivers", d.Driver, d.Addr), filepath.Join("..", "..", "..", "..", rel)})
	}
	if d.Group != NoGroup {
		g := strconv.Itoa(d.Group)
		links = append(links,
			[2]string{filepath.Join(dir, "iommu_group"), filepath.Join("..", "..", "..", "kernel", "iommu_groups", g)},
			[2]string{filepath.Join(root, "kernel", "iommu_groups", g, "devices", d.Addr), filepath.Join("..", "..", "..", "..", rel)})
	}
	for _, l := range links {
		if err := os.MkdirAll(filepath.Dir(l[0]), 0o755); err != nil {
			return err
		}
		if err := os.Symlink(l[1], l[0]); err != nil {
			return err
		}
	}
	return nil
}
