package nvml

import (
	"errors"
	"testing"
)

func TestProfileName(t *testing.T) {
	for _, c := range []struct {
		index, slices int
		mem           uint64
		want          string
	}{
		{0, 1, 4864, "1g.5gb"},      // A100-40GB
		{7, 1, 4864, "1g.5gb+me"},   // REV1
		{9, 1, 9856, "1g.10gb"},     // REV2
		{2, 3, 19968, "3g.20gb"},    // A100-40GB
		{4, 7, 40192, "7g.40gb"},    // A100-40GB
		{0, 1, 9984, "1g.10gb"},     // H100-80GB: 9.75 GiB
		{2, 3, 40448, "3g.40gb"},    // H100-80GB: 39.50 GiB
		{4, 7, 81152, "7g.80gb"},    // H100-80GB: 79.25 GiB
		{13, 1, 9984, "1g.10gb-me"}, // Blackwell variants
		{15, 1, 9984, "1g.10gb+me.all"},
		{10, 1, 9984, "1g.10gb+gfx"},
	} {
		if got := ProfileName(c.index, c.slices, c.mem); got != c.want {
			t.Errorf("ProfileName(%d, %d, %d) = %q, want %q", c.index, c.slices, c.mem, got, c.want)
		}
	}
	if got := CleanProfileName(" MIG 3g.40gb"); got != "3g.40gb" {
		t.Errorf("CleanProfileName: %q", got)
	}
}

func TestClassifyXID(t *testing.T) {
	for xid, want := range map[uint64]bool{13: false, 31: false, 43: false, 45: false, 68: false, 109: false,
		48: true, 63: true, 64: true, 74: true, 79: true, 94: true, 95: true, 1234: true} {
		bad, reason := ClassifyXID(xid)
		if bad != want || reason == "" {
			t.Errorf("XID %d: unhealthy %v (%q), want %v", xid, bad, reason, want)
		}
	}
	if _, r := ClassifyXID(79); r != "XID 79: GPU has fallen off the bus" {
		t.Errorf("reason %q", r)
	}
}

func TestSummary(t *testing.T) {
	for _, c := range []struct {
		inv  *Inventory
		err  error
		want string
	}{
		{nil, ErrNoDriver, "no NVIDIA driver, 0 GPUs"},
		{nil, ErrNotBuilt, "GPU discovery not built in (CGO_ENABLED=0 build), 0 GPUs"},
		{nil, errors.New("boom"), "NVML unavailable (boom), 0 GPUs"},
		{&Inventory{DriverVersion: "580.1", CUDAVersion: "13.0", Devices: make([]Device, 1)}, nil, "driver 580.1 (CUDA 13.0), 1 GPU"},
	} {
		if got := Summary(c.inv, c.err); got != c.want {
			t.Errorf("Summary = %q, want %q", got, c.want)
		}
	}
	if CUDAVersion(12040) != "12.4" || CUDAVersion(13000) != "13.0" || CUDAVersion(0) != "" {
		t.Error("CUDAVersion")
	}
}
