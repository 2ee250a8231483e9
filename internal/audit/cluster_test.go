package audit

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestClusterRenderings(t *testing.T) {
	a := fixtureReport(t, []string{"clean", "privileged", "usr-ro"})
	b := fixtureReport(t, []string{"docker-socket", "writable-rootfs"})
	b.Node, b.Time = "node-2", b.Time.Add(time.Minute)
	reports := []Report{a, b}
	p := DefaultPolicy()
	opts := RenderOptions{Policy: &p}

	v := EvaluateReports(p, reports)
	if len(v.Blocking) != 2 { // 5.5 on node-1, 5.32 on node-2
		t.Errorf("blocking %d, want 2", len(v.Blocking))
	}

	var tb bytes.Buffer
	if err := WriteTables(&tb, reports, opts); err != nil {
		t.Fatal(err)
	}
	out := tb.String()
	for _, want := range []string{"node node-1 ", "node node-2 ", "cluster: 2 nodes,", ": 2 blocking,"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}

	var jb bytes.Buffer
	if err := WriteJSONReports(&jb, reports, opts); err != nil {
		t.Fatal(err)
	}
	var js struct {
		Nodes    []struct{ Node string } `json:"nodes"`
		Failing  int                     `json:"failing"`
		Blocking int                     `json:"blocking"`
		Policy   *Policy                 `json:"policy"`
	}
	if err := json.Unmarshal(jb.Bytes(), &js); err != nil {
		t.Fatal(err)
	}
	if len(js.Nodes) != 2 || js.Nodes[1].Node != "node-2" || js.Blocking != 2 || js.Failing != len(a.Failures())+len(b.Failures()) || js.Policy == nil {
		t.Errorf("json %+v", js)
	}

	var sb bytes.Buffer
	if err := WriteSARIFReports(&sb, reports, opts); err != nil {
		t.Fatal(err)
	}
	checkSARIF(t, "two nodes", sb.Bytes())
	var log struct {
		Runs []struct {
			Results []struct {
				Locations []struct {
					LogicalLocations []struct {
						FullyQualifiedName string `json:"fullyQualifiedName"`
					} `json:"logicalLocations"`
				} `json:"locations"`
			} `json:"results"`
			Invocations []struct {
				EndTimeUTC string `json:"endTimeUtc"`
			} `json:"invocations"`
		} `json:"runs"`
	}
	if err := json.Unmarshal(sb.Bytes(), &log); err != nil {
		t.Fatal(err)
	}
	nodes := map[string]bool{}
	for _, r := range log.Runs[0].Results {
		nodes[strings.SplitN(r.Locations[0].LogicalLocations[0].FullyQualifiedName, "/", 2)[0]] = true
	}
	if len(log.Runs) != 1 || !nodes["node-1"] || !nodes["node-2"] {
		t.Errorf("runs %d, result nodes %v", len(log.Runs), nodes)
	}
	if got := log.Runs[0].Invocations[0].EndTimeUTC; got != b.Time.UTC().Format(time.RFC3339) {
		t.Errorf("end time %s, want the latest report's", got)
	}

	tb.Reset()
	if err := WriteTables(&tb, nil, opts); err != nil || !strings.Contains(tb.String(), "no node has reported") {
		t.Errorf("no reports: %q %v", tb.String(), err)
	}
}

func TestCompactAndSameFindings(t *testing.T) {
	r := fixtureReport(t, []string{"clean", "privileged"})
	c := r.Compact()
	if len(c.Engine) != len(r.Engine) || len(c.Findings) != len(r.Failures())-countFailed(r.Engine) {
		t.Errorf("compact: engine %d/%d, findings %d", len(c.Engine), len(r.Engine), len(c.Findings))
	}
	for _, f := range c.Findings {
		if !f.Failed() {
			t.Errorf("compact kept %s %s", f.CheckID, f.Status)
		}
	}
	// A JSON round trip and a later time say the same thing.
	data, _ := json.Marshal(c)
	var back Report
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	back.Time = back.Time.Add(time.Hour)
	if !SameFindings(c, back) {
		t.Error("a round trip changed the findings")
	}
	back.Findings = back.Findings[1:]
	if SameFindings(c, back) {
		t.Error("a dropped finding went unnoticed")
	}
}

func countFailed(fs []Finding) int {
	n := 0
	for _, f := range fs {
		if f.Failed() {
			n++
		}
	}
	return n
}
