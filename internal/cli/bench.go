package cli

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/gantryhq/gantry/internal/bench/compare"
	"github.com/gantryhq/gantry/internal/bench/plot"
	"github.com/gantryhq/gantry/internal/bench/report"
	"github.com/gantryhq/gantry/internal/bench/suite"
	"github.com/spf13/cobra"
)

func newBenchCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Benchmark suites with one report (JSON, Markdown, SVG plots, an HTML page) and comparisons that tell a regression from noise",
	}
	cmd.PersistentFlags().BoolVar(&g.json, "json", false, "print the report (run, show) or the comparison (compare) as JSON")
	cmd.AddCommand(newBenchRunCmd(g), newBenchCompareCmd(g), newBenchShowCmd(g))
	return cmd
}

func newBenchRunCmd(g *globals) *cobra.Command {
	var names, out string
	env := &suite.Env{}
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run benchmark suites and write the report",
		Long: `Run benchmark suites and write one report into --out: report.json (the
machine's facts and every figure with its samples, median and
percentiles), report.md (a summary table), one SVG per chart and
index.html (all of it on one page).

Suites (default: all, in this order):
  sched     the scheduler's placements per CPU-second at 1,000 / 5,000 / 10,000
            nodes (--quick: 1,000 / 2,000) for the cpu, gpu-mixed and gang8
            workloads, in process on one core
  startup   submit → running and submit → healthy of the demo app per driver
            (docker, exec; wasm when its module exists; qemu with --vm-guest),
            beside starting the same program directly (docker run, a process)
  proxy     Gantry's load balancer against nginx in front of the same three
            replicas, alternating rounds (vegeta; skipped without nginx)
  failover  3 servers on loopback: kill -9 of the leader, time to the next
            accepted write and to a new leader
  sim       the GPU trace replay, GPU allocated at 100% per policy, per seed
  scale     gantry loadtest against a fresh server (simulated nodes)

startup works against the cluster given by --address, or starts gantry dev on
loopback; everything a suite starts is stopped and removed when it ends or on
Ctrl-C. A suite whose prerequisite is missing is skipped with the reason; an
interrupted or failed run keeps what it measured and marks the report partial.`,
		Example: `  gantry bench run --quick                       # every suite, small (minutes)
  gantry bench run --quick --suite startup,sched
  gantry bench run --out bench-full              # the full set (13 minutes on 2 cores)
  gantry bench compare old/report.json new/report.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			suites, err := suite.Select(strings.Split(names, ","))
			if err != nil {
				return exitf(ExitError, "%v", err)
			}
			for _, d := range env.Params.Drivers {
				if !slices.Contains([]string{"docker", "exec", "wasm", "qemu"}, d) {
					return exitf(ExitError, "--drivers: no driver %q to measure: choose from docker, exec, wasm, qemu", d)
				}
			}
			if cmd.Flags().Changed("address") || os.Getenv("GANTRY_ADDRESS") != "" {
				env.Address = g.address
			}
			env.Token = g.token
			// The suites write these paths into job specs, which take
			// absolute paths on the node.
			for _, p := range []*string{&env.Params.VMGuest, &env.Params.WasmModule, &env.Params.TraceDir} {
				if *p != "" {
					if *p, err = filepath.Abs(*p); err != nil {
						return exitf(ExitError, "%v", err)
					}
				}
			}
			if env.Bin, err = os.Executable(); err != nil {
				return exitf(ExitError, "find the gantry binary to start clusters with: %v", err)
			}
			start := time.Now()
			if out == "" {
				out = "gantry-bench-" + start.Format("20060102-150405")
			}
			if err := os.MkdirAll(out, 0o755); err != nil {
				return exitf(ExitError, "create the report folder: %v", err)
			}
			scratch, err := os.MkdirTemp("", "gantry-bench")
			if err != nil {
				return exitf(ExitError, "create a scratch folder: %v", err)
			}
			defer os.RemoveAll(scratch)
			env.Dir, env.Progress = scratch, g.errw
			env.RunID = fmt.Sprintf("%04x", start.UnixNano()&0xffff)
			ctx, cancel := signalContext()
			defer cancel()
			r := &report.Report{Schema: report.Schema, Started: start, Command: "gantry " + strings.Join(os.Args[1:], " "), Quick: env.Quick,
				Machine: suite.Machine(ctx, Version)}
			fmt.Fprintf(g.errw, "gantry bench: %d suites, report in %s\nmachine: %s\n", len(suites), out, r.Machine.Line())
			var saveErr error
			suite.Run(ctx, env, suites, r, time.Now, func() { saveErr = writeBenchReport(out, r) })
			if ctx.Err() != nil && !r.Partial {
				r.Partial, r.PartialReason = true, "interrupted"
			}
			if err := writeBenchReport(out, r); err != nil {
				return exitf(ExitError, "%v", err)
			}
			if saveErr != nil {
				return exitf(ExitError, "%v", saveErr)
			}
			if g.json {
				if err := printJSON(g.out, r); err != nil {
					return err
				}
			} else {
				if err := report.Markdown(g.out, r); err != nil {
					return err
				}
			}
			abs, _ := filepath.Abs(out)
			fmt.Fprintf(g.errw, "report: %s (report.json, report.md, index.html)\n", abs)
			if r.Partial {
				return exitf(ExitError, "the report is partial (%s); what was measured is in %s", r.PartialReason, filepath.Join(out, "report.json"))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&names, "suite", strings.Join(suite.Default, ","), "suites to run, comma-separated: "+strings.Join(suite.Default, ", "))
	f.BoolVar(&env.Quick, "quick", false, "the small version of each suite: few samples and sizes (minutes, not an hour)")
	f.StringVar(&out, "out", "", "folder for the report (default: gantry-bench-<date>-<time> here)")
	p := &env.Params
	f.IntVar(&p.Replicas, "replicas", 0, "startup: replicas per round (default 3 quick, 10 full)")
	f.IntVar(&p.Rounds, "rounds", 0, "rounds of startup, proxy, sched and scale (default per suite and mode)")
	f.IntVar(&p.Kills, "kills", 0, "failover: leader kills (default 2 quick, 20 full)")
	f.DurationVar(&p.Duration, "proxy-duration", 0, "proxy: length of one round (default 5s quick, 30s full)")
	f.IntVar(&p.ScaleNodes, "scale-nodes", 0, "scale: simulated nodes (default 100 quick, 1000 full)")
	f.IntVar(&p.ScaleJobs, "scale-jobs", 0, "scale: jobs (default 10 quick, 100 full)")
	f.IntVar(&p.ScaleTasks, "scale-tasks", 0, "scale: allocations per job (default 50 quick, 100 full)")
	f.IntVar(&p.ScaleServers, "scale-servers", 1, "scale: servers started per round: 1, or 3 (5, 7) forming one embedded etcd cluster; the load goes to all of them")
	f.Float64Var(&p.ScaleKillLeaderAt, "scale-kill-leader-at", 0, "scale: kill -9 the leader once this many allocations are placed, a count (100000) or below 1 a fraction (0.5); needs --scale-servers 3 or more")
	f.BoolVar(&p.ScaleLongPoll, "scale-long-poll", false, "scale: the simulated nodes long-poll for their allocations and send a request per report and heartbeat (the agent protocol kept for compatibility) instead of the node stream, to compare the two")
	f.StringVar(&p.TraceDir, "trace-dir", "", "sim: the trace folder (default: found above the working directory)")
	f.StringVar(&p.VMGuest, "vm-guest", "", "startup: folder of the qemu test guest (scripts/build-vm-guest.sh prints it); without it qemu is skipped")
	f.StringVar(&p.WasmModule, "wasm-module", "", "startup: the demo app built for wasip1 (default /var/tmp/gantry-demo/demo-app.wasm, made by make demo-image)")
	f.StringSliceVar(&p.Drivers, "drivers", nil, "startup: drivers to measure, comma-separated (default: docker, exec, wasm, qemu, each where the cluster has it)")
	f.IntVar(&p.BasePort, "base-port", 0, "first of the loopback ports the suites' own clusters use (default: free ports)")
	return cmd
}

// writeBenchReport writes report.json, report.md, the charts and
// index.html into dir.
func writeBenchReport(dir string, r *report.Report) error {
	if err := report.Write(filepath.Join(dir, "report.json"), r); err != nil {
		return err
	}
	var md bytes.Buffer
	if err := report.Markdown(&md, r); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "report.md"), md.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write report.md: %w", err)
	}
	charts := plot.Charts(r)
	for _, c := range charts {
		name := strings.ReplaceAll(c.ID, "/", "-") + ".svg"
		if err := os.WriteFile(filepath.Join(dir, name), []byte(c.SVG), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	var page bytes.Buffer
	if err := report.HTML(&page, r, charts); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "index.html"), page.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write index.html: %w", err)
	}
	return nil
}

func newBenchCompareCmd(g *globals) *cobra.Command {
	var threshold float64
	cmd := &cobra.Command{
		Use:   "compare OLD.json NEW.json",
		Short: "Compare two reports figure by figure; exit 1 when a figure regressed beyond the threshold",
		Long: `Compare two reports figure by figure, as benchstat does: the medians, and a
Mann-Whitney U test (alpha 0.05) over each figure's independent values (one
per round where a round yields several samples, else the samples). A change
is marked only
when it is beyond the noise ("~" otherwise); a significant change in the
worse direction larger than --threshold is a REGRESSION, and then the
command exits 1, so it can gate a release. Figures with too few samples
to show a difference say so.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if threshold < 0 {
				return exitf(ExitError, "--threshold %v: give a fraction such as 0.1 (10%%)", threshold)
			}
			old, err := report.Read(args[0])
			if err != nil {
				return exitf(ExitError, "%v", err)
			}
			new, err := report.Read(args[1])
			if err != nil {
				return exitf(ExitError, "%v", err)
			}
			res := compare.Reports(old, new, threshold)
			if g.json {
				if err := printJSON(g.out, res); err != nil {
					return err
				}
			} else if err := compare.Write(g.out, res); err != nil {
				return err
			}
			if res.Regressions > 0 {
				return errSilent{code: ExitError}
			}
			return nil
		},
	}
	cmd.Flags().Float64Var(&threshold, "threshold", 0.1, "relative change a significant worsening must exceed to fail (0.1 = 10%)")
	return cmd
}

func newBenchShowCmd(g *globals) *cobra.Command {
	var htmlDir string
	cmd := &cobra.Command{
		Use:   "show REPORT.json",
		Short: "Print a report's summary as Markdown (the README's table); --html writes its page and charts again",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := report.Read(args[0])
			if err != nil {
				return exitf(ExitError, "%v", err)
			}
			if htmlDir != "" {
				if err := os.MkdirAll(htmlDir, 0o755); err != nil {
					return exitf(ExitError, "%v", err)
				}
				if err := writeBenchReport(htmlDir, r); err != nil {
					return exitf(ExitError, "%v", err)
				}
			}
			if g.json {
				return printJSON(g.out, r)
			}
			return report.Markdown(g.out, r)
		},
	}
	cmd.Flags().StringVar(&htmlDir, "html", "", "also write report.json, report.md, the charts and index.html into this folder")
	return cmd
}
