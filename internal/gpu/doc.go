// Package gpu owns Gantry's model of a GPU as the scheduler sees it: MIG
// geometry kept as data (profiles, their sizes and their legal start
// slots for each supported GPU), the accounting of one device (which of
// the three forms holds it, free compute and memory for shares, MIG
// memory and compute slices in use) and small helpers (model globs,
// compute capability, default share memory).
//
// Everything in the files without a build tag is pure: no I/O, no clock,
// no global random source, no cgo. NVML discovery, when it arrives, lives
// in separate build-tagged files and only produces api.GPUDevice values;
// the architecture test in internal/scheduler checks the pure files.
package gpu
