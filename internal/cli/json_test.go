package cli

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/internal/api"
)

// TestMutatingCommandsAnswerJSON (issue 15): job stop, node drain and node
// eligibility had no --json; a command that follows what it started
// (stop here, as run, revert and promote) streams JSON lines ending with
// its result, and one that does not prints the changed object.
func TestMutatingCommandsAnswerJSON(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Method == http.MethodDelete && r.URL.Path == "/v1/jobs/web":
			json.NewEncoder(w).Encode(api.StopResponse{EvalID: "0123456789abcdef", Index: 7})
		case r.URL.Path == "/v1/jobs/web/allocations":
			w.Write([]byte("[]"))
		case r.URL.Path == "/v1/nodes/n1/drain" || r.URL.Path == "/v1/nodes/n1/eligibility":
			json.NewEncoder(w).Encode(api.Node{ID: "n1", Name: "n1", Ineligible: true})
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	run := func(args ...string) (int, string, string) {
		var out, errw bytes.Buffer
		code := Main(append([]string{"--address", srv.URL}, args...), &out, &errw)
		return code, out.String(), errw.String()
	}

	code, out, errs := run("job", "stop", "--json", "web")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) < 3 {
		t.Fatalf("job stop --json: exit %d\n%s%s", code, out, errs)
	}
	var first, last jsonEvent
	if json.Unmarshal([]byte(lines[0]), &first) != nil || first.Type != "response" ||
		json.Unmarshal([]byte(lines[len(lines)-1]), &last) != nil || last.Type != "result" || last.ExitCode == nil || *last.ExitCode != 0 {
		t.Fatalf("job stop --json stream:\n%s", out)
	}
	for _, l := range lines {
		var ev map[string]any
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("not a JSON line: %q", l)
		}
	}
	if code, out, errs := run("job", "stop", "--json", "-d", "web"); code != 0 || !strings.Contains(out, `"eval_id": "0123456789abcdef"`) {
		t.Fatalf("job stop --json -d: exit %d\n%s%s", code, out, errs)
	}
	for _, args := range [][]string{{"node", "drain", "n1", "--enable", "--json"}, {"node", "eligibility", "n1", "--disable", "--json"}} {
		code, out, errs := run(args...)
		var n api.Node
		if code != 0 || json.Unmarshal([]byte(out), &n) != nil || n.ID != "n1" {
			t.Fatalf("%v: exit %d\n%s%s", args, code, out, errs)
		}
	}
}

// TestJSONLines: text lines become step and progress events; a partial
// line waits for its end.
func TestJSONLines(t *testing.T) {
	var b bytes.Buffer
	j := newJSONLines(&b)
	j.Write([]byte("==> Job \"web\" registered\n    1/3 placed"))
	j.Write([]byte(", 0 running\n"))
	var evs []jsonEvent
	for _, l := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		var ev jsonEvent
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	if len(evs) != 2 || evs[0].Type != "step" || evs[0].Message != `Job "web" registered` ||
		evs[1].Type != "progress" || evs[1].Message != "1/3 placed, 0 running" {
		t.Fatalf("events %+v", evs)
	}
}

// TestDeploymentSummaryInStepWithVersion (issue 15): after a revert to a
// version without an update block, job status showed the previous
// version's deployment as the latest.
func TestDeploymentSummaryInStepWithVersion(t *testing.T) {
	d := &api.Deployment{ID: "0123456789", JobVersion: 3, Status: api.DeploymentSuccessful, Groups: map[string]*api.DeploymentGroup{}}
	var b bytes.Buffer
	printDeploymentSummary(&b, d, 4)
	if strings.Contains(b.String(), "Latest deployment") || !strings.Contains(b.String(), "Version 4 has no deployment") {
		t.Fatalf("summary for version 4 with version 3's deployment:\n%s", b.String())
	}
	b.Reset()
	printDeploymentSummary(&b, d, 3)
	if !strings.Contains(b.String(), "Latest deployment 01234567 (version 3)") {
		t.Fatalf("summary of the current version's deployment:\n%s", b.String())
	}
}
