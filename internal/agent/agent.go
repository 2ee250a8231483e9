package agent

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gantryhq/gantry/internal/agent/tasklife"
	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/apiclient"
	"github.com/gantryhq/gantry/internal/driver"
	"github.com/gantryhq/gantry/internal/lb"
	"github.com/gantryhq/gantry/internal/lifecycle"
	"github.com/gantryhq/gantry/internal/metrics"
	"github.com/google/uuid"
)

// Config configures an agent.
type Config struct {
	Servers     []string // server API addresses
	DataDir     string   // node ID and allocation directories live here
	NodeName    string
	NodeAddress string // IP task ports bind to and health checks dial
	HTTPAddr    string // agent API (logs, exec), e.g. 127.0.0.1:7701
	Class       string
	Pool        string
	Labels      map[string]string
	Reserved    api.NodeResources
	PortRange   api.PortRange
	// CPUOverride and MemoryOverride replace the fingerprinted capacity
	// (millicores, MiB) when positive.
	CPUOverride    int
	MemoryOverride int
	Drivers        []driver.Driver
	// TLS, when set, makes the agent speak mutual TLS: Client to the
	// servers, Server for its own API (which only servers may call for
	// logs and exec).
	TLS *TLSConfig
	// Token is presented to the servers when ACLs are on and TLS is off
	// (it needs node-write); with TLS the agent certificate suffices.
	Token string
	// Transport, when set, carries the agent's requests to the servers
	// (the load tool shares one HTTP/2 transport among many agents).
	Transport http.RoundTripper
	// Stream makes the agent speak the node stream (POST
	// /v1/nodes/stream): its allocations, reports and heartbeats travel
	// over one long-lived request instead of a long-poll, a request per
	// report and one per heartbeat. Against servers that answer the
	// stream 404 (they predate it) the agent falls back to the long-poll
	// endpoints.
	Stream bool
	// NodeStream, when set with Stream, is the stream the agent uses,
	// shared with other agents of the process (the load tool's simulated
	// nodes share one per connection); nil: the agent opens its own.
	NodeStream *apiclient.NodeStream
	// NoAPI skips the agent's own API listener (logs, exec, metrics):
	// for simulated nodes of the load tool only.
	NoAPI bool
	// EventTasks steps the tasks of drivers whose calls return at once (a
	// driver.ExitNotifier: the null driver) from one loop per agent
	// (taskloop.go) instead of a goroutine per task; tasks of other
	// drivers keep theirs. For the load tool's simulated nodes, whose
	// tasks would otherwise hold a million goroutines.
	EventTasks bool
	// Jobs, when set, is shared by the agents of one process, which then
	// keep one copy of each job version their allocations run instead of
	// one per agent (each agent still fetches it from the servers). For
	// the load tool's simulated nodes.
	Jobs *JobShare
	// KillTimeout is how long a task gets to exit after SIGTERM.
	KillTimeout time.Duration
	Version     string
	// AuditInterval is how often the agent audits every container of its
	// Docker engine (audit.go); 0 means DefaultAuditInterval, negative
	// turns the audit off.
	AuditInterval time.Duration
	// DockerDaemonConfig is the engine's daemon.json, read for the
	// settings its API does not report; empty means
	// DefaultDockerDaemonConfig.
	DockerDaemonConfig string
	// GPU is how the agent finds and uses the node's GPUs.
	GPU GPUConfig
	// Metrics is the registry served at /metrics; nil: a new one. The
	// agent adds its node, GPU and allocation collector to it.
	Metrics *metrics.Registry
	// SampleInterval is how often the node's usage is read; 0 means
	// DefaultSampleInterval.
	SampleInterval time.Duration
	// FingerprintInterval is how often the agent looks at its drivers and
	// GPUs again, to update the node when they changed; 0 means
	// DefaultFingerprintInterval, negative only when a GPU event asks
	// (the load tool's simulated nodes, whose null driver never changes).
	FingerprintInterval time.Duration
	// LB runs a load balancer on this node (proxy.go).
	LB LBConfig
	// Resolver runs a DNS resolver for containers beside the load
	// balancer (resolver.go).
	Resolver ResolverConfig
	// BIOSUUIDFile is where the machine's BIOS UUID is read, reported as
	// the node attribute bios.uuid so that the servers can match the node
	// to its vSphere VM; "" means /sys/class/dmi/id/product_uuid. Tests
	// point it at a file holding a simulated VM's UUID.
	BIOSUUIDFile string
}

