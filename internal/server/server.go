package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gantryhq/gantry/internal/metrics"
	"github.com/gantryhq/gantry/internal/scheduler"
	"github.com/gantryhq/gantry/internal/scheduler/policy"
	"github.com/gantryhq/gantry/internal/server/acladmin"
	"github.com/gantryhq/gantry/internal/server/applier"
	"github.com/gantryhq/gantry/internal/server/defragrun"
	"github.com/gantryhq/gantry/internal/server/isolation"
	"github.com/gantryhq/gantry/internal/server/nodehistory"
	"github.com/gantryhq/gantry/internal/server/overload"
	"github.com/gantryhq/gantry/internal/server/ownwrites"
	"github.com/gantryhq/gantry/internal/server/vspheremon"
	"github.com/gantryhq/gantry/internal/state"
)

// Config configures a server.
type Config struct {
	// ID identifies this server in elections; stable across restarts.
	ID string
	// HTTPAddr is where the API listens, e.g. 127.0.0.1:7700.
	HTTPAddr string
	// AdvertiseAddr is where the other servers reach this one's API
	// (host:port or a URL) to forward what only the leader can answer;
	// empty: the listener's address, unless it is a wildcard (forward.go).
	AdvertiseAddr string
	// HeartbeatTTL is how long a node may stay silent before it is down,
	// at least: it grows with the cluster (MaxHeartbeatsPerSecond).
	HeartbeatTTL time.Duration
	// MaxHeartbeatsPerSecond bounds the heartbeats all nodes together send:
	// the TTL handed to a registering node grows to keep them under it
	// (HeartbeatTTL, the function). 0 means
	// DefaultMaxHeartbeatsPerSecond; negative turns the growth off.
	MaxHeartbeatsPerSecond float64
	// LostBatchGrace is how long batch work on a down node waits for the
	// node to come back before it is replaced elsewhere.
	LostBatchGrace time.Duration
	// Scheduler places work; nil means the default scheduler, whose GPU
	// scorer GPUPolicy names.
	Scheduler scheduler.Scheduler
	// GPUPolicy is how the default scheduler places GPU work: one of
	// GPUPolicies, empty for DefaultGPUPolicy (gantry: fragmentation-aware,
	// with the typical tasks learnt from the jobs in the store; see
	// gpuscore.go). Check it with CheckGPUPolicy: New logs an error and
	// uses the default for a name it does not know.
	GPUPolicy string
	// Now is the clock; nil means time.Now. Only the shell reads it: the
	// reconciler and scheduler receive its value.
	Now func() time.Time
	// MaxBodyBytes bounds request bodies; 0 means 4 MiB.
	MaxBodyBytes int64
	// BodyReadTimeout bounds how long a request body may take to arrive
	// once its handler reads it (0: DefaultBodyReadTimeout); the headers
	// have 10 s. BodyBudgetBytes bounds the bytes of all bodies being read
	// at once (0: DefaultBodyBudgetBytes). See body.go.
	BodyReadTimeout time.Duration
	BodyBudgetBytes int64
	// TxnLimits bound one plan transaction (zero: applier.Embedded, the
	// embedded etcd's limits; an existing etcd cluster with its defaults
	// needs applier.External). A plan is cut into transactions only
	// between gangs and preemption sets (see package applier).
	TxnLimits applier.Limits
	// Version is reported by /v1/status.
	Version string
	// TLS, when set, makes the API speak mutual TLS: every client
	// presents a certificate signed by the cluster CA, whose role decides
	// which endpoints it may call.
	TLS *tls.Config
	// ClientTLS is what the server presents when it calls agents (logs,
	// exec).
	ClientTLS *tls.Config
	// ACL requires a token on every endpoint but health.
	ACL bool
	// Metrics is the registry served at /metrics; nil: a new one. The
	// server adds its scheduling, queue and node series to it.
	Metrics *metrics.Registry
	// NodeHistory is how many usage samples are kept per node; 0 means
	// metrics.DefaultHistory.
	NodeHistory int
	// HistoryInterval keeps at most one sample per node per interval (0:
	// every sample a heartbeat brings).
	HistoryInterval time.Duration
	// HistoryFile, when set, keeps the metrics history across restarts:
	// it is loaded at start and saved every HistorySave (default
	// DefaultHistorySave) and at shutdown (package nodehistory).
	HistoryFile string
	HistorySave time.Duration
	// VSphere tunes the virtualization monitor's collectors (package
	// vspheremon).
	VSphere VSphereConfig
	// DefragInterval, when positive, turns the background GPU
	// defragmenter on (package defragrun): the leader does one round of
	// `gantry gpu defrag apply` per interval, moving only replicas of
	// groups with migrate: true, at most DefragMovesPerHour moves started
	// in any hour (0: DefaultDefragMovesPerHour). 0: off.
	DefragInterval     time.Duration
	DefragMovesPerHour int
	// Overload says where each input of the overload level starts to
	// mean overload (overload.go): 0 takes overload.Defaults' value,
	// negative leaves the input out. While overloaded the server answers
	// job submissions 429 with a Retry-After of OverloadRetryAfter (0:
	// DefaultOverloadRetryAfter) doubled per level above 1, hands
	// registering nodes longer heartbeat TTLs, and the leader's node
	// monitor keeps silent nodes ready for longer.
	Overload           overload.Thresholds
	OverloadRetryAfter time.Duration
}

