//go:build cgo && linux

// Package nvmltest is go-nvml's mock DGX A100 (8 × A100-SXM4-40GB,
// pkg/nvml/mock/dgxa100) with the calls that mock leaves unimplemented
// answered the way a DGX answers them, for tests of discovery, MIG
// changes, health and metrics without a GPU: PCI bus ids, NUMA nodes 0 and
// 1, NVLink between every pair (NVSwitch), MIG device handles for every
// compute instance, ECC and page-retirement counters the test sets, power,
// temperature and utilisation, and an event set the test feeds XIDs into.
//
// Geometry truth is MIG.md, not the mock: the A100 placements the mock
// carries agree with it (the H100 ones do not, so this package offers no
// H100).
package nvmltest

import (
	"fmt"
	"sort"
	"sync"
	"time"

	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"
)

// DGX is a mock DGX A100. Server is what the code under test calls.
type DGX struct {
	Server *dgxa100.Server

	xid chan gonvml.EventData

	mu      sync.Mutex
	ecc     map[int]uint64
	pending map[int]bool
	migs    map[string]*mock.Device // "<gpu>/<gi>/<ci>" → MIG device handle
}

// NewDGXA100 returns a mock DGX A100 with every GPU healthy and MIG off.
func NewDGXA100() *DGX {
	f := &DGX{
		Server: dgxa100.New(), xid: make(chan gonvml.EventData, 16),
		ecc: map[int]uint64{}, pending: map[int]bool{}, migs: map[string]*mock.Device{},
	}
	f.Server.EventSetCreateFunc = func() (gonvml.EventSet, gonvml.Return) {
		return &mock.EventSet{
			WaitFunc: func(ms uint32) (gonvml.EventData, gonvml.Return) {
				select {
				case ev := <-f.xid:
					return ev, gonvml.SUCCESS
				case <-time.After(time.Duration(ms) * time.Millisecond):
					return gonvml.EventData{}, gonvml.ERROR_TIMEOUT
				}
			},
			FreeFunc: func() gonvml.Return { return gonvml.SUCCESS },
		}, gonvml.SUCCESS
	}
	for i, d := range f.Server.Devices {
		f.augment(i, d.(*dgxa100.Device))
	}
	return f
}

// Device is the mock of GPU i.
func (f *DGX) Device(i int) *dgxa100.Device { return f.Server.Devices[i].(*dgxa100.Device) }

// UUID is the UUID of GPU i.
func (f *DGX) UUID(i int) string { return f.Device(i).UUID }

// EnableMIG turns MIG mode on for GPU i, as an operator would (the code
// under test never changes MIG mode).
func (f *DGX) EnableMIG(i int) {
	d := f.Device(i)
	d.Lock()
	d.MigMode = gonvml.DEVICE_MIG_ENABLE
	d.Unlock()
}

// SetECC sets GPU i's volatile uncorrected ECC error count.
func (f *DGX) SetECC(i int, n uint64) {
	f.mu.Lock()
	f.ecc[i] = n
	f.mu.Unlock()
}

// SetRetiredPagesPending marks GPU i's retired pages as pending a reset.
func (f *DGX) SetRetiredPagesPending(i int, pending bool) {
	f.mu.Lock()
	f.pending[i] = pending
	f.mu.Unlock()
}

// InjectXID delivers an XID event of GPU i to whoever waits on an event
// set (gi < 0: not attributed to a GPU instance).
func (f *DGX) InjectXID(i int, xid uint64, gi int) {
	gid := uint32(0xFFFFFFFF)
	if gi >= 0 {
		gid = uint32(gi)
	}
	f.xid <- gonvml.EventData{Device: f.Server.Devices[i], EventType: gonvml.EventTypeXidCriticalError, EventData: xid, GpuInstanceId: gid}
}

// InjectEvent delivers any event.
func (f *DGX) InjectEvent(ev gonvml.EventData) { f.xid <- ev }

