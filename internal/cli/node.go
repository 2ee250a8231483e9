package cli

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/spf13/cobra"
)

func newNodeCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "node", Short: "Inspect nodes, drain them, change their eligibility"}
	cmd.AddCommand(newNodeStatusCmd(g), newNodeDrainCmd(g), newNodeEligibilityCmd(g))
	return cmd
}

func newNodeStatusCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status [id|name]",
		Short: "List nodes, or show one with its resources, drivers and allocations",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := g.client()
			if len(args) == 0 {
				var nodes []*api.Node
				if err := c.get("/v1/nodes", &nodes); err != nil {
					return exitf(ExitError, "list nodes: %v", err)
				}
				if g.json {
					return printJSON(g.out, nodes)
				}
				if len(nodes) == 0 {
					fmt.Fprintln(g.out, "No nodes.")
					return nil
				}
				tw := tabwriter.NewWriter(g.out, 0, 2, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tNAME\tADDRESS\tSTATUS\tELIGIBLE\tDRAIN\tCPU\tMEMORY\tDRIVERS")
				for _, n := range nodes {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%v\t%v\t%d\t%d MiB\t%s\n", api.ShortID(n.ID), n.Name, n.Address, n.Status,
						!n.Ineligible, n.Drain != nil, n.Resources.CPU, n.Resources.Memory, drivers(n))
				}
				return tw.Flush()
			}
			n, err := c.node(args[0])
			if err != nil {
				return exitf(ExitError, "node %s: %v", args[0], err)
			}
			var allocs []*api.Allocation
			if err := c.get("/v1/allocations?node="+url.QueryEscape(n.ID), &allocs); err != nil {
				return exitf(ExitError, "allocations of node %s: %v", n.Name, err)
			}
			// The usage history is best effort: a server that predates it
			// answers 404, one the agent never reported to has none.
			var hist api.NodeMetricsResponse
			_ = c.get("/v1/nodes/"+url.PathEscape(n.ID)+"/metrics", &hist)
			if g.json {
				return printJSON(g.out, map[string]any{"node": n, "allocations": allocs, "metrics": hist.Samples})
			}
			printNode(g, n, allocs)
			printUsage(g.out, hist.Samples)
			return nil
		},
	}
	cmd.Flags().BoolVar(&g.json, "json", false, "print as JSON")
	return cmd
}

func drivers(n *api.Node) string {
	names := make([]string, 0, len(n.Drivers))
	for name, d := range n.Drivers {
		if d.Healthy {
			names = append(names, name)
		} else {
			names = append(names, name+"(unavailable)")
		}
	}
	sort.Strings(names)
	return strings.Join(names, ",")
}

func printNode(g *globals, n *api.Node, allocs []*api.Allocation) {
	w := g.out
	status := n.Status
	if n.StatusReason != "" {
		status += " (" + n.StatusReason + ")"
	}
	fmt.Fprintf(w, "ID          %s\nName        %s\nAddress     %s\nAgent       %s\nStatus      %s\nEligible    %v\n",
		n.ID, n.Name, n.Address, n.HTTPAddr, status, !n.Ineligible)
	if n.Drain != nil {
		fmt.Fprintf(w, "Drain       until %s\n", n.Drain.Deadline.Local().Format(time.RFC3339))
	}
	if n.Class != "" {
		fmt.Fprintf(w, "Class       %s\n", n.Class)
	}
	if n.Pool != "" {
		fmt.Fprintf(w, "Pool        %s\n", n.Pool)
	}
	used := api.AllocatedResources{}
	live := 0
	for _, a := range allocs {
		if a.Terminal() {
			continue
		}
		live++
		for _, r := range a.Resources {
			used.CPU += r.CPU
			used.Memory += r.Memory
		}
	}
	alloc := n.Allocatable()
	fmt.Fprintf(w, "CPU         %d / %d millicores used (%d cores)\n", used.CPU, alloc.CPU, n.Resources.Cores)
	fmt.Fprintf(w, "Memory      %d / %d MiB used\n", used.Memory, alloc.Memory)
	fmt.Fprintf(w, "Disk        %d MiB\n", n.Resources.Disk)
	if len(n.Labels) > 0 {
		keys := make([]string, 0, len(n.Labels))
		for k := range n.Labels {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var parts []string
		for _, k := range keys {
			parts = append(parts, k+"="+n.Labels[k])
		}
		fmt.Fprintf(w, "Labels      %s\n", strings.Join(parts, ", "))
	}
	fmt.Fprintln(w, "\nDrivers")
	names := make([]string, 0, len(n.Drivers))
	for name := range n.Drivers {
		names = append(names, name)
	}
	sort.Strings(names)
	tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, "  NAME\tHEALTHY\tVERSION\tDETAIL")
	for _, name := range names {
		d := n.Drivers[name]
		detail := d.Isolation
		if !d.Healthy {
			detail = d.Reason
		}
		fmt.Fprintf(tw, "  %s\t%v\t%s\t%s\n", name, d.Healthy, d.Version, detail)
	}
	tw.Flush()
	attrs := make([]string, 0, len(n.Attributes))
	for k := range n.Attributes {
		attrs = append(attrs, k)
	}
	sort.Strings(attrs)
	fmt.Fprintln(w, "\nAttributes")
	for _, k := range attrs {
		fmt.Fprintf(w, "  %-24s %s\n", k, n.Attributes[k])
	}
	if len(n.GPUs) > 0 {
		fmt.Fprintln(w, "\nGPUs")
		for _, d := range n.GPUs {
			fmt.Fprintf(w, "  %s\n", gpuLine(d))
			for _, in := range d.MIGInstances {
				fmt.Fprintf(w, "     MIG %s at %d:%d  %s\n", in.Profile, in.Start, in.Size, in.UUID)
			}
		}
	}
	fmt.Fprintf(w, "\nAllocations (%d running)\n", live)
	printAllocTable(w, allocs)
}

