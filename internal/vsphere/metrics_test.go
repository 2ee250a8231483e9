package vsphere_test

import (
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/metrics"
	"github.com/gantryhq/gantry/internal/vsphere"
	"github.com/gantryhq/gantry/internal/vsphere/vcsim"
)

// TestMetricNamesAndLabels gathers the series of a collector over the
// simulator and checks each name's labels against the table: the
// contract of the alert rules and the Grafana board.
func TestMetricNamesAndLabels(t *testing.T) {
	host := "cluster,datacenter,host,vcenter"
	vm := "cluster,datacenter,host,vcenter,vm"
	ds := "datacenter,datastore,vcenter"
	want := map[string]string{
		"gantry_vsphere_up":                       "vcenter",
		"gantry_vsphere_host_connected":           host,
		"gantry_vsphere_host_maintenance":         host,
		"gantry_vsphere_vm_powered_on":            vm,
		"gantry_vsphere_datastore_capacity_bytes": ds,
		"gantry_vsphere_datastore_free_bytes":     ds,
	}
	for _, s := range []string{"cpu_usage_percent", "cpu_ready_percent", "memory_usage_percent", "memory_ballooned_bytes",
		"memory_swapped_bytes", "disk_latency_seconds", "network_bytes_per_second"} {
		want["gantry_vsphere_host_"+s] = host
		want["gantry_vsphere_vm_"+s] = vm
	}
	s := startSim(t, vcsim.Default())
	c := vsphere.NewCollector(conn(s), vsphere.Options{Interval: 100 * time.Millisecond})
	run(t, c)
	eventually(t, 30*time.Second, "a performance round", func() bool { return c.Status(false).RoundDuration > 0 })
	reg := metrics.NewBareRegistry()
	reg.MustRegister(vsphere.NewMetrics(func() []*vsphere.Collector { return []*vsphere.Collector{c} }, nil))
	fams, err := reg.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, f := range fams {
		for _, m := range f.Metric {
			var ls []string
			for _, l := range m.Label {
				ls = append(ls, l.GetName())
				if l.GetName() == "vcenter" && l.GetValue() != "vc1" {
					t.Errorf("%s: vcenter %q", f.GetName(), l.GetValue())
				}
			}
			sort.Strings(ls)
			got[f.GetName()] = strings.Join(ls, ",")
		}
	}
	for name, labels := range want {
		if got[name] != labels {
			t.Errorf("%s: labels %q, want %q", name, got[name], labels)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("series %s is not in the table", name)
		}
	}
}
