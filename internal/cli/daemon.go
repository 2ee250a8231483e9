package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/gantryhq/gantry/internal/agent"
	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/driver"
	"github.com/gantryhq/gantry/internal/driver/docker"
	execdriver "github.com/gantryhq/gantry/internal/driver/exec"
	"github.com/gantryhq/gantry/internal/driver/null"
	"github.com/gantryhq/gantry/internal/driver/qemu"
	wasmdriver "github.com/gantryhq/gantry/internal/driver/wasm"
	"github.com/gantryhq/gantry/internal/gpu/nvml"
	"github.com/gantryhq/gantry/internal/metrics"
	"github.com/gantryhq/gantry/internal/pki"
	"github.com/gantryhq/gantry/internal/server"
	"github.com/gantryhq/gantry/internal/server/applier"
	"github.com/gantryhq/gantry/internal/server/overload"
	"github.com/gantryhq/gantry/internal/state"
	"github.com/gantryhq/gantry/internal/ui/web"
	"github.com/google/uuid"
	"github.com/spf13/cobra"
)

// daemonFlags are shared by dev, server and agent.
type daemonFlags struct {
	dataDir   string
	logLevel  string
	logFormat string

	// server
	httpAddr        string
	advertiseAddr   string
	etcdClientURL   string
	etcdPeerURL     string
	etcdListenCli   string
	etcdListenPeer  string
	etcdName        string
	initialCluster  string
	join            string
	etcdEndpoints   []string
	etcdQuota       int64
	etcdRetention   int64
	heartbeatTTL    time.Duration
	maxHeartbeats   float64
	lostBatchGrace  time.Duration
	serverID        string
	etcdPrefix      string
	historyLen      int
	historyInterval time.Duration
	historyFile     string
	gpuPolicy       string

	// agent
	servers     []string
	agentAddr   string
	nodeName    string
	nodeAddress string
	labels      map[string]string
	class       string
	pool        string
	dockerHost  string
	cpu         int
	memory      int
	drivers     []string
	wasmMounts  []string // host directories wasm tasks may mount
	wasmSpares  int      // spare wasm runners kept, modules compiled

	// security
	tls      pki.Files
	acl      bool
	insecure bool
	token    string
	secure   bool // TLS is required unless --insecure (every daemon but dev)
	// container audit
	auditInterval      time.Duration
	dockerDaemonConfig string
	gpuManage          []string
	gpuMIGIdle         time.Duration
	mpsPipeDir         string
	sysfsRoot          string
	sampleEvery        time.Duration
	stream             bool // the agent speaks the node stream

	net netFlags           // load balancer and DNS (netflags.go)
	vs  vsphereDaemonFlags // virtualization monitor (vsphere.go)

	defragInterval     time.Duration // background GPU defragmenter (0: off)
	defragMovesPerHour int

	overload           overload.Thresholds // backpressure: where each input means overload
	overloadRetryAfter time.Duration
}

func defaultDataDir(sub string) string {
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".gantry", sub)
	}
	return filepath.Join(os.TempDir(), "gantry-"+sub)
}

func (f *daemonFlags) addCommon(cmd *cobra.Command, sub string) {
	cmd.Flags().StringVar(&f.dataDir, "data-dir", defaultDataDir(sub), "directory for state (etcd data, node identity, allocation directories)")
	cmd.Flags().StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	cmd.Flags().StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
}

