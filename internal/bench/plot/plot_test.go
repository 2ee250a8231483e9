package plot

import (
	"encoding/xml"
	"io"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/internal/bench/report"
)

// wellFormed parses svg as XML and counts its elements by name.
func wellFormed(t *testing.T, svg string) map[string]int {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(svg))
	count := map[string]int{}
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return count
		}
		if err != nil {
			t.Fatalf("not well-formed SVG: %v\n%s", err, svg)
		}
		if se, ok := tok.(xml.StartElement); ok {
			count[se.Name.Local]++
		}
	}
}

func TestCharts(t *testing.T) {
	cdf := &report.Chart{ID: "startup/healthy", Kind: "cdf", Title: "healthy & running"}
	a := report.NewFigure("startup/docker/healthy", "ms", report.LowerIsBetter, []float64{700, 720, 710, 2000})
	b := report.NewFigure("startup/exec/healthy", "ms", report.LowerIsBetter, []float64{15, 16})
	a.Chart, b.Chart = cdf, cdf
	var lines []report.Figure
	for _, s := range []string{"cpu", "gang8"} {
		for _, n := range []float64{1000, 5000, 10000} {
			f := report.NewFigure("sched/"+s, "placements/cpu-s", report.HigherIsBetter, []float64{n * 10, n * 11})
			f.Chart = &report.Chart{ID: "sched/throughput", Kind: "line", Title: "throughput", XLabel: "nodes", Series: s, X: n}
			lines = append(lines, f)
		}
	}
	none := report.NewFigure("sim/x", "%", report.HigherIsBetter, []float64{1})
	r := &report.Report{Suites: []report.Suite{{Name: "startup", Figures: []report.Figure{a, b, none}}, {Name: "sched", Figures: lines}}}
	charts := Charts(r)
	if len(charts) != 2 || charts[0].ID != "startup/healthy" || charts[1].ID != "sched/throughput" {
		t.Fatalf("charts %+v, want startup/healthy then sched/throughput", charts)
	}
	c := wellFormed(t, charts[0].SVG)
	if c["polyline"] != 2 {
		t.Errorf("CDF: %d lines, want one per figure (2)", c["polyline"])
	}
	if !strings.Contains(charts[0].SVG, "healthy &amp; running") || !strings.Contains(charts[0].SVG, "docker/healthy p50 715.0") {
		t.Errorf("CDF lacks its title or legend:\n%s", charts[0].SVG)
	}
	c = wellFormed(t, charts[1].SVG)
	if c["polyline"] != 2 || c["circle"] != 6 {
		t.Errorf("lines: %d lines and %d points, want 2 and 6", c["polyline"], c["circle"])
	}
}

func TestTicks(t *testing.T) {
	if got := ticks(0, 100, false); len(got) != 6 || got[0] != 0 || got[5] != 100 {
		t.Errorf("ticks(0, 100) = %v", got)
	}
	if got := ticks(900, 11000, true); len(got) != 2 || got[0] != 1000 || got[1] != 10000 {
		t.Errorf("log ticks(900, 11000) = %v", got)
	}
	if got := ticks(5, 5, false); len(got) != 1 {
		t.Errorf("an empty range: %v", got)
	}
}
