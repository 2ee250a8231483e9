package sim

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/scheduler"
	"github.com/gantryhq/gantry/internal/scheduler/policy"
)

// Options are the flags of `gantry sim`.
type Options struct {
	Nodes          string  // node list CSV; default <trace-dir>/openb_node_list_gpu_node.csv
	Pods           string  // pod list CSV(s), comma-separated
	TraceDir       string  // folder with the trace; default: found above the working directory
	All            bool    // every pod list of the trace folder
	Policies       string  // comma-separated, or "all"
	Tune           float64 // load as a multiple of GPU capacity
	Seeds          string  // "42-51", "42,45", "100-109"
	Out            string  // folder for the CSVs, plots, summary.json and table.md
	JSON           bool    // print the summary as JSON on stdout
	CheckPublished bool    // compare with the published results; fail when they differ
	PublishedFile  string  // default <trace-dir>/fgd-expected-results/analysis_allo_discrete.csv
	Workers        int     // parallel replays; default GOMAXPROCS
	Migrate        string  // move budgets in percent of tasks placed, comma-separated ("1,2,5,10"); empty: one pass only
	MigrateWindow  int64   // tasks tried before a moved task may move again
}

// DefaultOptions are the flags' defaults.
func DefaultOptions() Options {
	return Options{Policies: "all", Tune: 1.3, Seeds: "42-51", MigrateWindow: DefaultWindow}
}

// Register defines the flags on fs (the cobra wrapper adds them with
// AddGoFlagSet).
func (o *Options) Register(fs *flag.FlagSet) {
	fs.StringVar(&o.Nodes, "nodes", o.Nodes, "node list CSV (default <trace-dir>/openb_node_list_gpu_node.csv)")
	fs.StringVar(&o.Pods, "pods", o.Pods, "pod list CSV to replay (several: comma-separated)")
	fs.StringVar(&o.TraceDir, "trace-dir", o.TraceDir, "folder of the Alibaba GPU trace (default: shared/traces/alibaba-gpu-v2023 found above the working directory)")
	fs.BoolVar(&o.All, "all", o.All, "replay every openb_pod_list_*.csv of the trace folder")
	fs.StringVar(&o.Policies, "policy", o.Policies, "policies, comma-separated, or all: "+strings.Join(policy.Names, ", "))
	fs.Float64Var(&o.Tune, "tune", o.Tune, "load: tasks are appended (or removed) until the GPU demand is this multiple of the capacity; 0 keeps the list")
	fs.StringVar(&o.Seeds, "seeds", o.Seeds, "seeds: a range 42-51 or a list 42,45")
	fs.StringVar(&o.Out, "out", o.Out, "folder to write the curves (study's CSV layout), plots, summary.json and table.md to")
	fs.BoolVar(&o.JSON, "json", o.JSON, "print the summary as JSON")
	fs.BoolVar(&o.CheckPublished, "check-published", o.CheckPublished, "compare with the published results and fail when a policy is off (without --pods or --all: every published pod list in the trace folder)")
	fs.StringVar(&o.PublishedFile, "published", o.PublishedFile, "published results (default <trace-dir>/fgd-expected-results/analysis_allo_discrete.csv)")
	fs.IntVar(&o.Workers, "workers", o.Workers, "replays run in parallel (default GOMAXPROCS)")
	fs.StringVar(&o.Migrate, "migrate", o.Migrate, "also replay with migration: move budgets in percent of the tasks placed so far, comma-separated (1,2,5,10); the one-pass replay stays the first column")
	fs.Int64Var(&o.MigrateWindow, "migrate-window", o.MigrateWindow, "with --migrate: tasks tried before a moved task may move again")
}