func (f *daemonFlags) addServer(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.httpAddr, "http-addr", "127.0.0.1:7700", "address the HTTP API listens on")
	cmd.Flags().StringVar(&f.advertiseAddr, "advertise-addr", "", "host:port where the other servers reach this one's API, to forward what only the leader answers (default: --http-addr; when that is a wildcard such as 0.0.0.0, the host of --etcd-client-url with its port)")
	cmd.Flags().StringVar(&f.etcdClientURL, "etcd-client-url", "http://127.0.0.1:7702", "client URL of the embedded etcd")
	cmd.Flags().StringVar(&f.etcdPeerURL, "etcd-peer-url", "http://127.0.0.1:7703", "peer URL of the embedded etcd")
	cmd.Flags().StringVar(&f.etcdListenCli, "etcd-listen-client-url", "", "where the embedded etcd listens for clients, when it differs from --etcd-client-url (etcd binds IPs only: http://0.0.0.0:7702)")
	cmd.Flags().StringVar(&f.etcdListenPeer, "etcd-listen-peer-url", "", "where the embedded etcd listens for peers, when it differs from --etcd-peer-url")
	cmd.Flags().StringVar(&f.etcdName, "etcd-name", "", "this server's etcd member name (default: the host name)")
	cmd.Flags().StringVar(&f.initialCluster, "initial-cluster", "", "every server of a new cluster as name=peer-url,… (the same on each; empty: a single-server cluster)")
	cmd.Flags().StringVar(&f.join, "join", "", "client URL of a running server's etcd: add this server to that cluster as a new member")
	cmd.Flags().StringSliceVar(&f.etcdEndpoints, "etcd-endpoints", nil, "use this existing etcd cluster instead of embedding one (comma-separated URLs)")
	cmd.Flags().Int64Var(&f.etcdQuota, "etcd-quota-bytes", 2<<30, "embedded etcd backend quota in bytes")
	cmd.Flags().Int64Var(&f.etcdRetention, "etcd-history", 100000, "revisions of history the embedded etcd keeps (how far back the event stream can resume)")
	cmd.Flags().DurationVar(&f.heartbeatTTL, "heartbeat-ttl", 15*time.Second, "a node silent for this long is marked down and its work replaced (at least: it grows with the cluster, see --max-heartbeats-per-second)")
	cmd.Flags().Float64Var(&f.maxHeartbeats, "max-heartbeats-per-second", server.DefaultMaxHeartbeatsPerSecond, "the heartbeats all nodes together may send a second: a registering node gets a TTL of at least nodes×3/this (agents beat three times per TTL); 0 or negative: never grow the TTL")
	cmd.Flags().DurationVar(&f.lostBatchGrace, "lost-batch-grace", 0, "how long batch work on a down node waits for the node to come back before it is replaced elsewhere")
	cmd.Flags().StringVar(&f.serverID, "server-id", "", "this server's identity in leader election (default: generated once and kept in the data dir)")
	cmd.Flags().StringVar(&f.etcdPrefix, "etcd-prefix", "/gantry/", "key prefix of Gantry's state in etcd")
	f.net.addServer(cmd)
	cmd.Flags().IntVar(&f.historyLen, "metrics-history", metrics.DefaultHistory, "usage samples kept per node for the UI and 'gantry node status' (in memory: see docs/monitoring.md for the cost)")
	cmd.Flags().DurationVar(&f.historyInterval, "metrics-history-interval", 0, "keep at most one sample per node per interval (0: every sample the agents send, one per --sample-interval)")
	cmd.Flags().StringVar(&f.historyFile, "metrics-history-file", "", "keep the metrics history across restarts in this file (saved every minute and at shutdown); empty: memory only")
	cmd.Flags().StringVar(&f.gpuPolicy, "gpu-policy", server.DefaultGPUPolicy, "how GPU work is placed: "+strings.Join(server.GPUPolicies, ", ")+
		" (gantry: fragmentation-aware, learns the typical tasks from the jobs submitted; bestfit: the core's best fit, the earlier default)")
	f.vs.addServer(cmd)
	cmd.Flags().DurationVar(&f.defragInterval, "gpu-defrag-interval", 0, "run the background GPU defragmenter on the leader, one round per interval: it moves replicas of groups with migrate: true to make room for pending GPU work (or, with none, to free whole GPUs), each move proposed one round before it is made; 0: off")
	cmd.Flags().IntVar(&f.defragMovesPerHour, "gpu-defrag-moves-per-hour", server.DefaultDefragMovesPerHour, "the background GPU defragmenter starts at most this many moves in any hour (moves of 'gantry gpu defrag apply' count too)")
	cmd.Flags().IntVar(&f.overload.EvalBacklog, "overload-eval-backlog", overload.Defaults.EvalBacklog, "the server is overloaded once this many evaluations wait to be scheduled (ready, not blocked or delayed): it answers job submissions 429 with a Retry-After, hands registering nodes longer heartbeat TTLs and keeps silent nodes ready for longer; 0 or negative: not an input")
	cmd.Flags().DurationVar(&f.overload.ReportLag, "overload-report-lag", overload.Defaults.ReportLag, "the server is overloaded once an allocation report has waited this long for its commit (see --overload-eval-backlog); 0 or negative: not an input")
	cmd.Flags().DurationVar(&f.overload.HeartbeatLag, "overload-heartbeat-lag", overload.Defaults.HeartbeatLag, "the server is overloaded once renewing a heartbeat's lease takes this long (see --overload-eval-backlog); 0 or negative: not an input")
	cmd.Flags().DurationVar(&f.overloadRetryAfter, "overload-retry-after", server.DefaultOverloadRetryAfter, "the Retry-After of a job submission refused at overload level 1, doubled per level above (levels 1 to 3: at 1, 2 and 4 times a threshold)")
}

