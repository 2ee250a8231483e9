//go:build cgo && linux

package nvml

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"

	"github.com/gantryhq/gantry/internal/gpu/nvml/nvmltest"
)

func TestInventoryDGXA100(t *testing.T) {
	f := nvmltest.NewDGXA100()
	lib := New(f.Server)
	inv, err := lib.Inventory()
	if err != nil {
		t.Fatal(err)
	}
	if inv.DriverVersion != "550.54.15" || inv.CUDAVersion != "12.4" || inv.NVMLVersion != "12.550.54.15" {
		t.Errorf("versions: driver %q, CUDA %q, NVML %q", inv.DriverVersion, inv.CUDAVersion, inv.NVMLVersion)
	}
	if len(inv.Devices) != 8 {
		t.Fatalf("%d GPUs, want 8", len(inv.Devices))
	}
	seen := map[string]bool{}
	for i, d := range inv.Devices {
		if !strings.HasPrefix(d.UUID, "GPU-") || seen[d.UUID] {
			t.Errorf("GPU %d: UUID %q is not a fresh GPU- UUID", i, d.UUID)
		}
		seen[d.UUID] = true
		want := fmt.Sprintf("00000000:%02X:00.0", 0x07+i*0x10)
		if d.Index != i || d.Model != "Mock NVIDIA A100-SXM4-40GB" || d.Memory != 40960 || d.ComputeCapability != "8.0" ||
			d.PCIBusID != want || d.NUMANode != i/4 || d.Minor != i || d.MIGEnabled || d.Health != "" {
			t.Errorf("GPU %d: %+v", i, d)
		}
		if len(d.NVLinkPeers) != 7 {
			t.Errorf("GPU %d: %d NVLink peers, want 7 (NVSwitch)", i, len(d.NVLinkPeers))
		}
		for _, p := range d.NVLinkPeers {
			if p == d.UUID {
				t.Errorf("GPU %d lists itself as its NVLink peer", i)
			}
		}
	}
	if got := Summary(inv, nil); got != "driver 550.54.15 (CUDA 12.4), 8 GPUs" {
		t.Errorf("summary %q", got)
	}
}

// a100Placements is MIG.md's A100-40GB table: the geometry truth the
// mock's placements must reproduce through discovery.
var a100Placements = map[string][]int{
	"1g.5gb":    {0, 1, 2, 3, 4, 5, 6},
	"1g.5gb+me": {0, 1, 2, 3, 4, 5, 6},
	"1g.10gb":   {0, 2, 4, 6},
	"2g.10gb":   {0, 2, 4},
	"3g.20gb":   {0, 4},
	"4g.20gb":   {0},
	"7g.40gb":   {0},
}

