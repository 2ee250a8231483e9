package metrics

import (
	"math"
	"net/http/httptest"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	dto "github.com/prometheus/client_model/go"
)

func scrape(t *testing.T, r *Registry) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	r.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("/metrics answered %d: %s", rec.Code, rec.Body)
	}
	fams, err := ParseText(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

func labels(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

func TestNodeCollectorDCGMNames(t *testing.T) {
	nan := math.NaN()
	snap := &Snapshot{
		Node: "gpu-1", Hostname: "gpu-1.example",
		CPUUsedMilli: 1500, CPUTotalMilli: 16000, MemoryUsedBytes: 1 << 30, MemoryTotalBytes: 8 << 30,
		DiskUsedBytes: 5 << 30, DiskTotalBytes: 50 << 30,
		GPUs: []GPUReading{
			{Index: 0, UUID: "GPU-a", Minor: 0, Model: "NVIDIA H100 80GB HBM3", PCIBusID: "00000000:07:00.0", GI: -1,
				Util: 87, FBUsed: 1000, FBFree: 80000, Power: 312.5, Temp: 41, LastXID: 0,
				Holders: []Holder{{"default", "train", "workers", "alloc-1"}}},
			{Index: 1, UUID: "GPU-b", Minor: 1, Model: "NVIDIA A100-SXM4-40GB", GI: -1, Util: nan, FBUsed: 10, FBFree: 40000,
				Power: 50, Temp: 30, LastXID: 79, Unhealthy: "XID 79: GPU has fallen off the bus"},
			{Index: 1, UUID: "GPU-b", Minor: 1, Model: "NVIDIA A100-SXM4-40GB", Profile: "3g.20gb", GI: 2,
				Util: nan, FBUsed: 512, FBFree: 19000, Power: nan, Temp: nan,
				Holders: []Holder{{"ml", "infer", "api", "alloc-2"}}},
		},
		Allocs: []AllocReading{{Holder: Holder{"default", "train", "workers", "alloc-1"}, Task: "main", CPUMilli: 250, MemoryBytes: 64 << 20},
			{Holder: Holder{"default", "legacy", "vm", "alloc-3"}, Task: "vm", CPUMilli: 900, MemoryBytes: 300 << 20,
				Disks:    []DiskReading{{Device: "virtio0", ReadBytes: 4198912, WriteBytes: 65536, ReadOps: 6, WriteOps: 1}},
				Networks: []NetworkReading{{Device: "net0", RxBytes: 1 << 20, TxBytes: 4096, RxPackets: 700, TxPackets: 40}}}},
	}
	r := NewRegistry()
	if err := r.Register(NewNodeCollector(func() *Snapshot { return snap })); err != nil {
		t.Fatal(err)
	}
	fams := scrape(t, r)

	util := fams[DCGMGPUUtil]
	if util == nil || len(util.Metric) != 1 {
		t.Fatalf("%s: %v (a GPU in MIG mode reports no utilisation)", DCGMGPUUtil, util)
	}
	want := map[string]string{"gpu": "0", "UUID": "GPU-a", "device": "nvidia0", "modelName": "NVIDIA H100 80GB HBM3",
		"Hostname": "gpu-1.example", "pci_bus_id": "00000000:07:00.0", "namespace": "default", "job": "train",
		"group": "workers", "alloc": "alloc-1", "GPU_I_PROFILE": "", "GPU_I_ID": ""} // empty: a whole GPU, as DCGM leaves them out
	if got := labels(util.Metric[0]); !reflect.DeepEqual(got, want) || util.Metric[0].GetGauge().GetValue() != 87 {
		t.Errorf("util labels\n got %v\nwant %v", got, want)
	}
	fb := fams[DCGMFBUsed]
	if fb == nil || len(fb.Metric) != 3 {
		t.Fatalf("%s: %v", DCGMFBUsed, fb)
	}
	var mig *dto.Metric
	for _, m := range fb.Metric {
		if labels(m)["GPU_I_ID"] == "2" {
			mig = m
		}
	}
	if mig == nil || labels(mig)["GPU_I_PROFILE"] != "3g.20gb" || labels(mig)["alloc"] != "alloc-2" || mig.GetGauge().GetValue() != 512 {
		t.Errorf("MIG instance series: %v", mig)
	}
	for _, name := range []string{DCGMFBFree, DCGMPowerUsage, DCGMGPUTemp, DCGMXIDErrors} {
		if fams[name] == nil || fams[name].GetType() != dto.MetricType_GAUGE {
			t.Errorf("no gauge %s", name)
		}
	}
	xid := fams[DCGMXIDErrors]
	if len(xid.Metric) != 2 {
		t.Errorf("XID series per whole GPU: %d", len(xid.Metric))
	}
	for name, v := range map[string]float64{NodeCPUUsed: 1500, NodeCPUTotal: 16000, NodeMemoryUsed: 1 << 30, NodeMemoryTotal: 8 << 30,
		NodeDiskUsed: 5 << 30, NodeDiskTotal: 50 << 30, NodeGPUs: 2} {
		f := fams[name]
		if f == nil || len(f.Metric) != 1 || labels(f.Metric[0])["node"] != "gpu-1" || f.Metric[0].GetGauge().GetValue() != v {
			t.Errorf("%s: %v", name, f)
		}
	}
	if f := fams[NodeGPUHealth]; f == nil || len(f.Metric) != 1 || labels(f.Metric[0])["reason"] != "XID 79: GPU has fallen off the bus" {
		t.Errorf("%s: %v", NodeGPUHealth, f)
	}
	for _, name := range []string{AllocCPUUsed, AllocMemoryUsed} {
		f := fams[name]
		if f == nil || len(f.Metric) != 2 {
			t.Fatalf("%s: %v", name, f)
		}
		got := labels(f.Metric[0])
		var keys []string
		for k := range got {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		if !reflect.DeepEqual(keys, []string{"alloc", "group", "job", "namespace", "task"}) || got["alloc"] != "alloc-1" {
			t.Errorf("%s labels %v", name, got)
		}
	}
	for name, v := range map[string]float64{AllocDiskReadBytes: 4198912, AllocDiskWrittenBytes: 65536, AllocDiskReads: 6, AllocDiskWrites: 1,
		AllocNetReceiveBytes: 1 << 20, AllocNetTransmitBytes: 4096, AllocNetReceivePackets: 700, AllocNetTransmitPackets: 40} {
		f := fams[name]
		if f == nil || len(f.Metric) != 1 || f.GetType() != dto.MetricType_COUNTER {
			t.Fatalf("%s: %v (one counter, for the VM's one disk or interface)", name, f)
		}
		device := "virtio0"
		if strings.HasPrefix(name, "gantry_alloc_network_") {
			device = "net0"
		}
		want := map[string]string{"namespace": "default", "job": "legacy", "group": "vm", "alloc": "alloc-3", "task": "vm", "device": device}
		if got := labels(f.Metric[0]); !reflect.DeepEqual(got, want) || f.Metric[0].GetCounter().GetValue() != v {
			t.Errorf("%s: labels %v value %v, want %v %v", name, got, f.Metric[0].GetCounter().GetValue(), want, v)
		}
	}
	if fams["go_goroutines"] == nil {
		t.Error("no Go runtime series")
	}
}

func TestNodeCollectorEmpty(t *testing.T) {
	r := NewRegistry()
	r.MustRegister(NewNodeCollector(func() *Snapshot { return nil }))
	if fams := scrape(t, r); fams[NodeCPUUsed] != nil {
		t.Error("series before the first sample")
	}
}

func TestHistoryBounded(t *testing.T) {
	h := NewHistory(3)
	t0 := time.Unix(1000, 0)
	for i := 0; i < 5; i++ {
		h.Add("n1", api.NodeSample{Time: t0.Add(time.Duration(i) * time.Second), CPUUsed: i})
	}
	h.Add("n1", api.NodeSample{Time: t0, CPUUsed: 99}) // older: ignored
	got := h.Get("n1")
	if len(got) != 3 || got[0].CPUUsed != 2 || got[2].CPUUsed != 4 {
		t.Errorf("history %+v", got)
	}
	h.Add("n2", api.NodeSample{Time: t0})
	h.Retain(func(n string) bool { return n == "n2" })
	if h.Len() != 1 || len(h.Get("n1")) != 0 {
		t.Errorf("retain kept %d nodes", h.Len())
	}
}

func TestHistoryIntervalAndRestore(t *testing.T) {
	h := NewHistory(4)
	h.SetInterval(10 * time.Second)
	t0 := time.Unix(1000, 0)
	for i := 0; i < 30; i += 3 { // every 3 s: one kept per 10 s (or more)
		h.Add("n1", api.NodeSample{Time: t0.Add(time.Duration(i) * time.Second), CPUUsed: i})
	}
	got := h.Get("n1")
	if len(got) != 3 || got[0].CPUUsed != 0 || got[1].CPUUsed != 12 || got[2].CPUUsed != 24 {
		t.Errorf("with a 10 s interval kept %+v", got)
	}
	saved := h.Dump()
	h2 := NewHistory(4)
	h2.Add("n1", api.NodeSample{Time: t0.Add(20 * time.Second), CPUUsed: 99}) // newer than some saved ones
	h2.Restore(saved)
	got = h2.Get("n1")
	if len(got) != 3 || got[0].CPUUsed != 0 || got[1].CPUUsed != 12 || got[2].CPUUsed != 99 {
		t.Errorf("restored %+v: saved samples older than the held ones go first", got)
	}
	if h2.Max() != 4 {
		t.Error(h2.Max())
	}
}