// defaultAgentStream is --stream's default for `gantry agent` and
// `gantry dev`.
const defaultAgentStream = true

func (f *daemonFlags) addAgent(cmd *cobra.Command, withServers bool) {
	if withServers {
		cmd.Flags().StringSliceVar(&f.servers, "servers", []string{"127.0.0.1:7700"}, "server API addresses (comma-separated); the agent moves between them")
	}
	cmd.Flags().StringVar(&f.agentAddr, "agent-addr", "127.0.0.1:7701", "address the agent's API (logs, exec) listens on")
	host, _ := os.Hostname()
	cmd.Flags().StringVar(&f.nodeName, "node-name", host, "name of this node")
	cmd.Flags().StringVar(&f.nodeAddress, "node-address", "127.0.0.1", "IP address task ports bind to and health checks dial")
	cmd.Flags().StringToStringVar(&f.labels, "label", nil, "node label key=value (repeatable), usable in constraints as ${node.labels.key}")
	cmd.Flags().StringVar(&f.class, "node-class", "", "node class, usable in constraints as ${node.class}")
	cmd.Flags().StringVar(&f.pool, "node-pool", "", "node pool, usable in constraints as ${node.pool}")
	cmd.Flags().StringVar(&f.dockerHost, "docker-host", "", "Docker engine address (default: DOCKER_HOST, else the local socket)")
	cmd.Flags().StringSliceVar(&f.drivers, "drivers", []string{"docker", "exec", "qemu", "wasm"}, "task drivers to enable: docker, exec, qemu, wasm, null (null pretends to run tasks, for tests)")
	cmd.Flags().StringSliceVar(&f.wasmMounts, "wasm-host-mount", nil, "host directories (and what is under them) that wasm tasks may mount by absolute path; default none")
	cmd.Flags().IntVar(&f.wasmSpares, "wasm-spares", 1, "spare wasm runners to keep, each with a recently started module compiled and waiting for its next task (a start that takes one skips the runner's start and compile; each holds about the memory of a running instance less its heap, and none starts while the node has under 1 GiB available); 0: none")
	cmd.Flags().IntVar(&f.cpu, "cpu", 0, "override the node's cpu capacity (millicores)")
	cmd.Flags().IntVar(&f.memory, "memory", 0, "override the node's memory capacity (MiB)")
	cmd.Flags().DurationVar(&f.auditInterval, "audit-interval", agent.DefaultAuditInterval, "how often to audit every container on the Docker engine (CIS Docker Benchmark); negative turns it off")
	cmd.Flags().StringVar(&f.dockerDaemonConfig, "docker-daemon-config", agent.DefaultDockerDaemonConfig, "the Docker daemon's daemon.json, read by the audit for settings the engine API does not report")
	cmd.Flags().StringSliceVar(&f.gpuManage, "gpu-manage-mig", nil, "GPUs (indices or UUIDs, or \"all\") on which the agent creates the MIG instances plans ask for and destroys the ones it created once idle; default none")
	cmd.Flags().DurationVar(&f.gpuMIGIdle, "gpu-mig-idle", agent.DefaultMIGIdle, "how long a MIG instance the agent created may stay unused before it is destroyed (managed GPUs only)")
	mps := os.Getenv("CUDA_MPS_PIPE_DIRECTORY")
	if mps == "" {
		mps = "/tmp/nvidia-mps"
	}
	cmd.Flags().StringVar(&f.mpsPipeDir, "mps-pipe-dir", mps, "pipe directory of the node's MPS control daemon, which enforces GPU shares where it runs")
	cmd.Flags().StringVar(&f.sysfsRoot, "sysfs-root", "/sys", "where the kernel's sysfs is: the GPUs bound to vfio-pci (for VMs) and the KVM check are read there; tests point it at a fake tree")
	cmd.Flags().DurationVar(&f.sampleEvery, "sample-interval", agent.DefaultSampleInterval, "how often the agent reads node, GPU and task usage for /metrics and the servers' history")
	cmd.Flags().BoolVar(&f.stream, "stream", defaultAgentStream, "speak the node stream: allocations, reports and heartbeats over one long-lived request (POST /v1/nodes/stream) instead of long-polls and a request each; against servers that predate it the agent falls back to the long-polls")
	f.net.addAgent(cmd)
	f.vs.addAgent(cmd)
}

