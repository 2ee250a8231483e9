package lb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/discovery"
)

// Config configures a Manager.
type Config struct {
	// Address is the IP the service listeners bind, e.g. 0.0.0.0 on an
	// edge node or 127.0.0.1 on a laptop.
	Address string
	// Namespaces limits the services served; empty serves every one.
	Namespaces []string
	// DialTimeout bounds connecting to an endpoint (default 2s).
	DialTimeout time.Duration
	// AccessLog gets one line per request (HTTP) or connection (TCP); nil
	// turns the access log off.
	AccessLog *slog.Logger
	// Log gets the manager's own events.
	Log *slog.Logger
}

// Manager runs one listener per service with an lb block and keeps their
// endpoints in line with the catalog.
type Manager struct {
	cfg       Config
	transport *http.Transport

	mu        sync.Mutex
	listeners map[int]*listener      // by port
	draining  map[string]drainSet    // alloc → when marked
	retired   map[string][]*endpoint // alloc → endpoints gone from the catalog with requests in flight
	bindErr   map[int]time.Time      // port → last failed bind
	catalog   *discovery.Catalog     // of the last Update
	closed    bool
}

type drainSet struct{ since time.Time }

// listener serves one service on one port.
type listener struct {
	port      int
	namespace string
	name      string
	protocol  string
	pool      *pool
	byAlloc   map[string]*endpoint
	ln        net.Listener
	srv       *http.Server
	tcp       *tcpProxy
}

// NewManager returns a manager with no listeners; Update opens them.
func NewManager(cfg Config) *Manager {
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 2 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Address == "" {
		cfg.Address = "127.0.0.1"
	}
	return &Manager{
		cfg: cfg, transport: newTransport(cfg.DialTimeout),
		listeners: map[int]*listener{}, draining: map[string]drainSet{}, bindErr: map[int]time.Time{},
		retired: map[string][]*endpoint{},
	}
}

// Catalog is the catalog of the last Update: an empty one before it.
func (m *Manager) Catalog() *discovery.Catalog {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.catalog == nil {
		return discovery.FromWire(&api.ServiceCatalog{})
	}
	return m.catalog
}

// Port says on which port the manager serves a service, if it has a
// listener for it (one whose port another service took, or that could
// not be bound, has none).
func (m *Manager) Port(namespace, name string) (int, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for port, l := range m.listeners {
		if l.namespace == namespace && l.name == name {
			return port, true
		}
	}
	return 0, false
}

// bindRetry is how long a port that could not be bound is left alone.
const bindRetry = 5 * time.Second

// Update brings the listeners and their endpoints in line with the
// catalog. A port two services claim goes to the first in namespace/name
// order; the other is logged.
func (m *Manager) Update(c *discovery.Catalog) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	m.catalog = c
	want := map[int]*api.ServiceInfo{}
	for _, s := range c.Services {
		if s.LB == nil || !m.serves(s.Namespace) {
			continue
		}
		if other, ok := want[s.LB.Port]; ok {
			m.cfg.Log.Warn("two services want the same load-balancer port; the first keeps it",
				"port", s.LB.Port, "kept", other.Namespace+"/"+other.Name, "ignored", s.Namespace+"/"+s.Name)
			continue
		}
		want[s.LB.Port] = s
	}
	for port, l := range m.listeners {
		s := want[port]
		if s == nil || s.Namespace != l.namespace || s.Name != l.name || s.LB.ProtocolOrDefault() != l.protocol {
			m.closeListener(l)
			delete(m.listeners, port)
		}
	}
	now := time.Now()
	ports := make([]int, 0, len(want))
	for p := range want {
		ports = append(ports, p)
	}
	sort.Ints(ports)
	inCatalog := map[string]bool{}
	for _, port := range ports {
		s := want[port]
		for _, e := range s.Endpoints {
			inCatalog[e.AllocID] = true
		}
		l := m.listeners[port]
		if l == nil {
			if t, ok := m.bindErr[port]; ok && now.Sub(t) < bindRetry {
				continue
			}
			var err error
			if l, err = m.open(s); err != nil {
				m.bindErr[port] = now
				m.cfg.Log.Error("cannot listen for a service", "service", s.Namespace+"/"+s.Name, "port", port, "err", err)
				continue
			}
			delete(m.bindErr, port)
			m.listeners[port] = l
		}
		l.pool.policy.Store(s.LB.PolicyOrDefault())
		m.setEndpoints(l, s.Endpoints)
	}
	for id, eps := range m.retired {
		busy := eps[:0]
		for _, ep := range eps {
			if ep.outstanding.Load() > 0 {
				busy = append(busy, ep)
			}
		}
		if len(busy) == 0 {
			delete(m.retired, id)
		} else {
			m.retired[id] = busy
		}
	}
	// Drain marks outlive the catalog entry for a while, so that an
	// endpoint that comes back in a stale answer stays drained.
	for id, d := range m.draining {
		if !inCatalog[id] && now.Sub(d.since) > 5*time.Minute {
			delete(m.draining, id)
		}
	}
}

func (m *Manager) serves(ns string) bool {
	if len(m.cfg.Namespaces) == 0 {
		return true
	}
	for _, n := range m.cfg.Namespaces {
		if n == ns {
			return true
		}
	}
	return false
}

