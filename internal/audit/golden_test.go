package audit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"text/tabwriter"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/system"
)

// engineFixture is the recorded info of the engine the fixtures came from.
const engineFixture = "engine.json"

// loadFixtures reads the recorded `docker inspect` of every scenario and the
// engine's info. Every scenario must have a fixture and every fixture a
// scenario.
func loadFixtures(t *testing.T) (map[string]container.InspectResponse, *Engine) {
	t.Helper()
	dir := filepath.Join("testdata", "fixtures")
	out := map[string]container.InspectResponse{}
	for _, s := range scenarios {
		b, err := os.ReadFile(filepath.Join(dir, s.name+".json"))
		if err != nil {
			t.Fatalf("fixture for scenario %s: %v (record with: go test ./internal/audit -run TestRealContainers -record)", s.name, err)
		}
		var c container.InspectResponse
		if err := json.Unmarshal(b, &c); err != nil {
			t.Fatalf("fixture %s: %v", s.name, err)
		}
		out[s.name] = c
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		name := strings.TrimSuffix(e.Name(), ".json")
		if _, ok := out[name]; !ok && e.Name() != engineFixture {
			t.Errorf("fixture %s has no scenario", e.Name())
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, engineFixture))
	if err != nil {
		t.Fatal(err)
	}
	var inf system.Info
	if err := json.Unmarshal(b, &inf); err != nil {
		t.Fatalf("%s: %v", engineFixture, err)
	}
	return out, &Engine{Info: inf}
}

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (create it with -update)", err)
	}
	if bytes.Equal(got, want) {
		return
	}
	gl, wl := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	for i := 0; i < len(gl) || i < len(wl); i++ {
		var g, w string
		if i < len(gl) {
			g = gl[i]
		}
		if i < len(wl) {
			w = wl[i]
		}
		if g != w {
			t.Fatalf("%s differs at line %d:\n got: %s\nwant: %s\n(rerun with -update if the change is intended)", path, i+1, g, w)
		}
	}
}

func verdictCell(s Status) string {
	if s == StatusFail {
		return "FAIL"
	}
	return string(s)
}

