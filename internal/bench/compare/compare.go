// Package compare owns `gantry bench compare`: it matches the figures of
// two reports by name, tests each change against the noise of its
// samples (internal/bench/stats) and calls a figure a regression only
// when the change is significant, in the worse direction and beyond a
// threshold. It does no I/O beyond writing the table it is given a
// writer for.
package compare

import (
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"

	"github.com/gantryhq/gantry/internal/bench/report"
	"github.com/gantryhq/gantry/internal/bench/stats"
)

// Verdicts of a figure.
const (
	Same        = "~"           // no change beyond the noise
	Improved    = "better"      // significant, in the better direction
	Worse       = "worse"       // significant, worse, within the threshold
	Regressed   = "REGRESSION"  // significant, worse, beyond the threshold
	OnlyOld     = "only in old" // the new report lacks it
	OnlyNew     = "only in new"
	NotTestable = "too few samples"
)

// Row is the comparison of one figure.
type Row struct {
	Figure  string `json:"figure"`
	Unit    string `json:"unit"`
	Better  string `json:"better,omitempty"`
	Verdict string `json:"verdict"`
	// Basis says what was tested: "samples", or "rounds" (one value per
	// round) where the figure records rounds.
	Basis string `json:"basis,omitempty"`
	stats.Comparison
}

// Result is a whole comparison.
type Result struct {
	Old, New    string  `json:"-"`
	Threshold   float64 `json:"threshold"`
	Rows        []Row   `json:"figures"`
	Regressions int     `json:"regressions"`
	// Warnings: the machines differ, a report is partial.
	Warnings []string `json:"warnings,omitempty"`
}

// Reports compares every figure of old with the figure of the same name
// in new. threshold is the relative change (0.1 = 10%) a significant
// worsening must exceed to count as a regression.
func Reports(old, new *report.Report, threshold float64) *Result {
	res := &Result{Threshold: threshold}
	if old.Machine.CPUModel != new.Machine.CPUModel || old.Machine.CPUs != new.Machine.CPUs {
		res.Warnings = append(res.Warnings, fmt.Sprintf("the reports come from different machines (%s; %s): changes may be the machine's", old.Machine.Line(), new.Machine.Line()))
	}
	if old.Quick != new.Quick {
		res.Warnings = append(res.Warnings, "one report is quick and the other full: sample counts and sizes differ")
	}
	for _, r := range []*report.Report{old, new} {
		if r.Partial {
			res.Warnings = append(res.Warnings, "a report is partial: "+r.PartialReason)
		}
	}
	newFigs := map[string]report.Figure{}
	for _, f := range new.Figures() {
		newFigs[f.Name] = f
	}
	seen := map[string]bool{}
	for _, o := range old.Figures() {
		seen[o.Name] = true
		n, ok := newFigs[o.Name]
		if !ok {
			res.Rows = append(res.Rows, Row{Figure: o.Name, Unit: o.Unit, Verdict: OnlyOld, Comparison: stats.Comparison{OldMedian: o.Summary.Median, Delta: math.NaN(), P: 1}})
			continue
		}
		row := Row{Figure: o.Name, Unit: n.Unit, Better: n.Better, Basis: "samples"}
		if len(o.Rounds) > 0 && len(n.Rounds) > 0 {
			row.Basis = "rounds"
			row.Comparison = stats.Compare(o.Rounds, n.Rounds)
		} else {
			row.Comparison = stats.Compare(o.Samples, n.Samples)
		}
		row.Verdict = verdict(row, threshold)
		if row.Verdict == Regressed {
			res.Regressions++
		}
		res.Rows = append(res.Rows, row)
	}
	for _, n := range new.Figures() {
		if !seen[n.Name] {
			res.Rows = append(res.Rows, Row{Figure: n.Name, Unit: n.Unit, Verdict: OnlyNew, Comparison: stats.Comparison{NewMedian: n.Summary.Median, Delta: math.NaN(), P: 1}})
		}
	}
	return res
}

func verdict(r Row, threshold float64) string {
	if !r.Significant {
		if r.Note != "" {
			return NotTestable
		}
		return Same
	}
	worse := r.Delta > 0
	if r.Better == report.HigherIsBetter {
		worse = r.Delta < 0
	}
	switch {
	case !worse:
		return Improved
	case math.Abs(r.Delta) > threshold:
		return Regressed
	default:
		return Worse
	}
}

// Write prints the comparison as a table, then the warnings and a last
// line that counts the regressions.
func Write(w io.Writer, res *Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "figure\tunit\told\tnew\tdelta\tp\tn\tverdict")
	for _, r := range res.Rows {
		old, new, delta, p := "-", "-", "-", "-"
		if r.Verdict != OnlyNew {
			old = report.Num(r.OldMedian)
		}
		if r.Verdict != OnlyOld {
			new = report.Num(r.NewMedian)
		}
		if !math.IsNaN(r.Delta) {
			delta = fmt.Sprintf("%+.1f%%", 100*r.Delta)
		}
		if r.Verdict != OnlyOld && r.Verdict != OnlyNew {
			p = fmt.Sprintf("%.3f", r.P)
		}
		n := "-"
		if r.N1 > 0 || r.N2 > 0 {
			n = fmt.Sprintf("%d+%d %s", r.N1, r.N2, r.Basis)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Figure, r.Unit, old, new, delta, p, n, r.Verdict)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var b strings.Builder
	for _, warn := range res.Warnings {
		fmt.Fprintf(&b, "warning: %s\n", warn)
	}
	untestable := 0
	for _, r := range res.Rows {
		if r.Verdict == NotTestable {
			untestable++
		}
	}
	fmt.Fprintf(&b, "%d of %d figures regressed beyond %.0f%% (Mann-Whitney U test, alpha %.2f; \"~\": no change beyond the noise)\n",
		res.Regressions, len(res.Rows), 100*res.Threshold, stats.Alpha)
	if untestable > 0 {
		fmt.Fprintf(&b, "%d figures have too few values on a side to show a change at that level (4 or more each are needed): compare full runs, or give --rounds\n", untestable)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