// addSecurity adds the TLS and ACL flags. Outside 'gantry dev' TLS and
// ACLs are on by default: a daemon without certificates refuses to start
// unless told --insecure.
func (f *daemonFlags) addSecurity(cmd *cobra.Command, server, dev bool) {
	f.secure = !dev
	cmd.Flags().StringVar(&f.tls.CA, "tls-ca", "", "CA certificate of the cluster (make one with 'gantry tls ca create')")
	cmd.Flags().StringVar(&f.tls.Cert, "tls-cert", "", "this daemon's certificate ('gantry tls cert create --server|--agent')")
	cmd.Flags().StringVar(&f.tls.Key, "tls-key", "", "the key of --tls-cert")
	if !dev {
		cmd.Flags().BoolVar(&f.insecure, "insecure", false, "run without TLS (and, for servers, without ACLs unless --acl): only on a trusted network")
	}
	if server {
		cmd.Flags().BoolVar(&f.acl, "acl", !dev, "require an ACL token on every endpoint but health ('gantry acl bootstrap' makes the first)")
	} else {
		cmd.Flags().StringVar(&f.token, "token", "", "ACL token for the agent protocol when TLS is off (needs node-write); with TLS the agent certificate suffices")
	}
}

func (f *daemonFlags) scheme() string {
	if f.tls.Enabled() {
		return "https"
	}
	return "http"
}

// checkSecurity refuses an insecure daemon unless asked for.
func (f *daemonFlags) checkSecurity(cmd *cobra.Command) error {
	if f.tls.Enabled() {
		return nil
	}
	if f.secure && !f.insecure {
		return exitf(ExitError, "TLS is on by default outside 'gantry dev': give --tls-ca, --tls-cert and --tls-key (make them with 'gantry tls ca create' and 'gantry tls cert create'), or --insecure to run without it")
	}
	if f.insecure && cmd.Flags().Lookup("acl") != nil && !cmd.Flags().Changed("acl") {
		f.acl = false
	}
	return nil
}

// checkServer rejects server flags that cannot work, before anything
// starts.
func (f *daemonFlags) checkServer() error {
	if err := server.CheckGPUPolicy(f.gpuPolicy); err != nil {
		return exitf(ExitError, "--gpu-policy: %v", err)
	}
	return nil
}

