package sim

import (
	"cmp"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/gantryhq/gantry/internal/scheduler/policy"
)

// Stat is a value's mean, minimum and maximum over seeds.
type Stat struct {
	Mean float64 `json:"mean"`
	Min  float64 `json:"min"`
	Max  float64 `json:"max"`
}

func stat(vs []float64) Stat {
	s := Stat{Min: math.Inf(1), Max: math.Inf(-1)}
	n := 0
	for _, v := range vs {
		if math.IsNaN(v) {
			continue
		}
		s.Mean += v
		s.Min, s.Max = math.Min(s.Min, v), math.Max(s.Max, v)
		n++
	}
	if n == 0 {
		return Stat{} // JSON has no NaN
	}
	s.Mean /= float64(n)
	return Stat{Mean: round2(s.Mean), Min: round2(s.Min), Max: round2(s.Max)}
}

// RunSummary is one policy on one pod list, over the seeds.
type RunSummary struct {
	Policy         string   `json:"policy"`
	Variant        string   `json:"variant"`
	Workload       string   `json:"workload"`
	Seeds          []int64  `json:"seeds"`
	GPUAllocAt100  Stat     `json:"gpu_alloc_at_100"`
	FragRateAt100  Stat     `json:"frag_rate_at_100"`
	PlacementsPerS float64  `json:"placements_per_s"`
	Published      *float64 `json:"published_gpu_alloc_at_100,omitempty"`
	// With --migrate: the move budget (percent of tasks placed), the moves
	// made and what they are as a percent of the tasks placed.
	Migrate  float64 `json:"migrate_budget_pct,omitempty"`
	Moves    *Stat   `json:"moves,omitempty"`
	MovedPct *Stat   `json:"moved_pct_of_placed,omitempty"`
	// BoundAt100 is UpperBound at 100% arrived: no policy allocates more.
	BoundAt100 Stat `json:"upper_bound_at_100"`
	mean       Curve
}

// Label names the run's policy and move budget.
func (r *RunSummary) Label() string { return budgetLabel(r.Policy, r.Migrate) }

// Summary is what `gantry sim --json` prints and writes to summary.json.
type Summary struct {
	Tune     float64      `json:"tune"`
	Seeds    []int64      `json:"seeds"`
	Runs     []RunSummary `json:"runs"`
	Fidelity []Fidelity   `json:"fidelity,omitempty"`
}