// Agent runs the allocations the servers assign to its node.
type Agent struct {
	cfg      Config
	log      *slog.Logger
	srv      *apiclient.Client
	stream   *apiclient.NodeStream // nil unless Config.Stream
	drivers  map[string]driver.Driver
	nodeID   string
	httpAddr string
	allocDir string

	regMu sync.Mutex // guards node and heartbeatEvery, set by each registration
	node  *api.Node

	mu        sync.Mutex
	runners   map[string]*allocRunner
	recovered map[string]map[string][]*driver.Handle // alloc → task → handles found at start

	updates        *updater
	heartbeatEvery time.Duration
	heartbeatTTL   time.Duration // as the servers handed it at registration

	contactMu   sync.Mutex
	contact     contact       // the link to the servers (disconnect.go)
	contactLost chan struct{} // signalled when contact.Failed turns true
	jobs        *jobCache
	audit       auditor
	wg          sync.WaitGroup

	gpus     *gpuManager
	sampler  *sampler
	metrics  *metrics.Registry
	fpKick   chan struct{} // a fingerprint is due now (a GPU changed)
	lbMu     sync.Mutex
	lb       *lb.Manager      // nil unless LB.Enabled
	resolver *driver.Resolver // nil unless the resolver for containers runs
	clock    clock            // the task runners' and the disconnect check's time: the wall clock, a fake in tests
	loop     *taskLoop        // steps the tasks of ExitNotifier drivers; nil unless Config.EventTasks
}

// New prepares an agent: its data directory and node identity.
func New(cfg Config, log *slog.Logger) (*Agent, error) {
	if len(cfg.Servers) == 0 {
		return nil, errors.New("agent needs at least one server address (--servers)")
	}
	if cfg.KillTimeout == 0 {
		cfg.KillTimeout = 5 * time.Second
	}
	if cfg.NodeName == "" {
		cfg.NodeName, _ = os.Hostname()
	}
	if cfg.NodeAddress == "" {
		cfg.NodeAddress = "127.0.0.1"
	}
	if cfg.PortRange.Min == 0 {
		cfg.PortRange = api.DefaultPortRange
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("create agent data dir %s: %w", cfg.DataDir, err)
	}
	id, err := loadNodeID(filepath.Join(cfg.DataDir, "node-id"))
	if err != nil {
		return nil, err
	}
	a := &Agent{
		cfg:       cfg,
		log:       log,
		srv:       apiclient.New(apiclient.Options{Servers: cfg.Servers, TLS: cfg.TLS.client(), Token: cfg.Token, Transport: cfg.Transport}),
		drivers:   map[string]driver.Driver{},
		nodeID:    id,
		allocDir:  filepath.Join(cfg.DataDir, "allocs"),
		runners:   map[string]*allocRunner{},
		recovered: map[string]map[string][]*driver.Handle{},
		clock:     wallClock,
	}
	for _, d := range cfg.Drivers {
		a.drivers[d.Name()] = d
	}
	a.updates = newUpdater(a.reportAllocs, a.log, a.clock)
	a.jobs = &jobCache{srv: a.srv, jobs: map[string]*api.Job{}, shared: cfg.Jobs}
	if cfg.EventTasks {
		a.loop = newTaskLoop()
	}
	a.fpKick = make(chan struct{}, 1)
	a.contactLost = make(chan struct{}, 1)
	a.gpus = newGPUManager(cfg.GPU, cfg.DataDir, log, a.kickFingerprint)
	a.sampler = newSampler(a)
	a.metrics = cfg.Metrics
	if a.metrics == nil {
		a.metrics = metrics.NewRegistry()
	}
	if err := a.metrics.Register(metrics.NewNodeCollector(a.sampler.latest)); err != nil {
		return nil, fmt.Errorf("register the node metrics: %w", err)
	}
	if err := a.metrics.Register(a.AuditCollector()); err != nil {
		return nil, fmt.Errorf("register the audit metrics: %w", err)
	}
	return a, nil
}