func (f *daemonFlags) logger(w io.Writer) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(f.logLevel)); err != nil {
		return nil, exitf(ExitError, "--log-level %q: use debug, info, warn or error", f.logLevel)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch f.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, exitf(ExitError, "--log-format %q: use text or json", f.logFormat)
}

// openState starts or dials etcd and opens the store over it.
func (f *daemonFlags) openState(ctx context.Context, log *slog.Logger) (*state.Store, func(), error) {
	if err := os.MkdirAll(f.dataDir, 0o755); err != nil {
		return nil, nil, exitf(ExitError, "create data dir %s: %v", f.dataDir, err)
	}
	var closers []func()
	closeAll := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	endpoints := f.etcdEndpoints
	if len(endpoints) == 0 {
		name := f.etcdName
		if name == "" {
			name, _ = os.Hostname()
			if name == "" {
				name = "gantry"
			}
		}
		ec := state.EmbedConfig{
			Name: name, DataDir: f.dataDir, ClientURL: f.etcdClientURL, PeerURL: f.etcdPeerURL,
			ListenClientURL: f.etcdListenCli, ListenPeerURL: f.etcdListenPeer,
			QuotaBytes: f.etcdQuota, CompactionRetention: f.etcdRetention, InitialCluster: f.initialCluster,
		}
		if _, err := os.Stat(filepath.Join(f.dataDir, "etcd", "member")); err != nil && f.join != "" {
			// First start of a joining member: the cluster learns of it first.
			jctx, cancel := context.WithTimeout(ctx, time.Minute)
			ic, err := state.AddMember(jctx, []string{f.join}, name, f.etcdPeerURL)
			cancel()
			if err != nil {
				return nil, nil, exitf(ExitError, "join the cluster at %s: %v", f.join, err)
			}
			ec.InitialCluster, ec.Join = ic, true
		}
		if f.initialCluster == "" && f.join == "" {
			ec.Name = "gantry"
		}
		e, err := state.StartEmbedded(ec)
		if err != nil {
			return nil, nil, exitf(ExitError, "%v", err)
		}
		closers = append(closers, e.Close)
		endpoints = []string{e.ClientURL}
		log.Info("embedded etcd ready", "client", e.ClientURL, "dir", filepath.Join(f.dataDir, "etcd"))
	}
	cli, err := state.Dial(ctx, endpoints)
	if err != nil {
		closeAll()
		return nil, nil, exitf(ExitError, "%v", err)
	}
	closers = append(closers, func() { cli.Close() })
	st, err := state.Open(ctx, cli, f.etcdPrefix, log)
	if err != nil {
		closeAll()
		return nil, nil, exitf(ExitError, "%v", err)
	}
	closers = append(closers, st.Close)
	return st, closeAll, nil
}

func persistentID(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(b)) != "" {
		return strings.TrimSpace(string(b)), nil
	}
	id := uuid.NewString()
	if err := os.WriteFile(path, []byte(id+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("save %s: %w", path, err)
	}
	return id, nil
}

