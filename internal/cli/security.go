package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gantryhq/gantry/internal/acl"
	"github.com/gantryhq/gantry/internal/pki"
	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"
)

func newTLSCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "tls", Short: "Make the cluster's CA and the certificates of servers, agents and CLI users"}
	ca := &cobra.Command{Use: "ca", Short: "The cluster's certificate authority"}
	var outDir, name string
	caCreate := &cobra.Command{
		Use:   "create",
		Short: "Create a CA (gantry-ca.pem and gantry-ca-key.pem in --out-dir)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			certPath, keyPath := filepath.Join(outDir, "gantry-ca.pem"), filepath.Join(outDir, "gantry-ca-key.pem")
			if _, err := os.Stat(keyPath); err == nil {
				return exitf(ExitError, "%s exists already: remove it first, or use another --out-dir (a new CA invalidates every certificate)", keyPath)
			}
			c, keyPEM, err := pki.NewCA(name, time.Now())
			if err != nil {
				return exitf(ExitError, "create CA: %v", err)
			}
			if err := writeFiles(certPath, c.PEM, keyPath, keyPEM); err != nil {
				return err
			}
			fmt.Fprintf(g.out, "CA written to %s (key %s, keep it secret)\n", certPath, keyPath)
			return nil
		},
	}
	caCreate.Flags().StringVar(&outDir, "out-dir", ".", "directory to write the files to")
	caCreate.Flags().StringVar(&name, "name", "gantry-ca", "the CA's common name")
	ca.AddCommand(caCreate)

	cert := &cobra.Command{Use: "cert", Short: "Certificates signed by the cluster CA"}
	var server, agent, cliRole bool
	var caFile, caKey, certName string
	var hosts []string
	certCreate := &cobra.Command{
		Use:   "create --server|--agent|--cli",
		Short: "Create a certificate whose role (server, agent or cli) decides which endpoints it may call",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var role pki.Role
			n := 0
			for r, on := range map[pki.Role]bool{pki.RoleServer: server, pki.RoleAgent: agent, pki.RoleCLI: cliRole} {
				if on {
					role, n = r, n+1
				}
			}
			if n != 1 {
				return exitf(ExitError, "give exactly one of --server, --agent or --cli")
			}
			c, err := pki.LoadCA(caFile, caKey)
			if err != nil {
				return exitf(ExitError, "%v", err)
			}
			if certName == "" {
				certName = string(role)
			}
			certPEM, keyPEM, err := c.Issue(role, certName, hosts, time.Now())
			if err != nil {
				return exitf(ExitError, "issue certificate: %v", err)
			}
			base := string(role)
			if certName != string(role) {
				base += "-" + certName
			}
			certPath, keyPath := filepath.Join(outDir, base+".pem"), filepath.Join(outDir, base+"-key.pem")
			if err := writeFiles(certPath, certPEM, keyPath, keyPEM); err != nil {
				return err
			}
			fmt.Fprintf(g.out, "%s certificate written to %s (key %s)\n", role, certPath, keyPath)
			return nil
		},
	}
	certCreate.Flags().BoolVar(&server, "server", false, "a server certificate")
	certCreate.Flags().BoolVar(&agent, "agent", false, "an agent certificate")
	certCreate.Flags().BoolVar(&cliRole, "cli", false, "a certificate for a CLI user")
	certCreate.Flags().StringVar(&caFile, "ca", "gantry-ca.pem", "CA certificate")
	certCreate.Flags().StringVar(&caKey, "ca-key", "gantry-ca-key.pem", "CA key")
	certCreate.Flags().StringVar(&certName, "name", "", "the holder's name (default: the role)")
	certCreate.Flags().StringSliceVar(&hosts, "host", nil, "DNS names and IPs the holder is reached at (servers, agents); repeatable")
	certCreate.Flags().StringVar(&outDir, "out-dir", ".", "directory to write the files to")
	cert.AddCommand(certCreate)
	cmd.AddCommand(ca, cert)
	return cmd
}

func writeFiles(certPath string, certPEM []byte, keyPath string, keyPEM []byte) error {
	if err := os.WriteFile(certPath, certPEM, 0o644); err != nil {
		return exitf(ExitError, "write %s: %v", certPath, err)
	}
	if err := os.WriteFile(keyPath, keyPEM, 0o600); err != nil {
		return exitf(ExitError, "write %s: %v", keyPath, err)
	}
	return nil
}

func newACLCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "acl", Short: "Tokens and policies: who may do what, per namespace"}
	cmd.AddCommand(newACLBootstrapCmd(g), newACLTokenCmd(g), newACLPolicyCmd(g))
	return cmd
}

func (g *globals) call(method, path string, body, out any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return g.client().do(ctx, method, path, body, out)
}

// deleteCmd is a command that deletes one named thing: DELETE
// prefix+<name>, then `<title> "<name>" <verb>d` (verb is delete or
// remove), or "<verb> <what> <name>: <why>" and exit 1.
func deleteCmd(g *globals, use, short, prefix, verb, what, title string) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.call(http.MethodDelete, prefix+url.PathEscape(args[0]), nil, nil); err != nil {
				return exitf(ExitError, "%s %s %s: %v", verb, what, args[0], err)
			}
			fmt.Fprintf(g.out, "%s %q %sd\n", title, args[0], verb)
			return nil
		},
	}
}

type tokenOut struct {
	acl.Token
	Secret string `json:"secret"`
}

