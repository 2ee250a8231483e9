//go:build cgo && linux

package nvml

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	gonvml "github.com/NVIDIA/go-nvml/pkg/nvml"
)

// Library is the node's NVML. It initialises NVML on first use and again
// after a failure, so a driver installed after the agent started is found
// at the next fingerprint. It is safe for concurrent use; MIG changes are
// serialised.
type Library struct {
	lib gonvml.Interface
	// named: the library can name its own MIG profiles
	// (GetGpuInstanceProfileInfoV); go-nvml's mocks cannot.
	named bool
	sysfs string // where PCI devices are listed, for NUMA nodes NVML does not report

	mu     sync.Mutex
	inited bool
}

// Open returns the library of the installed driver (libnvidia-ml.so.1).
// It does not load it yet: Inventory does, and says ErrNoDriver when there
// is none.
func Open() *Library {
	return &Library{lib: gonvml.New(), named: true, sysfs: "/sys"}
}

// New wraps an NVML implementation, such as go-nvml's mock servers.
func New(lib gonvml.Interface) *Library { return &Library{lib: lib} }

func (l *Library) init() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.initLocked()
}

func (l *Library) initLocked() error {
	if l.inited {
		return nil
	}
	switch ret := l.lib.Init(); ret {
	case gonvml.SUCCESS:
		l.inited = true
		return nil
	case gonvml.ERROR_LIBRARY_NOT_FOUND:
		return fmt.Errorf("%w: libnvidia-ml.so.1 not found", ErrNoDriver)
	case gonvml.ERROR_DRIVER_NOT_LOADED:
		return fmt.Errorf("%w: the NVIDIA kernel driver is not loaded", ErrNoDriver)
	default:
		return fmt.Errorf("initialise NVML: %v", ret)
	}
}

// Close shuts NVML down.
func (l *Library) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.inited {
		return nil
	}
	l.inited = false
	if ret := l.lib.Shutdown(); ret != gonvml.SUCCESS {
		return fmt.Errorf("shut NVML down: %v", ret)
	}
	return nil
}

func nvErr(what string, ret gonvml.Return) error {
	return fmt.Errorf("%s: %v", what, ret)
}

// Inventory discovers every GPU of the node.
func (l *Library) Inventory() (*Inventory, error) {
	if err := l.init(); err != nil {
		return nil, err
	}
	inv := &Inventory{}
	if v, ret := l.lib.SystemGetDriverVersion(); ret == gonvml.SUCCESS {
		inv.DriverVersion = v
	}
	if v, ret := l.lib.SystemGetNVMLVersion(); ret == gonvml.SUCCESS {
		inv.NVMLVersion = v
	}
	if v, ret := l.lib.SystemGetCudaDriverVersion(); ret == gonvml.SUCCESS {
		inv.CUDAVersion = CUDAVersion(v)
	}
	n, ret := l.lib.DeviceGetCount()
	if ret != gonvml.SUCCESS {
		return nil, nvErr("count GPUs", ret)
	}
	handles := make([]gonvml.Device, 0, n)
	for i := 0; i < n; i++ {
		dev, ret := l.lib.DeviceGetHandleByIndex(i)
		if ret != gonvml.SUCCESS {
			return nil, nvErr(fmt.Sprintf("open GPU %d", i), ret)
		}
		d, err := l.device(i, dev)
		if err != nil {
			return nil, err
		}
		handles = append(handles, dev)
		inv.Devices = append(inv.Devices, d)
	}
	// NVLink peers: GPUs that can reach each other over NVLink, directly
	// or through NVSwitches.
	for i := range handles {
		for j := range handles {
			if i == j {
				continue
			}
			st, ret := handles[i].GetP2PStatus(handles[j], gonvml.P2P_CAPS_INDEX_NVLINK)
			if ret == gonvml.SUCCESS && st == gonvml.P2P_STATUS_OK {
				inv.Devices[i].NVLinkPeers = append(inv.Devices[i].NVLinkPeers, inv.Devices[j].UUID)
			}
		}
	}
	return inv, nil
}

