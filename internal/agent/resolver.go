package agent

import (
	"context"
	"net"
	"net/netip"
	"time"

	"github.com/gantryhq/gantry/internal/dns"
	"github.com/gantryhq/gantry/internal/driver"
	mdns "github.com/miekg/dns"
)

// ResolverConfig turns on the agent's DNS resolver for containers, beside
// its load balancer: a container on the node's default bridge reaches a
// load-balanced service of its namespace by the service's plain name (the
// name a Compose file uses) on the service's load-balancer port; every
// other name is passed to the node's own resolvers.
type ResolverConfig struct {
	Enabled bool
	// Address is the IPv4 address it listens on, port 53. Empty: the
	// container engine's default bridge gateway, where containers reach
	// the node.
	Address string
	// ResolvConf lists the node's own resolvers, which answer every name
	// outside Gantry's domain; empty: /etc/resolv.conf.
	ResolvConf string
}

// bridgeGatewayer is a driver whose containers sit on a bridge with a
// gateway on this node (the docker driver).
type bridgeGatewayer interface {
	BridgeGateway(ctx context.Context) (string, error)
}

// resolverSearch is the search domain that makes a plain service name
// resolve in a namespace's containers.
func resolverSearch(namespace string) string { return namespace + ".lb.gantry" }

// startResolver starts the resolver for containers when it is enabled
// and can serve: the load balancer runs on an address containers reach,
// and the address (the bridge gateway, unless given) is known and free.
// It logs why when it cannot; containers then use the engine's resolver.
func (a *Agent) startResolver(ctx context.Context) {
	c := a.cfg.Resolver
	m := a.loadBalancer()
	if !c.Enabled || m == nil {
		return
	}
	log := a.log.With("component", "container-dns")
	ip := c.Address
	if ip == "" {
		for _, d := range a.drivers {
			if g, ok := d.(bridgeGatewayer); ok {
				gctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				gw, err := g.BridgeGateway(gctx)
				cancel()
				if err != nil {
					log.Warn("no DNS for containers: cannot find the bridge gateway; containers use the engine's resolver", "err", err)
					return
				}
				ip = gw
			}
		}
		if ip == "" {
			return // no driver puts tasks on a bridge
		}
	}
	if lbIP := a.cfg.LB.Address; lbIP != "0.0.0.0" && lbIP != "" && lbIP != ip {
		log.Info("no DNS for containers: the load balancer listens on "+lbIP+", which containers do not reach; run the agent with --lb-address 0.0.0.0 (or "+ip+")", "address", ip)
		return
	}
	ups := upstreams(c.ResolvConf, ip)
	srv, err := dns.Start(ctx, dns.Config{
		Addr:      net.JoinHostPort(ip, "53"),
		LB:        &dns.LBZone{Address: ip, Port: m.Port},
		Upstreams: ups,
		Log:       log,
	}, m.Catalog)
	if err != nil {
		log.Warn("no DNS for containers; containers use the engine's resolver", "err", err)
		return
	}
	a.lbMu.Lock()
	a.resolver = &driver.Resolver{Address: ip}
	a.lbMu.Unlock()
	log.Info("containers resolve load-balanced services by name", "address", srv.Addr(), "upstreams", ups)
}

// taskResolver is what a task of namespace ns is given as its resolver,
// or nil when the agent runs none.
func (a *Agent) taskResolver(ns string) *driver.Resolver {
	a.lbMu.Lock()
	defer a.lbMu.Unlock()
	if a.resolver == nil {
		return nil
	}
	return &driver.Resolver{Address: a.resolver.Address, Search: []string{resolverSearch(ns)}}
}

// upstreams are the node's resolvers from a resolv.conf file (port 53
// unless it says otherwise), leaving out self, where the agent's own
// resolver listens.
func upstreams(path, self string) []string {
	if path == "" {
		path = "/etc/resolv.conf"
	}
	cc, err := mdns.ClientConfigFromFile(path)
	if err != nil {
		return nil
	}
	var out []string
	for _, s := range cc.Servers {
		if a, err := netip.ParseAddr(s); err == nil && a.String() == self {
			continue
		}
		out = append(out, net.JoinHostPort(s, cc.Port))
	}
	return out
}
