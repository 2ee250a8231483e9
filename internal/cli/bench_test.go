package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBenchCompareFlagsTheRegression compares two saved reports in which
// only startup/docker/healthy got slower beyond the noise (its median
// +41%, every new sample above every old one): exactly that figure is a
// REGRESSION, and the command exits 1.
func TestBenchCompareFlagsTheRegression(t *testing.T) {
	var out, errw bytes.Buffer
	code := Main([]string{"bench", "compare", "testdata/bench/old.json", "testdata/bench/new.json"}, &out, &errw)
	if code != ExitError {
		t.Fatalf("exit %d, want 1\n%s%s", code, out.String(), errw.String())
	}
	var flagged []string
	for _, line := range strings.Split(out.String(), "\n") {
		if strings.Contains(line, "REGRESSION") {
			flagged = append(flagged, strings.Fields(line)[0])
		}
	}
	if len(flagged) != 1 || flagged[0] != "startup/docker/healthy" {
		t.Fatalf("flagged %v, want only startup/docker/healthy:\n%s", flagged, out.String())
	}
	if !strings.Contains(out.String(), "1 of 5 figures regressed beyond 10%") {
		t.Fatalf("no count line:\n%s", out.String())
	}

	// The same as JSON, and a threshold above the change lets it pass.
	out.Reset()
	if code := Main([]string{"bench", "compare", "--json", "--threshold", "0.5", "testdata/bench/old.json", "testdata/bench/new.json"}, &out, &errw); code != ExitOK {
		t.Fatalf("--threshold 0.5: exit %d\n%s", code, errw.String())
	}
	var res struct {
		Regressions int
		Figures     []struct{ Figure, Verdict string }
	}
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if res.Regressions != 0 || len(res.Figures) != 5 || res.Figures[2].Verdict != "worse" {
		t.Fatalf("JSON %+v", res)
	}
	// Comparing a report with itself finds nothing.
	out.Reset()
	if code := Main([]string{"bench", "compare", "testdata/bench/new.json", "testdata/bench/new.json"}, &out, &errw); code != ExitOK || strings.Contains(out.String(), "better") {
		t.Fatalf("self-compare: exit %d\n%s", code, out.String())
	}
}

func TestBenchCompareRefusesAnotherSchema(t *testing.T) {
	for _, args := range [][]string{
		{"testdata/bench/old.json", "testdata/bench/other-schema.json"},
		{"testdata/bench/old.json", "testdata/bench/missing.json"},
		{"testdata/bench/old.json"},
	} {
		var out, errw bytes.Buffer
		if code := Main(append([]string{"bench", "compare"}, args...), &out, &errw); code != ExitError || out.Len() != 0 {
			t.Errorf("compare %v: exit %d, stdout %q", args, code, out.String())
		}
		if lines := strings.Count(strings.TrimSpace(errw.String()), "\n"); lines > 1 {
			t.Errorf("compare %v: want a short error, got:\n%s", args, errw.String())
		}
	}
	var out, errw bytes.Buffer
	Main([]string{"bench", "compare", "testdata/bench/old.json", "testdata/bench/other-schema.json"}, &out, &errw)
	if !strings.Contains(errw.String(), `written with report schema "gantry-bench/0"; this gantry reads "gantry-bench/1"`) {
		t.Errorf("error %q does not name both schemas", errw.String())
	}
}

// TestBenchShowWritesThePage renders a saved report again: Markdown on
// stdout and, with --html, the page and one SVG per chart.
func TestBenchShowWritesThePage(t *testing.T) {
	dir := t.TempDir()
	var out, errw bytes.Buffer
	if code := Main([]string{"bench", "show", "--html", dir, "testdata/bench/new.json"}, &out, &errw); code != ExitOK {
		t.Fatalf("exit %d: %s", code, errw.String())
	}
	if !strings.Contains(out.String(), "| startup/docker/healthy | ms | 8 |") || !strings.Contains(out.String(), "| proxy | skipped: nginx is not installed") {
		t.Fatalf("Markdown:\n%s", out.String())
	}
	for _, f := range []string{"report.json", "report.md", "index.html", "sched-throughput.svg", "startup-healthy.svg"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("%s not written: %v", f, err)
		}
	}
	page, _ := os.ReadFile(filepath.Join(dir, "index.html"))
	if strings.Count(string(page), "<svg") != 2 {
		t.Errorf("the page holds %d charts, want 2", strings.Count(string(page), "<svg"))
	}
}
