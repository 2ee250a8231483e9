package cli

import (
	"fmt"
	"strings"

	"github.com/gantryhq/gantry/internal/apiclient"
	"github.com/gantryhq/gantry/internal/lb"
	"github.com/spf13/cobra"
)

func newIngressCmd(g *globals) *cobra.Command {
	f := &daemonFlags{}
	var servers, namespaces []string
	var address string
	var accessLog bool
	cmd := &cobra.Command{
		Use:   "ingress",
		Short: "Run a standalone load balancer for an edge node: every service with an lb block, on its port",
		Long: `Run a standalone load balancer, for a machine at the edge that runs no
agent. It follows the servers' service catalog and listens, on --address,
on the port of every service whose group declares an lb block, routing
HTTP or TCP to the service's healthy replicas anywhere in the cluster.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := f.logger(g.errw)
			if err != nil {
				return err
			}
			ctx, cancel := signalContext()
			defer cancel()
			cfg := lb.Config{Address: address, Namespaces: namespaces, Log: log.With("component", "lb")}
			if accessLog {
				cfg.AccessLog = log.With("component", "lb-access")
			}
			m := lb.NewManager(cfg)
			defer m.Close()
			fmt.Fprintf(g.out, "Gantry ingress on %s, following servers %s\n", address, strings.Join(servers, ","))
			// With --ca-cert/--client-cert/--client-key (an agent
			// certificate) and --token, the catalog is read over mutual TLS.
			o, err := g.apiOptions()
			if err != nil {
				return exitf(ExitError, "%v", err)
			}
			o.Servers = servers
			lb.Follow(ctx, apiclient.New(o), m, log.With("component", "lb"))
			return nil
		},
	}
	cmd.Flags().StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	cmd.Flags().StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	cmd.Flags().StringSliceVar(&servers, "servers", []string{"127.0.0.1:7700"}, "server API addresses (comma-separated)")
	cmd.Flags().StringVar(&address, "address", "0.0.0.0", "IP the service listeners bind")
	cmd.Flags().StringSliceVar(&namespaces, "namespace", nil, "serve only these namespaces (repeatable; default all)")
	cmd.Flags().BoolVar(&accessLog, "access-log", true, "log one line per request")
	return cmd
}
