package mps

import (
	"reflect"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/internal/api"
)

func TestClientEnv(t *testing.T) {
	got := ClientEnv("/run/mps", &api.ShareAssignment{GPU: "GPU-1", Milli: 460, Memory: 8192, Enforce: true})
	want := map[string]string{
		"CUDA_MPS_PIPE_DIRECTORY":           "/run/mps",
		"CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": "46",
		"CUDA_MPS_PINNED_DEVICE_MEM_LIMIT":  "0=8192M",
		"GANTRY_GPU_SHARE_ENFORCED":         "mps",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ClientEnv\n got %v\nwant %v", got, want)
	}
	if got := ClientEnv("", &api.ShareAssignment{Milli: 5})[EnvPipeDir]; got != DefaultPipeDir {
		t.Errorf("default pipe dir %q", got)
	}
	if ClientEnv("/x", nil) != nil {
		t.Error("no share, no environment")
	}
}

func TestThreadPercent(t *testing.T) {
	for milli, want := range map[int]int{1: 1, 10: 1, 11: 2, 460: 46, 999: 100, 1000: 100, 5000: 100, 0: 1} {
		if got := ThreadPercent(milli); got != want {
			t.Errorf("ThreadPercent(%d) = %d, want %d", milli, got, want)
		}
	}
}

func TestStatusString(t *testing.T) {
	on := Status{Running: true, PipeDir: "/tmp/nvidia-mps"}.String()
	off := Status{Reason: "no control pipe in /tmp/nvidia-mps"}.String()
	if !strings.Contains(on, "enforced") || !strings.Contains(on, "fault domain") || !strings.Contains(off, "NOT enforced") {
		t.Errorf("%q / %q", on, off)
	}
}
