package nvml

import (
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/gantryhq/gantry/internal/api"
)

// Errors of Library. Each is wrapped with what failed.
var (
	// ErrNoDriver: libnvidia-ml.so.1 is not installed (or not loadable):
	// the node has no NVIDIA driver and therefore no GPUs.
	ErrNoDriver = errors.New("no NVIDIA driver")
	// ErrNotBuilt: this binary was built without cgo, so it cannot load
	// NVML at all; build with CGO_ENABLED=1 to use GPUs.
	ErrNotBuilt = errors.New("GPU discovery not built in (CGO_ENABLED=0 build)")
	// ErrNotFound: no GPU or MIG instance with that UUID.
	ErrNotFound = errors.New("no such GPU or MIG instance")
	// ErrMIG: a MIG instance could not be created or destroyed; the
	// message carries NVML's reason (for example "In use by another
	// client" or "Insufficient Resources").
	ErrMIG = errors.New("MIG operation failed")
)

// Inventory is what discovery found on the node.
type Inventory struct {
	DriverVersion string // "580.159.04"
	CUDAVersion   string // the newest CUDA the driver supports, "13.0"
	NVMLVersion   string
	Devices       []Device
}

// Device is one GPU: what the scheduler sees (api.GPUDevice, without the
// agent's own decisions such as MIGManaged and SharingEnforced) and what
// only the node needs.
type Device struct {
	api.GPUDevice
	Minor     int        // /dev/nvidia<Minor>; -1 when unknown
	Instances []Instance // MIG instances, with NVML's ids, same order as MIGInstances
	// Health is a problem the device reports when polled (ECC errors,
	// retired pages pending, failed row remapping); "" when none. XID
	// events come through WatchXID instead.
	Health string
}

// Instance is a MIG GPU instance with its NVML identity. A GPU instance
// without a compute instance has no UUID: CUDA cannot see it.
type Instance struct {
	api.MIGInstance
	GI int // GPU instance id
	CI int // compute instance id; -1 when the GPU instance has none
}

// Sample is one reading of a GPU, or of one MIG instance of it (MIG set).
// A figure the device does not report is NaN.
type Sample struct {
	UUID     string // the physical GPU
	Index    int
	Minor    int
	Model    string
	PCIBusID string
	MIG      *InstanceRef

	Util   float64 // percent
	FBUsed float64 // MiB
	FBFree float64 // MiB
	FBSize float64 // MiB, total
	Power  float64 // W
	Temp   float64 // °C
}

// InstanceRef names a MIG instance in a Sample.
type InstanceRef struct {
	UUID    string
	Profile string
	GI      int
}

// XIDEvent is an XID error NVML reported for a GPU.
type XIDEvent struct {
	UUID string // the physical GPU
	XID  uint64
	GI   int // GPU instance it was attributed to; -1 for the whole GPU
}

// ProfileName names a MIG GPU-instance profile the way nvidia-smi does,
// from NVML's profile index, compute slice count and memory: "3g.40gb",
// with "+me" for the media-extension profile (REV1), "-me", "+me.all" and
// "+gfx" for the Blackwell variants. The memory figure is the profile's
// memory rounded up to whole GiB; a driver that names its profiles
// (GetGpuInstanceProfileInfoV) is asked first, since that rounding is not
// NVIDIA's rule for every model.
func ProfileName(index, slices int, memoryMiB uint64) string {
	gb := int(math.Ceil(float64(memoryMiB) / 1024))
	name := fmt.Sprintf("%dg.%dgb", slices, gb)
	switch index {
	case 7, 8: // GPU_INSTANCE_PROFILE_{1,2}_SLICE_REV1
		name += "+me"
	case 13, 14: // _NO_ME
		name += "-me"
	case 15, 16: // _ALL_ME
		name += "+me.all"
	case 10, 11, 12, 17: // _GFX
		name += "+gfx"
	}
	return name
}

// CleanProfileName turns the name NVML reports ("MIG 1g.10gb") into the
// profile name job specs use ("1g.10gb").
func CleanProfileName(s string) string {
	return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(s), "MIG "))
}

// applicationXIDs are XIDs caused by the application, not the device:
// they leave the GPU healthy (the NVIDIA device plugin skips the same
// ones by default).
var applicationXIDs = map[uint64]string{
	13:  "graphics engine exception",
	31:  "GPU memory page fault",
	43:  "GPU stopped processing",
	45:  "preemptive cleanup, due to previous errors",
	68:  "video processor exception",
	109: "context switch timeout",
}

var deviceXIDs = map[uint64]string{
	48:  "double-bit ECC error",
	61:  "internal micro-controller breakpoint",
	62:  "internal micro-controller halt",
	63:  "ECC page retirement or row remapping recording event",
	64:  "ECC page retirement or row remapper recording failure",
	74:  "NVLink error",
	79:  "GPU has fallen off the bus",
	92:  "high single-bit ECC error rate",
	94:  "contained ECC error",
	95:  "uncontained ECC error",
	119: "GSP RPC timeout",
	120: "GSP error",
}

// ClassifyXID says whether an XID makes the device unhealthy, and why in
// words: every XID does, except those an application causes.
func ClassifyXID(xid uint64) (unhealthy bool, reason string) {
	if what, ok := applicationXIDs[xid]; ok {
		return false, fmt.Sprintf("XID %d (%s, caused by an application)", xid, what)
	}
	if what, ok := deviceXIDs[xid]; ok {
		return true, fmt.Sprintf("XID %d: %s", xid, what)
	}
	return true, fmt.Sprintf("XID %d", xid)
}

// CUDAVersion formats NVML's CUDA driver version (12040) as "12.4".
func CUDAVersion(v int) string {
	if v <= 0 {
		return ""
	}
	return fmt.Sprintf("%d.%d", v/1000, v%1000/10)
}

// Summary is the one-line account of an inventory, or of why there is
// none, that the agent logs and puts in the node's gpu.status attribute:
// "no NVIDIA driver, 0 GPUs", "driver 580.159.04 (CUDA 13.0), 1 GPU".
func Summary(inv *Inventory, err error) string {
	switch {
	case errors.Is(err, ErrNoDriver):
		return "no NVIDIA driver, 0 GPUs"
	case errors.Is(err, ErrNotBuilt):
		return "GPU discovery not built in (CGO_ENABLED=0 build), 0 GPUs"
	case err != nil:
		return fmt.Sprintf("NVML unavailable (%v), 0 GPUs", err)
	case inv == nil:
		return "0 GPUs"
	}
	n := len(inv.Devices)
	s := fmt.Sprintf("driver %s", inv.DriverVersion)
	if inv.CUDAVersion != "" {
		s += fmt.Sprintf(" (CUDA %s)", inv.CUDAVersion)
	}
	if n == 1 {
		return s + ", 1 GPU"
	}
	return fmt.Sprintf("%s, %d GPUs", s, n)
}

// cString turns a NUL-terminated C char array into a string.
func cString[T int8 | uint8](b []T) string {
	out := make([]byte, 0, len(b))
	for _, c := range b {
		if c == 0 {
			break
		}
		out = append(out, byte(c))
	}
	return string(out)
}
