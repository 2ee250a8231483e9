package agent

import (
	"bufio"
	"context"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/driver"
	"github.com/gantryhq/gantry/internal/gpu/nvml"
	"github.com/gantryhq/gantry/internal/metrics"
)

// DefaultSampleInterval is how often the agent reads the node's usage.
const DefaultSampleInterval = 10 * time.Second

// sampler reads the node (CPU, memory, disk), its GPUs and its running
// tasks every interval. The last reading is what /metrics publishes and
// what the next heartbeat carries to the servers' history.
type sampler struct {
	a        *Agent
	hostname string

	mu       sync.Mutex
	snap     *metrics.Snapshot
	sample   *api.NodeSample
	sent     time.Time
	prevCPU  cpuTimes
	prevTask map[string]taskCPU // by handle ID
}

type cpuTimes struct{ busy, total uint64 }

type taskCPU struct {
	cpu time.Duration
	at  time.Time
}

func newSampler(a *Agent) *sampler {
	h, _ := os.Hostname()
	return &sampler{a: a, hostname: h, prevTask: map[string]taskCPU{}}
}

func (s *sampler) run(ctx context.Context, every time.Duration) {
	for ctx.Err() == nil {
		s.sampleOnce(ctx)
		sleep(ctx, every)
	}
}

// latest is the last snapshot, for the metrics collector.
func (s *sampler) latest() *metrics.Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snap
}

// unsent returns the last sample if no heartbeat carried it yet.
func (s *sampler) unsent() *api.NodeSample {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sample == nil || !s.sample.Time.After(s.sent) {
		return nil
	}
	s.sent = s.sample.Time
	c := *s.sample
	return &c
}

