package cli

import (
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/gantryhq/gantry/internal/loadgen"
	"github.com/spf13/cobra"
)

func newLoadtestCmd(g *globals) *cobra.Command {
	o := loadgen.Options{}
	cmd := &cobra.Command{
		Use:   "loadtest",
		Short: "Benchmark: simulate many nodes (real agents, null driver) and submit jobs until every allocation runs",
		Long: `Benchmark a server: start --nodes simulated nodes in this process (each a
real agent with the null driver, talking the real agent protocol), submit
--jobs jobs of --tasks allocations through the API, and report how long it
took until every allocation reported running. Then it checks the store
through the API (a consistent read per job): every job is there and each
of its slots holds exactly one running allocation; it exits 1 when not
(after printing the result). Several servers, comma-separated in
--address, are tried in turn by the submitter and every simulated node, so
a run survives a server killed under it. bench/scale.sh runs it against a
fresh server (or three) and adds the servers' CPU, memory and etcd size.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			startPprof(slog.Default())
			o.Servers = g.client().Servers()
			o.Progress = g.errw
			if o.DataDir == "" {
				dir, err := os.MkdirTemp("", "gantry-loadtest")
				if err != nil {
					return exitf(ExitError, "%v", err)
				}
				defer os.RemoveAll(dir)
				o.DataDir = dir
			}
			ctx, cancel := signalContext()
			defer cancel()
			res, err := loadgen.Run(ctx, o)
			if err != nil {
				return exitf(ExitError, "load test: %v", err)
			}
			if g.json {
				if err := printJSON(g.out, res); err != nil {
					return err
				}
				return checkFailed(res)
			}
			fmt.Fprintf(g.out, "nodes %d, allocations %d\nnodes ready after     %s\njobs accepted after   %s\nall placed after      %s\nall running after     %s\nsustained             %.0f allocations/s (peak %.0f/s)\nload generator        %.1f s cpu, peak RSS %d MiB (%.1f KiB per allocation)\nload memory           %.1f KiB per node, %.1f KiB per allocation (live heap and stacks), %d goroutines\n",
				res.Nodes, res.Allocations, res.RegisterTime.Round(time.Millisecond), res.SubmitTime.Round(time.Millisecond),
				res.PlacedTime.Round(time.Millisecond), res.RunningTime.Round(time.Millisecond), res.AllocsPerSec, res.PeakAllocsPerS, res.LoadCPU, res.LoadPeakRSS, res.PeakRSSPerAlloc/1024,
				res.NodeBytes/1024, res.AllocBytes/1024, res.Goroutines)
			fmt.Fprintf(g.out, "submissions slowed    %d jobs (%d answers 429 with Retry-After, %s waited in all)\n",
				res.SlowedSubmissions, res.Refusals, res.RefusedWait.Round(time.Millisecond))
			if res.Check != nil {
				fmt.Fprintf(g.out, "exact-count check     %s\n", res.Check)
			}
			return checkFailed(res)
		},
	}
	cmd.Flags().IntVar(&o.Nodes, "nodes", 1000, "simulated nodes")
	cmd.Flags().IntVar(&o.Jobs, "jobs", 100, "jobs to submit")
	cmd.Flags().IntVar(&o.Tasks, "tasks", 100, "allocations per job")
	cmd.Flags().IntVar(&o.Concurrency, "concurrency", 4, "jobs submitted at once")
	cmd.Flags().IntVar(&o.NodeCPU, "node-cpu", 4000, "millicores per simulated node")
	cmd.Flags().IntVar(&o.NodeMemory, "node-memory", 16384, "MiB per simulated node")
	cmd.Flags().IntVar(&o.TaskCPU, "task-cpu", 10, "millicores per allocation")
	cmd.Flags().IntVar(&o.TaskMemory, "task-memory", 10, "MiB per allocation")
	cmd.Flags().StringVar(&o.DataDir, "data-dir", "", "where simulated nodes keep their identity (default: a temp dir)")
	cmd.Flags().DurationVar(&o.Timeout, "timeout", time.Hour, "give up after this long")
	cmd.Flags().BoolVar(&o.Stream, "stream", true, "the simulated nodes speak the node stream, one per connection of 16 nodes; --stream=false: long-polls, a request per report and per heartbeat (against servers that predate the stream they fall back to that anyway)")
	cmd.Flags().BoolVar(&g.json, "json", false, "print the result as JSON")
	return cmd
}

// checkFailed is the exit for a run whose exact-count check failed: lost,
// duplicated or missing work.
func checkFailed(res *loadgen.Result) error {
	if res.Check != nil && !res.Check.Pass {
		return exitf(ExitError, "load test: the store does not hold exactly the submitted allocations: %s", res.Check)
	}
	return nil
}
