// Package vfio finds the GPUs a node can hand whole to a virtual machine
// (PCI passthrough with VFIO): display-class PCI devices bound to the
// vfio-pci driver, with their IOMMU group, as sysfs shows them.
//
// The package is a pure core with a thin shell. ReadSysfs is the only
// code that does I/O: it reads /sys/bus/pci/devices/<address>/{class,
// vendor,device,driver,iommu_group} and /sys/kernel/iommu_groups/<N>/devices
// under a root that tests point at a fake tree, into a Snapshot. Classify
// decides from a Snapshot alone which GPUs are passthrough-ready and,
// for the others, why not; Nodes turns the result into the api.GPUDevice
// values of a node's fingerprint, and QEMUDevices into the PCI addresses
// the qemu driver hands to QEMU as -device vfio-pci.
//
// A GPU is ready when it is bound to vfio-pci, belongs to an IOMMU group,
// and every other device of that group is a PCI bridge (the host keeps
// those), unbound, bound to pci-stub, or bound to vfio-pci as well; the
// vfio-pci endpoints among them (the GPU's audio function, typically) go
// to the VM with it, since a group is attached to one VM as a whole. Two
// GPUs that share a group are not offered: Gantry places GPUs one by one
// and could give them to two VMs.
//
// Nothing here has run against real hardware: no machine the project
// tests on has an IOMMU or a GPU, so the tests build sysfs trees with the
// kernel's layout in temporary directories.
package vfio
