package cli

import (
	"context"
	"flag"
	"io"

	"github.com/spf13/cobra"

	"github.com/gantryhq/gantry/internal/sim"
)

// newSimCmd is `gantry sim`: a thin wrapper, the command lives in
// internal/sim (sim.Run; the flags are sim.Options.Register's).
func newSimCmd(stdout, stderr io.Writer) *cobra.Command {
	o := sim.DefaultOptions()
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Replay the Alibaba GPU trace through the scheduler and compare GPU placement policies",
		Long: `Replay a GPU cluster trace (default: the Alibaba GPU trace in shared/traces)
through Gantry's scheduler core with the GPU placement policies of the FGD
study and Gantry's own, and report the GPU allocation reached. Pod and
node lists given by name are looked up in --trace-dir (by default the
trace folder found above the working directory) when they are not in the
working directory.

  gantry sim --pods openb_pod_list_default.csv --policy fgd --seeds 42-51
  gantry sim --all --trace-dir ../shared/traces/alibaba-gpu-v2023 --out sim-out
  gantry sim --check-published`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			return sim.Run(ctx, o, stdout, stderr)
		},
	}
	fs := flag.NewFlagSet("sim", flag.ContinueOnError)
	o.Register(fs)
	cmd.Flags().AddGoFlagSet(fs)
	return cmd
}
