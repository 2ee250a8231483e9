package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/gantryhq/gantry/internal/audit"
)

func newPolicyCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Show and change the cluster's container isolation policy (admission and audit)",
		Long: `The isolation policy says, for each CIS Docker Benchmark v1.6.0 check, whether a
failing container blocks (a job is refused at 'gantry job run' and 'job plan';
'gantry audit' exits 1) or only warns, with per-namespace exceptions. Until a
policy is applied the built-in default is in force.`,
	}
	cmd.AddCommand(newPolicyShowCmd(g), newPolicyApplyCmd(g), newPolicyResetCmd(g))
	return cmd
}

func newPolicyShowCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Show the policy in force, check by check",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var doc audit.PolicyDocument
			if err := g.client().get("/v1/policy", &doc); err != nil {
				return exitf(ExitError, "read the policy: %v", err)
			}
			if g.json {
				return printJSON(g.out, doc)
			}
			printPolicy(g, doc)
			return nil
		},
	}
	cmd.Flags().BoolVar(&g.json, "json", false, "print the policy as JSON")
	return cmd
}

func printPolicy(g *globals, doc audit.PolicyDocument) {
	p := doc.Policy
	src := fmt.Sprintf("applied at index %d", doc.Index)
	if doc.Default {
		src = "the built-in default; none applied"
	}
	def := p.Default
	if def == "" {
		def = audit.ActionWarn
	}
	fmt.Fprintf(g.out, "Isolation policy (%s), %s\nChecks without a rule: %s\n\n", audit.Benchmark, src, def)
	tw := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tACTION\tTITLE")
	row := func(id, title string) {
		action := string(def) + " (default)"
		if r, ok := p.Rules[id]; ok {
			action = string(r.Action)
			if r.Action == audit.ActionBlock && r.MinSeverity != "" {
				action = fmt.Sprintf("block at %s+, else warn", r.MinSeverity)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", id, action, title)
	}
	for _, c := range audit.EngineChecks() {
		row(c.ID, c.Title)
	}
	for _, c := range audit.Checks() {
		row(c.ID, c.Title)
	}
	tw.Flush()
	if len(p.Exceptions) == 0 {
		fmt.Fprintln(g.out, "\nNo namespace exceptions.")
		return
	}
	fmt.Fprintln(g.out, "\nNamespace exceptions (the last matching one wins):")
	tw = tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tCHECK\tACTION\tREASON")
	for _, x := range p.Exceptions {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", x.Namespace, x.Check, x.Action, orDash(x.Reason))
	}
	tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// readPolicy reads a policy file, YAML or JSON, refusing unknown keys.
func readPolicy(path string) (audit.Policy, error) {
	var p audit.Policy
	data, err := os.ReadFile(path)
	if err != nil {
		return p, err
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return p, fmt.Errorf("%s is not valid YAML or JSON: %v", path, err)
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return p, fmt.Errorf("%s: %v (keys: default, rules, exceptions)", path, err)
	}
	if err := p.Validate(); err != nil {
		return p, fmt.Errorf("%s: %v", path, err)
	}
	return p, nil
}

func newPolicyApplyCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "apply <file>",
		Short: "Replace the policy with the one in a YAML or JSON file",
		Long: `Replace the cluster's isolation policy with the one in a file. The file replaces
the whole policy: checks it gives no rule get its default action. For example:

  default: warn
  rules:
    "5.5":  {action: block}
    "5.4":  {action: block, min_severity: critical}
  exceptions:
    - {namespace: infra, check: "5.5", action: warn, reason: node agents}`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := readPolicy(args[0])
			if err != nil {
				return exitf(ExitError, "%v", err)
			}
			var doc audit.PolicyDocument
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := g.client().do(ctx, http.MethodPut, "/v1/policy", p, &doc); err != nil {
				return exitf(ExitError, "apply the policy: %v", err)
			}
			fmt.Fprintf(g.out, "==> Policy applied at index %d: %d rules, %d namespace exceptions\n", doc.Index, len(p.Rules), len(p.Exceptions))
			if lost := noLongerBlocked(p); len(lost) > 0 {
				fmt.Fprintf(g.errw, "Warning: the default policy blocks %s, which this policy does not block (outside its exceptions)\n", strings.Join(lost, ", "))
			}
			return nil
		},
	}
	return cmd
}

// noLongerBlocked lists the checks whose critical failures the default
// policy blocks and p does not.
func noLongerBlocked(p audit.Policy) []string {
	def := audit.DefaultPolicy()
	var out []string
	for id := range def.Rules {
		if def.Action("", id, audit.SeverityCritical) == audit.ActionBlock && p.Action("", id, audit.SeverityCritical) != audit.ActionBlock {
			out = append(out, id)
		}
	}
	sort.Slice(out, func(i, j int) bool { return checkLess(out[i], out[j]) })
	return out
}

func checkLess(a, b string) bool {
	var a1, a2, b1, b2 int
	fmt.Sscanf(a, "%d.%d", &a1, &a2)
	fmt.Sscanf(b, "%d.%d", &b1, &b2)
	if a1 != b1 {
		return a1 < b1
	}
	return a2 < b2
}

func newPolicyResetCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "reset",
		Short: "Remove the applied policy; the built-in default is in force again",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var doc audit.PolicyDocument
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := g.client().do(ctx, http.MethodDelete, "/v1/policy", nil, &doc); err != nil {
				return exitf(ExitError, "reset the policy: %v", err)
			}
			fmt.Fprintf(g.out, "==> Policy reset to the built-in default at index %d\n", doc.Index)
			return nil
		},
	}
}