// Server is the HTTP API plus, while it leads, the evaluation broker,
// workers and node monitor.
type Server struct {
	cfg   Config
	store *state.Store
	sched scheduler.Scheduler
	gpu   *gpuLearner // the default scheduler's GPU policy and its input; nil: none learns
	log   *slog.Logger
	now   func() time.Time

	httpSrv  *http.Server
	listener net.Listener
	apiURL   string   // what this server campaigns with, for forwarding (forward.go)
	patterns []string // every route registered, for the authorization test
	mounts   []mount  // handlers mounted from outside (the web UI), before Start

	leaderHTTPOnce sync.Once
	leaderHTTP     *http.Client // forward.go's client of the leader's API

	reports *reportBatcher
	// streams ends every node stream when the server shuts down
	// (stream.go).
	streamsOnce sync.Once
	streams     context.Context
	endStreams  context.CancelFunc
	bodies      *bodyBudget // request bodies in flight (body.go)
	// versionJSON caches the encoded job versions agents fetch.
	versionJSON versionCache
	shapeCache  shapeCache

	// work is the leader's working scheduler cluster and the plans it
	// committed that the view may not hold yet (pipeline.go); only the
	// broker goroutine touches it.
	work struct {
		cluster  *scheduler.Cluster
		capIndex int64
		own      ownwrites.Log
		inflight *inflight
	}

	leaderMu sync.RWMutex
	fence    *state.Fence // non-nil while this server leads

	catalog catalogCache // services, by store index (services.go)

	wg sync.WaitGroup

	registry *metrics.Registry
	met      *serverMetrics
	load     loadState // backpressure (overload.go)

	// The components (each a package of its own).
	vsphere   *vspheremon.Monitor  // the virtualization monitor
	defrag    *defragrun.Runner    // GPU defragmentation
	isolation *isolation.Service   // the container isolation policy: admission and audit
	history   *nodehistory.History // the nodes' usage history
	aclAdmin  *acladmin.Admin      // ACL tokens and policies (authorization stays in auth.go)
}

// VSphereConfig tunes the collectors of every connection.
type VSphereConfig = vspheremon.Config

// DefaultDefragMovesPerHour is the background defragmenter's rate limit
// when Config.DefragMovesPerHour is 0.
const DefaultDefragMovesPerHour = defragrun.DefaultMovesPerHour

// DefaultHistorySave is how often a history kept across restarts is
// written to its file (and once more at shutdown).
const DefaultHistorySave = nodehistory.DefaultSave