func (f *DGX) augment(i int, d *dgxa100.Device) {
	d.GetPciInfoFunc = func() (gonvml.PciInfo, gonvml.Return) {
		var p gonvml.PciInfo
		for k, c := range fmt.Sprintf("00000000:%02X:00.0", 0x07+i*0x10) {
			p.BusId[k] = int8(c)
		}
		return p, gonvml.SUCCESS
	}
	d.GetNumaNodeIdFunc = func() (int, gonvml.Return) { return i / 4, gonvml.SUCCESS }
	d.GetP2PStatusFunc = func(gonvml.Device, gonvml.GpuP2PCapsIndex) (gonvml.GpuP2PStatus, gonvml.Return) {
		return gonvml.P2P_STATUS_OK, gonvml.SUCCESS
	}
	d.GetTotalEccErrorsFunc = func(gonvml.MemoryErrorType, gonvml.EccCounterType) (uint64, gonvml.Return) {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.ecc[i], gonvml.SUCCESS
	}
	d.GetRetiredPagesPendingStatusFunc = func() (gonvml.EnableState, gonvml.Return) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.pending[i] {
			return gonvml.FEATURE_ENABLED, gonvml.SUCCESS
		}
		return gonvml.FEATURE_DISABLED, gonvml.SUCCESS
	}
	d.GetRemappedRowsFunc = func() (int, int, bool, bool, gonvml.Return) { return 0, 0, false, false, gonvml.SUCCESS }
	d.GetUtilizationRatesFunc = func() (gonvml.Utilization, gonvml.Return) {
		if d.MigMode == gonvml.DEVICE_MIG_ENABLE {
			return gonvml.Utilization{}, gonvml.ERROR_NOT_SUPPORTED
		}
		return gonvml.Utilization{Gpu: uint32(10 * i)}, gonvml.SUCCESS
	}
	d.GetPowerUsageFunc = func() (uint32, gonvml.Return) { return 61_500, gonvml.SUCCESS }
	d.GetTemperatureFunc = func(gonvml.TemperatureSensors) (uint32, gonvml.Return) { return 33, gonvml.SUCCESS }
	d.GetSupportedEventTypesFunc = func() (uint64, gonvml.Return) {
		return gonvml.EventTypeXidCriticalError | gonvml.EventTypeDoubleBitEccError, gonvml.SUCCESS
	}
	d.RegisterEventsFunc = func(uint64, gonvml.EventSet) gonvml.Return { return gonvml.SUCCESS }
	d.GetMaxMigDeviceCountFunc = func() (int, gonvml.Return) { return 7, gonvml.SUCCESS }
	d.GetMigDeviceHandleByIndexFunc = func(k int) (gonvml.Device, gonvml.Return) {
		all := f.migDevices(d)
		if k < 0 || k >= len(all) {
			return nil, gonvml.ERROR_NOT_FOUND
		}
		return all[k], gonvml.SUCCESS
	}
	d.GetGpuInstanceByIdFunc = func(id int) (gonvml.GpuInstance, gonvml.Return) {
		d.RLock()
		defer d.RUnlock()
		for gi := range d.GpuInstances {
			if int(gi.Info.Id) == id {
				return gi, gonvml.SUCCESS
			}
		}
		return nil, gonvml.ERROR_NOT_FOUND
	}
}

// migDevices lists a GPU's compute instances as MIG device handles, in
// GPU-instance order, keeping the same handle (and UUID) for the same
// compute instance.
func (f *DGX) migDevices(d *dgxa100.Device) []gonvml.Device {
	type pair struct{ gi, ci int }
	var ps []pair
	d.RLock()
	for gi := range d.GpuInstances {
		gi.RLock()
		for ci := range gi.ComputeInstances {
			ps = append(ps, pair{int(gi.Info.Id), int(ci.Info.Id)})
		}
		gi.RUnlock()
	}
	d.RUnlock()
	sort.Slice(ps, func(a, b int) bool { return ps[a].gi < ps[b].gi || ps[a].gi == ps[b].gi && ps[a].ci < ps[b].ci })
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]gonvml.Device, 0, len(ps))
	for _, p := range ps {
		key := fmt.Sprintf("%s/%d/%d", d.UUID, p.gi, p.ci)
		md := f.migs[key]
		if md == nil {
			uuid := fmt.Sprintf("MIG-%08x-0000-4000-8000-%012d", len(f.migs)+1, p.gi*100+p.ci)
			md = &mock.Device{
				GetUUIDFunc:              func() (string, gonvml.Return) { return uuid, gonvml.SUCCESS },
				GetGpuInstanceIdFunc:     func() (int, gonvml.Return) { return p.gi, gonvml.SUCCESS },
				GetComputeInstanceIdFunc: func() (int, gonvml.Return) { return p.ci, gonvml.SUCCESS },
				GetMemoryInfoFunc: func() (gonvml.Memory, gonvml.Return) {
					return gonvml.Memory{Total: 19968 << 20, Used: 1024 << 20, Free: 18944 << 20}, gonvml.SUCCESS
				},
			}
			f.migs[key] = md
		}
		out = append(out, md)
	}
	return out
}