// Summarize reduces the replays; with published results it also compares
// each published policy with them (Fidelity).
func Summarize(results []*Result, seeds []int64, tune float64, pub Published) *Summary {
	s := &Summary{Tune: tune, Seeds: seeds}
	for _, r := range results {
		rs := RunSummary{Policy: r.Policy, Workload: r.Workload, Variant: Variant(r.Workload), Migrate: r.Migrate}
		var allocs, frags, moves, moved, bounds []float64
		var curves []Curve
		tasks, secs := 0, 0.0
		for _, sr := range r.Runs {
			rs.Seeds = append(rs.Seeds, sr.Seed)
			allocs = append(allocs, sr.Alloc[100])
			frags = append(frags, sr.Frag[100])
			moves = append(moves, float64(sr.Moves))
			moved = append(moved, 100*float64(sr.Moves)/float64(max(1, sr.Placed)))
			bounds = append(bounds, sr.Bound)
			curves = append(curves, sr.Alloc)
			tasks += sr.Tasks
			secs += sr.Duration.Seconds()
		}
		rs.GPUAllocAt100, rs.FragRateAt100, rs.BoundAt100 = stat(allocs), stat(frags), stat(bounds)
		if r.Migrate > 0 {
			mv, pct := stat(moves), stat(moved)
			rs.Moves, rs.MovedPct = &mv, &pct
		}
		if secs > 0 {
			rs.PlacementsPerS = math.Round(float64(tasks) / secs)
		}
		rs.mean = MeanCurve(curves)
		if pub != nil && r.Migrate == 0 {
			if f, ok := Compare(pub, r.Workload, r.Policy, rs.Seeds, rs.mean); ok {
				v := f.Published
				rs.Published = &v
				s.Fidelity = append(s.Fidelity, f)
			}
		}
		s.Runs = append(s.Runs, rs)
	}
	return s
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// WriteTable prints the summary for people: allocation at 100% arrived
// per policy and pod list, and the fidelity check when there is one.
func WriteTable(w io.Writer, s *Summary) {
	tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', tabwriter.AlignRight)
	migrating := slices.ContainsFunc(s.Runs, func(r RunSummary) bool { return r.Migrate > 0 })
	head := "POD LIST\tPOLICY\tGPU ALLOC @100% (mean)\tMIN\tMAX\tPUBLISHED\tFRAG RATE @100%\tPLACEMENTS/S\t"
	if migrating {
		head += "MOVES (mean)\tMOVED % OF PLACED\tUPPER BOUND @100%\t"
	}
	fmt.Fprintln(tw, head)
	for _, r := range s.Runs {
		p := "-"
		if r.Published != nil {
			p = fmt.Sprintf("%.2f", *r.Published)
		}
		fmt.Fprintf(tw, "%s\t%s\t%.2f\t%.2f\t%.2f\t%s\t%.2f\t%.0f\t", r.Variant, r.Label(),
			r.GPUAllocAt100.Mean, r.GPUAllocAt100.Min, r.GPUAllocAt100.Max, p, r.FragRateAt100.Mean, r.PlacementsPerS)
		if migrating {
			mv, pct := "-", "-"
			if r.Moves != nil {
				mv, pct = fmt.Sprintf("%.1f", r.Moves.Mean), fmt.Sprintf("%.2f", r.MovedPct.Mean)
			}
			fmt.Fprintf(tw, "%s\t%s\t%.2f\t", mv, pct, r.BoundAt100.Mean)
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	if len(s.Fidelity) == 0 {
		return
	}
	fmt.Fprintf(w, "\nFidelity (ours vs published, mean over the same seeds; tolerance ±%.0f at 100%%, ±%.0f from %d%% to %d%%):\n", TolAt100, TolCurve, CurveFrom, MaxPercent)
	tw = tabwriter.NewWriter(w, 0, 2, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "POD LIST\tPOLICY\tOURS @100%\tPUBLISHED\tDIFF\tWORST GAP\tAT\tSEEDS\t\t")
	for _, f := range s.Fidelity {
		ok := "ok"
		if !f.OK {
			ok = "OFF"
		}
		fmt.Fprintf(tw, "%s\t%s\t%.2f\t%.2f\t%+.2f\t%.2f\t%d%%\t%d\t%s\t\n", Variant(f.Workload), f.Policy, f.Ours, f.Published, f.Ours-f.Published, f.WorstGap, f.WorstAt, len(f.Seeds), ok)
	}
	tw.Flush()
}

// pyFloat writes a number as Python writes a float (the study's CSVs came
// from pandas): the shortest representation, with ".0" when integral.
func pyFloat(v float64) string {
	if math.IsNaN(v) {
		return ""
	}
	s := strconv.FormatFloat(v, 'f', -1, 64)
	if !strings.ContainsAny(s, ".eE") {
		s += ".0"
	}
	return s
}

// WriteCurves writes curves in the study's layout:
// workload,sc_policy,tune,seed,total_gpus,0,1,…,130.
func WriteCurves(w io.Writer, results []*Result, tune float64, pick func(*SeedRun) *Curve) error {
	cw := csv.NewWriter(w)
	head := []string{"workload", "sc_policy", "tune", "seed", "total_gpus"}
	for p := 0; p <= MaxPercent; p++ {
		head = append(head, strconv.Itoa(p))
	}
	if err := cw.Write(head); err != nil {
		return err
	}
	rec := make([]string, 0, len(head))
	for _, r := range results {
		for i := range r.Runs {
			sr := &r.Runs[i]
			label := policy.Label(r.Policy)
			if r.Migrate > 0 {
				label += fmt.Sprintf("+migrate%g%%", r.Migrate)
			}
			rec = append(rec[:0], r.Workload, label, pyFloat(tune), strconv.FormatInt(sr.Seed, 10), strconv.Itoa(r.GPUs))
			c := pick(sr)
			for p := 0; p <= MaxPercent; p++ {
				rec = append(rec, pyFloat(c[p]))
			}
			if err := cw.Write(rec); err != nil {
				return err
			}
		}
	}
	cw.Flush()
	return cw.Error()
}

// WriteOutputs writes, into dir: analysis_allo_discrete.csv and
// analysis_frag_ratio_discrete.csv (per seed, the study's layout),
// alloc_<pod list>.svg (mean allocation against arrived demand, one line
// per policy), summary.json and table.md.
func WriteOutputs(dir string, results []*Result, s *Summary, tune float64) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	sorted := slices.Clone(results)
	slices.SortStableFunc(sorted, func(a, b *Result) int {
		if a.Workload != b.Workload {
			return strings.Compare(a.Workload, b.Workload)
		}
		if c := strings.Compare(policy.Label(a.Policy), policy.Label(b.Policy)); c != 0 {
			return c
		}
		return cmp.Compare(a.Migrate, b.Migrate)
	})
	write := func(name string, fn func(io.Writer) error) error {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		if err := fn(f); err != nil {
			f.Close()
			return fmt.Errorf("write %s: %w", name, err)
		}
		return f.Close()
	}
	if err := write("analysis_allo_discrete.csv", func(w io.Writer) error {
		return WriteCurves(w, sorted, tune, func(r *SeedRun) *Curve { return &r.Alloc })
	}); err != nil {
		return err
	}
	if err := write("analysis_frag_ratio_discrete.csv", func(w io.Writer) error {
		return WriteCurves(w, sorted, tune, func(r *SeedRun) *Curve { return &r.Frag })
	}); err != nil {
		return err
	}
	byWorkload := map[string][]RunSummary{}
	var order []string
	for _, r := range s.Runs {
		if byWorkload[r.Workload] == nil {
			order = append(order, r.Workload)
		}
		byWorkload[r.Workload] = append(byWorkload[r.Workload], r)
	}
	for _, w := range order {
		runs := byWorkload[w]
		if err := write("alloc_"+Variant(w)+".svg", func(out io.Writer) error { return Plot(out, Variant(w), runs) }); err != nil {
			return err
		}
	}
	if err := write("summary.json", func(w io.Writer) error { return writeJSON(w, s) }); err != nil {
		return err
	}
	return write("table.md", func(w io.Writer) error { return WriteMarkdown(w, s) })
}

// WriteMarkdown writes the README table: pod lists down, policies across,
// mean GPU allocation at 100% arrived, ours (published).
func WriteMarkdown(w io.Writer, s *Summary) error {
	var pols, lists []string
	cell := map[[2]string]RunSummary{}
	for _, r := range s.Runs {
		if r.Migrate > 0 {
			continue // the migration table below
		}
		if !slices.Contains(pols, r.Policy) {
			pols = append(pols, r.Policy)
		}
		if !slices.Contains(lists, r.Variant) {
			lists = append(lists, r.Variant)
		}
		cell[[2]string{r.Variant, r.Policy}] = r
	}
	slices.SortStableFunc(pols, func(a, b string) int { return strings.Compare(policy.Label(a), policy.Label(b)) })
	fmt.Fprintf(w, "| pod list |")
	for _, p := range pols {
		fmt.Fprintf(w, " %s |", p)
	}
	fmt.Fprintf(w, "\n|---|")
	for range pols {
		fmt.Fprintf(w, "---:|")
	}
	fmt.Fprintln(w)
	anyPublished := false
	for _, l := range lists {
		fmt.Fprintf(w, "| %s |", l)
		for _, p := range pols {
			r, ok := cell[[2]string{l, p}]
			switch {
			case !ok:
				fmt.Fprint(w, " |")
			case r.Published != nil:
				anyPublished = true
				fmt.Fprintf(w, " %.2f (%.2f) |", r.GPUAllocAt100.Mean, *r.Published)
			default:
				fmt.Fprintf(w, " %.2f |", r.GPUAllocAt100.Mean)
			}
		}
		fmt.Fprintln(w)
	}
	note := "."
	if anyPublished {
		note = "; in parentheses the published mean over the same seeds."
	}
	if _, err := fmt.Fprintf(w, "\nGPU allocation (%%) at 100%% arrived, mean of seeds %s, tune %.1f%s\n", seedList(s.Seeds), s.Tune, note); err != nil {
		return err
	}
	return writeMigration(w, s)
}

// writeMigration writes the table of replays with migration, when there
// are any: per pod list and policy, the one-pass allocation, then the
// allocation with each move budget, the tasks moved (percent of those
// placed) and the fragmentation rate, beside published FGD and the
// upper bound of any policy.
func writeMigration(w io.Writer, s *Summary) error {
	var budgets []float64
	var pols, lists []string
	type key struct {
		list, policy string
		budget       float64
	}
	cell := map[key]RunSummary{}
	var fgdPub = map[string]*float64{}
	bound := map[string]Stat{}
	for _, r := range s.Runs {
		if r.Migrate > 0 && !slices.Contains(budgets, r.Migrate) {
			budgets = append(budgets, r.Migrate)
		}
		if !slices.Contains(pols, r.Policy) {
			pols = append(pols, r.Policy)
		}
		if !slices.Contains(lists, r.Variant) {
			lists = append(lists, r.Variant)
		}
		cell[key{r.Variant, r.Policy, r.Migrate}] = r
		if r.Policy == "fgd" && r.Published != nil {
			fgdPub[r.Variant] = r.Published
		}
		bound[r.Variant] = r.BoundAt100
	}
	if len(budgets) == 0 {
		return nil
	}
	slices.Sort(budgets)
	all := append([]float64{0}, budgets...)
	fmt.Fprintf(w, "\n**With migration** (not the one-pass protocol: a task that fits nowhere may move placed GPU tasks, within a budget of moves counted in percent of the tasks placed so far):\n\n")
	fmt.Fprint(w, "| pod list | policy | published fgd, one pass | upper bound, any policy |")
	for _, b := range all {
		if b == 0 {
			fmt.Fprint(w, " one pass |")
		} else {
			fmt.Fprintf(w, " with migration, %g%% |", b)
		}
	}
	fmt.Fprint(w, " moved, % of placed (", budgetList(budgets), ") | frag rate @100% (", budgetList(all), ") |\n|---|---|---:|---:|")
	for range all {
		fmt.Fprint(w, "---:|")
	}
	fmt.Fprintln(w, "---:|---:|")
	for _, l := range lists {
		for _, p := range pols {
			if _, ok := cell[key{l, p, budgets[0]}]; !ok {
				continue
			}
			pub := "-"
			if v := fgdPub[l]; v != nil {
				pub = fmt.Sprintf("%.2f", *v)
			}
			fmt.Fprintf(w, "| %s | %s | %s | %.2f |", l, p, pub, bound[l].Mean)
			var moved, frag []string
			for _, b := range all {
				r, ok := cell[key{l, p, b}]
				if !ok {
					fmt.Fprint(w, " |")
					moved, frag = append(moved, "-"), append(frag, "-")
					continue
				}
				fmt.Fprintf(w, " %.2f |", r.GPUAllocAt100.Mean)
				if b > 0 {
					moved = append(moved, fmt.Sprintf("%.2f", r.MovedPct.Mean))
				}
				frag = append(frag, fmt.Sprintf("%.2f", r.FragRateAt100.Mean))
			}
			fmt.Fprintf(w, " %s | %s |\n", strings.Join(moved, " / "), strings.Join(frag, " / "))
		}
	}
	_, err := fmt.Fprintf(w, "\nGPU allocation (%%) at 100%% arrived, mean of seeds %s, tune %.1f.\n", seedList(s.Seeds), s.Tune)
	return err
}

func budgetList(bs []float64) string {
	var parts []string
	for _, b := range bs {
		parts = append(parts, fmt.Sprintf("%g%%", b))
	}
	return strings.Join(parts, " / ")
}

func seedList(seeds []int64) string {
	if len(seeds) == 0 {
		return ""
	}
	contiguous := true
	for i := 1; i < len(seeds); i++ {
		if seeds[i] != seeds[i-1]+1 {
			contiguous = false
		}
	}
	if contiguous && len(seeds) > 1 {
		return fmt.Sprintf("%d–%d", seeds[0], seeds[len(seeds)-1])
	}
	var parts []string
	for _, s := range seeds {
		parts = append(parts, strconv.FormatInt(s, 10))
	}
	return strings.Join(parts, ", ")
}