// ParseBudgets reads --migrate: percentages, comma-separated, each in
// (0, 100]. The one-pass replay (0) is always first.
func ParseBudgets(s string) ([]float64, error) {
	out := []float64{0}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSuffix(strings.TrimSpace(part), "%")
		if part == "" {
			continue
		}
		v, err := strconv.ParseFloat(part, 64)
		if err != nil || math.IsNaN(v) || v < 0 || v > 100 {
			return nil, fmt.Errorf("--migrate %q: give move budgets in percent of the tasks placed, such as 1,2,5,10", s)
		}
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	slices.Sort(out)
	return out, nil
}

// ErrMismatch is returned when --check-published finds a policy off the
// published results.
var ErrMismatch = errors.New("results differ from the published ones")

// TraceDirName is where the trace sits inside the shared folder.
const TraceDirName = "shared/traces/alibaba-gpu-v2023"

// FindTraceDir looks for shared/traces/alibaba-gpu-v2023 in the working
// directory and its parents.
func FindTraceDir() (string, bool) {
	dir, err := os.Getwd()
	if err != nil {
		return "", false
	}
	for {
		p := filepath.Join(dir, TraceDirName)
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			return p, true
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}

// ParseSeeds reads "42-51" or "42,45,100-102".
func ParseSeeds(s string) ([]int64, error) {
	var out []int64
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		a, err1 := strconv.ParseInt(strings.TrimSpace(lo), 10, 64)
		b := a
		var err2 error
		if isRange {
			b, err2 = strconv.ParseInt(strings.TrimSpace(hi), 10, 64)
		}
		if err1 != nil || err2 != nil || b < a || b-a > 100000 {
			return nil, fmt.Errorf("seeds %q: use a range like 42-51 or a list like 42,45", s)
		}
		for v := a; v <= b; v++ {
			if !slices.Contains(out, v) {
				out = append(out, v)
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("seeds %q: none given", s)
	}
	return out, nil
}

func parsePolicies(s string) ([]string, error) {
	if s == "" || s == "all" {
		return slices.Clone(policy.Names), nil
	}
	var out []string
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if p == "published" {
			out = append(out, policy.Published...)
			continue
		}
		if !slices.Contains(policy.Names, p) {
			return nil, fmt.Errorf("unknown policy %q (known: %s, all, published)", p, strings.Join(policy.Names, ", "))
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out, nil
}

// Workload is the name of a pod list: its file name without .csv
// ("openb_pod_list_default"), as the study's results name it.
func Workload(path string) string { return strings.TrimSuffix(filepath.Base(path), ".csv") }

// Variant is the short name of a workload ("default", "gpushare40").
func Variant(workload string) string { return strings.TrimPrefix(workload, "openb_pod_list_") }

// SeedRun is one replay's outcome.
type SeedRun struct {
	Seed     int64
	Alloc    Curve
	Frag     Curve
	Tasks    int
	Placed   int
	Moves    int     // tasks moved (with a migration budget)
	Bound    float64 // UpperBound at 100% arrived for this task order
	Duration time.Duration
}

// Result is every replay of one policy on one workload with one
// migration budget.
type Result struct {
	Workload string
	Policy   string
	Migrate  float64 // move budget, percent of tasks placed; 0 is one pass
	GPUs     int
	Runs     []SeedRun // by seed
}

// Label names a result's policy and budget ("gantry", "gantry +5% moves").
func (r *Result) Label() string { return budgetLabel(r.Policy, r.Migrate) }

func budgetLabel(p string, budget float64) string {
	if budget == 0 {
		return p
	}
	return fmt.Sprintf("%s +%g%% moves", p, budget)
}

// Task of the worker pool.
type job struct {
	w      *workload
	seed   int64
	policy string
	budget float64
	order  *ordered
}

// MigrateOptions are the migration budgets Replays runs besides the one
// pass (0), and the window of Migration.
type MigrateOptions struct {
	Budgets []float64
	Window  int64
}

type workload struct {
	name    string
	tasks   []Task
	typical []policy.Typical
}

type ordered struct {
	once  sync.Once
	tasks []Task
	rank  map[string]int
	left  int // replays still to use it (guarded by the pool's mutex)
}

// Replays runs every policy on every workload with every seed, in
// parallel on workers goroutines, and reports each finished replay to
// progress (may be nil).
func Replays(ctx context.Context, nodes []Node, workloads map[string][]Task, policies []string, seeds []int64, tune float64, workers int,
	progress func(done, total int, r *Result, s *SeedRun)) ([]*Result, error) {
	return ReplaysMigrate(ctx, nodes, workloads, policies, seeds, tune, workers, MigrateOptions{}, progress)
}

// ReplaysMigrate is Replays with migration: every policy also runs with
// each budget of mig (the one-pass replay, budget 0, always runs).
func ReplaysMigrate(ctx context.Context, nodes []Node, workloads map[string][]Task, policies []string, seeds []int64, tune float64, workers int,
	mig MigrateOptions, progress func(done, total int, r *Result, s *SeedRun)) ([]*Result, error) {
	budgets := []float64{0}
	for _, b := range mig.Budgets {
		if b > 0 && !slices.Contains(budgets, b) {
			budgets = append(budgets, b)
		}
	}
	apiNodes, gpus := APINodes(nodes)
	if gpus == 0 {
		return nil, fmt.Errorf("the node list has no GPUs")
	}
	names := make([]string, 0, len(workloads))
	for n := range workloads {
		names = append(names, n)
	}
	slices.Sort(names)
	var jobs []job
	type key struct {
		workload, policy string
		budget           float64
	}
	results := map[key]*Result{}
	var out []*Result
	for _, name := range names {
		w := &workload{name: name, tasks: workloads[name], typical: Typical(workloads[name])}
		for _, seed := range seeds {
			o := &ordered{left: len(policies) * len(budgets)}
			for _, b := range budgets {
				for _, p := range policies {
					jobs = append(jobs, job{w: w, seed: seed, policy: p, budget: b, order: o})
				}
			}
		}
		for _, b := range budgets {
			for _, p := range policies {
				r := &Result{Workload: name, Policy: p, Migrate: b, GPUs: gpus}
				results[key{name, p, b}] = r
				out = append(out, r)
			}
		}
	}
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var mu sync.Mutex
	var firstErr error
	done := 0
	ch := make(chan job)
	var wg sync.WaitGroup
	for range min(workers, len(jobs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range ch {
				s, err := replayOne(ctx, apiNodes, gpus, tune, j, mig.Window)
				mu.Lock()
				if j.order.left--; j.order.left == 0 {
					j.order.tasks = nil // every policy has replayed it
				}
				if err != nil {
					if firstErr == nil {
						firstErr = err
						cancel()
					}
				} else {
					r := results[key{j.w.name, j.policy, j.budget}]
					r.Runs = append(r.Runs, s)
					done++
					if progress != nil {
						progress(done, len(jobs), r, &s)
					}
				}
				mu.Unlock()
			}
		}()
	}
feed:
	for _, j := range jobs {
		select {
		case ch <- j:
		case <-ctx.Done():
			break feed
		}
	}
	close(ch)
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for _, r := range out {
		slices.SortFunc(r.Runs, func(a, b SeedRun) int { return int(a.Seed - b.Seed) })
	}
	return out, nil
}

func replayOne(ctx context.Context, nodes []*api.Node, gpus int, tune float64, j job, window int64) (SeedRun, error) {
	j.order.once.Do(func() {
		tasks, rank := Order(j.w.tasks, len(nodes), j.seed, tune, gpus*1000)
		j.order.tasks = tasks
		j.order.rank = make(map[string]int, len(nodes))
		byName := make([]string, len(nodes))
		for i, n := range nodes {
			byName[i] = n.Name
		}
		slices.Sort(byName)
		for i, name := range byName {
			j.order.rank[name] = rank[i]
		}
	})
	sc, err := policy.New(j.policy, policy.Env{Seed: uint64(j.seed), Typical: j.w.typical, Rank: j.order.rank})
	if err != nil {
		return SeedRun{}, err
	}
	eng := scheduler.New(scheduler.Config{GPUScorer: sc, SampleSize: -1, GPUSampleSize: -1, DisablePreemption: true})
	start := time.Now()
	points, placed, moves, err := ReplayMigrate(ctx, eng, nodes, j.order.tasks, policy.NewFragModel(j.w.typical), Migration{Budget: j.budget, Window: window})
	if err != nil {
		return SeedRun{}, fmt.Errorf("%s on %s, seed %d: %w", budgetLabel(j.policy, j.budget), j.w.name, j.seed, err)
	}
	return SeedRun{
		Seed: j.seed, Tasks: len(points), Placed: placed, Moves: moves, Duration: time.Since(start),
		Alloc: Reduce(points, gpus, Allocation(gpus)), Frag: Reduce(points, gpus, FragRate),
		Bound: UpperBound(j.order.tasks, gpus)[100],
	}, nil
}

// Main runs `gantry sim` with command-line args (for cmd/gantry-sim) and
// returns the exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o := DefaultOptions()
	fs := flag.NewFlagSet("gantry sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o.Register(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 1
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "Error: unexpected arguments %q\n", fs.Args())
		return 1
	}
	if err := Run(ctx, o, stdout, stderr); err != nil {
		fmt.Fprintln(stderr, "Error: "+err.Error())
		return 1
	}
	return 0
}

// Run is `gantry sim`: it loads the trace, replays it with every policy
// and seed, prints a summary (a table, or JSON with --json), writes the
// outputs to --out and, with --check-published, fails with ErrMismatch
// when a published policy is off by more than the tolerances.
func Run(ctx context.Context, o Options, stdout, stderr io.Writer) error {
	seeds, err := ParseSeeds(o.Seeds)
	if err != nil {
		return err
	}
	policies, err := parsePolicies(o.Policies)
	if err != nil {
		return err
	}
	budgets, err := ParseBudgets(o.Migrate)
	if err != nil {
		return err
	}
	if o.MigrateWindow < 0 {
		return fmt.Errorf("--migrate-window %d: give a number of tasks, 0 or more", o.MigrateWindow)
	}
	if o.Tune < 0 || math.IsNaN(o.Tune) || o.Tune > 100 {
		return fmt.Errorf("--tune %v: use a multiple of the GPU capacity such as 1.3", o.Tune)
	}
	dir := o.TraceDir
	if dir == "" && (o.Nodes == "" || o.All || o.CheckPublished && (o.Pods == "" || o.PublishedFile == "")) {
		var ok bool
		if dir, ok = FindTraceDir(); !ok {
			return fmt.Errorf("no trace folder: give --trace-dir (or --nodes and --pods); %s was not found above the working directory", TraceDirName)
		}
	}
	nodesPath := resolveTraceFile(o.Nodes, dir)
	if nodesPath == "" {
		nodesPath = filepath.Join(dir, "openb_node_list_gpu_node.csv")
	}
	// The published results: required to check against, and otherwise
	// shown beside ours in table.md whenever the trace folder has them.
	var pub Published
	pubPath := o.PublishedFile
	if pubPath == "" {
		pubPath = filepath.Join(dir, "fgd-expected-results", "analysis_allo_discrete.csv")
	}
	if _, serr := os.Stat(pubPath); serr == nil || o.CheckPublished || o.PublishedFile != "" {
		if pub, err = LoadPublished(pubPath); err != nil {
			return err
		}
	}
	var pods []string
	switch {
	case o.Pods != "":
		for _, p := range strings.Split(o.Pods, ",") {
			if p = strings.TrimSpace(p); p != "" {
				pods = append(pods, resolveTraceFile(p, dir))
			}
		}
	case o.All:
		if pods, err = filepath.Glob(filepath.Join(dir, "openb_pod_list_*.csv")); err != nil || len(pods) == 0 {
			return fmt.Errorf("no openb_pod_list_*.csv in %s", dir)
		}
	case o.CheckPublished:
		for w := range pub {
			p := filepath.Join(dir, w+".csv")
			if _, err := os.Stat(p); err == nil {
				pods = append(pods, p)
			}
		}
		if len(pods) == 0 {
			return fmt.Errorf("none of the published pod lists is in %s", dir)
		}
		if o.Policies == "" || o.Policies == "all" {
			policies = slices.Clone(policy.Published)
		}
	default:
		return errors.New("nothing to replay: give --pods <csv>, --all or --check-published")
	}
	slices.Sort(pods)
	nodes, err := LoadNodes(nodesPath)
	if err != nil {
		return err
	}
	workloads := map[string][]Task{}
	for _, p := range pods {
		tasks, err := LoadTasks(p)
		if err != nil {
			return err
		}
		if _, dup := workloads[Workload(p)]; dup {
			return fmt.Errorf("pod list %s given twice", Workload(p))
		}
		workloads[Workload(p)] = tasks
	}
	total := len(workloads) * len(policies) * len(seeds) * len(budgets)
	fmt.Fprintf(stderr, "gantry sim: %d pod lists × %d policies × %d seeds × %d move budgets = %d replays on %d workers, tune %.2f\n",
		len(workloads), len(policies), len(seeds), len(budgets), total, max(1, cmp0(o.Workers, runtime.GOMAXPROCS(0))), o.Tune)
	start := time.Now()
	results, err := ReplaysMigrate(ctx, nodes, workloads, policies, seeds, o.Tune, o.Workers, MigrateOptions{Budgets: budgets, Window: o.MigrateWindow}, func(done, total int, r *Result, s *SeedRun) {
		moved := ""
		if r.Migrate > 0 {
			moved = fmt.Sprintf(", %d moves", s.Moves)
		}
		fmt.Fprintf(stderr, "[%d/%d] %-10s %-26s seed %-4d %6.2f%% GPU allocated at 100%% arrived, %d/%d tasks placed%s (%.1f s)\n",
			done, total, r.Label(), r.Workload, s.Seed, s.Alloc[100], s.Placed, s.Tasks, moved, s.Duration.Seconds())
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "gantry sim: %d replays in %.1f s\n", total, time.Since(start).Seconds())
	sum := Summarize(results, seeds, o.Tune, pub)
	if o.Out != "" {
		if err := WriteOutputs(o.Out, results, sum, o.Tune); err != nil {
			return err
		}
	}
	if o.JSON {
		if err := writeJSON(stdout, sum); err != nil {
			return err
		}
	} else {
		WriteTable(stdout, sum)
	}
	if o.CheckPublished {
		bad := 0
		for _, f := range sum.Fidelity {
			if !f.OK {
				bad++
			}
		}
		if len(sum.Fidelity) == 0 {
			return fmt.Errorf("%w: nothing replayed has published results", ErrMismatch)
		}
		if bad > 0 {
			return fmt.Errorf("%w: %d of %d policy × pod list pairs outside ±%.0f point at 100%% arrived or ±%.0f points from %d%% to %d%%",
				ErrMismatch, bad, len(sum.Fidelity), TolAt100, TolCurve, CurveFrom, MaxPercent)
		}
		fmt.Fprintf(stderr, "gantry sim: all %d policy × pod list pairs reproduce the published results\n", len(sum.Fidelity))
	}
	return nil
}

func cmp0(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

// resolveTraceFile finds a pod or node list given on the command line: as
// given when it exists there, else in the trace folder (so that
// `--pods openb_pod_list_default.csv` works from anywhere), else as given
// (the error then names it).
func resolveTraceFile(p, dir string) string {
	if p == "" || filepath.IsAbs(p) || dir == "" {
		return p
	}
	if _, err := os.Stat(p); err == nil {
		return p
	}
	if in := filepath.Join(dir, p); fileExists(in) {
		return in
	}
	return p
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
