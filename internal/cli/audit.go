package cli

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/spf13/cobra"

	"github.com/gantryhq/gantry/internal/audit"
)

func newAuditCmd(g *globals) *cobra.Command {
	var node string
	var sarif, all, now bool
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Report the container isolation audit of a node or of the cluster",
		Long: `Report the container isolation audit (CIS Docker Benchmark v1.6.0, section 5
and the engine settings of section 2) that every agent takes of every container
on its engine, Gantry's and others', at start and then every --audit-interval.

The servers keep each node's latest report: its engine findings and its failing
container findings. With --now every agent audits its containers on the spot
first (and the servers keep what it finds), instead of at its next round.
Each failure is marked block or warn by the cluster's
policy ('gantry policy show').

Exit codes: 0 no blocking finding, 1 a blocking finding (or an error).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if g.json && sarif {
				return exitf(ExitError, "--json and --sarif exclude each other")
			}
			path := "/v1/audit"
			if node != "" {
				path += "?node=" + url.QueryEscape(node)
			}
			var cr audit.ClusterReport
			if now {
				var sr audit.ScanResponse
				if err := g.client().do(cmd.Context(), http.MethodPost, strings.Replace(path, "/v1/audit", "/v1/audit/scan", 1), nil, &sr); err != nil {
					return exitf(ExitError, "audit now: %v", err)
				}
				for _, sk := range sr.Skipped {
					fmt.Fprintf(g.errw, "node %s was not audited: %s\n", sk.Node, sk.Reason)
				}
				if len(sr.Scanned) == 0 {
					return exitf(ExitError, "no node could be audited now (see above)")
				}
				cr = sr.ClusterReport
			} else if err := g.client().get(path, &cr); err != nil {
				return exitf(ExitError, "read the audit: %v", err)
			}
			reports := make([]audit.Report, 0, len(cr.Nodes))
			for _, n := range cr.Nodes {
				reports = append(reports, n.Report)
			}
			opts := audit.RenderOptions{Policy: &cr.Policy.Policy, All: all}
			var err error
			switch {
			case sarif:
				err = audit.WriteSARIFReports(g.out, reports, opts)
			case g.json && node != "":
				err = audit.WriteJSON(g.out, reports[0], opts)
			case g.json:
				err = audit.WriteJSONReports(g.out, reports, opts)
			default:
				err = audit.WriteTables(g.out, reports, opts)
			}
			if err != nil {
				return err
			}
			if audit.EvaluateReports(cr.Policy.Policy, reports).Blocked() {
				return errSilent{ExitError}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&node, "node", "", "report one node (name, ID or ID prefix) instead of the cluster")
	cmd.Flags().BoolVar(&g.json, "json", false, "print the report as JSON")
	cmd.Flags().BoolVar(&sarif, "sarif", false, "print the failures as SARIF 2.1.0, for code-scanning tools")
	cmd.Flags().BoolVar(&now, "now", false, "have the agents audit their containers now, then report")
	cmd.Flags().BoolVar(&all, "all", false, "also list the engine checks that pass (the servers keep only failing container findings)")
	return cmd
}