func printToken(g *globals, t *tokenOut) error {
	if g.json {
		return printJSON(g.out, t)
	}
	fmt.Fprintf(g.out, "Accessor ID  %s\nName         %s\n", t.AccessorID, t.Name)
	if t.Management {
		fmt.Fprintln(g.out, "Type         management")
	} else {
		fmt.Fprintf(g.out, "Policies     %s\n", strings.Join(t.Policies, ", "))
	}
	if t.Secret != "" {
		fmt.Fprintf(g.out, "Secret       %s\n\nThe secret is shown this once: Gantry keeps only its hash.\n", t.Secret)
	}
	return nil
}

func newACLBootstrapCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bootstrap",
		Short: "Create the management token (once per cluster)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var t tokenOut
			if err := g.call(http.MethodPost, "/v1/acl/bootstrap", nil, &t); err != nil {
				return exitf(ExitError, "bootstrap ACLs: %v", err)
			}
			return printToken(g, &t)
		},
	}
	cmd.Flags().BoolVar(&g.json, "json", false, "print as JSON")
	return cmd
}

func newACLTokenCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Create, list and delete tokens"}
	var name string
	var policies []string
	var mgmt bool
	create := &cobra.Command{
		Use:   "create --name N --policy P [--policy Q]",
		Short: "Create a token granted the named policies",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var t tokenOut
			req := map[string]any{"name": name, "policies": policies, "management": mgmt}
			if err := g.call(http.MethodPost, "/v1/acl/tokens", req, &t); err != nil {
				return exitf(ExitError, "create token: %v", err)
			}
			return printToken(g, &t)
		},
	}
	create.Flags().StringVar(&name, "name", "", "the token's name")
	create.Flags().StringSliceVar(&policies, "policy", nil, "a policy to grant (repeatable)")
	create.Flags().BoolVar(&mgmt, "management", false, "a management token: may do everything")
	create.Flags().BoolVar(&g.json, "json", false, "print as JSON")
	list := &cobra.Command{
		Use:   "list",
		Short: "List tokens (never their secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var ts []acl.Token
			if err := g.call(http.MethodGet, "/v1/acl/tokens", nil, &ts); err != nil {
				return exitf(ExitError, "list tokens: %v", err)
			}
			if g.json {
				return printJSON(g.out, ts)
			}
			tw := tabwriter.NewWriter(g.out, 0, 2, 2, ' ', 0)
			fmt.Fprintln(tw, "ACCESSOR\tNAME\tPOLICIES\tCREATED")
			for _, t := range ts {
				ps := strings.Join(t.Policies, ",")
				if t.Management {
					ps = "(management)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.AccessorID, t.Name, ps, t.CreateTime.Local().Format(time.RFC3339))
			}
			return tw.Flush()
		},
	}
	list.Flags().BoolVar(&g.json, "json", false, "print as JSON")
	del := deleteCmd(g, "delete <accessor-id>", "Delete a token", "/v1/acl/tokens/", "delete", "token", "Token")
	self := &cobra.Command{
		Use:   "self",
		Short: "Show the token in use",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var t tokenOut
			if err := g.call(http.MethodGet, "/v1/acl/tokens/self", nil, &t); err != nil {
				return exitf(ExitError, "token: %v", err)
			}
			return printToken(g, &t)
		},
	}
	self.Flags().BoolVar(&g.json, "json", false, "print as JSON")
	cmd.AddCommand(create, list, del, self)
	return cmd
}

func newACLPolicyCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "policy", Short: "Apply, list and delete ACL policies"}
	apply := &cobra.Command{
		Use:   "apply <file>",
		Short: "Create or replace a policy from YAML or JSON",
		Long: `Create or replace a policy. Example:

  name: team-a
  namespaces:
    team-a: [read, submit-job, read-logs, alloc-exec]
    "*": [read]
  global: [node-read]

Namespace capabilities: read, submit-job, read-logs, alloc-exec.
Cluster-wide: node-read, node-write, operator-read, operator.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := os.ReadFile(args[0])
			if err != nil {
				return exitf(ExitError, "read policy file: %v", err)
			}
			js, err := yaml.YAMLToJSON(data)
			if err != nil {
				return exitf(ExitError, "%s is not valid YAML or JSON: %v", args[0], err)
			}
			var p acl.Policy
			dec := json.NewDecoder(strings.NewReader(string(js)))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&p); err != nil {
				return exitf(ExitError, "%s: %v (fields: name, description, namespaces, global)", args[0], err)
			}
			if err := p.Validate(); err != nil {
				return exitf(ExitError, "%s: %v", args[0], err)
			}
			if err := g.call(http.MethodPut, "/v1/acl/policies", &p, nil); err != nil {
				return exitf(ExitError, "apply policy %s: %v", p.Name, err)
			}
			fmt.Fprintf(g.out, "Policy %q applied\n", p.Name)
			return nil
		},
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List policies",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var ps []acl.Policy
			if err := g.call(http.MethodGet, "/v1/acl/policies", nil, &ps); err != nil {
				return exitf(ExitError, "list policies: %v", err)
			}
			if g.json {
				return printJSON(g.out, ps)
			}
			tw := tabwriter.NewWriter(g.out, 0, 2, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tNAMESPACES\tGLOBAL")
			for _, p := range ps {
				var ns []string
				for n, caps := range p.Namespaces {
					var cs []string
					for _, c := range caps {
						cs = append(cs, string(c))
					}
					ns = append(ns, n+":"+strings.Join(cs, "+"))
				}
				var gl []string
				for _, c := range p.Global {
					gl = append(gl, string(c))
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\n", p.Name, strings.Join(ns, " "), strings.Join(gl, ","))
			}
			return tw.Flush()
		},
	}
	list.Flags().BoolVar(&g.json, "json", false, "print as JSON")
	del := deleteCmd(g, "delete <name>", "Delete a policy (tokens that name it lose what it granted)", "/v1/acl/policies/", "delete", "policy", "Policy")
	cmd.AddCommand(apply, list, del)
	return cmd
}
