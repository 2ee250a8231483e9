package isolation

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/audit"
	"github.com/gantryhq/gantry/internal/jobspec"
	"github.com/gantryhq/gantry/internal/server/fronttest"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func parse(t *testing.T, spec string) *api.Job {
	t.Helper()
	job, err := jobspec.Parse("t.yaml", []byte(spec))
	if err != nil {
		t.Fatal(err)
	}
	return job
}

const plainJob = `name: web
groups:
  - name: web
    tasks:
      - name: server
        driver: docker
        config: {image: gantry-demo:latest}
        resources: {cpu: 100, memory: 32}
`

const privilegedJob = `name: root
groups:
  - name: tools
    tasks:
      - name: agent
        driver: docker
        config: {image: gantry-demo:latest, network_mode: host}
        resources: {cpu: 100, memory: 32}
        security: {privileged: true}
`

// TestAdmitUnderThePolicyInForce: with no policy stored the default one
// judges; a refusal is a 403 listing every blocking finding at its key;
// an applied policy judges from then on.
func TestAdmitUnderThePolicyInForce(t *testing.T) {
	st := newStore()
	s := newService(st, fronttest.NewClock(t0))
	ctx := context.Background()
	if warnings, err := s.Admit(ctx, parse(t, plainJob)); err != nil {
		t.Fatalf("a plain job refused: %v (warnings %v)", err, warnings)
	}
	_, err := s.Admit(ctx, parse(t, privilegedJob))
	var e *Error
	if !errors.As(err, &e) || e.Status != http.StatusForbidden || len(e.Errors) < 2 || e.Field != e.Errors[0].Path ||
		!strings.HasPrefix(e.Field, "groups[0].tasks[0]") {
		t.Fatalf("a privileged job on the host network: %#v, want a 403 with each finding at its key", err)
	}
	// A policy that only warns admits it, with the warnings.
	warnAll, _ := json.Marshal(audit.Policy{Default: audit.ActionWarn})
	st.PutAdmissionPolicy(ctx, warnAll)
	warnings, err := s.Admit(ctx, parse(t, privilegedJob))
	if err != nil || len(warnings) == 0 {
		t.Errorf("under a warn-only policy: %v, warnings %v; want admitted with warnings", err, warnings)
	}
}

// TestUnreadablePolicyFailsClosed: a stored policy that cannot be read
// refuses every job, the plain one too, naming the command that fixes it.
func TestUnreadablePolicyFailsClosed(t *testing.T) {
	st := newStore()
	st.policy = []byte("{not json")
	s := newService(st, fronttest.NewClock(t0))
	_, err := s.Admit(context.Background(), parse(t, plainJob))
	var se *json.SyntaxError
	if err == nil || !strings.Contains(err.Error(), "gantry policy apply") || !errors.As(err, &se) {
		t.Fatalf("admit under an unreadable policy: %v, want an error wrapping the JSON error and naming 'gantry policy apply'", err)
	}
	srv := serve(t, s)
	if code, body := call(t, http.MethodGet, srv.URL+"/v1/policy", "", nil); code != http.StatusInternalServerError {
		t.Errorf("GET /v1/policy: %d %s, want 500", code, body)
	}
}

// TestPolicyApplyAndReset: read, apply (validated, exceptions' namespaces
// checked at their key) and reset to the default, each answered with the
// store's revision.
func TestPolicyApplyAndReset(t *testing.T) {
	st := newStore()
	srv := serve(t, newService(st, fronttest.NewClock(t0)))
	var doc audit.PolicyDocument
	if code, body := call(t, http.MethodGet, srv.URL+"/v1/policy", "", &doc); code != http.StatusOK || !doc.Default {
		t.Fatalf("before any apply: %d %s, want the default", code, body)
	}
	code, body := call(t, http.MethodPut, srv.URL+"/v1/policy", `{"default":"warn","exceptions":[{"namespace":"Bad NS","check":"5.5","action":"warn"}]}`, nil)
	var e api.Error
	json.Unmarshal([]byte(body), &e)
	if code != http.StatusBadRequest || e.Field != "exceptions[0].namespace" {
		t.Errorf("an exception with a bad namespace: %d %s, want 400 at exceptions[0].namespace", code, body)
	}
	if code, body := call(t, http.MethodPut, srv.URL+"/v1/policy", `{"default":"sometimes"}`, nil); code != http.StatusBadRequest {
		t.Errorf("an unknown action: %d %s, want 400", code, body)
	}
	if st.policy != nil {
		t.Fatalf("refused policies stored: %s", st.policy)
	}
	var applied audit.PolicyDocument
	if code, body := call(t, http.MethodPut, srv.URL+"/v1/policy", `{"default":"block"}`, &applied); code != http.StatusOK || applied.Default || applied.Policy.Default != audit.ActionBlock || applied.Index != st.rev {
		t.Fatalf("apply: %d %s", code, body)
	}
	if code, _ := call(t, http.MethodGet, srv.URL+"/v1/policy", "", &doc); code != http.StatusOK || doc.Default || doc.Policy.Default != audit.ActionBlock {
		t.Errorf("after apply GET answers %+v", doc)
	}
	var reset audit.PolicyDocument
	if code, body := call(t, http.MethodDelete, srv.URL+"/v1/policy", "", &reset); code != http.StatusOK || !reset.Default || st.policy != nil {
		t.Errorf("reset: %d %s, stored %s", code, body, st.policy)
	}
}