func (l *Library) device(i int, dev gonvml.Device) (Device, error) {
	d := Device{Minor: -1}
	d.Index = i
	if idx, ret := dev.GetIndex(); ret == gonvml.SUCCESS {
		d.Index = idx
	}
	uuid, ret := dev.GetUUID()
	if ret != gonvml.SUCCESS {
		return d, nvErr(fmt.Sprintf("UUID of GPU %d", i), ret)
	}
	d.UUID = uuid
	if name, ret := dev.GetName(); ret == gonvml.SUCCESS {
		d.Model = name
	}
	if mem, ret := dev.GetMemoryInfo(); ret == gonvml.SUCCESS {
		d.Memory = int(mem.Total >> 20)
	}
	if major, minor, ret := dev.GetCudaComputeCapability(); ret == gonvml.SUCCESS {
		d.ComputeCapability = fmt.Sprintf("%d.%d", major, minor)
	}
	if pci, ret := dev.GetPciInfo(); ret == gonvml.SUCCESS {
		d.PCIBusID = cString(pci.BusId[:])
	}
	d.NUMANode = l.numaNode(dev, d.PCIBusID)
	if m, ret := dev.GetMinorNumber(); ret == gonvml.SUCCESS {
		d.Minor = m
	}
	if cur, _, ret := dev.GetMigMode(); ret == gonvml.SUCCESS && cur == gonvml.DEVICE_MIG_ENABLE {
		d.MIGEnabled = true
		profiles := l.profiles(dev)
		d.MIGPlacements = map[string][]int{}
		for _, p := range profiles {
			if len(p.starts) > 0 {
				d.MIGPlacements[p.name] = p.starts
			}
		}
		ins, err := l.instances(dev, profiles)
		if err != nil {
			return d, fmt.Errorf("MIG instances of GPU %s: %w", uuid, err)
		}
		d.Instances = ins
		for _, in := range ins {
			d.MIGInstances = append(d.MIGInstances, in.MIGInstance)
		}
	}
	d.Health = deviceHealth(dev)
	return d, nil
}

// numaNode asks NVML, then sysfs; -1 when neither knows (one socket, or
// no NUMA).
func (l *Library) numaNode(dev gonvml.Device, busID string) int {
	if n, ret := dev.GetNumaNodeId(); ret == gonvml.SUCCESS {
		return n
	}
	if l.sysfs == "" || busID == "" {
		return -1
	}
	// NVML: "00000000:1B:00.0"; sysfs: "0000:1b:00.0".
	id := strings.ToLower(busID)
	if len(id) > 12 {
		id = id[len(id)-12:]
	}
	b, err := os.ReadFile(filepath.Join(l.sysfs, "bus/pci/devices", id, "numa_node"))
	if err != nil {
		return -1
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return -1
	}
	return n
}

// deviceHealth reads the counters that mean the GPU must not take new
// work: uncorrected ECC errors since the driver loaded, retired pages
// waiting for a reset, and row remapping that is pending or failed.
func deviceHealth(dev gonvml.Device) string {
	var probs []string
	if n, ret := dev.GetTotalEccErrors(gonvml.MEMORY_ERROR_TYPE_UNCORRECTED, gonvml.VOLATILE_ECC); ret == gonvml.SUCCESS && n > 0 {
		probs = append(probs, fmt.Sprintf("%d uncorrected ECC errors since the driver loaded", n))
	}
	if st, ret := dev.GetRetiredPagesPendingStatus(); ret == gonvml.SUCCESS && st == gonvml.FEATURE_ENABLED {
		probs = append(probs, "retired pages pending: the GPU needs a reset")
	}
	if _, _, pending, failed, ret := dev.GetRemappedRows(); ret == gonvml.SUCCESS {
		if failed {
			probs = append(probs, "row remapping failed")
		} else if pending {
			probs = append(probs, "row remapping pending: the GPU needs a reset")
		}
	}
	return strings.Join(probs, "; ")
}

