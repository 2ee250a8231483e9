// Package nvml discovers a node's NVIDIA GPUs through NVML (go-nvml) and
// changes what the agent is allowed to change on them: it creates and
// destroys MIG GPU and compute instances, watches XID events, reads the
// ECC and page-retirement state that makes a device unhealthy, and samples
// the figures the metrics endpoint publishes under DCGM's names.
//
// NVML is loaded at run time from the driver's libnvidia-ml.so.1, so a
// node without an NVIDIA driver works and simply has no GPUs (ErrNoDriver).
// go-nvml needs cgo, so the implementation is build-tagged (cgo && linux);
// a CGO_ENABLED=0 build, such as a binary for a FROM scratch image,
// compiles the stub, whose Library reports ErrNotBuilt and 0 GPUs.
//
// The untagged files are pure (no I/O, no clock): the types the agent
// reads, profile naming and the XID classification. The package never
// changes a GPU's settings: it never toggles MIG mode, never resets a GPU,
// never changes clocks, power limits or compute mode.
package nvml
