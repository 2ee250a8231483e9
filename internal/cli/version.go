package cli

import (
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/versions"
)

func newVersionCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Component versions across the nodes: inventory with drift, and a report with an upgrade order",
	}
	var policyFile string
	cmd.PersistentFlags().StringVar(&policyFile, "policy", "", "version policy file (YAML); default: the starting policy Gantry ships (internal/versions/policy/default.yaml)")
	cmd.AddCommand(newVersionInventoryCmd(g), newVersionReportCmd(g, &policyFile))
	return cmd
}

func loadPolicy(file string) (*versions.Policy, error) {
	if file == "" {
		return versions.DefaultPolicy()
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read version policy: %w", err)
	}
	return versions.ParsePolicy(data)
}

func newVersionInventoryCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "inventory",
		Short: "Every node's component versions (Gantry, OS, kernel, Docker and its API, containerd, runc, GPU driver and CUDA, QEMU, wasm runtime); * marks a component the nodes disagree on",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var nodes []*api.Node
			if err := g.client().get("/v1/nodes", &nodes); err != nil {
				return exitf(ExitError, "list nodes: %v", err)
			}
			inv := versions.FromNodes(nodes)
			if g.json {
				return printJSON(g.out, map[string]any{"inventory": inv, "drift": versions.Drifting(inv)})
			}
			tw := tabwriter.NewWriter(g.out, 0, 2, 2, ' ', 0)
			for _, row := range versions.Table(inv) {
				fmt.Fprintln(tw, strings.Join(row, "\t"))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&g.json, "json", false, "print as JSON")
	return cmd
}

func newVersionReportCmd(g *globals, policyFile *string) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "report",
		Short: "What is in use, what the policy finds (below minimum, known-bad, end of life), where nodes disagree, and an upgrade order in batches",
		Long: `Report the component versions in use against a version policy, and plan
the order in which to upgrade the nodes that need it: batches such that
draining a batch keeps every service group at or above count − max_parallel
healthy replicas, never splits a running gang, and leaves the queues'
guaranteed CPU on the other nodes. It plans; it does not upgrade.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := loadPolicy(*policyFile)
			if err != nil {
				return exitf(ExitError, "%v", err)
			}
			c := g.client()
			var nodes []*api.Node
			var jobs []*api.JobSummary
			var allocs []*api.Allocation
			var queues []*api.Queue
			for _, r := range []struct {
				path string
				out  any
			}{{"/v1/nodes", &nodes}, {"/v1/jobs", &jobs}, {"/v1/allocations", &allocs}, {"/v1/queues", &queues}} {
				if err := c.get(r.path, r.out); err != nil {
					return exitf(ExitError, "version report: read %s: %v", r.path, err)
				}
			}
			js := make([]*api.Job, 0, len(jobs))
			for _, s := range jobs {
				js = append(js, s.Job)
			}
			rep := versions.BuildReport(p, versions.FromNodes(nodes), versions.ClusterFrom(nodes, js, allocs, queues), time.Now())
			switch format {
			case "json":
				return printJSON(g.out, rep)
			case "md", "":
				_, err := fmt.Fprint(g.out, rep.Markdown())
				return err
			}
			return exitf(ExitError, "--format %q: use md or json", format)
		},
	}
	cmd.Flags().StringVar(&format, "format", "md", "md or json")
	return cmd
}