// profile is a MIG GPU-instance profile the GPU offers.
type profile struct {
	index  int // NVML's GPU_INSTANCE_PROFILE_* index
	name   string
	info   gonvml.GpuInstanceProfileInfo
	starts []int
	size   int // memory slices, from the possible placements
}

func (l *Library) profiles(dev gonvml.Device) []profile {
	var out []profile
	seen := map[string]bool{}
	for idx := 0; idx < gonvml.GPU_INSTANCE_PROFILE_COUNT; idx++ {
		info, ret := dev.GetGpuInstanceProfileInfo(idx)
		if ret != gonvml.SUCCESS {
			continue
		}
		p := profile{index: idx, info: info, name: l.profileName(dev, idx, info)}
		if seen[p.name] {
			continue
		}
		seen[p.name] = true
		if pls, ret := dev.GetGpuInstancePossiblePlacements(&info); ret == gonvml.SUCCESS {
			for _, pl := range pls {
				p.starts = append(p.starts, int(pl.Start))
				p.size = int(pl.Size)
			}
			sort.Ints(p.starts)
		}
		out = append(out, p)
	}
	return out
}

func (l *Library) profileName(dev gonvml.Device, idx int, info gonvml.GpuInstanceProfileInfo) string {
	if l.named {
		if v2, ret := dev.GetGpuInstanceProfileInfoV(idx).V2(); ret == gonvml.SUCCESS {
			if n := CleanProfileName(cString(v2.Name[:])); n != "" {
				return n
			}
		}
	}
	return ProfileName(idx, int(info.SliceCount), info.MemorySizeMB)
}

// migDevice is a MIG device handle: one compute instance that CUDA sees.
type migDevice struct {
	dev  gonvml.Device
	uuid string
	gi   int
	ci   int
}

func migDevices(dev gonvml.Device) []migDevice {
	n, ret := dev.GetMaxMigDeviceCount()
	if ret != gonvml.SUCCESS {
		return nil
	}
	var out []migDevice
	for k := 0; k < n; k++ {
		md, ret := dev.GetMigDeviceHandleByIndex(k)
		if ret != gonvml.SUCCESS {
			continue
		}
		m := migDevice{dev: md, gi: -1, ci: -1}
		if u, ret := md.GetUUID(); ret == gonvml.SUCCESS {
			m.uuid = u
		}
		if g, ret := md.GetGpuInstanceId(); ret == gonvml.SUCCESS {
			m.gi = g
		}
		if c, ret := md.GetComputeInstanceId(); ret == gonvml.SUCCESS {
			m.ci = c
		}
		out = append(out, m)
	}
	return out
}

func (l *Library) instances(dev gonvml.Device, profiles []profile) ([]Instance, error) {
	mds := migDevices(dev)
	var out []Instance
	for _, p := range profiles {
		info := p.info
		gis, ret := dev.GetGpuInstances(&info)
		if ret != gonvml.SUCCESS {
			if ret == gonvml.ERROR_NOT_SUPPORTED || ret == gonvml.ERROR_INVALID_ARGUMENT {
				continue
			}
			return nil, nvErr("list GPU instances of profile "+p.name, ret)
		}
		for _, gi := range gis {
			gii, ret := gi.GetInfo()
			if ret != gonvml.SUCCESS {
				return nil, nvErr("GPU instance info", ret)
			}
			in := Instance{GI: int(gii.Id), CI: -1}
			in.Profile = p.name
			in.Start, in.Size = int(gii.Placement.Start), int(gii.Placement.Size)
			if in.Size == 0 {
				in.Size = p.size
			}
			for _, md := range mds {
				if md.gi == in.GI && (in.CI < 0 || md.ci < in.CI) {
					in.UUID, in.CI = md.uuid, md.ci
				}
			}
			out = append(out, in)
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Start < out[b].Start })
	return out, nil
}

