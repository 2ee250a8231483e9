package vsphere

import (
	"github.com/gantryhq/gantry/internal/api"
	"github.com/prometheus/client_golang/prometheus"
)

// Label sets of the gantry_vsphere_* series.
var (
	vcenterLabels   = []string{"vcenter"}
	hostLabels      = []string{"vcenter", "datacenter", "cluster", "host"}
	vmLabels        = []string{"vcenter", "datacenter", "cluster", "host", "vm"}
	datastoreLabels = []string{"vcenter", "datacenter", "datastore"}
)

// perfSeries are the per-sample gauges of hosts and VMs: the name after
// gantry_vsphere_{host,vm}_, its help, and how to read it from a sample.
var perfSeries = []struct {
	name, help string
	get        func(api.VSphereSample) float64
}{
	{"cpu_usage_percent", "CPU usage in percent of capacity (cpu.usage.average).", func(s api.VSphereSample) float64 { return float64(s.CPUUsage) }},
	{"cpu_ready_percent", "CPU ready time in percent of the 20 s interval per vCPU (per core for hosts) (cpu.ready.summation).", func(s api.VSphereSample) float64 { return float64(s.CPUReady) }},
	{"memory_usage_percent", "Memory usage in percent (mem.usage.average).", func(s api.VSphereSample) float64 { return float64(s.MemUsage) }},
	{"memory_ballooned_bytes", "Memory reclaimed by the balloon driver (mem.vmmemctl.average).", func(s api.VSphereSample) float64 { return float64(s.BalloonMiB) * (1 << 20) }},
	{"memory_swapped_bytes", "Memory swapped by the hypervisor (mem.swapped / mem.swapused).", func(s api.VSphereSample) float64 { return float64(s.SwappedMiB) * (1 << 20) }},
	{"disk_latency_seconds", "Highest disk latency of the interval (disk.maxTotalLatency.latest).", func(s api.VSphereSample) float64 { return float64(s.DiskLatencyMs) / 1000 }},
	{"network_bytes_per_second", "Network throughput, received and sent (net.usage.average).", func(s api.VSphereSample) float64 { return float64(s.NetKBps) * 1024 }},
}

// Metrics is the Prometheus collector of every running Collector's
// inventory and latest samples, and of Gantry's own VMs.
type Metrics struct {
	collectors func() []*Collector
	gantry     func() []GantryVM
	up         *prometheus.Desc
	hostUp     *prometheus.Desc
	hostMaint  *prometheus.Desc
	vmOn       *prometheus.Desc
	dsCap      *prometheus.Desc
	dsFree     *prometheus.Desc
	host, vm   []*prometheus.Desc
}

// NewMetrics serves the series of the collectors the first function
// returns, and those of the VMs the second returns (nil: none) under
// vcenter="gantry": gantry_vsphere_vm_powered_on, and of the performance
// series only the two Gantry measures, CPU and memory usage.
func NewMetrics(collectors func() []*Collector, gantry func() []GantryVM) *Metrics {
	m := &Metrics{
		collectors: collectors,
		gantry:     gantry,
		up:         prometheus.NewDesc("gantry_vsphere_up", "1 while the vCenter connection is up, 0 while it is retried.", vcenterLabels, nil),
		hostUp:     prometheus.NewDesc("gantry_vsphere_host_connected", "1 while the ESXi host is connected to vCenter.", hostLabels, nil),
		hostMaint:  prometheus.NewDesc("gantry_vsphere_host_maintenance", "1 while the ESXi host is in maintenance mode.", hostLabels, nil),
		vmOn:       prometheus.NewDesc("gantry_vsphere_vm_powered_on", "1 while the VM is powered on.", vmLabels, nil),
		dsCap:      prometheus.NewDesc("gantry_vsphere_datastore_capacity_bytes", "Datastore capacity.", datastoreLabels, nil),
		dsFree:     prometheus.NewDesc("gantry_vsphere_datastore_free_bytes", "Datastore free space.", datastoreLabels, nil),
	}
	for _, p := range perfSeries {
		m.host = append(m.host, prometheus.NewDesc("gantry_vsphere_host_"+p.name, "ESXi host: "+p.help, hostLabels, nil))
		m.vm = append(m.vm, prometheus.NewDesc("gantry_vsphere_vm_"+p.name, "VM: "+p.help, vmLabels, nil))
	}
	return m
}

// Describe sends every series' description.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range append([]*prometheus.Desc{m.up, m.hostUp, m.hostMaint, m.vmOn, m.dsCap, m.dsFree}, append(m.host, m.vm...)...) {
		ch <- d
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Collect sends the current values.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.collectors() {
		c.mu.RLock()
		name := c.conn.Name
		ch <- prometheus.MustNewConstMetric(m.up, prometheus.GaugeValue, b2f(c.st.Connected), name)
		if inv := c.inv; inv != nil {
			for _, h := range inv.Hosts {
				ls := []string{name, h.Datacenter, h.Cluster, h.Name}
				ch <- prometheus.MustNewConstMetric(m.hostUp, prometheus.GaugeValue, b2f(h.ConnectionState == "connected"), ls...)
				ch <- prometheus.MustNewConstMetric(m.hostMaint, prometheus.GaugeValue, b2f(h.Maintenance), ls...)
				if s, ok := c.hist.Latest(h.ID); ok {
					for i, p := range perfSeries {
						ch <- prometheus.MustNewConstMetric(m.host[i], prometheus.GaugeValue, p.get(s), ls...)
					}
				}
			}
			// vCenter allows two VMs of one name in different folders; the
			// second would clash with the first's series, so it is left out.
			seen := make(map[[2]string]bool, len(inv.VMs))
			for _, v := range inv.VMs {
				if v.Template || seen[[2]string{v.Host, v.Name}] {
					continue
				}
				seen[[2]string{v.Host, v.Name}] = true
				ls := []string{name, v.Datacenter, v.Cluster, v.Host, v.Name}
				ch <- prometheus.MustNewConstMetric(m.vmOn, prometheus.GaugeValue, b2f(v.PowerState == "poweredOn"), ls...)
				if s, ok := c.hist.Latest(v.ID); ok && v.PowerState == "poweredOn" {
					for i, p := range perfSeries {
						ch <- prometheus.MustNewConstMetric(m.vm[i], prometheus.GaugeValue, p.get(s), ls...)
					}
				}
			}
			for _, d := range inv.Datastores {
				ls := []string{name, d.Datacenter, d.Name}
				ch <- prometheus.MustNewConstMetric(m.dsCap, prometheus.GaugeValue, float64(d.CapacityBytes), ls...)
				ch <- prometheus.MustNewConstMetric(m.dsFree, prometheus.GaugeValue, float64(d.FreeBytes), ls...)
			}
		}
		c.mu.RUnlock()
	}
	if m.gantry == nil {
		return
	}
	for _, v := range m.gantry() {
		ls := []string{GantrySource, v.Datacenter, v.Cluster, v.Host, v.Name}
		ch <- prometheus.MustNewConstMetric(m.vmOn, prometheus.GaugeValue, b2f(v.PowerState == "poweredOn"), ls...)
		if s := v.Latest; s != nil {
			ch <- prometheus.MustNewConstMetric(m.vm[gantryCPU], prometheus.GaugeValue, float64(s.CPUUsage), ls...)
			ch <- prometheus.MustNewConstMetric(m.vm[gantryMem], prometheus.GaugeValue, float64(s.MemUsage), ls...)
		}
	}
}

// The perfSeries Gantry's VMs have.
const (
	gantryCPU = 0 // cpu_usage_percent
	gantryMem = 2 // memory_usage_percent
)
