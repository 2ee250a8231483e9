package isolation

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/audit"
	"github.com/gantryhq/gantry/internal/server/fronttest"
)

// TestAuditScanNow: POST /v1/audit/scan asks each ready node's agent to
// audit now, stores what it answers even when the findings did not change
// (an agent's own report of unchanged findings is not stored again for
// Refresh), and names the nodes it could not audit with the agent's
// reason, or the node's status when it is not ready. The agents here are
// HTTP stand-ins answering the agent protocol's POST /v1/client/audit;
// the real agent's side is covered by TestWebUIPages in e2e.
func TestAuditScanNow(t *testing.T) {
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
	st := newStore(
		&api.Node{ID: "id-1", Name: "n1", Status: api.NodeStatusReady, HTTPAddr: strings.TrimPrefix(good.URL, "http://")},
		&api.Node{ID: "id-2", Name: "n2", Status: api.NodeStatusReady, HTTPAddr: strings.TrimPrefix(noDocker.URL, "http://")},
		&api.Node{ID: "id-3", Name: "n3", Status: api.NodeStatusDown, HTTPAddr: "127.0.0.1:1"},
	)
	c := fronttest.NewClock(t0)
	srv := serve(t, newService(st, c))
	scan := func(query string) audit.ScanResponse {
		t.Helper()
		var sr audit.ScanResponse
		if code, body := call(t, http.MethodPost, srv.URL+"/v1/audit/scan"+query, "", &sr); code != http.StatusOK {
			t.Fatalf("scan: %d %s", code, body)
		}
		return sr
	}
	first := scan("")
	if len(first.Scanned) != 1 || first.Scanned[0] != "n1" {
		t.Errorf("scanned %v, want [n1]", first.Scanned)
	}
	if len(first.Skipped) != 2 || first.Skipped[0].Node != "n2" || !strings.Contains(first.Skipped[0].Reason, "no docker driver") ||
		first.Skipped[1].Node != "n3" || first.Skipped[1].Reason != "node is down" {
		t.Errorf("skipped %+v, want n2 with the agent's reason and n3 as down", first.Skipped)
	}
	if len(first.Nodes) != 1 || len(first.Nodes[0].Report.Findings) != 1 || first.Nodes[0].Report.Findings[0].CheckID != "5.4" {
		t.Fatalf("report %+v", first.Nodes)
	}
	c.Add(time.Second)
	second := scan("?node=n1")
	if calls.Load() != 2 {
		t.Errorf("the agent was asked %d times, want 2", calls.Load())
	}
	if len(second.Skipped) != 0 || len(second.Nodes) != 1 || !second.Nodes[0].ModifyTime.After(first.Nodes[0].ModifyTime) {
		t.Errorf("a scan of unchanged findings was not stored again: %+v then %+v", first.Nodes, second.Nodes)
	}

	// An agent that does not answer is named, not waited on for ever.
	good.Close()
	third := scan("?node=n1")
	if len(third.Scanned) != 0 || len(third.Skipped) != 1 || !strings.Contains(third.Skipped[0].Reason, "does not answer") {
		t.Errorf("a silent agent: %+v", third)
	}
}
