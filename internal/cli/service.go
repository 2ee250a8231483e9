package cli

import (
	"fmt"
	"net/url"
	"strings"
	"text/tabwriter"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/spf13/cobra"
)

func newServiceCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "service", Short: "List published services and their healthy endpoints"}
	cmd.PersistentFlags().StringVarP(&g.namespace, "namespace", "n", "", "namespace (list: default all; status: default \"default\")")
	cmd.PersistentFlags().BoolVar(&g.json, "json", false, "print as JSON")
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List services with their count of healthy endpoints",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var list []*api.ServiceInfo
			if err := g.client().get("/v1/services"+nsQuery(g.namespace), &list); err != nil {
				return exitf(ExitError, "list services: %v", err)
			}
			if g.json {
				return printJSON(g.out, list)
			}
			if len(list) == 0 {
				fmt.Fprintln(g.out, "No services: a group publishes one with a services block.")
				return nil
			}
			tw := tabwriter.NewWriter(g.out, 0, 2, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tNAMESPACE\tJOBS\tHEALTHY\tUNHEALTHY\tLOAD BALANCER\tDNS")
			for _, s := range list {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s.%s.service.gantry\n", s.Name, s.Namespace, strings.Join(s.Jobs, ","),
					len(s.Endpoints), s.Unhealthy, lbSummary(s.LB), s.Name, s.Namespace)
			}
			return tw.Flush()
		},
	}, &cobra.Command{
		Use:   "status <name>",
		Short: "Show a service's healthy endpoints",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var s api.ServiceInfo
			if err := g.client().get("/v1/services/"+url.PathEscape(args[0])+nsQuery(g.namespace), &s); err != nil {
				return exitf(ExitError, "service %s: %v", args[0], err)
			}
			if g.json {
				return printJSON(g.out, &s)
			}
			fmt.Fprintf(g.out, "Name           %s\nNamespace      %s\nJobs           %s\nLoad balancer  %s\nDNS            %s.%s.service.gantry\nHealthy        %d\nUnhealthy      %d\n\n",
				s.Name, s.Namespace, strings.Join(s.Jobs, ", "), lbSummary(s.LB), s.Name, s.Namespace, len(s.Endpoints), s.Unhealthy)
			if len(s.Endpoints) == 0 {
				fmt.Fprintln(g.out, "No healthy endpoints.")
				return nil
			}
			tw := tabwriter.NewWriter(g.out, 0, 2, 2, ' ', 0)
			fmt.Fprintln(tw, "ALLOC\tNAME\tVERSION\tNODE\tADDRESS")
			for _, e := range s.Endpoints {
				fmt.Fprintf(tw, "%s\t%s.%s[%d]\t%d\t%s\t%s:%d\n", api.ShortID(e.AllocID), e.Job, e.Group, e.Index, e.JobVersion, e.NodeName, e.Address, e.Port)
			}
			return tw.Flush()
		},
	})
	return cmd
}

func lbSummary(l *api.ServiceLB) string {
	if l == nil {
		return "-"
	}
	return fmt.Sprintf(":%d %s %s", l.Port, l.ProtocolOrDefault(), l.PolicyOrDefault())
}