func TestMIGCreateDestroy(t *testing.T) {
	f := nvmltest.NewDGXA100()
	lib := New(f.Server)
	inv, err := lib.Inventory()
	if err != nil {
		t.Fatal(err)
	}
	gpu := inv.Devices[0].UUID
	if _, err := lib.CreateMIG(gpu, "3g.20gb", 4, 4); !errors.Is(err, ErrMIG) {
		t.Fatalf("create on a GPU not in MIG mode: %v, want ErrMIG", err)
	}
	// The operator enables MIG mode (the agent never does).
	f.EnableMIG(0)

	inv, _ = lib.Inventory()
	d := inv.Devices[0]
	if !d.MIGEnabled || len(d.MIGInstances) != 0 {
		t.Fatalf("GPU 0 after enabling MIG: enabled %v, instances %v", d.MIGEnabled, d.MIGInstances)
	}
	if !reflect.DeepEqual(d.MIGPlacements, a100Placements) {
		t.Errorf("placements\n got %v\nwant %v (MIG.md)", d.MIGPlacements, a100Placements)
	}

	a, err := lib.CreateMIG(gpu, "3g.20gb", 4, 4)
	if err != nil {
		t.Fatal(err)
	}
	b, err := lib.CreateMIG(gpu, "1g.5gb", 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(a, "MIG-") || !strings.HasPrefix(b, "MIG-") || a == b {
		t.Fatalf("instance UUIDs %q and %q", a, b)
	}
	for _, bad := range []struct {
		profile     string
		start, size int
	}{{"3g.20gb", 1, 4}, {"3g.20gb", 4, 3}, {"9g.90gb", 0, 8}} {
		if _, err := lib.CreateMIG(gpu, bad.profile, bad.start, bad.size); !errors.Is(err, ErrMIG) {
			t.Errorf("create %s at %d:%d: %v, want ErrMIG", bad.profile, bad.start, bad.size, err)
		}
	}

	inv, _ = lib.Inventory()
	got := inv.Devices[0].MIGInstances
	if len(got) != 2 || got[0].UUID != b || got[0].Profile != "1g.5gb" || got[0].Start != 0 || got[0].Size != 1 ||
		got[1].UUID != a || got[1].Profile != "3g.20gb" || got[1].Start != 4 || got[1].Size != 4 {
		t.Fatalf("instances after create: %+v", got)
	}
	if in := inv.Devices[0].Instances[1]; in.GI < 0 || in.CI < 0 {
		t.Errorf("instance ids %+v", in)
	}

	samples, err := lib.Samples()
	if err != nil {
		t.Fatal(err)
	}
	var migSamples int
	for _, s := range samples {
		if s.MIG != nil {
			migSamples++
			if s.UUID != gpu || (s.MIG.UUID != a && s.MIG.UUID != b) || s.FBUsed != 1024 || s.FBFree != 18944 {
				t.Errorf("MIG sample %+v %+v", s, *s.MIG)
			}
		}
	}
	if migSamples != 2 || len(samples) != 10 {
		t.Errorf("%d samples with %d of MIG instances, want 10 with 2", len(samples), migSamples)
	}

	if err := lib.DestroyMIG(gpu, a); err != nil {
		t.Fatal(err)
	}
	if err := lib.DestroyMIG(gpu, a); !errors.Is(err, ErrNotFound) {
		t.Errorf("destroy twice: %v, want ErrNotFound", err)
	}
	inv, _ = lib.Inventory()
	if got := inv.Devices[0].MIGInstances; len(got) != 1 || got[0].UUID != b {
		t.Errorf("instances after destroy: %+v", got)
	}
}

func TestHealthTransitions(t *testing.T) {
	f := nvmltest.NewDGXA100()
	lib := New(f.Server)
	inv, err := lib.Inventory()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range inv.Devices {
		if d.Health != "" {
			t.Fatalf("GPU %d unhealthy at start: %s", d.Index, d.Health)
		}
	}
	f.SetECC(2, 3)
	f.SetRetiredPagesPending(5, true)
	inv, _ = lib.Inventory()
	if h := inv.Devices[2].Health; h != "3 uncorrected ECC errors since the driver loaded" {
		t.Errorf("GPU 2 health %q", h)
	}
	if h := inv.Devices[5].Health; h != "retired pages pending: the GPU needs a reset" {
		t.Errorf("GPU 5 health %q", h)
	}
	if h := inv.Devices[3].Health; h != "" {
		t.Errorf("GPU 3 health %q", h)
	}

	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan XIDEvent, 4)
	done := make(chan error, 1)
	go func() { done <- lib.WatchXID(ctx, func(e XIDEvent) { got <- e }) }()
	f.InjectXID(6, 79, -1)
	f.InjectEvent(gonvml.EventData{Device: f.Server.Devices[1], EventType: gonvml.EventTypeDoubleBitEccError})
	f.InjectXID(1, 13, 2)
	for _, want := range []XIDEvent{{UUID: inv.Devices[6].UUID, XID: 79, GI: -1}, {UUID: inv.Devices[1].UUID, XID: 13, GI: 2}} {
		select {
		case e := <-got:
			if e != want {
				t.Errorf("event %+v, want %+v", e, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no XID event %+v", want)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("WatchXID: %v", err)
	}
}

func TestNoDriver(t *testing.T) {
	lib := New(&mock.Interface{InitFunc: func() gonvml.Return { return gonvml.ERROR_LIBRARY_NOT_FOUND }})
	inv, err := lib.Inventory()
	if !errors.Is(err, ErrNoDriver) || inv != nil {
		t.Fatalf("Inventory without a driver: %v, %v", inv, err)
	}
	if got := Summary(inv, err); got != "no NVIDIA driver, 0 GPUs" {
		t.Errorf("summary %q", got)
	}
	if _, err := lib.CreateMIG("GPU-x", "1g.5gb", 0, 1); !errors.Is(err, ErrNoDriver) {
		t.Errorf("CreateMIG without a driver: %v", err)
	}
}
