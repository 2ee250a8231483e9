package nodehistory

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
)

func at(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }

func TestHistoryPersists(t *testing.T) {
	file := filepath.Join(t.TempDir(), "sub", "history.json")
	c := newCluster("n1")
	h := newHistory(c, Config{File: file, Size: 3})
	for i := 0; i < 5; i++ {
		h.Record("n1", &api.NodeSample{Time: at(i), CPUUsed: i})
	}
	if err := h.Save(); err != nil {
		t.Fatal(err)
	}
	h2 := newHistory(c, Config{File: file, Size: 3})
	h2.Record("n1", &api.NodeSample{Time: at(10), CPUUsed: 10}) // arrived before the load
	if err := h2.Load(); err != nil {
		t.Fatal(err)
	}
	got := h2.Get("n1")
	if len(got) != 3 || got[0].CPUUsed != 3 || got[1].CPUUsed != 4 || got[2].CPUUsed != 10 {
		t.Errorf("restored %+v", got)
	}
	if err := newHistory(c, Config{File: filepath.Join(t.TempDir(), "none.json")}).Load(); err != nil {
		t.Errorf("a missing file is an empty history: %v", err)
	}
	if err := newHistory(c, Config{}).Load(); err != nil {
		t.Errorf("no file configured is an empty history: %v", err)
	}
	for name, content := range map[string]string{"not JSON": "{", "version 2": `{"version":2}`} {
		bad := filepath.Join(t.TempDir(), "bad.json")
		os.WriteFile(bad, []byte(content), 0o644)
		if err := newHistory(c, Config{File: bad}).Load(); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("%s: %v, want an error naming the file", name, err)
		}
	}
}

// TestRecordKeepsTheKnownNodes: a sample is kept at most once per
// interval, a heartbeat without one changes nothing, and the nodes the
// store forgot are forgotten.
func TestRecordKeepsTheKnownNodes(t *testing.T) {
	c := newCluster("n1", "n2")
	h := newHistory(c, Config{Interval: 10 * time.Second})
	h.Record("n1", &api.NodeSample{Time: at(0)})
	h.Record("n1", &api.NodeSample{Time: at(5)}) // within the interval
	h.Record("n1", nil)
	h.Record("n1", &api.NodeSample{Time: at(10)})
	h.Record("n2", &api.NodeSample{Time: at(0)})
	if got := h.Get("n1"); len(got) != 2 || !got[1].Time.Equal(at(10)) {
		t.Errorf("n1 kept %+v, want the samples at 0 s and 10 s", got)
	}
	if last, ok := h.Latest("n1"); !ok || !last.Time.Equal(at(10)) {
		t.Errorf("latest of n1: %+v %v", last, ok)
	}
	c.remove("n2")
	h.Record("n1", &api.NodeSample{Time: at(20)})
	if got := h.Get("n2"); got != nil {
		t.Errorf("a node the store forgot keeps %d samples", len(got))
	}
	if _, ok := h.Latest("n2"); ok {
		t.Error("a node the store forgot has a latest sample")
	}
}

func TestAllocMetricsCutsTheNodeHistory(t *testing.T) {
	h := newHistory(newCluster("n1"), Config{})
	util := 50.0
	cpu := 10
	for i := 0; i < 4; i++ {
		h.Record("n1", &api.NodeSample{Time: at(i),
			Allocs: []api.AllocSample{{Alloc: "a1", Task: "t", CPUUsed: &cpu, MemoryBytes: 1 << 20}, {Alloc: "other", Task: "t"}},
			GPUs:   []api.GPUSample{{UUID: "GPU-1", Util: &util}, {UUID: "GPU-2"}}})
	}
	a := &api.Allocation{ID: "a1", NodeID: "n1", CreateTime: at(2),
		Resources: map[string]*api.AllocatedResources{"t": {GPU: &api.AllocatedGPU{Share: &api.ShareAssignment{GPU: "GPU-1", Milli: 100}}}}}
	m := h.AllocMetrics(a)
	if len(m.Samples) != 4 || len(m.GPUs) != 1 || m.GPUs[0] != "GPU-1" {
		t.Fatalf("%+v", m)
	}
	for i, smp := range m.Samples {
		if len(smp.Tasks) != 1 || smp.Tasks[0].Alloc != "a1" {
			t.Errorf("sample %d tasks %+v", i, smp.Tasks)
		}
		if wantGPU := i >= 2; (len(smp.GPUs) == 1) != wantGPU {
			t.Errorf("sample %d GPUs %+v: GPU readings start when the allocation does", i, smp.GPUs)
		}
	}
}

