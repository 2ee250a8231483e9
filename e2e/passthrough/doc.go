// Package passthrough checks GPU passthrough placement end to end: a real
// `gantry dev` reads a fake sysfs tree (--sysfs-root) with GPUs bound to
// vfio-pci, reports them in its node's fingerprint, and `gantry job plan`
// places VMs on them and never containers or processes. The tree is fake
// because no machine the project tests on has an IOMMU or a GPU, and for
// the same reason no VM is booted with a GPU: QEMU would need the real
// /dev/vfio devices.
package passthrough
