package metrics

import (
	"math"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Holder is the allocation that holds a GPU, or runs a task.
type Holder struct {
	Namespace, Job, Group, Alloc string
}

// GPUReading is one GPU, or one MIG instance of it, as last sampled. A
// figure the device does not report is NaN and its series is left out.
type GPUReading struct {
	Index     int
	UUID      string
	Minor     int // /dev/nvidia<Minor>; -1 unknown
	Model     string
	PCIBusID  string
	Profile   string // MIG profile; "" for the whole GPU
	GI        int    // MIG GPU instance id; -1 for the whole GPU
	Util      float64
	FBUsed    float64
	FBFree    float64
	Power     float64
	Temp      float64
	LastXID   float64 // 0 when none
	Holders   []Holder
	Unhealthy string // why the GPU takes no new work; only on whole-GPU readings
}

// AllocReading is one task's usage.
type AllocReading struct {
	Holder
	Task        string
	CPUMilli    float64
	MemoryBytes float64
	Disks       []DiskReading    // a VM's virtual disks
	Networks    []NetworkReading // a VM's network interfaces
}

// NetworkReading is one network interface's counters since its VM
// started, from the guest's side.
type NetworkReading struct {
	Device                                 string
	RxBytes, TxBytes, RxPackets, TxPackets float64
}

// DiskReading is one virtual disk's counters since its VM started.
type DiskReading struct {
	Device                                   string
	ReadBytes, WriteBytes, ReadOps, WriteOps float64
}

// Snapshot is what an agent last sampled.
type Snapshot struct {
	Node     string // node name
	Hostname string // for DCGM's Hostname label

	CPUUsedMilli, CPUTotalMilli       float64
	MemoryUsedBytes, MemoryTotalBytes float64
	DiskUsedBytes, DiskTotalBytes     float64

	GPUs   []GPUReading
	Allocs []AllocReading
}

type nodeCollector struct {
	src func() *Snapshot

	gpu                                     map[string]*prometheus.Desc
	cpuUsed, cpuTotal, memUsed, memTotal    *prometheus.Desc
	diskUsed, diskTotal, gpus, gpuUnhealthy *prometheus.Desc
	allocCPU, allocMem                      *prometheus.Desc
	diskRead, diskWritten, diskReads        *prometheus.Desc
	diskWrites                              *prometheus.Desc
	netRxBytes, netTxBytes                  *prometheus.Desc
	netRxPackets, netTxPackets              *prometheus.Desc
}

var gpuHelp = map[string]string{
	DCGMGPUUtil:    "GPU utilization (in %).",
	DCGMFBUsed:     "Framebuffer memory used (in MiB).",
	DCGMFBFree:     "Framebuffer memory free (in MiB).",
	DCGMPowerUsage: "Power draw (in W).",
	DCGMGPUTemp:    "GPU temperature (in C).",
	DCGMXIDErrors:  "Value of the last XID error encountered.",
}

// NewNodeCollector publishes the agent's latest Snapshot, which src
// returns (nil: nothing sampled yet), under the GPU (DCGM), node and
// allocation series of names.go.
func NewNodeCollector(src func() *Snapshot) prometheus.Collector {
	c := &nodeCollector{src: src, gpu: map[string]*prometheus.Desc{}}
	for name, help := range gpuHelp {
		c.gpu[name] = prometheus.NewDesc(name, help, GPULabels, nil)
	}
	node := []string{"node"}
	c.cpuUsed = prometheus.NewDesc(NodeCPUUsed, "CPU time used on the node over the last sampling interval, in millicores.", node, nil)
	c.cpuTotal = prometheus.NewDesc(NodeCPUTotal, "CPU capacity of the node, in millicores.", node, nil)
	c.memUsed = prometheus.NewDesc(NodeMemoryUsed, "Memory in use on the node (total minus available), in bytes.", node, nil)
	c.memTotal = prometheus.NewDesc(NodeMemoryTotal, "Memory of the node, in bytes.", node, nil)
	c.diskUsed = prometheus.NewDesc(NodeDiskUsed, "Disk used on the file system of the agent's data directory, in bytes.", node, nil)
	c.diskTotal = prometheus.NewDesc(NodeDiskTotal, "Size of the file system of the agent's data directory, in bytes.", node, nil)
	c.gpus = prometheus.NewDesc(NodeGPUs, "GPUs the node discovered.", node, nil)
	c.gpuUnhealthy = prometheus.NewDesc(NodeGPUHealth, "1 for each GPU that takes no new work, with the reason.", []string{"node", "gpu", "UUID", "reason"}, nil)
	c.allocCPU = prometheus.NewDesc(AllocCPUUsed, "CPU time a task used over the last sampling interval, in millicores.", AllocLabels, nil)
	c.allocMem = prometheus.NewDesc(AllocMemoryUsed, "Memory a task uses, in bytes.", AllocLabels, nil)
	c.diskRead = prometheus.NewDesc(AllocDiskReadBytes, "Bytes a VM's guest read from a virtual disk since the VM started (QEMU query-blockstats).", AllocDiskLabels, nil)
	c.diskWritten = prometheus.NewDesc(AllocDiskWrittenBytes, "Bytes a VM's guest wrote to a virtual disk since the VM started (QEMU query-blockstats).", AllocDiskLabels, nil)
	c.diskReads = prometheus.NewDesc(AllocDiskReads, "Read requests a VM's guest made to a virtual disk since the VM started.", AllocDiskLabels, nil)
	c.diskWrites = prometheus.NewDesc(AllocDiskWrites, "Write requests a VM's guest made to a virtual disk since the VM started.", AllocDiskLabels, nil)
	c.netRxBytes = prometheus.NewDesc(AllocNetReceiveBytes, "Bytes of the Ethernet frames a VM's guest received on a network interface since the VM started.", AllocDiskLabels, nil)
	c.netTxBytes = prometheus.NewDesc(AllocNetTransmitBytes, "Bytes of the Ethernet frames a VM's guest sent on a network interface since the VM started.", AllocDiskLabels, nil)
	c.netRxPackets = prometheus.NewDesc(AllocNetReceivePackets, "Ethernet frames a VM's guest received on a network interface since the VM started.", AllocDiskLabels, nil)
	c.netTxPackets = prometheus.NewDesc(AllocNetTransmitPackets, "Ethernet frames a VM's guest sent on a network interface since the VM started.", AllocDiskLabels, nil)
	return c
}

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.gpu {
		ch <- d
	}
	for _, d := range []*prometheus.Desc{c.cpuUsed, c.cpuTotal, c.memUsed, c.memTotal, c.diskUsed, c.diskTotal, c.gpus, c.gpuUnhealthy, c.allocCPU, c.allocMem,
		c.diskRead, c.diskWritten, c.diskReads, c.diskWrites,
		c.netRxBytes, c.netTxBytes, c.netRxPackets, c.netTxPackets} {
		ch <- d
	}
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	if math.IsNaN(v) {
		return
	}
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func counter(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.src()
	if s == nil {
		return
	}
	gauge(ch, c.cpuUsed, s.CPUUsedMilli, s.Node)
	gauge(ch, c.cpuTotal, s.CPUTotalMilli, s.Node)
	gauge(ch, c.memUsed, s.MemoryUsedBytes, s.Node)
	gauge(ch, c.memTotal, s.MemoryTotalBytes, s.Node)
	gauge(ch, c.diskUsed, s.DiskUsedBytes, s.Node)
	gauge(ch, c.diskTotal, s.DiskTotalBytes, s.Node)
	whole := 0
	for _, g := range s.GPUs {
		if g.GI >= 0 {
			continue
		}
		whole++
		if g.Unhealthy != "" {
			ch <- prometheus.MustNewConstMetric(c.gpuUnhealthy, prometheus.GaugeValue, 1, s.Node, strconv.Itoa(g.Index), g.UUID, g.Unhealthy)
		}
	}
	gauge(ch, c.gpus, float64(whole), s.Node)
	for _, g := range s.GPUs {
		device := ""
		if g.Minor >= 0 {
			device = "nvidia" + strconv.Itoa(g.Minor)
		}
		gi := ""
		if g.GI >= 0 {
			gi = strconv.Itoa(g.GI)
		}
		holders := g.Holders
		if len(holders) == 0 {
			holders = []Holder{{}}
		}
		for _, h := range holders {
			labels := []string{strconv.Itoa(g.Index), g.UUID, device, g.Model, s.Hostname, g.PCIBusID, g.Profile, gi,
				h.Namespace, h.Job, h.Group, h.Alloc}
			gauge(ch, c.gpu[DCGMGPUUtil], g.Util, labels...)
			gauge(ch, c.gpu[DCGMFBUsed], g.FBUsed, labels...)
			gauge(ch, c.gpu[DCGMFBFree], g.FBFree, labels...)
			gauge(ch, c.gpu[DCGMPowerUsage], g.Power, labels...)
			gauge(ch, c.gpu[DCGMGPUTemp], g.Temp, labels...)
			if g.GI < 0 {
				gauge(ch, c.gpu[DCGMXIDErrors], g.LastXID, labels...)
			}
		}
	}
	for _, a := range s.Allocs {
		gauge(ch, c.allocCPU, a.CPUMilli, a.Namespace, a.Job, a.Group, a.Alloc, a.Task)
		gauge(ch, c.allocMem, a.MemoryBytes, a.Namespace, a.Job, a.Group, a.Alloc, a.Task)
		for _, d := range a.Disks {
			l := []string{a.Namespace, a.Job, a.Group, a.Alloc, a.Task, d.Device}
			counter(ch, c.diskRead, d.ReadBytes, l...)
			counter(ch, c.diskWritten, d.WriteBytes, l...)
			counter(ch, c.diskReads, d.ReadOps, l...)
			counter(ch, c.diskWrites, d.WriteOps, l...)
		}
		for _, n := range a.Networks {
			l := []string{a.Namespace, a.Job, a.Group, a.Alloc, a.Task, n.Device}
			counter(ch, c.netRxBytes, n.RxBytes, l...)
			counter(ch, c.netTxBytes, n.TxBytes, l...)
			counter(ch, c.netRxPackets, n.RxPackets, l...)
			counter(ch, c.netTxPackets, n.TxPackets, l...)
		}
	}
}
