package compare

import (
	"bytes"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/internal/bench/report"
)

func rep(figs ...report.Figure) *report.Report {
	return &report.Report{Schema: report.Schema, Machine: report.Machine{CPUModel: "cpu", CPUs: 2}, Suites: []report.Suite{{Name: "s", Status: report.StatusOK, Figures: figs}}}
}

func fig(name, better string, samples ...float64) report.Figure {
	return report.NewFigure(name, "u", better, samples)
}

func TestVerdicts(t *testing.T) {
	base := []float64{100, 101, 99, 102, 98, 100, 101, 99}
	scale := func(k float64) []float64 {
		out := make([]float64, len(base))
		for i, v := range base {
			out[i] = v * k
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		better  string
		new     []float64
		verdict string
	}{
		{"latency 30% up", report.LowerIsBetter, scale(1.3), Regressed},
		{"latency 5% up", report.LowerIsBetter, scale(1.05), Worse},
		{"latency 30% down", report.LowerIsBetter, scale(0.7), Improved},
		{"throughput 30% down", report.HigherIsBetter, scale(0.7), Regressed},
		{"throughput 30% up", report.HigherIsBetter, scale(1.3), Improved},
		{"noise", report.LowerIsBetter, []float64{101, 99, 100, 98, 102, 100, 99, 101}, Same},
		{"two samples, far apart", report.LowerIsBetter, []float64{500, 600}, NotTestable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old := base
			if len(tc.new) == 2 {
				old = []float64{100, 101}
			}
			res := Reports(rep(fig("f", tc.better, old...)), rep(fig("f", tc.better, tc.new...)), 0.1)
			if got := res.Rows[0].Verdict; got != tc.verdict {
				t.Fatalf("verdict %q (p=%.4f, delta %.3f), want %q", got, res.Rows[0].P, res.Rows[0].Delta, tc.verdict)
			}
			if want := map[bool]int{true: 1, false: 0}[tc.verdict == Regressed]; res.Regressions != want {
				t.Fatalf("regressions %d, want %d", res.Regressions, want)
			}
		})
	}
}

func TestFiguresOnOneSide(t *testing.T) {
	old := rep(fig("a", report.LowerIsBetter, 1, 2, 3), fig("gone", report.LowerIsBetter, 1))
	new := rep(fig("a", report.LowerIsBetter, 1, 2, 3), fig("added", report.LowerIsBetter, 1))
	new.Machine.CPUs = 16
	res := Reports(old, new, 0.1)
	got := map[string]string{}
	for _, r := range res.Rows {
		got[r.Figure] = r.Verdict
	}
	if got["gone"] != OnlyOld || got["added"] != OnlyNew || res.Regressions != 0 {
		t.Fatalf("rows %v, regressions %d", got, res.Regressions)
	}
	if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "different machines") {
		t.Fatalf("warnings %q, want one about the machines", res.Warnings)
	}
	var b bytes.Buffer
	if err := Write(&b, res); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"only in old", "only in new", "0 of 3 figures regressed", "warning: the reports come from different machines"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}

// TestRoundsAreTested: where both reports record one value per round,
// the test runs on those, not on the many samples of a round (which share
// its conditions and would make a noisy round look significant).
func TestRoundsAreTested(t *testing.T) {
	old := fig("f", report.LowerIsBetter, 100, 101, 102, 103, 104, 105, 106, 107, 108, 109)
	new := fig("f", report.LowerIsBetter, 120, 121, 122, 123, 124, 125, 126, 127, 128, 129)
	res := Reports(rep(old), rep(new), 0.1)
	if res.Rows[0].Verdict != Regressed || res.Rows[0].Basis != "samples" {
		t.Fatalf("samples alone: %+v", res.Rows[0])
	}
	old.Rounds, new.Rounds = []float64{104}, []float64{124}
	res = Reports(rep(old), rep(new), 0.1)
	if r := res.Rows[0]; r.Verdict != NotTestable || r.Basis != "rounds" || r.N1 != 1 || r.N2 != 1 {
		t.Fatalf("one round each: %+v, want too few to test, on rounds", r)
	}
}
