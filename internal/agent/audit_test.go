package agent

import (
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/audit"
)

func testAgent(t *testing.T) *Agent {
	t.Helper()
	a, err := New(Config{Servers: []string{"127.0.0.1:1"}, DataDir: t.TempDir()}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func fail(check string, sev audit.Severity, ns, job, container string) audit.Finding {
	return audit.Finding{CheckID: check, Severity: sev, Status: audit.StatusFail, Namespace: ns, Job: job,
		ContainerID: container, Detail: check + " on " + container}
}

func TestAuditCollector(t *testing.T) {
	a := testAgent(t)
	reg := prometheus.NewRegistry()
	reg.MustRegister(a.AuditCollector())
	if n, err := testutil.GatherAndCount(reg, "gantry_audit_findings"); err != nil || n != 0 {
		t.Fatalf("before the first audit: %d series, %v", n, err)
	}
	a.audit.latest = &audit.Report{
		Engine: []audit.Finding{fail("2.9", audit.SeverityMedium, "", "", ""), {CheckID: "2.15", Status: audit.StatusPass}},
		Findings: []audit.Finding{
			fail("5.5", audit.SeverityCritical, "", "", "c1"),
			fail("5.5", audit.SeverityCritical, "", "", "c2"),
			fail("5.4", audit.SeverityCritical, "team-a", "web", "c3"),
			fail("5.4", audit.SeverityMedium, "team-a", "web", "c4"),
			{CheckID: "5.10", Status: audit.StatusPass, Namespace: "team-a", Job: "web"},
		},
	}
	want := `
# HELP gantry_audit_findings Failing container isolation findings (CIS Docker Benchmark v1.6.0) in the node's latest audit, by check id, severity, and the Gantry namespace and job of the container (empty for containers Gantry did not start and for engine findings).
# TYPE gantry_audit_findings gauge
gantry_audit_findings{check="2.9",job="",namespace="",severity="medium"} 1
gantry_audit_findings{check="5.4",job="web",namespace="team-a",severity="critical"} 1
gantry_audit_findings{check="5.4",job="web",namespace="team-a",severity="medium"} 1
gantry_audit_findings{check="5.5",job="",namespace="",severity="critical"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "gantry_audit_findings"); err != nil {
		t.Error(err)
	}
	// A resolved finding takes its series with it.
	a.audit.latest = &audit.Report{Findings: []audit.Finding{fail("5.5", audit.SeverityCritical, "", "", "c1")}}
	if n, _ := testutil.GatherAndCount(reg, "gantry_audit_findings"); n != 1 {
		t.Errorf("after resolution: %d series, want 1", n)
	}
}

func TestDiffFailures(t *testing.T) {
	prev := &audit.Report{Findings: []audit.Finding{fail("5.5", audit.SeverityCritical, "", "", "c1"), fail("5.13", audit.SeverityLow, "", "", "c1")}}
	cur := &audit.Report{Findings: []audit.Finding{fail("5.5", audit.SeverityCritical, "", "", "c1"), fail("5.10", audit.SeverityHigh, "", "", "c2")}}
	added, resolved := diffFailures(prev, cur)
	if len(added) != 1 || added[0].CheckID != "5.10" || len(resolved) != 1 || resolved[0].CheckID != "5.13" {
		t.Errorf("added %v resolved %v", added, resolved)
	}
	if added, _ := diffFailures(nil, cur); len(added) != 2 {
		t.Errorf("first audit: added %v", added)
	}
}

func TestAuditAllocations(t *testing.T) {
	a := testAgent(t)
	al := &api.Allocation{ID: "alloc-1", Resources: map[string]*api.AllocatedResources{
		"train": {GPU: &api.AllocatedGPU{Devices: []string{"GPU-a"}}},
		"web":   {},
	}}
	r := newAllocRunner(a, al, nil)
	r.tasks["web"] = &taskRunner{task: &api.Task{Name: "web", Checks: []api.Check{{Type: "tcp"}, {Type: "http"}}}}
	a.runners[al.ID] = r
	got := a.auditAllocations()
	if ta := got[audit.TaskKey("alloc-1", "train")]; len(ta.GPUs) != 1 || ta.GPUs[0] != "GPU-a" || ta.Checks != 1 {
		t.Errorf("train (job still loading): %+v", ta)
	}
	if ta := got[audit.TaskKey("alloc-1", "web")]; len(ta.GPUs) != 0 || ta.Checks != 2 {
		t.Errorf("web: %+v", ta)
	}
}

func TestDaemonConfig(t *testing.T) {
	a := testAgent(t)
	a.cfg.DockerDaemonConfig = t.TempDir() + "/missing.json"
	if d := a.daemonConfig("unix:///var/run/docker.sock"); d == nil || d.NoNewPrivileges != nil {
		t.Errorf("missing daemon.json: %+v, want the built-in defaults", d)
	}
	if d := a.daemonConfig("tcp://10.0.0.1:2376"); d != nil {
		t.Errorf("remote engine: %+v, want unknown", d)
	}
}
