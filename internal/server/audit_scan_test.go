package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/audit"
	"github.com/gantryhq/gantry/internal/scheduler/schedtest"
)

// TestAuditScanNow: POST /v1/audit/scan asks each ready node's agent to
// audit now, stores what it answers even when the findings did not change
// (an agent's own report of unchanged findings is not stored again for
// ten minutes), and names the nodes it could not audit with the agent's
// reason. The agents here are HTTP stand-ins answering the agent
// protocol's POST /v1/client/audit; the real agent's side is covered by
// TestWebUIPages in e2e.
func TestAuditScanNow(t *testing.T) {
	s := startTestServer(t, Config{})
	base := "http://" + s.Addr()
	ctx := context.Background()
	var calls atomic.Int32
	finding := audit.Finding{CheckID: "5.4", Title: "privileged", Severity: audit.SeverityHigh, Status: audit.StatusFail, ContainerID: "c1", ContainerName: "web-1"}
	good := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/client/audit" {
			http.NotFound(w, r)
			return
		}
		calls.Add(1)
		json.NewEncoder(w).Encode(audit.Report{Node: "n1", Time: time.Now(), Containers: 1, Findings: []audit.Finding{finding}})
	}))
	defer good.Close()
	noDocker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotImplemented)
		json.NewEncoder(w).Encode(api.Error{Error: "node n2 has no docker driver: it has no containers to audit"})
	}))
	defer noDocker.Close()
	for name, srv := range map[string]*httptest.Server{"n1": good, "n2": noDocker} {
		n := schedtest.Node(name)
		n.HTTPAddr = strings.TrimPrefix(srv.URL, "http://")
		if err := s.store.RegisterNode(ctx, n, time.Minute, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	for deadline := time.Now().Add(10 * time.Second); len(s.store.Nodes()) < 2; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the nodes never showed in the store")
		}
	}
	scan := func() audit.ScanResponse {
		t.Helper()
		resp, err := http.Post(base+"/v1/audit/scan", "application/json", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var sr audit.ScanResponse
		if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&sr) != nil {
			t.Fatalf("scan: %s", resp.Status)
		}
		return sr
	}
	first := scan()
	if len(first.Scanned) != 1 || first.Scanned[0] != "n1" {
		t.Errorf("scanned %v, want [n1]", first.Scanned)
	}
	if len(first.Skipped) != 1 || first.Skipped[0].Node != "n2" || !strings.Contains(first.Skipped[0].Reason, "no docker driver") {
		t.Errorf("skipped %+v, want n2 with the agent's reason", first.Skipped)
	}
	if len(first.Nodes) != 1 || len(first.Nodes[0].Report.Findings) != 1 || first.Nodes[0].Report.Findings[0].CheckID != "5.4" {
		t.Fatalf("report %+v", first.Nodes)
	}
	time.Sleep(10 * time.Millisecond)
	second := scan()
	if calls.Load() != 2 {
		t.Errorf("the agent was asked %d times, want 2", calls.Load())
	}
	if len(second.Nodes) != 1 || !second.Nodes[0].ModifyTime.After(first.Nodes[0].ModifyTime) {
		t.Errorf("a scan of unchanged findings was not stored again: %v then %v", first.Nodes[0].ModifyTime, second.Nodes[0].ModifyTime)
	}
}