func (f *daemonFlags) startServer(ctx context.Context, st *state.Store, log *slog.Logger) (*server.Server, error) {
	id := f.serverID
	if id == "" {
		var err error
		if id, err = persistentID(filepath.Join(f.dataDir, "server-id")); err != nil {
			return nil, exitf(ExitError, "%v", err)
		}
	}
	cfg := server.Config{ID: id, HTTPAddr: f.httpAddr, AdvertiseAddr: f.advertiseAddr, HeartbeatTTL: f.heartbeatTTL, MaxHeartbeatsPerSecond: maxHeartbeats(f.maxHeartbeats), LostBatchGrace: f.lostBatchGrace, Version: Version, ACL: f.acl,
		NodeHistory: f.historyLen, HistoryInterval: f.historyInterval, HistoryFile: f.historyFile, GPUPolicy: f.gpuPolicy,
		VSphere: f.vs.serverConfig(), DefragInterval: f.defragInterval, DefragMovesPerHour: f.defragMovesPerHour,
		Overload: overloadThresholds(f.overload), OverloadRetryAfter: f.overloadRetryAfter}
	if len(f.etcdEndpoints) > 0 {
		// etcd's defaults: 128 operations and 1.5 MiB per transaction. A
		// gang or preemption set larger than that fails its evaluation
		// with a message that says to raise them.
		cfg.TxnLimits = applier.External
	}
	if cfg.AdvertiseAddr == "" && len(f.etcdEndpoints) == 0 {
		cfg.AdvertiseAddr = defaultAdvertise(f.httpAddr, f.etcdClientURL)
	}
	if f.tls.Enabled() {
		var err error
		if cfg.TLS, err = f.tls.ServerConfig(); err != nil {
			return nil, exitf(ExitError, "%v", err)
		}
		if cfg.ClientTLS, err = f.tls.ClientConfig(); err != nil {
			return nil, exitf(ExitError, "%v", err)
		}
	}
	srv := server.New(cfg, st, log.With("component", "server"))
	// The web UI is served on the API's listener, under /ui.
	web.Mount(ctx, srv, st, log.With("component", "ui"))
	if err := srv.Start(ctx); err != nil {
		return nil, exitf(ExitError, "%v", err)
	}
	if err := f.net.startDNS(ctx, srv, log); err != nil {
		return nil, err
	}
	return srv, nil
}

// defaultAdvertise is where the other servers reach an API listening on
// a wildcard address (0.0.0.0:7700): the host of the embedded etcd's
// client URL, which the other servers reach already, with the API's
// port. It is "" (the listener's own address) for any other address.
func defaultAdvertise(httpAddr, etcdClientURL string) string {
	host, port, err := net.SplitHostPort(httpAddr)
	if err != nil {
		return ""
	}
	if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) {
		return ""
	}
	u, err := url.Parse(etcdClientURL)
	if err != nil || u.Hostname() == "" {
		return ""
	}
	if ip := net.ParseIP(u.Hostname()); ip != nil && ip.IsUnspecified() {
		return ""
	}
	return net.JoinHostPort(u.Hostname(), port)
}

