package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/scheduler/schedtest"
)

// privilegedJob is refused by the default isolation policy twice over:
// privileged, and on the host's network.
const privilegedJob = `{"name":"root","groups":[{"name":"tools","tasks":[{"name":"agent","driver":"docker",
"config":{"image":"gantry-demo:latest","network_mode":"host"},"security":{"privileged":true},"resources":{"cpu":10,"memory":10}}]}]}`

// TestSubmissionsAdmittedByIsolation: register, plan and validate ask the
// isolation component; a refusal is answered as before the component
// existed: 403, the first finding's key as field, every finding in errors.
func TestSubmissionsAdmittedByIsolation(t *testing.T) {
	s := startTestServer(t, Config{})
	base := "http://" + s.Addr()
	for _, path := range []string{"/v1/jobs", "/v1/jobs/plan"} {
		code, body := post(t, base+path, "", privilegedJob, nil)
		var e api.Error
		if err := json.Unmarshal([]byte(body), &e); err != nil {
			t.Fatalf("POST %s: %d %s", path, code, body)
		}
		if code != http.StatusForbidden || len(e.Errors) < 2 || e.Field != e.Errors[0].Path || e.Field == "" {
			t.Errorf("POST %s of a privileged job: %d %s, want 403 with every finding at its key", path, code, body)
		}
	}
	var v api.ValidateResponse
	if code, body := post(t, base+"/v1/validate/job", "", privilegedJob, &v); code != http.StatusOK || v.Valid || len(v.Errors) < 2 {
		t.Errorf("validate of a privileged job: %d %s, want invalid with the findings", code, body)
	}
	if _, ok := s.store.Job(api.DefaultNamespace, "root"); ok {
		t.Error("a refused job was stored")
	}
}

// componentError is an error of a component's kind: status, field and
// every problem of the request.
type componentError struct{}

func (componentError) Error() string    { return "refused" }
func (componentError) HTTPStatus() int  { return http.StatusForbidden }
func (componentError) APIField() string { return "groups[0]" }
func (componentError) APIErrors() []api.FieldError {
	return []api.FieldError{{Path: "groups[0]", Message: "no"}}
}

// TestWriteErrorOfAComponent: a component's error is answered with its
// status, field and field errors.
func TestWriteErrorOfAComponent(t *testing.T) {
	s := New(Config{}, nil, nil)
	w := httptest.NewRecorder()
	s.writeError(w, httptest.NewRequest(http.MethodGet, "/", nil), componentError{})
	var e api.Error
	if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || w.Code != http.StatusForbidden || e.Field != "groups[0]" || len(e.Errors) != 1 || e.Error != "refused" {
		t.Errorf("%d %s", w.Code, w.Body)
	}
}

// TestHeartbeatSamplesInTheHistory: a heartbeat's sample lands in the
// history component, which answers GET /v1/nodes/{id}/metrics and, by
// the allocation, GET /v1/allocations/{id}/metrics.
func TestHeartbeatSamplesInTheHistory(t *testing.T) {
	s := startTestServer(t, Config{})
	base := "http://" + s.Addr()
	n := schedtest.Node("n1")
	if err := s.store.RegisterNode(context.Background(), n, time.Minute, time.Now()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the node in the store", func() bool { _, ok := s.store.Node(n.ID); return ok })
	req, _ := http.NewRequest(http.MethodPut, base+"/v1/nodes/"+n.ID+"/heartbeat",
		strings.NewReader(`{"sample":{"time":"2026-12-06T05:00:00Z","cpu_used":123}}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("heartbeat: %s", resp.Status)
	}
	var m api.NodeMetricsResponse
	getJSON(t, base+"/v1/nodes/n1/metrics", &m)
	if m.NodeID != n.ID || len(m.Samples) != 1 || m.Samples[0].CPUUsed != 123 {
		t.Errorf("the node's history: %+v, want the heartbeat's sample", m)
	}
	if code, _, body := get(t, base+"/v1/allocations/nope/metrics", ""); code != http.StatusNotFound {
		t.Errorf("an unknown allocation's metrics: %d %s", code, body)
	}
}

// TestACLAdministrationWired: the bootstrap token the ACL component
// mints lets its holder through the server's authorization, and the
// component reads a caller's secret as authorization does (a bearer
// header too).
func TestACLAdministrationWired(t *testing.T) {
	_, base := aclServer(t)
	var boot struct {
		AccessorID string `json:"accessor_id"`
		Secret     string `json:"secret"`
	}
	if code, body := post(t, base+"/v1/acl/bootstrap", "", "", &boot); code != http.StatusOK || boot.Secret == "" {
		t.Fatalf("bootstrap: %d %s", code, body)
	}
	req, _ := http.NewRequest(http.MethodGet, base+"/v1/acl/tokens/self", nil)
	req.Header.Set("Authorization", "Bearer "+boot.Secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var self struct {
		AccessorID string `json:"accessor_id"`
		SecretHash string `json:"secret_hash"`
	}
	json.NewDecoder(resp.Body).Decode(&self)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || self.AccessorID != boot.AccessorID || self.SecretHash != "" {
		t.Errorf("self with a bearer header: %s %+v, want the bootstrap token without its hash", resp.Status, self)
	}
	if code, _, body := get(t, base+"/v1/acl/tokens", boot.Secret); code != http.StatusOK || !strings.Contains(body, boot.AccessorID) {
		t.Errorf("list with the management token: %d %s", code, body)
	}
	if code, _, body := get(t, base+"/v1/acl/tokens", ""); code != http.StatusUnauthorized {
		t.Errorf("list without a token: %d %s, want 401", code, body)
	}
}