func newNodeDrainCmd(g *globals) *cobra.Command {
	var enable, disable bool
	var deadline time.Duration
	cmd := &cobra.Command{
		Use:   "drain <id|name> --enable|--disable",
		Short: "Move all work off a node (and keep new work away), or stop draining",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if enable == disable {
				return exitf(ExitError, "give exactly one of --enable or --disable")
			}
			var n api.Node
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			req := api.DrainRequest{Enable: enable, Deadline: api.Duration(deadline)}
			if err := g.client().do(ctx, http.MethodPost, "/v1/nodes/"+url.PathEscape(args[0])+"/drain", req, &n); err != nil {
				return exitf(ExitError, "drain node %s: %v", args[0], err)
			}
			if g.json {
				return printJSON(g.out, n)
			}
			if enable {
				fmt.Fprintf(g.out, "Node %s draining until %s\n", n.Name, n.Drain.Deadline.Local().Format(time.RFC3339))
			} else {
				fmt.Fprintf(g.out, "Node %s no longer draining\n", n.Name)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&enable, "enable", false, "start draining")
	cmd.Flags().BoolVar(&disable, "disable", false, "stop draining")
	cmd.Flags().DurationVar(&deadline, "deadline", time.Hour, "time allowed for the drain")
	cmd.Flags().BoolVar(&g.json, "json", false, "print the node as changed, as JSON")
	return cmd
}

func newNodeEligibilityCmd(g *globals) *cobra.Command {
	var enable, disable bool
	cmd := &cobra.Command{
		Use:   "eligibility <id|name> --enable|--disable",
		Short: "Allow or forbid new placements on a node",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if enable == disable {
				return exitf(ExitError, "give exactly one of --enable or --disable")
			}
			var n api.Node
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := g.client().do(ctx, http.MethodPost, "/v1/nodes/"+url.PathEscape(args[0])+"/eligibility", api.EligibilityRequest{Eligible: enable}, &n); err != nil {
				return exitf(ExitError, "node %s: %v", args[0], err)
			}
			if g.json {
				return printJSON(g.out, n)
			}
			fmt.Fprintf(g.out, "Node %s eligible: %v\n", n.Name, !n.Ineligible)
			return nil
		},
	}
	cmd.Flags().BoolVar(&enable, "enable", false, "allow new placements")
	cmd.Flags().BoolVar(&disable, "disable", false, "forbid new placements")
	cmd.Flags().BoolVar(&g.json, "json", false, "print the node as changed, as JSON")
	return cmd
}

func newEvalCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "eval", Short: "Inspect evaluations"}
	status := &cobra.Command{
		Use:   "status <id>",
		Short: "Show an evaluation and why work could not be placed",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := g.client().eval(args[0])
			if err != nil {
				return exitf(ExitError, "evaluation %s: %v", args[0], err)
			}
			if g.json {
				return printJSON(g.out, e)
			}
			fmt.Fprintf(g.out, "ID         %s\nJob        %s\nTrigger    %s\nStatus     %s\nPlaced     %d\nStopped    %d\n", e.ID, e.JobKey(), e.TriggeredBy, e.Status, e.Placed, e.Stopped)
			if e.StatusDescription != "" {
				fmt.Fprintf(g.out, "Detail     %s\n", e.StatusDescription)
			}
			if len(e.FailedGroups) > 0 {
				fmt.Fprintln(g.out, "Cannot place:")
				printFailures(g.out, e.FailedGroups)
			}
			return nil
		},
	}
	status.Flags().BoolVar(&g.json, "json", false, "print as JSON")
	cmd.AddCommand(status)
	return cmd
}
