package docker

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/moby/moby/api/types/system"
	"github.com/moby/moby/client"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/driver"
)

// Name is the driver's name in job specs.
const Name = api.DriverDocker

// Defaults of Config.
const (
	DefaultPullTimeout        = 30 * time.Second
	DefaultFingerprintTimeout = 5 * time.Second
)

// Config says which engine to use and how patient to be with it.
type Config struct {
	// Host is the engine's address (unix:///var/run/docker.sock,
	// tcp://host:2376). Empty: DOCKER_HOST, else the default socket.
	Host string
	// PullTimeout bounds the pull attempted when an image is absent.
	// Zero: DefaultPullTimeout.
	PullTimeout time.Duration
	// FingerprintTimeout bounds the engine's answer to a fingerprint.
	// Zero: DefaultFingerprintTimeout.
	FingerprintTimeout time.Duration
}

// Driver runs tasks as containers of one Docker engine. It is safe for
// concurrent use and holds no state of its own besides the client: every
// fact about a task lives on the engine, under the task's labels.
type Driver struct {
	cfg Config
	cli *client.Client
}

var (
	_ driver.Driver = (*Driver)(nil)
	_ driver.Logs   = (*Driver)(nil)
	_ driver.Execer = (*Driver)(nil)
)

// New makes a driver for the engine Config names. It does not contact the
// engine: an engine that is down makes Fingerprint unhealthy, not New fail.
// New fails only on a malformed host or TLS setting.
func New(cfg Config) (*Driver, error) {
	if cfg.PullTimeout <= 0 {
		cfg.PullTimeout = DefaultPullTimeout
	}
	if cfg.FingerprintTimeout <= 0 {
		cfg.FingerprintTimeout = DefaultFingerprintTimeout
	}
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if cfg.Host != "" {
		opts = append(opts, client.WithHost(cfg.Host))
	}
	cli, err := client.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("docker: client for %q: %w", cfg.Host, err)
	}
	return &Driver{cfg: cfg, cli: cli}, nil
}

// Close releases the client's connections.
func (d *Driver) Close() error { return d.cli.Close() }

// BridgeGateway is the IPv4 gateway of the engine's default bridge
// network: the address at which containers on it reach this node. An
// engine that does not report the gateway (Docker 20.10 reports only the
// subnet) gives it by the bridge's interface, whose address in the
// subnet is the gateway.
func (d *Driver) BridgeGateway(ctx context.Context) (string, error) {
	res, err := d.cli.NetworkInspect(ctx, "bridge", client.NetworkInspectOptions{})
	if err != nil {
		return "", fmt.Errorf("docker: inspect the default bridge network: %w", err)
	}
	var subnets []netip.Prefix
	for _, c := range res.Network.IPAM.Config {
		if c.Gateway.Is4() {
			return c.Gateway.String(), nil
		}
		if c.Subnet.Addr().Is4() {
			subnets = append(subnets, c.Subnet)
		}
	}
	name := cmp.Or(res.Network.Options["com.docker.network.bridge.name"], "docker0")
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return "", fmt.Errorf("docker: the default bridge network reports no gateway, and its interface %s: %w", name, err)
	}
	addrs, err := ifc.Addrs()
	if err != nil {
		return "", fmt.Errorf("docker: addresses of the bridge interface %s: %w", name, err)
	}
	if gw, ok := gatewayIn(addrs, subnets); ok {
		return gw, nil
	}
	return "", fmt.Errorf("docker: the default bridge network reports no gateway, and its interface %s has no IPv4 address in %v", name, subnets)
}

// gatewayIn picks the interface address that lies in one of the
// subnets (any IPv4 one when no subnet is known).
func gatewayIn(addrs []net.Addr, subnets []netip.Prefix) (string, bool) {
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(ipn.IP.To4())
		if !ok {
			continue
		}
		if len(subnets) == 0 {
			return ip.String(), true
		}
		for _, s := range subnets {
			if s.Contains(ip) {
				return ip.String(), true
			}
		}
	}
	return "", false
}

