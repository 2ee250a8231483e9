package server

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/acl"
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

// TestUIFragmentsFollowACLs: the shell and assets are public and hold no
// data; each fragment needs a token and shows only what it may read.
func TestUIFragmentsFollowACLs(t *testing.T) {
	s, base := aclServer(t)
	ctx := context.Background()
	for _, ns := range []string{"team-a", "team-b"} {
		j := &api.Job{Name: "job-" + ns, Namespace: ns, Type: api.JobService, Priority: 50, Groups: []*api.Group{{Name: "g", Count: 1,
			Tasks: []*api.Task{{Name: "t", Driver: api.DriverExec, Config: api.TaskConfig{Command: "/bin/true"}, Resources: api.Resources{CPU: 100, Memory: 32}}}}}}
		if _, err := s.store.RegisterJob(ctx, j, s.newEval(ns, j.Name, api.TriggerJobRegister), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	mk := func(name string, p *acl.Policy) string {
		secret, _ := acl.NewSecret()
		if err := s.store.PutPolicy(ctx, p); err != nil {
			t.Fatal(err)
		}
		if err := s.store.PutToken(ctx, &acl.Token{AccessorID: name, Name: name, SecretHash: acl.Hash(secret), Policies: []string{p.Name}}); err != nil {
			t.Fatal(err)
		}
		return secret
	}
	reader := mk("reader", &acl.Policy{Name: "reader", Namespaces: map[string][]acl.Capability{"team-a": {acl.Read}}})
	nodes := mk("nodes", &acl.Policy{Name: "nodes", Global: []acl.Capability{acl.NodeRead}})
	if err := s.store.WaitIndex(ctx, s.store.Index()); err != nil {
		t.Fatal(err)
	}

	code, h, body := get(t, base+"/ui/", "")
	if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/html") || !strings.Contains(h.Get("Content-Security-Policy"), "script-src 'self'") {
		t.Fatalf("shell: %d %v", code, h)
	}
	if strings.Contains(body, "job-team") {
		t.Error("the shell holds data")
	}
	if code, _, _ := get(t, base+"/ui/jobs/anything?namespace=x", ""); code != 200 {
		t.Errorf("deep link to the shell: %d", code)
	}
	if code, h, _ := get(t, base+"/ui/assets/app.js", ""); code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/javascript") {
		t.Errorf("app.js: %d %s", code, h.Get("Content-Type"))
	}
	if code, _, _ := get(t, base+"/ui/assets/nope.js", ""); code != 404 {
		t.Errorf("missing asset: %d", code)
	}
	for _, p := range []string{"overview", "jobs", "jobs/job-team-a?namespace=team-a", "nodes"} {
		if code, _, body := get(t, base+"/ui/fragments/"+p, ""); code != http.StatusUnauthorized || strings.Contains(body, "job-team") {
			t.Errorf("fragment %s without a token: %d", p, code)
		}
	}
	code, _, body = get(t, base+"/ui/fragments/jobs", reader)
	if code != 200 || !strings.Contains(body, "job-team-a") || strings.Contains(body, "job-team-b") {
		t.Errorf("jobs with a team-a reader: %d\n%s", code, body)
	}
	if code, _, _ := get(t, base+"/ui/fragments/jobs/job-team-b?namespace=team-b", reader); code != http.StatusForbidden {
		t.Errorf("another namespace's job: %d", code)
	}
	if code, _, body := get(t, base+"/ui/fragments/jobs/job-team-a?namespace=team-a", reader); code != 200 || !strings.Contains(body, `data-page="job"`) {
		t.Errorf("own job: %d", code)
	}
	code, _, body = get(t, base+"/ui/fragments/overview", reader)
	if code != 200 || strings.Contains(body, "ov-nodes") {
		t.Errorf("overview for a token without node-read: %d, nodes shown: %v", code, strings.Contains(body, "ov-nodes"))
	}
	if code, _, _ := get(t, base+"/ui/fragments/nodes", reader); code != http.StatusForbidden {
		t.Errorf("nodes without node-read: %d", code)
	}
	if code, _, body := get(t, base+"/ui/fragments/nodes", nodes); code != 200 || !strings.Contains(body, `data-page="nodes"`) {
		t.Errorf("nodes with node-read: %d", code)
	}
	if code, _, _ := get(t, base+"/ui/fragments/nonsense", reader); code != http.StatusNotFound {
		t.Errorf("unknown fragment: %d", code)
	}
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
