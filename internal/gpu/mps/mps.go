// Package mps computes the NVIDIA Multi-Process Service (MPS) limits that
// enforce a fractional GPU share (api.ShareAssignment) for one client: the
// active thread percentage (compute) and the pinned device memory limit.
//
// The limits are given to each task through the per-client environment
// variables the MPS client library reads when it connects
// (CUDA_MPS_ACTIVE_THREAD_PERCENTAGE, CUDA_MPS_PINNED_DEVICE_MEM_LIMIT),
// never by changing the control daemon's defaults, which would apply to
// every client of the node. They hold only where an MPS control daemon
// runs; the agent detects it and reports shares "not enforced" elsewhere.
//
// What MPS does not give: isolation. MPS clients of one GPU share one
// fault domain (a fatal fault in one client can end the others), and a
// process that drops these variables before connecting escapes the limits.
// MIG is the only hardware isolation between GPU users.
//
// The package is pure: the agent does the detection.
package mps

import (
	"fmt"
	"strconv"

	"github.com/gantryhq/gantry/internal/api"
)

// DefaultPipeDir is where nvidia-cuda-mps-control puts its pipes unless
// CUDA_MPS_PIPE_DIRECTORY says otherwise.
const DefaultPipeDir = "/tmp/nvidia-mps"

// Environment variables MPS clients read.
const (
	EnvPipeDir        = "CUDA_MPS_PIPE_DIRECTORY"
	EnvThreadPercent  = "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"
	EnvPinnedMemLimit = "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"
	EnvEnforced       = "GANTRY_GPU_SHARE_ENFORCED"
)

// ThreadPercent is the active thread percentage for a share of milli
// thousandths of a GPU: rounded up, at least 1, at most 100.
func ThreadPercent(milli int) int {
	p := (milli + 9) / 10
	return min(max(p, 1), 100)
}

// ClientEnv is the environment that limits one MPS client to share: its
// compute as an active thread percentage and its memory (MiB) as a pinned
// device memory limit on device 0, the only GPU the task sees.
func ClientEnv(pipeDir string, share *api.ShareAssignment) map[string]string {
	if share == nil {
		return nil
	}
	if pipeDir == "" {
		pipeDir = DefaultPipeDir
	}
	env := map[string]string{
		EnvPipeDir:       pipeDir,
		EnvThreadPercent: strconv.Itoa(ThreadPercent(share.Milli)),
		EnvEnforced:      "mps",
	}
	if share.Memory > 0 {
		env[EnvPinnedMemLimit] = fmt.Sprintf("0=%dM", share.Memory)
	}
	return env
}

// Status is whether an MPS control daemon serves this node.
type Status struct {
	Running bool
	PipeDir string
	Reason  string // why not, when not
}

// String is the node attribute gpu.mps.
func (s Status) String() string {
	if s.Running {
		return "running (pipe directory " + s.PipeDir + "): GPU shares enforced per client (compute and memory); MPS clients share a fault domain"
	}
	return "not running: GPU shares are NOT enforced (" + s.Reason + ")"
}