// setEndpoints replaces a listener's endpoints, keeping the state of the
// ones that stay.
func (m *Manager) setEndpoints(l *listener, eps []api.ServiceEndpoint) {
	next := make([]*endpoint, 0, len(eps))
	byAlloc := make(map[string]*endpoint, len(eps))
	for _, e := range eps {
		addr := net.JoinHostPort(e.Address, strconv.Itoa(e.Port))
		ep := l.byAlloc[e.AllocID]
		if ep == nil || ep.addr != addr {
			ep = &endpoint{alloc: e.AllocID, job: e.Job, group: e.Group, addr: addr}
		}
		if _, ok := m.draining[e.AllocID]; ok {
			ep.draining.Store(true)
		}
		byAlloc[e.AllocID] = ep
		next = append(next, ep)
	}
	// Endpoints that leave with requests in flight are remembered until
	// those finish, so that a drain still waits for them.
	for id, ep := range l.byAlloc {
		if byAlloc[id] != ep && ep.outstanding.Load() > 0 {
			m.retired[id] = append(m.retired[id], ep)
		}
	}
	l.byAlloc = byAlloc
	l.pool.eps.Store(&next)
}

// allocEndpoints returns every endpoint of an allocation: in the
// listeners and retired ones still busy. Call with m.mu held.
func (m *Manager) allocEndpoints(allocID string) []*endpoint {
	var eps []*endpoint
	for _, l := range m.listeners {
		if ep := l.byAlloc[allocID]; ep != nil {
			eps = append(eps, ep)
		}
	}
	return append(eps, m.retired[allocID]...)
}

func (m *Manager) open(s *api.ServiceInfo) (*listener, error) {
	addr := net.JoinHostPort(m.cfg.Address, strconv.Itoa(s.LB.Port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	svc := s.Namespace + "/" + s.Name
	l := &listener{port: s.LB.Port, namespace: s.Namespace, name: s.Name, protocol: s.LB.ProtocolOrDefault(),
		pool: newPool(s.LB.PolicyOrDefault()), byAlloc: map[string]*endpoint{}, ln: ln}
	switch l.protocol {
	case api.LBProtocolTCP:
		l.tcp = newTCPProxy(svc, l.pool, m.cfg.DialTimeout, m.cfg.AccessLog, m.cfg.Log)
		go l.tcp.serve(ln)
	default:
		var protocols http.Protocols
		protocols.SetHTTP1(true)
		protocols.SetUnencryptedHTTP2(true)
		l.srv = &http.Server{
			Handler:           newHTTPProxy(svc, l.pool, m.transport, m.cfg.AccessLog, m.cfg.Log),
			Protocols:         &protocols,
			ReadHeaderTimeout: 30 * time.Second,
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          slog.NewLogLogger(m.cfg.Log.Handler(), slog.LevelDebug),
		}
		go func() {
			if err := l.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				m.cfg.Log.Error("load-balancer listener stopped", "service", svc, "err", err)
			}
		}()
	}
	m.cfg.Log.Info("load balancing a service", "service", svc, "listen", ln.Addr().String(), "protocol", l.protocol, "policy", s.LB.PolicyOrDefault())
	return l, nil
}

// closeListener stops accepting and lets requests in flight finish in the
// background (up to a minute); a drain still waits for them. Call with
// m.mu held.
func (m *Manager) closeListener(l *listener) {
	m.cfg.Log.Info("no longer load balancing a service", "service", l.namespace+"/"+l.name, "port", l.port)
	for id, ep := range l.byAlloc {
		if ep.outstanding.Load() > 0 {
			m.retired[id] = append(m.retired[id], ep)
		}
	}
	if l.srv != nil {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			l.srv.Shutdown(ctx)
		}()
		return
	}
	l.ln.Close()
	go func() {
		time.Sleep(time.Minute)
		l.tcp.closeAll()
	}()
}

// Drain stops sending new requests to an allocation's endpoints, in every
// service, now and whenever the catalog lists them again.
func (m *Manager) Drain(allocID string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.draining[allocID]; !ok {
		m.draining[allocID] = drainSet{since: time.Now()}
	}
	for _, ep := range m.allocEndpoints(allocID) {
		ep.draining.Store(true)
	}
}

// Outstanding is how many requests (HTTP) or connections (TCP) this
// manager has in flight to an allocation's endpoints.
func (m *Manager) Outstanding(allocID string) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	var n int64
	for _, ep := range m.allocEndpoints(allocID) {
		n += ep.outstanding.Load()
	}
	return n
}

// WaitDrained drains an allocation and waits until nothing is in flight
// to it, or grace passed, or ctx ended. It returns how many requests were
// still in flight when it gave up (0 when drained).
func (m *Manager) WaitDrained(ctx context.Context, allocID string, grace time.Duration) int64 {
	m.Drain(allocID)
	m.mu.Lock()
	eps := m.allocEndpoints(allocID)
	m.mu.Unlock()
	left := func() int64 {
		var n int64
		for _, ep := range eps {
			n += ep.outstanding.Load()
		}
		return n
	}
	deadline := time.NewTimer(grace)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		n := left()
		if n == 0 {
			return 0
		}
		select {
		case <-ctx.Done():
			return n
		case <-deadline.C:
			return left()
		case <-tick.C:
		}
	}
}

// Addr is where the manager serves a service, or "" when it does not.
func (m *Manager) Addr(namespace, name string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, l := range m.listeners {
		if l.namespace == namespace && l.name == name {
			return l.ln.Addr().String()
		}
	}
	return ""
}

// Close stops every listener at once.
func (m *Manager) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	for port, l := range m.listeners {
		if l.srv != nil {
			l.srv.Close()
		} else {
			l.ln.Close()
			l.tcp.closeAll()
		}
		delete(m.listeners, port)
	}
	m.transport.CloseIdleConnections()
}

// String describes the manager for logs.
func (m *Manager) String() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return fmt.Sprintf("load balancer on %s with %d listener(s)", m.cfg.Address, len(m.listeners))
}
