package vfio

import "fmt"

// A GPU on vfio-pci is invisible to NVML, so its model comes from its PCI
// ids. known names the common data-centre GPUs the way NVML names them,
// so that a job's model glob ("A100*", "H100*") means the same for a VM
// as for a container; memory is the nominal size of the model (not a
// measurement). The ids are those of the PCI ID Repository (pci.ids).
var known = map[[2]uint16]struct {
	model  string
	memory int
}{
	{0x10de, 0x1db1}: {"Tesla V100-SXM2-16GB", 16384},
	{0x10de, 0x1db4}: {"Tesla V100-PCIE-16GB", 16384},
	{0x10de, 0x1db5}: {"Tesla V100-SXM2-32GB", 32768},
	{0x10de, 0x1eb8}: {"Tesla T4", 15360},
	{0x10de, 0x20b0}: {"NVIDIA A100-SXM4-40GB", 40960},
	{0x10de, 0x20b2}: {"NVIDIA A100-SXM4-80GB", 81920},
	{0x10de, 0x20b5}: {"NVIDIA A100 80GB PCIe", 81920},
	{0x10de, 0x20f1}: {"NVIDIA A100-PCIE-40GB", 40960},
	{0x10de, 0x2236}: {"NVIDIA A10", 24576},
	{0x10de, 0x2330}: {"NVIDIA H100 80GB HBM3", 81920},
	{0x10de, 0x2331}: {"NVIDIA H100 PCIe", 81920},
	{0x10de, 0x26b5}: {"NVIDIA L40", 49152},
	{0x10de, 0x27b8}: {"NVIDIA L4", 24576},
}

var vendors = map[uint16]string{0x10de: "NVIDIA", 0x1002: "AMD", 0x8086: "Intel"}

// ModelOf names a GPU from its PCI vendor and device ids, with its
// nominal memory in MiB when the model is known (0 otherwise): a known
// model by its NVML name, any other as "<vendor> vvvv:dddd".
func ModelOf(vendor, device uint16) (string, int) {
	if k, ok := known[[2]uint16{vendor, device}]; ok {
		return k.model, k.memory
	}
	name := vendors[vendor]
	if name == "" {
		name = "PCI"
	}
	return fmt.Sprintf("%s %04x:%04x", name, vendor, device), 0
}
