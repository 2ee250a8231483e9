package cli

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/versions"
)

func newVersionCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Component versions across the nodes: inventory with drift, and a report with an upgrade order",
	}
	var policyFile string
	cmd.AddCommand(newVersionInventoryCmd(g), newVersionReportCmd(g, &policyFile), newVersionPolicyCmd(g))
	return cmd
}

// loadPolicy reads a policy file, or with none the cluster's policy (the
// shipped starting policy until one is applied).
func loadPolicy(g *globals, file string) (*versions.Policy, error) {
	if file == "" {
		var resp struct {
			Policy *versions.Policy `json:"policy"`
		}
		if err := g.client().get("/v1/versions/policy", &resp); err != nil {
			return nil, fmt.Errorf("read the cluster's version policy: %w", err)
		}
		return resp.Policy, nil
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
			var vs struct {
				Etcd map[string]string `json:"etcd"`
			}
			if err := g.client().get("/v1/versions", &vs); err == nil {
				for ep, v := range vs.Etcd {
					inv[versions.EtcdMember(ep)] = map[string]string{versions.Etcd: v}
				}
			}
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
			p, err := loadPolicy(g, *policyFile)
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
			inv := versions.FromNodes(nodes)
			var vs struct {
				Etcd map[string]string `json:"etcd"`
			}
			if err := c.get("/v1/versions", &vs); err == nil {
				for ep, v := range vs.Etcd {
					inv[versions.EtcdMember(ep)] = map[string]string{versions.Etcd: v}
				}
			}
			rep := versions.BuildReport(p, inv, versions.ClusterFrom(nodes, js, allocs, queues), time.Now())
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
	cmd.Flags().StringVar(policyFile, "policy", "", "version policy file (YAML) instead of the cluster's")
	return cmd
}

func newVersionPolicyCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "policy", Short: "Apply or show the cluster's version policy (minimums, known-bad ranges, end-of-life dates)"}
	apply := &cobra.Command{
		Use:   "apply <policy.yaml>",
		Short: "Check a version policy whole and store it in the cluster",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := os.ReadFile(args[0])
			if err != nil {
				return exitf(ExitError, "read version policy: %v", err)
			}
			p, err := versions.ParsePolicy(data)
			if err != nil {
				return exitf(ExitError, "%s: %v", args[0], err)
			}
			var resp struct{ Index int64 }
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := g.client().do(ctx, http.MethodPut, "/v1/versions/policy", p, &resp); err != nil {
				return exitf(ExitError, "apply version policy: %v", err)
			}
			fmt.Fprintf(g.out, "==> Version policy applied: %d component(s) (index %d)\n", len(p.Components), resp.Index)
			return nil
		},
	}
	show := &cobra.Command{
		Use:   "show",
		Short: "Print the cluster's version policy as YAML",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var resp struct {
				Policy *versions.Policy `json:"policy"`
				Source string           `json:"source"`
			}
			if err := g.client().get("/v1/versions/policy", &resp); err != nil {
				return exitf(ExitError, "read the version policy: %v", err)
			}
			out, err := yaml.Marshal(resp.Policy)
			if err != nil {
				return exitf(ExitError, "%v", err)
			}
			fmt.Fprintf(g.out, "# version policy (%s)\n%s", resp.Source, out)
			return nil
		},
	}
	cmd.AddCommand(apply, show)
	return cmd
}