func (s *sampler) sampleOnce(ctx context.Context) {
	now := time.Now()
	snap := &metrics.Snapshot{Node: s.a.cfg.NodeName, Hostname: s.hostname}
	ns := &api.NodeSample{Time: now.UTC()}

	cores := float64(numCPU())
	snap.CPUTotalMilli = cores * 1000
	ns.CPUTotal = int(snap.CPUTotalMilli)
	snap.CPUUsedMilli = math.NaN()
	cur, ok := readCPUTimes()
	s.mu.Lock()
	prev := s.prevCPU
	if ok {
		s.prevCPU = cur
	}
	s.mu.Unlock()
	if ok && prev.total > 0 && cur.total > prev.total {
		snap.CPUUsedMilli = math.Round(float64(cur.busy-prev.busy) / float64(cur.total-prev.total) * snap.CPUTotalMilli)
		ns.CPUUsed = int(snap.CPUUsedMilli)
	}
	if total, avail, ok := readMemory(); ok {
		snap.MemoryTotalBytes, snap.MemoryUsedBytes = float64(total), float64(total-avail)
		ns.MemoryTotal, ns.MemoryUsed = int(total>>20), int((total-avail)>>20)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(s.a.cfg.DataDir, &st); err == nil {
		total := st.Blocks * uint64(st.Bsize)
		used := (st.Blocks - st.Bfree) * uint64(st.Bsize)
		snap.DiskTotalBytes, snap.DiskUsedBytes = float64(total), float64(used)
		ns.DiskTotal, ns.DiskUsed = int(total>>20), int(used>>20)
	}

	holders, tasks := s.a.gpuHolders()
	if rt := s.a.gpus.cfg.Runtime; rt != nil {
		if samples, err := rt.Samples(); err == nil {
			s.a.gpus.mu.Lock()
			unhealthy := map[string]string{}
			if s.a.gpus.inv != nil {
				for i := range s.a.gpus.inv.Devices {
					d := s.a.gpus.deviceLocked(&s.a.gpus.inv.Devices[i])
					unhealthy[d.UUID] = d.HealthReason
				}
			}
			for _, x := range samples {
				r := reading(x)
				if x.MIG == nil {
					r.LastXID = float64(s.a.gpus.lastXID[x.UUID])
					r.Unhealthy = unhealthy[x.UUID]
					r.Holders = holders[x.UUID]
					ns.GPUs = append(ns.GPUs, gpuSample(x))
				} else {
					r.Holders = holders[x.MIG.UUID]
				}
				snap.GPUs = append(snap.GPUs, r)
			}
			s.a.gpus.mu.Unlock()
		}
	}

	seen := map[string]bool{}
	for _, t := range tasks {
		st, ok := t.drv.(driver.Stats)
		if !ok {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ts, err := st.Stats(cctx, t.h)
		cancel()
		if err != nil {
			continue
		}
		seen[t.h.ID] = true
		r := metrics.AllocReading{Holder: t.holder, Task: t.task, CPUMilli: math.NaN(), MemoryBytes: float64(ts.MemoryBytes)}
		var disks []api.DiskSample
		for _, d := range ts.Disks {
			r.Disks = append(r.Disks, metrics.DiskReading{Device: d.Device, ReadBytes: float64(d.ReadBytes), WriteBytes: float64(d.WriteBytes),
				ReadOps: float64(d.ReadOps), WriteOps: float64(d.WriteOps)})
			disks = append(disks, api.DiskSample{Device: d.Device, ReadBytes: int64(d.ReadBytes), WriteBytes: int64(d.WriteBytes),
				ReadOps: int64(d.ReadOps), WriteOps: int64(d.WriteOps)})
		}
		var nets []api.NetworkSample
		for _, n := range ts.Networks {
			r.Networks = append(r.Networks, metrics.NetworkReading{Device: n.Device, RxBytes: float64(n.RxBytes), TxBytes: float64(n.TxBytes),
				RxPackets: float64(n.RxPackets), TxPackets: float64(n.TxPackets)})
			nets = append(nets, api.NetworkSample{Device: n.Device, RxBytes: int64(n.RxBytes), TxBytes: int64(n.TxBytes),
				RxPackets: int64(n.RxPackets), TxPackets: int64(n.TxPackets)})
		}
		s.mu.Lock()
		if p, ok := s.prevTask[t.h.ID]; ok && now.After(p.at) && ts.CPU >= p.cpu {
			r.CPUMilli = math.Round(float64(ts.CPU-p.cpu) / float64(now.Sub(p.at)) * 1000)
		}
		s.prevTask[t.h.ID] = taskCPU{cpu: ts.CPU, at: now}
		s.mu.Unlock()
		snap.Allocs = append(snap.Allocs, r)
		as := api.AllocSample{Alloc: t.holder.Alloc, Task: t.task, MemoryBytes: int64(ts.MemoryBytes), Disks: disks, Networks: nets}
		if !math.IsNaN(r.CPUMilli) {
			cpu := int(r.CPUMilli)
			as.CPUUsed = &cpu
		}
		ns.Allocs = append(ns.Allocs, as)
	}
	s.mu.Lock()
	for id := range s.prevTask {
		if !seen[id] {
			delete(s.prevTask, id)
		}
	}
	s.snap, s.sample = snap, ns
	s.mu.Unlock()
}

func reading(x nvml.Sample) metrics.GPUReading {
	r := metrics.GPUReading{Index: x.Index, UUID: x.UUID, Minor: x.Minor, Model: x.Model, PCIBusID: x.PCIBusID, GI: -1,
		Util: x.Util, FBUsed: x.FBUsed, FBFree: x.FBFree, Power: x.Power, Temp: x.Temp}
	if x.MIG != nil {
		r.Profile, r.GI = x.MIG.Profile, x.MIG.GI
	}
	return r
}

func gpuSample(x nvml.Sample) api.GPUSample {
	num := func(v float64) *float64 {
		if math.IsNaN(v) {
			return nil
		}
		return &v
	}
	g := api.GPUSample{UUID: x.UUID, Util: num(x.Util), Power: num(x.Power), Temp: num(x.Temp)}
	if !math.IsNaN(x.FBUsed) {
		g.MemoryUsed = int(x.FBUsed)
	}
	if !math.IsNaN(x.FBSize) {
		g.MemoryTotal = int(x.FBSize)
	}
	return g
}

// runningTask is a task the sampler reads.
type runningTask struct {
	holder metrics.Holder
	task   string
	drv    driver.Driver
	h      *driver.Handle
}

// gpuHolders maps each GPU and MIG instance UUID to the live allocations
// that hold it, and lists the running tasks.
func (a *Agent) gpuHolders() (map[string][]metrics.Holder, []runningTask) {
	a.mu.Lock()
	runners := make([]*allocRunner, 0, len(a.runners))
	for _, r := range a.runners {
		runners = append(runners, r)
	}
	a.mu.Unlock()
	holders := map[string][]metrics.Holder{}
	var tasks []runningTask
	for _, r := range runners {
		al := r.current()
		if al.Terminal() {
			continue
		}
		h := metrics.Holder{Namespace: al.Namespace, Job: al.Job, Group: al.Group, Alloc: al.ID}
		for name, res := range al.Resources {
			for _, u := range r.gpuUUIDs(name, res) {
				holders[u] = append(holders[u], h)
			}
		}
		for _, tr := range r.taskList() {
			if h2 := tr.currentHandle(); h2 != nil && tr.snapshot().State == api.TaskRunning && tr.drv != nil {
				tasks = append(tasks, runningTask{holder: h, task: tr.task.Name, drv: tr.drv, h: h2})
			}
		}
	}
	return holders, tasks
}

// gpuUUIDs lists the GPUs and MIG instances a task of the allocation
// holds: whole GPUs, the GPU of a share, a MIG instance (as the agent
// resolved it when the server does not know its UUID yet).
func (r *allocRunner) gpuUUIDs(task string, res *api.AllocatedResources) []string {
	if res == nil || res.GPU == nil {
		return nil
	}
	g := res.GPU
	switch {
	case len(g.Devices) > 0:
		return g.Devices
	case g.Share != nil:
		return []string{g.Share.GPU}
	case g.MIG != nil:
		u := g.MIG.InstanceUUID
		if m := r.migInstance(task); m != "" {
			u = m
		}
		if u != "" {
			return []string{u}
		}
	}
	return nil
}

// migInstance is the MIG instance the agent created or resolved for a
// task of the allocation, if any.
func (r *allocRunner) migInstance(task string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mig[task]
}

func (r *allocRunner) setMIGInstance(task, uuid string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mig == nil {
		r.mig = map[string]string{}
	}
	r.mig[task] = uuid
}

// migInstances is what the allocation's report tells the servers.
func (r *allocRunner) migInstances() map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.mig) == 0 {
		return nil
	}
	out := make(map[string]string, len(r.mig))
	for k, v := range r.mig {
		out[k] = v
	}
	return out
}