// Host is the address of the engine the driver talks to.
func (d *Driver) Host() string { return d.cli.DaemonHost() }

// Client exposes the engine client, for tests and for tools that need
// what the driver contract does not say.
func (d *Driver) Client() *client.Client { return d.cli }

// Name implements driver.Driver.
func (d *Driver) Name() string { return Name }

// Fingerprint implements driver.Driver: it pings the engine and reads its
// version and cgroup setup. An engine that does not answer gives
// Detected=false with the address tried and the error.
func (d *Driver) Fingerprint(ctx context.Context) api.DriverInfo {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.FingerprintTimeout)
	defer cancel()
	if _, err := d.cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		return api.DriverInfo{
			Reason: fmt.Sprintf("docker engine at %s does not answer: %v", d.cli.DaemonHost(), err),
		}
	}
	v, err := d.cli.ServerVersion(ctx, client.ServerVersionOptions{})
	if err != nil {
		return api.DriverInfo{
			Detected: true,
			Reason:   fmt.Sprintf("docker engine at %s answers ping but not version: %v", d.cli.DaemonHost(), err),
		}
	}
	info := api.DriverInfo{Detected: true, Healthy: true, Version: v.Version, Components: engineComponents(v.APIVersion, v.Components)}
	res, err := d.cli.Info(ctx, client.InfoOptions{})
	if err != nil {
		info.Isolation = "containers (engine details unavailable: " + err.Error() + ")"
		return info
	}
	in := res.Info
	var b strings.Builder
	b.WriteString("containers: own pid, network, mount, uts and ipc namespaces")
	if in.CgroupVersion != "" {
		fmt.Fprintf(&b, "; cgroup v%s (%s driver)", in.CgroupVersion, in.CgroupDriver)
	}
	var enforced, missing []string
	for _, l := range []struct {
		name string
		ok   bool
	}{{"memory", in.MemoryLimit}, {"cpu", in.CPUCfsQuota}, {"pids", in.PidsLimit}} {
		if l.ok {
			enforced = append(enforced, l.name)
		} else {
			missing = append(missing, l.name)
		}
	}
	if len(enforced) > 0 {
		fmt.Fprintf(&b, "; %s limits enforced", strings.Join(enforced, ", "))
	}
	if len(missing) > 0 {
		fmt.Fprintf(&b, "; %s limits NOT enforced (the engine reports no kernel support)", strings.Join(missing, ", "))
	}
	if !in.SwapLimit {
		b.WriteString("; swap not limited")
	}
	var sec []string
	for _, s := range in.SecurityOptions {
		// "name=seccomp,profile=default" → "seccomp"
		name := strings.TrimPrefix(strings.SplitN(s, ",", 2)[0], "name=")
		sec = append(sec, name)
	}
	if len(sec) > 0 {
		fmt.Fprintf(&b, "; security: %s", strings.Join(sec, ", "))
	}
	if in.Driver != "" {
		fmt.Fprintf(&b, "; storage %s", in.Driver)
	}
	if _, ok := in.Runtimes["nvidia"]; ok {
		b.WriteString("; GPUs: only the GPUs or MIG instances allocated, requested by UUID from the engine's nvidia device driver, are in the container (device isolation); an MPS-enforced GPU share joins the host IPC namespace and the MPS pipe directory, as MPS requires")
	} else {
		b.WriteString("; GPUs: requested by UUID from the engine's nvidia device driver, but this engine lists no nvidia runtime (NVIDIA Container Toolkit): GPU tasks may fail to start here")
	}
	info.Isolation = b.String()
	return info
}

// engineComponents are the versions the engine's version answer names:
// its API, containerd and runc.
func engineComponents(apiVersion string, cs []system.ComponentVersion) map[string]string {
	out := map[string]string{}
	if apiVersion != "" {
		out["docker-api"] = apiVersion
	}
	for _, c := range cs {
		switch name := strings.ToLower(c.Name); name {
		case "containerd", "runc":
			if c.Version != "" {
				out[name] = c.Version
			}
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
