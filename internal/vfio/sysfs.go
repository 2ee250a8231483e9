package vfio

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// DefaultRoot is where the kernel's sysfs is mounted.
const DefaultRoot = "/sys"

// ReadSysfs reads the PCI devices under root (DefaultRoot on a node, a
// fake tree in tests) and the IOMMU groups of the display devices. A
// machine without a PCI bus has no devices, which is not an error; a bus
// that cannot be listed is.
func ReadSysfs(root string) (Snapshot, error) {
	s := Snapshot{Groups: map[int][]string{}, GroupErrors: map[int]string{}}
	bus := filepath.Join(root, "bus", "pci", "devices")
	ents, err := os.ReadDir(bus)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("read the PCI devices in %s: %w", bus, err)
	}
	for _, e := range ents {
		dir := filepath.Join(bus, e.Name())
		class, ok := readHex(filepath.Join(dir, "class"))
		if !ok {
			continue // not a device directory we understand
		}
		vendor, _ := readHex(filepath.Join(dir, "vendor"))
		device, _ := readHex(filepath.Join(dir, "device"))
		d := PCIDevice{
			Address: e.Name(), Class: uint32(class), Vendor: uint16(vendor), Device: uint16(device),
			Driver: linkBase(filepath.Join(dir, "driver")), IOMMUGroup: NoGroup,
		}
		if n, err := strconv.Atoi(linkBase(filepath.Join(dir, "iommu_group"))); err == nil && n >= 0 {
			d.IOMMUGroup = n
		}
		s.Devices = append(s.Devices, d)
	}
	for _, d := range s.Devices {
		if d.Class>>16 != classDisplay || d.IOMMUGroup == NoGroup {
			continue
		}
		if _, done := s.Groups[d.IOMMUGroup]; done {
			continue
		}
		members, err := os.ReadDir(filepath.Join(root, "kernel", "iommu_groups", strconv.Itoa(d.IOMMUGroup), "devices"))
		if err != nil {
			s.GroupErrors[d.IOMMUGroup] = err.Error()
		}
		names := []string{}
		for _, m := range members {
			names = append(names, m.Name())
		}
		s.Groups[d.IOMMUGroup] = names
	}
	return s, nil
}

// Discover reads sysfs under root and classifies its display devices.
func Discover(root string) ([]GPU, error) {
	s, err := ReadSysfs(root)
	if err != nil {
		return nil, err
	}
	return Classify(s), nil
}

func readHex(path string) (uint64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	v, err := strconv.ParseUint(strings.TrimPrefix(strings.TrimSpace(string(b)), "0x"), 16, 32)
	return v, err == nil
}

// linkBase is the last element of a symbolic link's target: the driver's
// or the IOMMU group's name. "" when path is no link.
func linkBase(path string) string {
	t, err := os.Readlink(path)
	if err != nil {
		return ""
	}
	return filepath.Base(t)
}