// ciProfile is the compute-instance profile that takes a whole GPU
// instance of the given slice count.
func ciProfile(slices uint32) (int, bool) {
	switch slices {
	case 1:
		return gonvml.COMPUTE_INSTANCE_PROFILE_1_SLICE, true
	case 2:
		return gonvml.COMPUTE_INSTANCE_PROFILE_2_SLICE, true
	case 3:
		return gonvml.COMPUTE_INSTANCE_PROFILE_3_SLICE, true
	case 4:
		return gonvml.COMPUTE_INSTANCE_PROFILE_4_SLICE, true
	case 6:
		return gonvml.COMPUTE_INSTANCE_PROFILE_6_SLICE, true
	case 7:
		return gonvml.COMPUTE_INSTANCE_PROFILE_7_SLICE, true
	case 8:
		return gonvml.COMPUTE_INSTANCE_PROFILE_8_SLICE, true
	}
	return 0, false
}

func (l *Library) migGPU(gpu string) (gonvml.Device, error) {
	dev, ret := l.lib.DeviceGetHandleByUUID(gpu)
	if ret != gonvml.SUCCESS {
		return nil, fmt.Errorf("GPU %s: %w (%v)", gpu, ErrNotFound, ret)
	}
	if cur, _, ret := dev.GetMigMode(); ret != gonvml.SUCCESS || cur != gonvml.DEVICE_MIG_ENABLE {
		return nil, fmt.Errorf("%w: GPU %s is not in MIG mode (the agent never changes MIG mode)", ErrMIG, gpu)
	}
	return dev, nil
}