func (f *daemonFlags) newAgent(dataDir string, servers []string, log *slog.Logger) (*agent.Agent, error) {
	var agentTLS *agent.TLSConfig
	if f.tls.Enabled() {
		c, err := f.tls.ClientConfig()
		if err != nil {
			return nil, exitf(ExitError, "%v", err)
		}
		sc, err := f.tls.ServerConfig()
		if err != nil {
			return nil, exitf(ExitError, "%v", err)
		}
		agentTLS = &agent.TLSConfig{Client: c, Server: sc}
	}
	var drivers []driver.Driver
	for _, name := range f.drivers {
		switch name {
		case api.DriverDocker:
			dd, err := docker.New(docker.Config{Host: f.dockerHost})
			if err != nil {
				return nil, exitf(ExitError, "%v", err)
			}
			drivers = append(drivers, dd)
		case api.DriverExec:
			ed, err := execdriver.New(execdriver.Config{AllocRoot: filepath.Join(dataDir, "allocs")})
			if err != nil {
				return nil, exitf(ExitError, "%v", err)
			}
			drivers = append(drivers, ed)
		case api.DriverQEMU:
			qd, err := qemu.New(qemu.Config{AllocRoot: filepath.Join(dataDir, "allocs"), SysfsRoot: f.sysfsRoot})
			if err != nil {
				return nil, exitf(ExitError, "%v", err)
			}
			drivers = append(drivers, qd)
		case api.DriverWasm:
			wd, err := wasmdriver.New(wasmdriver.Config{AllocRoot: filepath.Join(dataDir, "allocs"),
				CacheDir: filepath.Join(dataDir, "wasm-cache"), HostMountRoots: f.wasmMounts,
				Spares: f.wasmSpares, MemAvailable: agent.MemAvailable})
			if err != nil {
				return nil, exitf(ExitError, "%v", err)
			}
			drivers = append(drivers, wd)
		case api.DriverNull:
			drivers = append(drivers, null.New())
		default:
			return nil, exitf(ExitError, "--drivers: unknown driver %q (use docker, exec, qemu, wasm, null)", name)
		}
	}
	labels := map[string]string{}
	for k, v := range f.labels {
		labels[k] = v
	}
	a, err := agent.New(agent.Config{
		Servers: servers, DataDir: dataDir, NodeName: f.nodeName, NodeAddress: f.nodeAddress,
		HTTPAddr: f.agentAddr, Class: f.class, Pool: f.pool, Labels: labels,
		CPUOverride: f.cpu, MemoryOverride: f.memory,
		Drivers: drivers, Version: Version,
		AuditInterval: f.auditInterval, DockerDaemonConfig: f.dockerDaemonConfig,
		TLS: agentTLS, Token: f.token, LB: f.net.agentConfig(), Resolver: f.net.resolverConfig(),
		GPU:            agent.GPUConfig{Runtime: nvml.Open(), ManageMIG: f.gpuManage, MIGIdle: f.gpuMIGIdle, MPSPipeDir: f.mpsPipeDir, SysfsRoot: f.sysfsRoot},
		SampleInterval: f.sampleEvery,
		BIOSUUIDFile:   f.vs.biosUUIDFile,
		Stream:         f.stream,
	}, log.With("component", "agent"))
	if err != nil {
		return nil, exitf(ExitError, "%v", err)
	}
	return a, nil
}

func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// serving is a started server of `gantry dev` or `gantry server`.
type serving struct {
	ctx    context.Context // ends at SIGINT or SIGTERM
	cancel context.CancelFunc
	log    *slog.Logger
	srv    *server.Server
	close  func() // the state store, then the signal context
}

// serve checks the flags, opens the state store and starts the server,
// the start that `gantry dev` and `gantry server` share. The caller defers
// close once it has a serving.
func (f *daemonFlags) serve(cmd *cobra.Command, g *globals) (*serving, error) {
	if err := f.checkSecurity(cmd); err != nil {
		return nil, err
	}
	if err := f.checkServer(); err != nil {
		return nil, err
	}
	log, err := f.logger(g.errw)
	if err != nil {
		return nil, err
	}
	startPprof(log)
	ctx, cancel := signalContext()
	st, closeState, err := f.openState(ctx, log)
	if err != nil {
		cancel()
		return nil, err
	}
	srv, err := f.startServer(ctx, st, log)
	if err != nil {
		closeState()
		cancel()
		return nil, err
	}
	return &serving{ctx: ctx, cancel: cancel, log: log, srv: srv, close: func() { closeState(); cancel() }}, nil
}