// New builds a server over an open store.
func New(cfg Config, store *state.Store, log *slog.Logger) *Server {
	if cfg.HeartbeatTTL == 0 {
		cfg.HeartbeatTTL = 15 * time.Second
	}
	if cfg.MaxHeartbeatsPerSecond == 0 {
		cfg.MaxHeartbeatsPerSecond = DefaultMaxHeartbeatsPerSecond
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = 4 << 20
	}
	if cfg.TxnLimits == (applier.Limits{}) {
		cfg.TxnLimits = applier.Embedded
	}
	if cfg.BodyReadTimeout == 0 {
		cfg.BodyReadTimeout = DefaultBodyReadTimeout
	}
	if cfg.BodyBudgetBytes == 0 {
		cfg.BodyBudgetBytes = DefaultBodyBudgetBytes
	}
	cfg.Overload = overloadThresholds(cfg.Overload)
	if cfg.OverloadRetryAfter <= 0 {
		cfg.OverloadRetryAfter = DefaultOverloadRetryAfter
	}
	s := &Server{cfg: cfg, store: store, sched: cfg.Scheduler, log: log, now: cfg.Now, bodies: newBodyBudget(cfg.BodyBudgetBytes)}
	if s.now == nil {
		s.now = time.Now
	}
	if s.sched == nil {
		name, err := gpuPolicyName(cfg.GPUPolicy)
		if err != nil {
			log.Error("GPU policy not known; using the default", "err", err, "default", DefaultGPUPolicy)
			name = DefaultGPUPolicy
		}
		// The GPU policy is given to each evaluation with its input
		// (gpuInput); the engine's own scorer is the core's BestFit. A
		// learning policy rates every feasible GPU node.
		s.sched, s.gpu = scheduler.New(scheduler.Config{GPUSampleSize: policy.GPUSampleSize(name)}), newGPULearner(name)
	}
	s.registry = cfg.Metrics
	if s.registry == nil {
		s.registry = metrics.NewRegistry()
	}
	s.met = newServerMetrics(s)
	s.registry.MustRegister(append(s.met.collectors(), newStateCollector(s), newClusterCollector(s), newComponentCollector(s), newLoadCollector(s))...)
	// The components: each gets its ports here, mounts its routes in
	// routes (http.go) and runs its loop in Start or, while it leads, in
	// lead (leader.go).
	s.history = nodehistory.New(nodehistory.Ports{Nodes: store, Front: front{s}, FindNode: s.findNode, FindAlloc: s.findAlloc,
		Allow: s.allow, Now: s.now, Log: log},
		nodehistory.Config{Size: cfg.NodeHistory, Interval: cfg.HistoryInterval, File: cfg.HistoryFile, Save: cfg.HistorySave})
	s.vsphere = vspheremon.New(vspheremon.Ports{
		Connections: store, View: store, Nodes: store, Front: front{s},
		EvalJobsOnNode: s.evalJobsOnNode, Latest: s.history.Latest,
		Leading: s.IsLeader, Now: s.now, Log: log,
	}, cfg.VSphere)
	s.registry.MustRegister(s.vsphere.Metrics())
	s.defrag = defragrun.New(defragrun.Ports{View: store, Writer: store, Front: front{s}, Fence: s.leaderFence, NewEval: s.newEval, Now: s.now, Log: log},
		defragrun.Config{Interval: cfg.DefragInterval, MovesPerHour: cfg.DefragMovesPerHour})
	s.isolation = isolation.New(isolation.Ports{Policies: store, Reports: store, Nodes: store, Agents: agents{s}, Front: front{s},
		FindNode: s.findNode, Now: s.now, Log: log})
	s.aclAdmin = acladmin.New(acladmin.Ports{Tokens: store, Policies: store, Front: front{s}, Secret: tokenOf, Now: s.now})
	return s
}

// Addr is the address the API listens on once Start returned.
func (s *Server) Addr() string { return s.listener.Addr().String() }

// Start binds the API listener and starts serving and campaigning for
// leadership in the background until ctx ends.
func (s *Server) Start(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen for the API on %s: %w (is another gantry running? pick another address with --http-addr)", s.cfg.HTTPAddr, err)
	}
	if s.cfg.TLS != nil {
		ln = tls.NewListener(ln, s.cfg.TLS)
	}
	s.listener = ln
	s.apiURL = advertisedURL(s.cfg.AdvertiseAddr, ln.Addr(), s.cfg.TLS != nil)
	if s.cfg.HistoryFile != "" {
		if err := s.history.Load(); err != nil {
			s.log.Warn("metrics history not restored; starting empty", "file", s.cfg.HistoryFile, "err", err)
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			t := time.NewTicker(s.history.SaveEvery())
			defer t.Stop()
			s.history.Run(ctx, t.C)
		}()
	}
	s.httpSrv = &http.Server{Handler: s.routes(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 5 * time.Minute, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)}
	// HTTP/2 too (over TLS by ALPN, and unencrypted with prior
	// knowledge), so many agents' long-polls share few connections.
	s.httpSrv.Protocols = new(http.Protocols)
	s.httpSrv.Protocols.SetHTTP1(true)
	s.httpSrv.Protocols.SetHTTP2(true)
	s.httpSrv.Protocols.SetUnencryptedHTTP2(true)
	s.httpSrv.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: 4096}
	s.streamsCtx()
	s.httpSrv.RegisterOnShutdown(s.endStreams)
	s.reports = newReportBatcher(s)
	s.wg.Add(4)
	go func() {
		defer s.wg.Done()
		s.reports.run(ctx)
	}()
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(overloadSample)
		defer t.Stop()
		s.runOverload(ctx, t.C)
	}()
	go func() {
		defer s.wg.Done()
		if err := s.httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("API server stopped", "err", err)
		}
	}()
	go func() {
		defer s.wg.Done()
		s.runElection(ctx)
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		s.httpSrv.Shutdown(sctx)
	}()
	return nil
}

// Wait blocks until the server has stopped after its context ended.
func (s *Server) Wait() { s.wg.Wait() }

// leaderFence returns the fence of the current leadership, or nil.
func (s *Server) leaderFence() *state.Fence {
	s.leaderMu.RLock()
	defer s.leaderMu.RUnlock()
	return s.fence
}

// IsLeader reports whether this server currently leads.
func (s *Server) IsLeader() bool { return s.leaderFence() != nil }
