package cli

import (
	"context"
	"log/slog"
	"time"

	"github.com/gantryhq/gantry/internal/agent"
	"github.com/gantryhq/gantry/internal/dns"
	"github.com/gantryhq/gantry/internal/server"
	"github.com/spf13/cobra"
)

// netFlags configure service networking in the daemons: the agent's load
// balancer and the server's DNS.
type netFlags struct {
	lb             bool
	lbAddress      string
	lbAccessLog    bool
	lbDrainTimeout time.Duration
	dnsAddr        string
	containerDNS   bool
	containerDNSIP string
}

func (n *netFlags) addServer(cmd *cobra.Command) {
	cmd.Flags().StringVar(&n.dnsAddr, "dns-addr", "", "answer DNS (A, SRV) for <service>.<namespace>.service.gantry on this address, UDP and TCP, e.g. 127.0.0.1:8600 (default: off)")
}

func (n *netFlags) addAgent(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&n.lb, "lb", false, "run a load balancer on this node: a listener for every service with an lb block, routing to its healthy replicas")
	cmd.Flags().StringVar(&n.lbAddress, "lb-address", "127.0.0.1", "IP the load balancer's service listeners bind")
	cmd.Flags().BoolVar(&n.lbAccessLog, "lb-access-log", true, "log one line per request the load balancer forwards")
	cmd.Flags().DurationVar(&n.lbDrainTimeout, "lb-drain-timeout", 10*time.Second, "before an allocation stops, how long requests in flight to it through the load balancer may take to finish")
	cmd.Flags().BoolVar(&n.containerDNS, "container-dns", true, "with --lb on an address containers reach: answer DNS for containers on port 53 of the Docker bridge gateway, so a container reaches a load-balanced service of its namespace by its plain name (<service>.<namespace>.lb.gantry), other names through this host's resolvers")
	cmd.Flags().StringVar(&n.containerDNSIP, "container-dns-address", "", "IPv4 address the DNS for containers listens on, port 53 (default: the Docker bridge gateway)")
}

func (n *netFlags) resolverConfig() agent.ResolverConfig {
	return agent.ResolverConfig{Enabled: n.containerDNS, Address: n.containerDNSIP}
}

func (n *netFlags) agentConfig() agent.LBConfig {
	return agent.LBConfig{Enabled: n.lb, Address: n.lbAddress, AccessLog: n.lbAccessLog, DrainTimeout: n.lbDrainTimeout}
}

// startDNS serves DNS from the server's catalog until ctx ends, when
// --dns-addr is set.
func (n *netFlags) startDNS(ctx context.Context, srv *server.Server, log *slog.Logger) error {
	if n.dnsAddr == "" {
		return nil
	}
	if _, err := dns.Start(ctx, dns.Config{Addr: n.dnsAddr, Log: log.With("component", "dns")}, srv.Catalog); err != nil {
		return exitf(ExitError, "%v", err)
	}
	return nil
}