func newDevCmd(g *globals) *cobra.Command {
	f := &daemonFlags{}
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a single-node cluster in one process: embedded etcd, server and agent",
		Long: `Run a single-node cluster in one process: an embedded etcd, a server and an
agent with the docker, exec, qemu and wasm drivers. State is kept in --data-dir, so a
restart (even after kill -9) finds every job, and the agent re-attaches to
the containers and processes it started.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sv, err := f.serve(cmd, g)
			if err != nil {
				return err
			}
			defer sv.close()
			ctx, cancel, log, srv := sv.ctx, sv.cancel, sv.log, sv.srv
			a, err := f.newAgent(filepath.Join(f.dataDir, "agent"), []string{srv.Addr()}, log)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.out, "Gantry dev cluster: API %s://%s, node %s (%s), data in %s\n", f.scheme(), srv.Addr(), f.nodeName, api.ShortID(a.NodeID()), f.dataDir)
			fmt.Fprintf(g.out, "Web UI: %s://%s/ui/\n", f.scheme(), srv.Addr())
			errc := make(chan error, 1)
			go func() { errc <- a.Run(ctx) }()
			select {
			case err = <-errc:
			case <-ctx.Done():
				err = <-errc
			}
			// Read before cancel, which ends ctx either way: an agent that
			// failed on its own is an error, one stopped by a signal is not.
			signalled := ctx.Err() != nil
			cancel()
			srv.Wait()
			if err != nil && !signalled {
				return exitf(ExitError, "%v", err)
			}
			log.Info("stopped; running tasks keep running and are adopted at the next start")
			return nil
		},
	}
	f.addCommon(cmd, "dev")
	f.addServer(cmd)
	f.addAgent(cmd, false)
	f.addSecurity(cmd, true, true)
	return cmd
}

func newServerCmd(g *globals) *cobra.Command {
	f := &daemonFlags{}
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run a server: HTTP API, scheduler and state on etcd (embedded unless --etcd-endpoints)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sv, err := f.serve(cmd, g)
			if err != nil {
				return err
			}
			defer sv.close()
			srv := sv.srv
			fmt.Fprintf(g.out, "Gantry server: API %s://%s, web UI %s://%s/ui/, data in %s\n", f.scheme(), srv.Addr(), f.scheme(), srv.Addr(), f.dataDir)
			<-sv.ctx.Done()
			srv.Wait()
			return nil
		},
	}
	f.addCommon(cmd, "server")
	f.addServer(cmd)
	f.addSecurity(cmd, true, false)
	return cmd
}

func newAgentCmd(g *globals) *cobra.Command {
	f := &daemonFlags{}
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run an agent: register this node and run the work the servers assign to it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.checkSecurity(cmd); err != nil {
				return err
			}
			log, err := f.logger(g.errw)
			if err != nil {
				return err
			}
			startPprof(log)
			ctx, cancel := signalContext()
			defer cancel()
			a, err := f.newAgent(f.dataDir, f.servers, log)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.out, "Gantry agent: node %s (%s), servers %s\n", f.nodeName, api.ShortID(a.NodeID()), strings.Join(f.servers, ","))
			if err := a.Run(ctx); err != nil && ctx.Err() == nil {
				return exitf(ExitError, "%v", err)
			}
			return nil
		},
	}
	f.addCommon(cmd, "agent")
	f.addAgent(cmd, true)
	f.addSecurity(cmd, false, false)
	return cmd
}

// newWasmRunCmd runs one WebAssembly module for the wasm driver, under
// the exec driver's executor.
func newWasmRunCmd() *cobra.Command {
	return &cobra.Command{
		Use:                wasmdriver.RunnerCommand,
		Hidden:             true,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if code := wasmdriver.RunModule(args); code != 0 {
				return errSilent{code}
			}
			return nil
		},
	}
}

// newExecutorCmd is the exec driver's supervisor: the agent starts it
// (the same binary) for every exec task so the task survives the agent.
func newExecutorCmd() *cobra.Command {
	return &cobra.Command{
		Use:                "executor",
		Hidden:             true,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if code := execdriver.RunExecutor(args); code != 0 {
				return errSilent{code}
			}
			return nil
		},
	}
}

// maxHeartbeats maps the flag to server.Config: there 0 means the
// default, so a 0 given on the command line (growth off) becomes -1.
// overloadThresholds maps the flags to server.Config: there 0 means the
// default and negative leaves the input out; a flag of 0 means "not an
// input".
func overloadThresholds(t overload.Thresholds) overload.Thresholds {
	if t.EvalBacklog <= 0 {
		t.EvalBacklog = -1
	}
	if t.ReportLag <= 0 {
		t.ReportLag = -1
	}
	if t.HeartbeatLag <= 0 {
		t.HeartbeatLag = -1
	}
	return t
}

func maxHeartbeats(v float64) float64 {
	if v <= 0 {
		return -1
	}
	return v
}