// loadNodeID reads the node's ID, creating it on first start so the node
// keeps its identity (and its allocations) across restarts.
func loadNodeID(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil {
		if id := strings.TrimSpace(string(b)); id != "" {
			return id, nil
		}
	}
	id := uuid.NewString()
	if err := os.WriteFile(path, []byte(id+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("save node id to %s: %w", path, err)
	}
	return id, nil
}

// NodeID is this node's identity.
func (a *Agent) NodeID() string { return a.nodeID }

// Metrics is the registry the agent serves at /metrics; others add their
// collectors to it with Register.
func (a *Agent) Metrics() *metrics.Registry { return a.metrics }

// Run registers the node and runs its allocations until ctx ends. Tasks
// keep running when the agent stops; a restarted agent re-attaches.
func (a *Agent) Run(ctx context.Context) error {
	if err := os.MkdirAll(a.allocDir, 0o755); err != nil {
		return fmt.Errorf("create allocation dir %s: %w", a.allocDir, err)
	}
	if !a.cfg.NoAPI {
		ln, err := net.Listen("tcp", a.cfg.HTTPAddr)
		if err != nil {
			return fmt.Errorf("listen for the agent API on %s: %w (pick another with --agent-addr)", a.cfg.HTTPAddr, err)
		}
		a.httpAddr = advertise(ln.Addr().(*net.TCPAddr), a.cfg.NodeAddress)
		if a.cfg.TLS != nil {
			ln = tls.NewListener(ln, a.cfg.TLS.Server)
		}
		hs := &http.Server{Handler: a.routes(), ReadHeaderTimeout: 10 * time.Second}
		go hs.Serve(ln)
		defer hs.Close()
	}

	// Register and start heartbeating before looking for the tasks of an
	// earlier run: that scan can take long (a container engine with many
	// containers), and a node silent for its heartbeat TTL is marked down
	// and all its work replaced. The tasks found are needed only by the
	// first sync (watchLoop), which waits for the scan.
	if a.loop != nil {
		// Tasks keep running when the agent stops: their loop just ends.
		context.AfterFunc(ctx, a.loop.close)
	}
	if a.cfg.Stream {
		a.stream = a.cfg.NodeStream
		if a.stream == nil {
			a.stream = a.srv.OpenNodeStream(ctx, apiclient.NodeStreamOptions{OnError: func(err error) {
				a.log.Warn("node stream", "err", err)
			}})
			defer a.stream.Close()
		}
	}
	if err := a.registerUntilDone(ctx); err != nil {
		return err
	}
	a.wg.Add(1)
	go func() { defer a.wg.Done(); a.heartbeatLoop(ctx) }()
	a.recoverTasks(ctx)
	a.startLB(ctx)
	a.startResolver(ctx)
	a.wg.Add(7)
	go func() { defer a.wg.Done(); a.fingerprintLoop(ctx) }()
	go func() { defer a.wg.Done(); a.disconnectLoop(ctx) }()
	go func() { defer a.wg.Done(); a.updates.run(ctx) }()
	go func() { defer a.wg.Done(); a.auditLoop(ctx) }()
	go func() { defer a.wg.Done(); a.gpus.watchXID(ctx) }()
	go func() { defer a.wg.Done(); a.migReapLoop(ctx) }()
	go func() {
		defer a.wg.Done()
		if a.cfg.SampleInterval < 0 {
			return // sampling off (simulated nodes)
		}
		a.sampler.run(ctx, cmp.Or(a.cfg.SampleInterval, DefaultSampleInterval))
	}()
	a.watchLoop(ctx)
	a.wg.Wait()
	a.mu.Lock()
	for _, r := range a.runners {
		r.detach()
	}
	a.mu.Unlock()
	return nil
}

// recoverTasks collects the tasks the drivers still know of for this node.
func (a *Agent) recoverTasks(ctx context.Context) {
	for _, d := range a.drivers {
		hs, err := d.Recover(ctx, a.nodeID)
		if err != nil {
			a.log.Warn("could not recover tasks", "driver", d.Name(), "err", err)
			continue
		}
		for _, h := range hs {
			byTask := a.recovered[h.AllocID]
			if byTask == nil {
				byTask = map[string][]*driver.Handle{}
				a.recovered[h.AllocID] = byTask
			}
			byTask[h.Task] = append(byTask[h.Task], h)
		}
		if len(hs) > 0 {
			a.log.Info("found tasks from an earlier run", "driver", d.Name(), "count", len(hs))
		}
	}
}

func (a *Agent) registerUntilDone(ctx context.Context) error {
	backoff := 500 * time.Millisecond
	for {
		err := a.register(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		a.log.Warn("cannot register with the servers; retrying", "servers", a.cfg.Servers, "err", err)
		sleep(ctx, backoff)
		backoff = min(backoff*2, 10*time.Second)
	}
}

func (a *Agent) register(ctx context.Context) error {
	n := a.fingerprint(ctx)
	sent := a.clock.now()
	resp, err := a.srv.RegisterNode(ctx, n)
	a.noteContact(err == nil, sent)
	if err != nil {
		return err
	}
	a.regMu.Lock()
	a.node = n
	a.heartbeatEvery = max(resp.HeartbeatTTL.D()/3, 500*time.Millisecond)
	a.heartbeatTTL = resp.HeartbeatTTL.D()
	a.regMu.Unlock()
	a.log.Info("node registered", "node", n.Name, "id", a.nodeID, "drivers", driverSummary(n))
	return nil
}

func driverSummary(n *api.Node) string {
	var parts []string
	for name, d := range n.Drivers {
		if d.Healthy {
			parts = append(parts, name)
		} else {
			parts = append(parts, name+" (unavailable: "+d.Reason+")")
		}
	}
	return strings.Join(parts, ", ")
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func (a *Agent) heartbeatLoop(ctx context.Context) {
	for ctx.Err() == nil {
		a.regMu.Lock()
		every := a.heartbeatEvery
		a.regMu.Unlock()
		sleep(ctx, every)
		sent := a.clock.now()
		err := a.heartbeat(ctx, a.sampler.unsent(), every)
		if apiclient.StatusOf(err) == http.StatusBadRequest {
			// A server older than this agent refuses the sample: beat
			// without it.
			err = a.heartbeat(ctx, nil, every)
		}
		if ctx.Err() == nil {
			a.noteContact(err == nil, sent)
		}
		switch {
		case err == nil:
		case apiclient.IsNotFound(err):
			a.log.Warn("server no longer knows this node; registering again", "reason", err)
			if err := a.registerUntilDone(ctx); err != nil {
				return
			}
		default:
			if ctx.Err() == nil {
				a.log.Warn("heartbeat failed", "err", err)
			}
		}
	}
}

// streaming is the node stream, when the agent speaks it and the
// servers serve it; nil otherwise.
func (a *Agent) streaming() *apiclient.NodeStream {
	if a.stream == nil || a.stream.IsUnsupported() {
		return nil
	}
	return a.stream
}

// heartbeat renews the node's lease over the stream, or its endpoint.
func (a *Agent) heartbeat(ctx context.Context, sample *api.NodeSample, timeout time.Duration) error {
	if st := a.streaming(); st != nil {
		err := st.Heartbeat(ctx, a.nodeID, sample, timeout)
		if !errors.Is(err, apiclient.ErrStreamUnsupported) {
			return err
		}
	}
	return a.srv.Heartbeat(ctx, a.nodeID, sample, timeout)
}

// reportAllocs sends reports over the stream, or to their endpoint.
func (a *Agent) reportAllocs(ctx context.Context, updates []api.AllocUpdate) error {
	if st := a.streaming(); st != nil {
		err := st.Report(ctx, a.nodeID, updates)
		if !errors.Is(err, apiclient.ErrStreamUnsupported) {
			return err
		}
	}
	return a.srv.ReportAllocs(ctx, a.nodeID, updates)
}

// DefaultFingerprintInterval is how often the agent looks at its drivers
// and GPUs again.
const DefaultFingerprintInterval = 15 * time.Second

// fingerprintLoop re-registers when the node's drivers change (an engine
// stopped or came back) or its GPUs do (health, MIG instances), at once
// when kicked.
func (a *Agent) fingerprintLoop(ctx context.Context) {
	var every <-chan time.Time // nil: never by the clock
	if d := cmp.Or(a.cfg.FingerprintInterval, DefaultFingerprintInterval); d > 0 {
		t := time.NewTicker(d)
		defer t.Stop()
		every = t.C
	}
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-every:
		case <-a.fpKick:
		}
		n := a.fingerprint(ctx)
		a.regMu.Lock()
		changed := a.node == nil || !reflect.DeepEqual(a.node.Drivers, n.Drivers) || !reflect.DeepEqual(a.node.GPUs, n.GPUs)
		a.regMu.Unlock()
		if changed && ctx.Err() == nil {
			a.log.Info("drivers or GPUs changed; updating the node", "drivers", driverSummary(n), "gpus", gpuSummary(n))
			if err := a.register(ctx); err != nil {
				a.log.Warn("update node", "err", err)
			}
		}
	}
}

func (a *Agent) kickFingerprint() {
	select {
	case a.fpKick <- struct{}{}:
	default:
	}
}

func gpuSummary(n *api.Node) string {
	if len(n.GPUs) == 0 {
		return n.Attributes["gpu.status"]
	}
	var parts []string
	for _, g := range n.GPUs {
		s := fmt.Sprintf("%d:%s", g.Index, g.Model)
		if g.MIGEnabled {
			s += fmt.Sprintf(" (MIG, %d instances)", len(g.MIGInstances))
		}
		if g.Unhealthy {
			s += " UNHEALTHY: " + g.HealthReason
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

// migReapLoop destroys idle MIG instances the agent created, on GPUs it
// manages.
func (a *Agent) migReapLoop(ctx context.Context) {
	if len(a.cfg.GPU.ManageMIG) == 0 || a.cfg.GPU.Runtime == nil {
		return
	}
	every := min(max(a.gpus.cfg.MIGIdle/4, time.Second), time.Minute)
	for ctx.Err() == nil {
		sleep(ctx, every)
		if ctx.Err() == nil {
			a.gpus.reap(time.Now(), a.instancesInUse())
		}
	}
}

// allocWatch is what the agent knows of its allocations as the servers
// decided them: each answer carries only what changed after index, plus
// every ID when one may have left.
type allocWatch struct {
	index int64
	known map[string]*api.Allocation
	// ended holds the known allocations the node is not to run
	// (tasklife.WantOf is not WantRun): every sync looks at them again,
	// as it looks at the ones that changed.
	ended  map[string]*api.Allocation
	first  bool // no consistent answer yet: orphans wait
	warned bool
}

// newAllocWatch is a watch that knows no allocation yet.
func newAllocWatch() *allocWatch {
	return &allocWatch{known: map[string]*api.Allocation{}, ended: map[string]*api.Allocation{}, first: true}
}

// put records an allocation as the servers now hold it.
func (w *allocWatch) put(al *api.Allocation) {
	w.known[al.ID] = al
	if tasklife.WantOf(al) == tasklife.WantRun {
		delete(w.ended, al.ID)
	} else {
		w.ended[al.ID] = al
	}
}

// drop forgets an allocation the servers no longer hold for the node.
func (w *allocWatch) drop(id string) {
	delete(w.known, id)
	delete(w.ended, id)
}

// all lists the known allocations, in no order.
func (w *allocWatch) all() []*api.Allocation {
	out := make([]*api.Allocation, 0, len(w.known))
	for _, al := range w.known {
		out = append(out, al)
	}
	return out
}

// watchLoop follows the node's allocations: over the node stream when
// the agent speaks it and the servers serve it, else with blocking
// queries (long-polls).
func (a *Agent) watchLoop(ctx context.Context) {
	w := newAllocWatch()
	if a.stream != nil {
		if a.streamWatch(ctx, w) {
			return
		}
		a.log.Info("the servers do not serve the node stream (they predate it): following allocations with long-polls")
	}
	backoff := 500 * time.Millisecond
	for ctx.Err() == nil {
		resp, err := a.srv.NodeAllocs(ctx, a.nodeID, w.index, 15*time.Second)
		if err != nil {
			if ctx.Err() == nil {
				a.log.Warn("cannot fetch allocations; retrying", "err", err)
				sleep(ctx, backoff)
				backoff = min(backoff*2, 5*time.Second)
			}
			continue
		}
		backoff = 500 * time.Millisecond
		if resp.Index < w.index {
			// A server whose view lags (or was rebuilt) answered: ask it
			// for everything rather than trust a delta.
			w.index = 0
			continue
		}
		a.apply(ctx, w, resp)
	}
}

// streamWatch follows the node's allocations over the stream until ctx
// ends (true) or the servers answer that they do not serve it (false).
// The stream resumes from the last index by itself: a server answers a
// resubscription only after a linearizable read, and answers in full
// (with every ID) when it knows less than the index, so every answer is
// applied as it comes.
func (a *Agent) streamWatch(ctx context.Context, w *allocWatch) bool {
	sub := a.stream.Subscribe(a.nodeID, w.index)
	defer sub.Close()
	for {
		resp, err := sub.Next(ctx)
		switch {
		case errors.Is(err, apiclient.ErrStreamUnsupported):
			return false
		case err != nil:
			return true
		}
		a.apply(ctx, w, resp)
	}
}

// apply brings w and the runners in line with one answer.
func (a *Agent) apply(ctx context.Context, w *allocWatch, resp *api.NodeAllocsResponse) {
	for _, al := range resp.Allocs {
		if al != nil {
			al.Intern()
		}
	}
	w.index = resp.Index
	for _, al := range resp.Allocs {
		w.put(al)
	}
	var gone []string
	if resp.IDs != nil {
		keep := make(map[string]bool, len(resp.IDs))
		for _, id := range resp.IDs {
			keep[id] = true
		}
		for id := range w.known {
			if !keep[id] {
				w.drop(id)
				gone = append(gone, id)
			}
		}
	}
	// Orphans are removed on the first consistent answer only (see
	// api.NodeAllocsResponse.Consistent); until then what was found
	// at start and the answers omit is kept.
	orphans := w.first && resp.Consistent
	if w.first && !resp.Consistent && !w.warned {
		w.warned = true
		a.log.Info("the servers' answer may lag: tasks of the earlier run that it omits are kept until an answer reflects the latest state")
	}
	if w.first || a.adopting() {
		a.sync(ctx, w.all(), orphans)
	} else {
		a.syncChanged(ctx, w, resp.Allocs, gone)
	}
	if orphans {
		w.first = false
	}
}

// adopting reports whether tasks found at start still wait for a
// decision (tasklife.PlanAdoption), which only a sync of every
// allocation makes.
func (a *Agent) adopting() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.recovered) > 0
}

// syncChanged is sync for an answer once nothing found at start waits
// for a decision: it looks only at the allocations that changed, the
// ones the node is not to run and the ones the servers no longer hold,
// which is what sync would change. An allocation that did not change
// and runs has a runner that already holds it.
func (a *Agent) syncChanged(ctx context.Context, w *allocWatch, changed []*api.Allocation, gone []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var done map[string]bool
	if len(w.ended) > 0 {
		done = make(map[string]bool, len(changed))
	}
	for _, al := range changed {
		if done != nil {
			done[al.ID] = true
		}
		a.syncAllocLocked(ctx, al, nil)
	}
	for id, al := range w.ended {
		if !done[id] {
			a.syncAllocLocked(ctx, al, nil)
		}
	}
	removed := false
	for _, id := range gone {
		if r := a.runners[id]; r != nil {
			delete(a.runners, id)
			removed = true
			go r.destroy(context.WithoutCancel(ctx))
		}
	}
	if removed {
		a.jobs.retain(w.all())
	}
}

// sync brings the runners in line with the server's allocations. What
// becomes of the tasks found at start is the adoption planner's decision
// (tasklife.PlanAdoption); with removeOrphans (the answer is consistent),
// the tasks of allocations the answer omits are removed, otherwise they
// wait for a later answer.
func (a *Agent) sync(ctx context.Context, allocs []*api.Allocation, removeOrphans bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	handles := a.recoveredList()
	var held map[string]tasklife.Want
	if len(handles) > 0 {
		held = make(map[string]tasklife.Want, len(allocs))
		for _, al := range allocs {
			held[al.ID] = tasklife.WantOf(al)
		}
	}
	// handed: the tasks found at start that go to a new runner (adopted,
	// restarted, kept for logs, and the duplicates its runner removes
	// before it starts); the others are removed now or left for later.
	handed := map[string]map[string][]*driver.Handle{}
	left := map[string]map[string][]*driver.Handle{}
	var remove []*driver.Handle
	found := make([]tasklife.Found, len(handles))
	for i, h := range handles {
		found[i] = foundOf(h)
	}
	for i, ad := range tasklife.PlanAdoption(found, held, removeOrphans) {
		h := handles[i]
		switch {
		case ad.Runner:
			addHandle(handed, h)
		case ad.Action == tasklife.Leave:
			addHandle(left, h)
		default: // Destroy
			if _, ok := held[h.AllocID]; !ok {
				a.log.Warn("removing task of an allocation this node no longer has", "alloc", api.ShortID(h.AllocID), "task", h.Task, "reason", ad.Reason)
			}
			remove = append(remove, h)
		}
	}
	a.recovered = left
	a.destroyHandles(ctx, remove)

	seen := make(map[string]bool, len(allocs))
	for _, al := range allocs {
		seen[al.ID] = true
		a.syncAllocLocked(ctx, al, handed[al.ID])
	}
	removed := false
	for id, r := range a.runners {
		if !seen[id] {
			delete(a.runners, id)
			removed = true
			go r.destroy(context.WithoutCancel(ctx))
		}
	}
	if removed {
		a.jobs.retain(allocs)
	}
}

// syncAllocLocked brings one allocation's runner in line: the runner
// gets the allocation as the servers now hold it, or a runner starts for
// one to run (or one that finished and had tasks found at start, handed
// here, to keep for their logs); one stopped before it ran is reported
// complete. a.mu is held.
func (a *Agent) syncAllocLocked(ctx context.Context, al *api.Allocation, handed map[string][]*driver.Handle) {
	if r := a.runners[al.ID]; r != nil {
		r.update(al)
		return
	}
	switch tasklife.WantOf(al) {
	case tasklife.WantRun:
		r := newAllocRunner(a, al, handed)
		a.runners[al.ID] = r
		go r.run(ctx)
	case tasklife.WantStop:
		// Stopped before it ran here (its tasks found at start are
		// removed by sync).
		if lifecycle.ClientAllowed(lifecycle.Of(al), api.AllocComplete) {
			a.updates.push(api.AllocUpdate{ID: al.ID, ClientStatus: api.AllocComplete, ClientReason: "stopped before it ran on this node", TaskStates: al.TaskStates})
		}
	default:
		// Finished before this agent started: a runner keeps what is
		// left for its logs, and runs nothing.
		if len(handed) > 0 {
			r := newAllocRunner(a, al, handed)
			a.runners[al.ID] = r
			go r.run(ctx)
		}
	}
}

// recoveredList is the tasks found at start not yet decided on, in a
// stable order (allocation, task, handle ID).
func (a *Agent) recoveredList() []*driver.Handle {
	var out []*driver.Handle
	for _, byTask := range a.recovered {
		for _, hs := range byTask {
			out = append(out, hs...)
		}
	}
	slices.SortStableFunc(out, func(x, y *driver.Handle) int {
		return cmp.Or(cmp.Compare(x.AllocID, y.AllocID), cmp.Compare(x.Task, y.Task))
	})
	return out
}

func addHandle(m map[string]map[string][]*driver.Handle, h *driver.Handle) {
	if m[h.AllocID] == nil {
		m[h.AllocID] = map[string][]*driver.Handle{}
	}
	m[h.AllocID][h.Task] = append(m[h.AllocID][h.Task], h)
}

// destroyHandles stops (if running) and removes tasks found at start, in
// the background.
func (a *Agent) destroyHandles(ctx context.Context, hs []*driver.Handle) {
	for _, h := range hs {
		d := a.drivers[h.Driver]
		if d == nil {
			continue
		}
		go func() {
			if h.Running {
				d.Stop(ctx, h, a.cfg.KillTimeout)
			}
			if err := d.Destroy(ctx, h); err != nil {
				a.log.Warn("destroy task", "alloc", api.ShortID(h.AllocID), "task", h.Task, "err", err)
			}
		}()
	}
}

// runner returns the runner of an allocation.
func (a *Agent) runner(id string) *allocRunner {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.runners[id]
}

// advertise is the address servers use to reach the agent's API: the
// listener's, with an unspecified IP (0.0.0.0) replaced by the node
// address.
func advertise(l *net.TCPAddr, nodeAddr string) string {
	host := l.IP.String()
	if l.IP.IsUnspecified() && nodeAddr != "" {
		host = nodeAddr
	}
	return net.JoinHostPort(host, fmt.Sprint(l.Port))
}

// TLSConfig holds the agent's two TLS configurations.
type TLSConfig struct {
	Client *tls.Config // to the servers
	Server *tls.Config // for its own API
}

func (t *TLSConfig) client() *tls.Config {
	if t == nil {
		return nil
	}
	return t.Client
}