func TestAllocGPUs(t *testing.T) {
	a := &api.Allocation{Resources: map[string]*api.AllocatedResources{
		"a": {GPU: &api.AllocatedGPU{Devices: []string{"GPU-3", "GPU-1"}}},
		"b": {GPU: &api.AllocatedGPU{MIG: &api.MIGAssignment{GPU: "GPU-2"}}},
		"c": {GPU: &api.AllocatedGPU{Share: &api.ShareAssignment{GPU: "GPU-1"}}},
		"d": {},
		"e": nil,
	}}
	if got := AllocGPUs(a); strings.Join(got, ",") != "GPU-1,GPU-2,GPU-3" {
		t.Errorf("%v, want each GPU once, sorted", got)
	}
}

// TestRoutes: a node's samples (an empty list, not null, for a node
// without any), an allocation's share only to a caller who may read its
// namespace, the lookups' errors answered as they are.
func TestRoutes(t *testing.T) {
	c := newCluster("n1", "n2")
	c.allocs["a1"] = &api.Allocation{ID: "a1", NodeID: "n1", Namespace: "team-a", CreateTime: t0}
	h := newHistory(c, Config{})
	cpu := 5
	h.Record("n1", &api.NodeSample{Time: at(1), CPUUsed: 7, Allocs: []api.AllocSample{{Alloc: "a1", Task: "t", CPUUsed: &cpu}}})
	srv := serve(t, h)

	var nm api.NodeMetricsResponse
	if code, body := getJSON(t, srv.URL+"/v1/nodes/name-n1/metrics", &nm); code != http.StatusOK || nm.NodeID != "n1" || len(nm.Samples) != 1 || nm.Samples[0].CPUUsed != 7 {
		t.Errorf("node n1 by name: %d %s", code, body)
	}
	if code, body := getJSON(t, srv.URL+"/v1/nodes/n2/metrics", nil); code != http.StatusOK || !strings.Contains(body, `"samples":[]`) {
		t.Errorf("a node without samples: %d %s, want an empty list", code, body)
	}
	if code, body := getJSON(t, srv.URL+"/v1/nodes/n9/metrics", nil); code != http.StatusNotFound {
		t.Errorf("an unknown node: %d %s", code, body)
	}
	if code, body := getJSON(t, srv.URL+"/v1/allocations/a1/metrics", nil); code != http.StatusForbidden || !strings.Contains(body, "team-a") {
		t.Errorf("an allocation in a namespace the caller may not read: %d %s, want 403", code, body)
	}
	c.readable["team-a"] = true
	var am api.AllocMetricsResponse
	if code, body := getJSON(t, srv.URL+"/v1/allocations/a1/metrics", &am); code != http.StatusOK || am.AllocID != "a1" || len(am.Samples) != 1 || *am.Samples[0].Tasks[0].CPUUsed != 5 {
		t.Errorf("the allocation's share: %d %s", code, body)
	}
	if code, body := getJSON(t, srv.URL+"/v1/allocations/a9/metrics", nil); code != http.StatusNotFound {
		t.Errorf("an unknown allocation: %d %s", code, body)
	}
}

// TestRunSavesOnEachTickAndAtTheEnd: Run saves at each tick and once
// more when its context ends; without a file it returns at once.
func TestRunSavesOnEachTickAndAtTheEnd(t *testing.T) {
	file := filepath.Join(t.TempDir(), "history.json")
	c := newCluster("n1")
	h := newHistory(c, Config{File: file})
	if h.SaveEvery() != DefaultSave {
		t.Errorf("save every %v, want the default %v", h.SaveEvery(), DefaultSave)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tick := make(chan time.Time)
	done := make(chan struct{})
	go func() { h.Run(ctx, tick); close(done) }()
	saved := func() []api.NodeSample {
		r := newHistory(c, Config{File: file})
		if err := r.Load(); err != nil {
			t.Fatal(err)
		}
		return r.Get("n1")
	}
	h.Record("n1", &api.NodeSample{Time: at(1)})
	tick <- at(1)
	tick <- at(2) // the first tick's save is done once Run takes the second
	if got := saved(); len(got) != 1 {
		t.Errorf("after a tick the file holds %d samples, want 1", len(got))
	}
	h.Record("n1", &api.NodeSample{Time: at(3)})
	cancel()
	<-done
	if got := saved(); len(got) != 2 {
		t.Errorf("after the end the file holds %d samples, want 2", len(got))
	}

	none := newHistory(c, Config{})
	finished := make(chan struct{})
	go func() { none.Run(context.Background(), nil); close(finished) }()
	<-finished
}
