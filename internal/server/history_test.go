package server

import (
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
)

// aclServer starts a server with ACLs on and no TLS (as behind a
// TLS-terminating proxy), over an embedded etcd.
func aclServer(t *testing.T) (*Server, string) {
	t.Helper()
	s := startTestServer(t, Config{ACL: true})
	return s, "http://" + s.Addr()
}

func get(t *testing.T, url, token string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("X-Gantry-Token", token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func TestHistoryPersists(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	file := filepath.Join(t.TempDir(), "sub", "history.json")
	s := New(Config{HistoryFile: file, NodeHistory: 3}, nil, log)
	t0 := time.Unix(1000, 0).UTC()
	for i := 0; i < 5; i++ {
		s.history.Add("n1", api.NodeSample{Time: t0.Add(time.Duration(i) * time.Second), CPUUsed: i})
	}
	if err := s.saveHistory(); err != nil {
		t.Fatal(err)
	}
	s2 := New(Config{HistoryFile: file, NodeHistory: 3}, nil, log)
	s2.history.Add("n1", api.NodeSample{Time: t0.Add(10 * time.Second), CPUUsed: 10}) // arrived before the load
	if err := s2.loadHistory(); err != nil {
		t.Fatal(err)
	}
	got := s2.history.Get("n1")
	if len(got) != 3 || got[0].CPUUsed != 3 || got[1].CPUUsed != 4 || got[2].CPUUsed != 10 {
		t.Errorf("restored %+v", got)
	}
	s3 := New(Config{HistoryFile: filepath.Join(t.TempDir(), "none.json")}, nil, log)
	if err := s3.loadHistory(); err != nil {
		t.Errorf("a missing file is an empty history: %v", err)
	}
}

func TestAllocMetricsCutsTheNodeHistory(t *testing.T) {
	s := New(Config{}, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	t0 := time.Unix(1000, 0).UTC()
	util := 50.0
	cpu := 10
	for i := 0; i < 4; i++ {
		s.history.Add("n1", api.NodeSample{Time: t0.Add(time.Duration(i) * time.Second),
			Allocs: []api.AllocSample{{Alloc: "a1", Task: "t", CPUUsed: &cpu, MemoryBytes: 1 << 20}, {Alloc: "other", Task: "t"}},
			GPUs:   []api.GPUSample{{UUID: "GPU-1", Util: &util}, {UUID: "GPU-2"}}})
	}
	a := &api.Allocation{ID: "a1", NodeID: "n1", CreateTime: t0.Add(2 * time.Second),
		Resources: map[string]*api.AllocatedResources{"t": {GPU: &api.AllocatedGPU{Share: &api.ShareAssignment{GPU: "GPU-1", Milli: 100}}}}}
	m := s.allocMetrics(a)
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