// TestNodeReportStoredOnlyWhenChanged: an agent's report is stored when
// its findings changed or the stored one is Refresh old, never for a node
// that is not registered; only failing container findings are kept.
func TestNodeReportStoredOnlyWhenChanged(t *testing.T) {
	st := newStore(&api.Node{ID: "n1", Name: "one", Status: api.NodeStatusReady})
	c := fronttest.NewClock(t0)
	srv := serve(t, newService(st, c))
	report := func(findings ...audit.Finding) string {
		b, _ := json.Marshal(audit.Report{Node: "one", Time: c.Now(), Containers: 1, Findings: findings})
		return string(b)
	}
	fail := audit.Finding{CheckID: "5.5", Title: "privileged", Severity: audit.SeverityHigh, Status: audit.StatusFail, ContainerID: "c1", ContainerName: "web-1"}
	pass := audit.Finding{CheckID: "5.10", Title: "host network", Status: audit.StatusPass, ContainerID: "c1", ContainerName: "web-1"}

	if code, body := call(t, http.MethodPost, srv.URL+"/v1/nodes/n9/audit", report(fail), nil); code != http.StatusNotFound || !strings.Contains(body, "not registered") {
		t.Errorf("a report of an unknown node: %d %s, want 404", code, body)
	}
	steps := []struct {
		name    string
		advance time.Duration
		body    string
		stored  bool
	}{
		{"first report", 0, report(fail, pass), true},
		{"same findings soon after", time.Minute, report(fail), false},
		{"same findings once the stored one is old", Refresh, report(fail), true},
		{"changed findings", time.Second, report(), true},
	}
	for _, step := range steps {
		c.Add(step.advance)
		var ack AuditAck
		if code, body := call(t, http.MethodPost, srv.URL+"/v1/nodes/n1/audit", step.body, &ack); code != http.StatusOK || ack.Stored != step.stored {
			t.Errorf("%s: %d %s, want stored=%v", step.name, code, body, step.stored)
		}
	}
	if st.putCount() != 3 {
		t.Errorf("%d reports stored, want 3", st.putCount())
	}

	// The cluster report, and one node's.
	c.Add(time.Second)
	call(t, http.MethodPost, srv.URL+"/v1/nodes/n1/audit", report(fail, pass), nil)
	var cr audit.ClusterReport
	if code, body := call(t, http.MethodGet, srv.URL+"/v1/audit?node=one", "", &cr); code != http.StatusOK || len(cr.Nodes) != 1 ||
		len(cr.Nodes[0].Report.Findings) != 1 || cr.Nodes[0].Report.Findings[0].CheckID != "5.5" || !cr.Policy.Default {
		t.Errorf("the audit of node one: %d %s, want its failing finding only under the default policy", code, body)
	}
	if code, _ := call(t, http.MethodGet, srv.URL+"/v1/audit", "", &cr); code != http.StatusOK || len(cr.Nodes) != 1 || cr.Nodes[0].NodeID != "n1" {
		t.Errorf("the cluster report: %d %+v", code, cr)
	}
}

// TestAuditOfANodeWithoutReport: 404 saying when agents audit; an unknown
// node is answered as the server's node lookup answers it.
func TestAuditOfANodeWithoutReport(t *testing.T) {
	st := newStore(&api.Node{ID: "n1", Name: "one", Status: api.NodeStatusReady})
	srv := serve(t, newService(st, fronttest.NewClock(t0)))
	if code, body := call(t, http.MethodGet, srv.URL+"/v1/audit?node=one", "", nil); code != http.StatusNotFound || !strings.Contains(body, "--audit-interval") {
		t.Errorf("a node that has not reported: %d %s", code, body)
	}
	if code, body := call(t, http.MethodGet, srv.URL+"/v1/audit?node=nine", "", nil); code != http.StatusNotFound || !strings.Contains(body, `node \"nine\" not found`) {
		t.Errorf("an unknown node: %d %s", code, body)
	}
	st.reports["n1"] = []byte("{broken")
	if code, body := call(t, http.MethodGet, srv.URL+"/v1/audit?node=one", "", nil); code != http.StatusInternalServerError || !strings.Contains(body, "cannot be read") {
		t.Errorf("an unreadable stored report: %d %s", code, body)
	}
	var cr audit.ClusterReport
	if code, body := call(t, http.MethodGet, srv.URL+"/v1/audit", "", &cr); code != http.StatusOK || len(cr.Nodes) != 0 {
		t.Errorf("the cluster report skips an unreadable report: %d %s", code, body)
	}
}