// CreateMIG creates a GPU instance of profile at start:size on the GPU,
// and one compute instance spanning it, and returns the UUID CUDA knows
// it by ("MIG-…"). Whatever it created is destroyed again if a later step
// fails.
func (l *Library) CreateMIG(gpu, profileName string, start, size int) (string, error) {
	if err := l.init(); err != nil {
		return "", err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	dev, err := l.migGPU(gpu)
	if err != nil {
		return "", err
	}
	var p *profile
	profiles := l.profiles(dev)
	for i := range profiles {
		if profiles[i].name == profileName {
			p = &profiles[i]
		}
	}
	if p == nil {
		return "", fmt.Errorf("%w: GPU %s offers no MIG profile %s", ErrMIG, gpu, profileName)
	}
	legal := false
	for _, s := range p.starts {
		legal = legal || s == start
	}
	if !legal || (p.size > 0 && size != p.size) {
		return "", fmt.Errorf("%w: %s at %d:%d is not a placement GPU %s allows (starts %v, size %d)", ErrMIG, profileName, start, size, gpu, p.starts, p.size)
	}
	info := p.info
	gi, ret := dev.CreateGpuInstanceWithPlacement(&info, &gonvml.GpuInstancePlacement{Start: uint32(start), Size: uint32(size)})
	if ret != gonvml.SUCCESS {
		return "", fmt.Errorf("%w: create GPU instance %s at %d:%d on GPU %s: %v", ErrMIG, profileName, start, size, gpu, ret)
	}
	undo := func() { gi.Destroy() }
	cp, ok := ciProfile(info.SliceCount)
	if !ok {
		undo()
		return "", fmt.Errorf("%w: no compute-instance profile for %d slices", ErrMIG, info.SliceCount)
	}
	ciInfo, ret := gi.GetComputeInstanceProfileInfo(cp, gonvml.COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED)
	if ret != gonvml.SUCCESS {
		undo()
		return "", fmt.Errorf("%w: compute-instance profile of %s: %v", ErrMIG, profileName, ret)
	}
	ci, ret := gi.CreateComputeInstance(&ciInfo)
	if ret != gonvml.SUCCESS {
		undo()
		return "", fmt.Errorf("%w: create compute instance in %s at %d on GPU %s: %v", ErrMIG, profileName, start, gpu, ret)
	}
	gii, ret := gi.GetInfo()
	if ret == gonvml.SUCCESS {
		for _, md := range migDevices(dev) {
			if md.gi == int(gii.Id) && md.uuid != "" {
				return md.uuid, nil
			}
		}
	}
	ci.Destroy()
	undo()
	return "", fmt.Errorf("%w: created %s at %d on GPU %s but NVML shows no MIG device for it", ErrMIG, profileName, start, gpu)
}

// DestroyMIG destroys the MIG instance with that UUID on the GPU: its
// compute instances, then its GPU instance. NVML refuses while a process
// uses it ("In use by another client").
func (l *Library) DestroyMIG(gpu, instance string) error {
	if err := l.init(); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	dev, err := l.migGPU(gpu)
	if err != nil {
		return err
	}
	giID := -1
	for _, md := range migDevices(dev) {
		if md.uuid == instance {
			giID = md.gi
		}
	}
	if giID < 0 {
		return fmt.Errorf("MIG instance %s on GPU %s: %w", instance, gpu, ErrNotFound)
	}
	gi, ret := dev.GetGpuInstanceById(giID)
	if ret != gonvml.SUCCESS {
		return fmt.Errorf("%w: GPU instance %d on GPU %s: %v", ErrMIG, giID, gpu, ret)
	}
	for cp := 0; cp < gonvml.COMPUTE_INSTANCE_PROFILE_COUNT; cp++ {
		ciInfo, ret := gi.GetComputeInstanceProfileInfo(cp, gonvml.COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED)
		if ret != gonvml.SUCCESS {
			continue
		}
		cis, ret := gi.GetComputeInstances(&ciInfo)
		if ret != gonvml.SUCCESS {
			continue
		}
		for _, ci := range cis {
			if ret := ci.Destroy(); ret != gonvml.SUCCESS {
				return fmt.Errorf("%w: destroy compute instance of %s: %v", ErrMIG, instance, ret)
			}
		}
	}
	if ret := gi.Destroy(); ret != gonvml.SUCCESS {
		return fmt.Errorf("%w: destroy GPU instance of %s: %v", ErrMIG, instance, ret)
	}
	return nil
}

// Samples reads every GPU's utilisation, framebuffer memory, power and
// temperature, and the framebuffer of each MIG instance (NVML reports no
// utilisation per instance).
func (l *Library) Samples() ([]Sample, error) {
	if err := l.init(); err != nil {
		return nil, err
	}
	n, ret := l.lib.DeviceGetCount()
	if ret != gonvml.SUCCESS {
		return nil, nvErr("count GPUs", ret)
	}
	nan := math.NaN()
	var out []Sample
	for i := 0; i < n; i++ {
		dev, ret := l.lib.DeviceGetHandleByIndex(i)
		if ret != gonvml.SUCCESS {
			continue
		}
		s := Sample{Index: i, Minor: -1, Util: nan, FBUsed: nan, FBFree: nan, FBSize: nan, Power: nan, Temp: nan}
		if u, ret := dev.GetUUID(); ret == gonvml.SUCCESS {
			s.UUID = u
		} else {
			continue
		}
		if idx, ret := dev.GetIndex(); ret == gonvml.SUCCESS {
			s.Index = idx
		}
		if m, ret := dev.GetMinorNumber(); ret == gonvml.SUCCESS {
			s.Minor = m
		}
		if name, ret := dev.GetName(); ret == gonvml.SUCCESS {
			s.Model = name
		}
		if pci, ret := dev.GetPciInfo(); ret == gonvml.SUCCESS {
			s.PCIBusID = cString(pci.BusId[:])
		}
		if u, ret := dev.GetUtilizationRates(); ret == gonvml.SUCCESS {
			s.Util = float64(u.Gpu)
		}
		if m, ret := dev.GetMemoryInfo(); ret == gonvml.SUCCESS {
			s.FBUsed, s.FBFree, s.FBSize = float64(m.Used>>20), float64(m.Free>>20), float64(m.Total>>20)
		}
		if p, ret := dev.GetPowerUsage(); ret == gonvml.SUCCESS {
			s.Power = float64(p) / 1000
		}
		if t, ret := dev.GetTemperature(gonvml.TEMPERATURE_GPU); ret == gonvml.SUCCESS {
			s.Temp = float64(t)
		}
		out = append(out, s)
		if cur, _, ret := dev.GetMigMode(); ret != gonvml.SUCCESS || cur != gonvml.DEVICE_MIG_ENABLE {
			continue
		}
		ins, err := l.instances(dev, l.profiles(dev))
		if err != nil {
			continue
		}
		profileOf := map[int]string{}
		for _, in := range ins {
			profileOf[in.GI] = in.Profile
		}
		for _, md := range migDevices(dev) {
			ms := s
			ms.Util, ms.Power, ms.Temp, ms.FBUsed, ms.FBFree, ms.FBSize = nan, nan, nan, nan, nan, nan
			ms.MIG = &InstanceRef{UUID: md.uuid, GI: md.gi, Profile: profileOf[md.gi]}
			if m, ret := md.dev.GetMemoryInfo(); ret == gonvml.SUCCESS {
				ms.FBUsed, ms.FBFree, ms.FBSize = float64(m.Used>>20), float64(m.Free>>20), float64(m.Total>>20)
			}
			out = append(out, ms)
		}
	}
	return out, nil
}

// xidWait is how long one wait for events blocks, in milliseconds: the
// longest WatchXID takes to notice that ctx ended.
const xidWait = 1000

// WatchXID calls fn for every XID error NVML reports on any GPU until ctx
// ends. It returns an error when it cannot watch at all (no driver, event
// sets not supported); GPUs that do not support XID events are skipped.
func (l *Library) WatchXID(ctx context.Context, fn func(XIDEvent)) error {
	if err := l.init(); err != nil {
		return err
	}
	set, ret := l.lib.EventSetCreate()
	if ret != gonvml.SUCCESS {
		return nvErr("create NVML event set", ret)
	}
	defer set.Free()
	n, ret := l.lib.DeviceGetCount()
	if ret != gonvml.SUCCESS {
		return nvErr("count GPUs", ret)
	}
	uuidOf := map[gonvml.Device]string{}
	registered := 0
	var errs []error
	for i := 0; i < n; i++ {
		dev, ret := l.lib.DeviceGetHandleByIndex(i)
		if ret != gonvml.SUCCESS {
			continue
		}
		mask := uint64(gonvml.EventTypeXidCriticalError)
		if sup, ret := dev.GetSupportedEventTypes(); ret == gonvml.SUCCESS {
			mask &= sup
		}
		if mask == 0 {
			continue
		}
		if ret := dev.RegisterEvents(mask, set); ret != gonvml.SUCCESS {
			errs = append(errs, nvErr(fmt.Sprintf("watch XID events of GPU %d", i), ret))
			continue
		}
		if u, ret := dev.GetUUID(); ret == gonvml.SUCCESS {
			uuidOf[dev] = u
		}
		registered++
	}
	if registered == 0 && len(errs) > 0 {
		return errors.Join(errs...)
	}
	for ctx.Err() == nil {
		ev, ret := set.Wait(xidWait)
		switch ret {
		case gonvml.SUCCESS:
		case gonvml.ERROR_TIMEOUT:
			continue
		default:
			if ctx.Err() != nil {
				return nil
			}
			return nvErr("wait for NVML events", ret)
		}
		if ev.EventType&gonvml.EventTypeXidCriticalError == 0 {
			continue
		}
		x := XIDEvent{XID: ev.EventData, GI: -1}
		if u, ok := uuidOf[ev.Device]; ok {
			x.UUID = u
		} else if ev.Device != nil {
			if u, ret := ev.Device.GetUUID(); ret == gonvml.SUCCESS {
				x.UUID = u
			}
		}
		if ev.GpuInstanceId != math.MaxUint32 {
			x.GI = int(ev.GpuInstanceId)
		}
		fn(x)
	}
	return nil
}