// instancesInUse lists the MIG instances the node's live allocations
// hold.
func (a *Agent) instancesInUse() map[string]bool {
	holders, _ := a.gpuHolders()
	out := make(map[string]bool, len(holders))
	for u := range holders {
		out[u] = true
	}
	return out
}

func numCPU() int { return runtime.NumCPU() }

// readCPUTimes reads the node's busy and total CPU time (jiffies).
func readCPUTimes() (cpuTimes, bool) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return cpuTimes{}, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return cpuTimes{}, false
	}
	fields := strings.Fields(sc.Text())
	if len(fields) < 5 || fields[0] != "cpu" {
		return cpuTimes{}, false
	}
	var t cpuTimes
	for i, v := range fields[1:] {
		n, _ := strconv.ParseUint(v, 10, 64)
		if i >= 8 { // guest time is already in user time
			break
		}
		t.total += n
		if i != 3 && i != 4 { // idle, iowait
			t.busy += n
		}
	}
	return t, true
}

// MemAvailable is the node's available memory (MemAvailable of
// /proc/meminfo) in bytes; false when it cannot be read.
func MemAvailable() (uint64, bool) {
	_, avail, ok := readMemory()
	return avail, ok
}

// readMemory reads MemTotal and MemAvailable in bytes.
func readMemory() (total, avail uint64, ok bool) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	var got int
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "MemTotal":
			total, got = kb<<10, got+1
		case "MemAvailable":
			avail, got = kb<<10, got+1
		}
	}
	return total, avail, got == 2 && avail <= total
}