// TestGoldenVerdicts judges every recorded fixture with every check and
// compares the verdict table (fixture × check → pass/FAIL/info) exactly with
// testdata/verdicts.golden, written from the CIS Docker Benchmark v1.6.0
// rules for each scenario's setting.
func TestGoldenVerdicts(t *testing.T) {
	fixtures, engine := loadFixtures(t)
	var b bytes.Buffer
	fmt.Fprintf(&b, "# %s verdicts over testdata/fixtures (engine: %s, security options: %s)\n",
		Benchmark, engine.Info.ServerVersion, engine.securityOptions())
	fmt.Fprintf(&b, "# FAIL: the setting offends the check; info: the check does not apply on this engine\n\n")
	tw := tabwriter.NewWriter(&b, 0, 4, 1, ' ', 0)
	fmt.Fprint(tw, "fixture")
	for _, c := range containerChecks {
		fmt.Fprint(tw, "\t", c.ID)
	}
	fmt.Fprintln(tw)
	for _, s := range scenarios {
		fmt.Fprint(tw, s.name)
		for _, f := range AuditContainer(fixtures[s.name], engine) {
			fmt.Fprint(tw, "\t", verdictCell(f.Status))
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()

	b.WriteString("\n")
	tw = tabwriter.NewWriter(&b, 0, 4, 1, ' ', 0)
	fmt.Fprint(tw, "engine")
	for _, c := range engineChecks {
		fmt.Fprint(tw, "\t", c.ID)
	}
	fmt.Fprintln(tw)
	fmt.Fprint(tw, engine.Info.ServerVersion)
	for _, f := range AuditEngine(engine) {
		fmt.Fprint(tw, "\t", verdictCell(f.Status))
	}
	fmt.Fprintln(tw)
	tw.Flush()
	golden(t, "verdicts.golden", b.Bytes())
}

// TestFixturesFailExactlyTheirSetting: each recorded container fails the
// checks its one changed setting offends and nothing else.
func TestFixturesFailExactlyTheirSetting(t *testing.T) {
	fixtures, engine := loadFixtures(t)
	for _, s := range scenarios {
		fs := AuditContainer(fixtures[s.name], engine)
		want := map[string]bool{}
		for _, id := range s.wanted(engine) {
			want[id] = true
		}
		if got := failing(fs); !sameSet(got, want) {
			t.Errorf("%s fails %v, want %v", s.name, keys(got), keys(want))
		}
		for _, f := range fs {
			if f.Detail == "" {
				t.Errorf("%s: %s has no detail", s.name, f.CheckID)
			}
			if !f.Severity.Valid() {
				t.Errorf("%s: %s has severity %q", s.name, f.CheckID, f.Severity)
			}
		}
	}
}

// renderSubset is the mix of fixtures the renderer goldens show.
var renderSubset = []string{"clean", "privileged", "docker-socket", "cap-add-sys-nice", "gpu-env-all", "usr-ro"}

func fixtureReport(t *testing.T, names []string) Report {
	fixtures, engine := loadFixtures(t)
	var cs []container.InspectResponse
	for _, n := range names {
		cs = append(cs, fixtures[n])
	}
	return NewReport("node-1", reportTime, engine, cs)
}

func TestRenderGoldens(t *testing.T) {
	r := fixtureReport(t, renderSubset)
	// JSON holds every finding; two containers keep its golden readable.
	rj := fixtureReport(t, []string{"clean", "privileged"})
	p := DefaultPolicy()
	for _, tc := range []struct {
		file   string
		render func(*bytes.Buffer) error
	}{
		{"report.table.golden", func(b *bytes.Buffer) error { return WriteTable(b, r, RenderOptions{Policy: &p}) }},
		{"report.all.table.golden", func(b *bytes.Buffer) error { return WriteTable(b, r, RenderOptions{All: true}) }},
		{"report.json.golden", func(b *bytes.Buffer) error { return WriteJSON(b, rj, RenderOptions{Policy: &p}) }},
		{"report.sarif.golden", func(b *bytes.Buffer) error { return WriteSARIF(b, r, RenderOptions{Policy: &p}) }},
	} {
		t.Run(tc.file, func(t *testing.T) {
			var b bytes.Buffer
			if err := tc.render(&b); err != nil {
				t.Fatal(err)
			}
			golden(t, tc.file, b.Bytes())
		})
	}
}

// TestSARIFRequiredFields checks the SARIF output (the golden one and a
// report over every fixture, with and without a policy) against the fields
// the SARIF 2.1.0 schema requires, and the ones code-scanning tools rely on.
func TestSARIFRequiredFields(t *testing.T) {
	var names []string
	for _, s := range scenarios {
		names = append(names, s.name)
	}
	full := fixtureReport(t, names)
	p := DefaultPolicy()
	var outs [][]byte
	for _, opts := range []RenderOptions{{}, {Policy: &p}} {
		var b bytes.Buffer
		if err := WriteSARIF(&b, full, opts); err != nil {
			t.Fatal(err)
		}
		outs = append(outs, b.Bytes())
	}
	if g, err := os.ReadFile(filepath.Join("testdata", "report.sarif.golden")); err == nil {
		outs = append(outs, g)
	}
	for i, out := range outs {
		checkSARIF(t, fmt.Sprintf("output %d", i), out)
	}
}

func checkSARIF(t *testing.T, label string, out []byte) {
	t.Helper()
	var log map[string]any
	if err := json.Unmarshal(out, &log); err != nil {
		t.Fatalf("%s: not JSON: %v", label, err)
	}
	if log["version"] != "2.1.0" {
		t.Errorf("%s: version %v, want 2.1.0", label, log["version"])
	}
	if s, _ := log["$schema"].(string); !strings.Contains(s, "sarif-schema-2.1.0") {
		t.Errorf("%s: $schema %q", label, s)
	}
	runs, _ := log["runs"].([]any)
	if len(runs) == 0 {
		t.Fatalf("%s: no runs", label)
	}
	for _, r := range runs {
		run := r.(map[string]any)
		driver, _ := dig(run, "tool", "driver").(map[string]any)
		if name, _ := driver["name"].(string); name == "" {
			t.Errorf("%s: runs[].tool.driver.name missing", label)
		}
		rules, _ := driver["rules"].([]any)
		ruleIDs := map[string]int{}
		for i, rr := range rules {
			rule := rr.(map[string]any)
			id, _ := rule["id"].(string)
			if id == "" {
				t.Errorf("%s: rule %d has no id", label, i)
			}
			ruleIDs[id] = i
			for _, field := range []string{"name"} {
				if s, _ := rule[field].(string); s == "" {
					t.Errorf("%s: rule %s has no %s", label, id, field)
				}
			}
			for _, field := range []string{"shortDescription", "help"} {
				if s, _ := dig(rule, field, "text").(string); s == "" {
					t.Errorf("%s: rule %s has no %s.text", label, id, field)
				}
			}
		}
		results, ok := run["results"].([]any)
		if !ok {
			t.Fatalf("%s: runs[].results missing", label)
		}
		if len(results) == 0 {
			t.Errorf("%s: no results", label)
		}
		for i, rr := range results {
			res := rr.(map[string]any)
			if s, _ := dig(res, "message", "text").(string); s == "" {
				t.Errorf("%s: result %d has no message.text", label, i)
			}
			id, _ := res["ruleId"].(string)
			idx, known := ruleIDs[id]
			if !known {
				t.Errorf("%s: result %d ruleId %q names no rule", label, i, id)
			}
			if ri, _ := res["ruleIndex"].(float64); int(ri) != idx {
				t.Errorf("%s: result %d ruleIndex %v, rule %q is at %d", label, i, res["ruleIndex"], id, idx)
			}
			switch res["level"] {
			case "none", "note", "warning", "error":
			default:
				t.Errorf("%s: result %d level %v", label, i, res["level"])
			}
			locs, _ := res["locations"].([]any)
			if len(locs) == 0 {
				t.Errorf("%s: result %d has no location", label, i)
				continue
			}
			ll, _ := dig(locs[0].(map[string]any), "logicalLocations").([]any)
			if len(ll) == 0 {
				t.Errorf("%s: result %d has no logical location", label, i)
				continue
			}
			l := ll[0].(map[string]any)
			if l["name"] == "" || l["fullyQualifiedName"] == "" || l["kind"] != "resource" {
				t.Errorf("%s: result %d logical location %v", label, i, l)
			}
		}
	}
}

func dig(m map[string]any, path ...string) any {
	var cur any = m
	for _, p := range path {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = mm[p]
	}
	return cur
}
