package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/gantryhq/gantry/internal/pki"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"
)

// Version is the build's version, set by the linker.
var Version = "dev"

// Exit codes shared by every command.
const (
	ExitOK          = 0
	ExitError       = 1
	ExitCannotPlace = 2
)

// exitError carries the exit code a command wants, with the one-sentence
// message to print.
type exitError struct {
	Code int
	Msg  string
}

func (e *exitError) Error() string { return e.Msg }

func exitf(code int, format string, args ...any) error {
	return &exitError{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// errSilent ends a command with an exit code after it printed everything
// itself.
type errSilent struct{ code int }

func (e errSilent) Error() string { return fmt.Sprintf("exit %d", e.code) }

// Main runs the CLI with args and returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return ExitOK
	}
	var silent errSilent
	if errors.As(err, &silent) {
		return silent.code
	}
	var ee *exitError
	code := ExitError
	msg := err.Error()
	if errors.As(err, &ee) {
		code, msg = ee.Code, ee.Msg
	}
	fmt.Fprintln(stderr, "Error: "+msg)
	return code
}

// globals are flags every client command shares.
type globals struct {
	address   string
	namespace string
	json      bool
	token     string
	tls       pki.Files
	out, errw io.Writer
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	g := &globals{out: stdout, errw: stderr}
	root := &cobra.Command{
		Use:   "gantry",
		Short: "Gantry runs containers, batch jobs and GPU workloads across a fleet of machines",
		Long: `Gantry runs containers, batch jobs and GPU workloads across a fleet of machines.

Start a single-node cluster with 'gantry dev', then run a job with
'gantry job run examples/web.yaml'.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       Version,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().String("config", "", "config file (YAML or JSON) whose keys are flag names; flags and GANTRY_* environment variables win over it")
	root.PersistentFlags().StringVar(&g.address, "address", "http://127.0.0.1:7700", "address of a Gantry server's API, or several, comma-separated, tried in turn when one does not answer (env GANTRY_ADDRESS)")
	root.PersistentFlags().StringVar(&g.token, "token", "", "ACL token secret (env GANTRY_TOKEN)")
	root.PersistentFlags().StringVar(&g.tls.CA, "ca-cert", "", "CA certificate to verify the servers with; with --client-cert and --client-key the CLI speaks mutual TLS (env GANTRY_CA_CERT)")
	root.PersistentFlags().StringVar(&g.tls.Cert, "client-cert", "", "the CLI's certificate, made with 'gantry tls cert create --cli' (env GANTRY_CLIENT_CERT)")
	root.PersistentFlags().StringVar(&g.tls.Key, "client-key", "", "the key of --client-cert (env GANTRY_CLIENT_KEY)")
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		return applyConfig(cmd)
	}
	root.AddCommand(
		newDevCmd(g), newServerCmd(g), newAgentCmd(g),
		newJobCmd(g), newAllocCmd(g), newNodeCmd(g), newEvalCmd(g), newQueueCmd(g),
		newPolicyCmd(g), newAuditCmd(g), newMonitorCmd(g),
		newServiceCmd(g), newDeploymentCmd(g), newIngressCmd(g),
		newExecutorCmd(), newWasmRunCmd(), newTLSCmd(g), newACLCmd(g), newLoadtestCmd(g), newBenchCmd(g),
		newSimCmd(g.out, g.errw), newComposeCmd(g), newVersionCmd(g), newVSphereCmd(g), newGPUCmd(g),
	)
	return root
}

// applyConfig fills every flag the user did not set from GANTRY_<FLAG>
// (dashes as underscores) and then from the config file: flags win over
// the environment, which wins over the file.
func applyConfig(cmd *cobra.Command) error {
	file := map[string]any{}
	path, _ := cmd.Flags().GetString("config")
	if path == "" {
		path = os.Getenv("GANTRY_CONFIG")
	}
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return exitf(ExitError, "read config file: %v", err)
		}
		if err := yaml.Unmarshal(data, &file); err != nil {
			return exitf(ExitError, "config file %s is not valid YAML or JSON: %v", path, err)
		}
	}
	known := map[string]bool{}
	var firstErr error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		known[f.Name] = true
		if f.Changed || firstErr != nil {
			return
		}
		env := "GANTRY_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok {
			if err := setFlag(f, v); err != nil {
				firstErr = exitf(ExitError, "environment variable %s: %v", env, err)
			}
			return
		}
		if v, ok := file[f.Name]; ok {
			if err := setFlag(f, fileValue(v)); err != nil {
				firstErr = exitf(ExitError, "config file key %q: %v", f.Name, err)
			}
		}
	})
	if firstErr != nil {
		return firstErr
	}
	for k := range file {
		if !known[k] {
			return exitf(ExitError, "config file %s: unknown key %q for 'gantry %s' (keys are flag names)", path, k, cmd.Name())
		}
	}
	return nil
}

func fileValue(v any) []string {
	switch t := v.(type) {
	case []any:
		out := make([]string, len(t))
		for i, e := range t {
			out[i] = fmt.Sprint(e)
		}
		return out
	case map[string]any:
		var out []string
		for k, e := range t {
			out = append(out, fmt.Sprintf("%s=%v", k, e))
		}
		return out
	}
	return []string{fmt.Sprint(v)}
}

func setFlag(f *pflag.Flag, v any) error {
	switch t := v.(type) {
	case string:
		return f.Value.Set(t)
	case []string:
		for _, e := range t {
			if err := f.Value.Set(e); err != nil {
				return err
			}
		}
	}
	return nil
}

// printJSON writes v as indented JSON.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
