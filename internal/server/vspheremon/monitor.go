package vspheremon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/server/vspheredrain"
	"github.com/gantryhq/gantry/internal/state"
	"github.com/gantryhq/gantry/internal/vsphere"
)

// Connections is where the vCenter connections and the changes collected
// from them are kept. *state.Store is one. Its writes are not fenced: a
// connection is configuration any server may store, a change an event.
type Connections interface {
	VSphereConnections(ctx context.Context) (map[string][]byte, error)
	CreateVSphereConnection(ctx context.Context, name string, data []byte) error
	DeleteVSphereConnection(ctx context.Context, name string) error
	PutVSphereChanges(ctx context.Context, changes []api.VSphereChange) error
}

// View is what the monitor reads of the cluster. *state.Store is one.
type View interface {
	Nodes() []*api.Node
	Node(id string) (*api.Node, bool)
	Job(namespace, name string) (*api.Job, bool)
	Allocs(f state.AllocFilter) []*api.Allocation
}

// NodeWriter changes a node with the leader's fence; it returns
// state.ErrNotLeader once leadership moved. *state.Store is one.
type NodeWriter interface {
	UpdateNode(ctx context.Context, fence *state.Fence, id string, fn func(n *api.Node) error) (*api.Node, error)
}

// Ports are the monitor's ways to the rest of the server.
type Ports struct {
	Connections Connections
	View        View
	Nodes       NodeWriter
	Front       Front
	// EvalJobsOnNode asks, with the leader's fence, for an evaluation of
	// every job with live allocations on the node.
	EvalJobsOnNode func(ctx context.Context, fence *state.Fence, nodeID, trigger string) error
	// Latest is the newest usage sample this server holds of a node.
	Latest func(nodeID string) (api.NodeSample, bool)
	// Leading reports whether this server leads now.
	Leading func() bool
	// Now is the clock.
	Now func() time.Time
	Log *slog.Logger
}

// Config tunes the collectors of every connection.
type Config struct {
	// Interval is the performance round (default 20 s).
	Interval time.Duration
	// History is the samples kept per host, VM and datastore (default
	// vsphere.DefaultHistory), HistoryInterval the least time between two.
	History         int
	HistoryInterval time.Duration
}

// Monitor is the virtualization monitor of one server. It lives as long
// as the server; its collectors run only while Run does.
type Monitor struct {
	p    Ports
	opts vsphere.Options // the collectors' (history size, round interval)

	mu      sync.Mutex
	running map[string]*run
	matches vsphere.Matches
	pending []api.VSphereChange
	wake    chan struct{}
	// drained remembers node+host pairs drained for one maintenance, so
	// an operator who re-enables the node is not overruled. Only Run's
	// goroutine touches it.
	drained map[string]bool
}

type run struct {
	c      *vsphere.Collector
	raw    string
	cancel context.CancelFunc
	done   chan struct{}
}

// New returns a monitor whose collectors are tuned by cfg.
func New(p Ports, cfg Config) *Monitor {
	opt := vsphere.Options{Interval: cfg.Interval, History: cfg.History, HistoryInterval: cfg.HistoryInterval}
	return &Monitor{p: p, opts: opt, running: map[string]*run{}, wake: make(chan struct{}, 1), drained: map[string]bool{}}
}

// Metrics is the gantry_vsphere_* series of the collectors and of
// Gantry's own VMs, for the server's registry. Only the leader reports
// them, so that a sum over servers counts each object once.
func (m *Monitor) Metrics() *vsphere.Metrics {
	return vsphere.NewMetrics(m.Collectors, m.LeaderGantryVMs)
}

// Collectors lists the running collectors by connection name.
func (m *Monitor) Collectors() []*vsphere.Collector {
	m.mu.Lock()
	defer m.mu.Unlock()
	names := make([]string, 0, len(m.running))
	for n := range m.running {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]*vsphere.Collector, len(names))
	for i, n := range names {
		out[i] = m.running[n].c
	}
	return out
}

// Notify queues changes to record and wakes Run; nil only wakes it (a
// connection was added or removed).
func (m *Monitor) Notify(cs []api.VSphereChange) {
	m.mu.Lock()
	m.pending = append(m.pending, cs...)
	m.mu.Unlock()
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// Run keeps the collectors in step with the stored connections, records
// their changes and applies the node matches, on every notification and
// at least every 3 s, until ctx ends; it stops every collector before it
// returns. It returns state.ErrNotLeader once a write finds that
// leadership moved.
func (m *Monitor) Run(ctx context.Context, fence *state.Fence) error {
	defer m.stopAll()
	t := time.NewTicker(3 * time.Second)
	defer t.Stop()
	for {
		if err := m.sync(ctx); err != nil && ctx.Err() == nil {
			m.p.Log.Warn("read the vSphere connections", "err", err)
		}
		m.mu.Lock()
		changes := m.pending
		m.pending = nil
		m.mu.Unlock()
		if len(changes) > 0 {
			if err := m.p.Connections.PutVSphereChanges(ctx, changes); err != nil && ctx.Err() == nil {
				m.p.Log.Warn("record vSphere events", "err", err)
			}
		}
		if err := m.apply(ctx, fence); errors.Is(err, state.ErrNotLeader) {
			return err
		} else if err != nil && ctx.Err() == nil {
			m.p.Log.Warn("apply vSphere matches", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-m.wake:
		case <-t.C:
		}
	}
}

// sync starts collectors for new or changed connections and stops those
// of removed ones.
func (m *Monitor) sync(ctx context.Context) error {
	conns, err := m.p.Connections.VSphereConnections(ctx)
	if err != nil {
		return err // the caller says what it was reading
	}
	// Stop removed or changed connections' collectors without holding the
	// lock: a collector finishing its last update calls Notify.
	var stopping []*run
	m.mu.Lock()
	for name, r := range m.running {
		if raw, ok := conns[name]; !ok || string(raw) != r.raw {
			stopping = append(stopping, r)
			delete(m.running, name)
		}
	}
	m.mu.Unlock()
	for _, r := range stopping {
		r.cancel()
		<-r.done
		m.p.Log.Info("vSphere collector stopped", "vcenter", r.c.Connection().Name)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for name, raw := range conns {
		if _, ok := m.running[name]; ok {
			continue
		}
		var c vsphere.Connection
		if err := json.Unmarshal(raw, &c); err != nil {
			m.p.Log.Error("stored vSphere connection is not valid JSON; skipping it", "vcenter", name, "err", err)
			continue
		}
		opt := m.opts
		opt.Log, opt.Notify = m.p.Log, m.Notify
		col := vsphere.NewCollector(c, opt)
		cctx, cancel := context.WithCancel(context.Background())
		r := &run{c: col, raw: string(raw), cancel: cancel, done: make(chan struct{})}
		go func() {
			defer close(r.done)
			col.Run(cctx)
		}()
		m.running[name] = r
		m.p.Log.Info("vSphere collector started", "vcenter", name, "url", c.URL)
	}
	return nil
}

func (m *Monitor) stopAll() {
	m.mu.Lock()
	runs := m.running
	m.running = map[string]*run{}
	m.mu.Unlock()
	for _, r := range runs {
		r.cancel()
		<-r.done
	}
}

// apply matches nodes to VMs, updates their attributes and drains those
// on hosts in maintenance: it reads the collectors and the nodes, decides
// (vspheredrain.Decide, pure) and carries the decision out.
func (m *Monitor) apply(ctx context.Context, fence *state.Fence) error {
	w := vspheredrain.World{Conns: map[string]bool{}, Known: map[string]bool{}, DrainOn: map[string]bool{}, Maint: map[string]bool{}}
	for _, c := range m.Collectors() {
		conn := c.Connection()
		w.Conns[conn.Name] = true
		inv := c.Inventory()
		if inv == nil {
			continue
		}
		w.Known[conn.Name] = true
		w.DrainOn[conn.Name] = conn.DrainOnMaintenance
		for i := range inv.VMs {
			w.VMs = append(w.VMs, vsphere.VMRef{VCenter: conn.Name, VM: &inv.VMs[i]})
		}
		for _, h := range inv.Hosts {
			if h.Maintenance {
				w.Maint[conn.Name+"/"+h.Name] = true
			}
		}
	}
	m.mu.Lock()
	reported := m.matches.Conflicts
	m.mu.Unlock()
	d := vspheredrain.Decide(w, m.p.View.Nodes(), reported, m.drained)
	m.mu.Lock()
	m.matches = d.Match
	m.mu.Unlock()

	for _, c := range d.NewConflicts {
		m.p.Log.Warn("vSphere node match is ambiguous", "problem", c)
		m.p.Connections.PutVSphereChanges(ctx, []api.VSphereChange{{VCenter: "gantry", Kind: "node", Name: "uuid-conflict", Type: api.VSphereNodeAmbiguous, Message: c, Time: m.p.Now()}})
	}
	for _, a := range d.Attrs {
		n, want := a.Node, a.Want
		if _, err := m.p.Nodes.UpdateNode(ctx, fence, n.ID, func(x *api.Node) error {
			if x.Attributes == nil {
				x.Attributes = map[string]string{}
			}
			maps.DeleteFunc(x.Attributes, func(k, _ string) bool { return strings.HasPrefix(k, "vsphere.") })
			maps.Copy(x.Attributes, want)
			return nil
		}); err != nil {
			return fmt.Errorf("set the vSphere attributes of node %s: %w", n.Name, err)
		}
		if a.Matched {
			m.p.Log.Info("node matched to a vSphere VM", "node", n.Name, "vcenter", want[api.AttrVSphereVCenter], "vm", want[api.AttrVSphereVM], "host", want[api.AttrVSphereHost])
			m.Notify([]api.VSphereChange{{VCenter: want[api.AttrVSphereVCenter], Kind: "node", ID: "node-" + n.ID, Name: n.Name, Type: api.VSphereNodeMatched,
				To: want[api.AttrVSphereHost], Message: fmt.Sprintf("node %s runs in VM %s on host %s", n.Name, want[api.AttrVSphereVM], want[api.AttrVSphereHost]), Time: m.p.Now()}})
		}
	}
	for _, key := range d.Forget {
		delete(m.drained, key)
	}
	for _, s := range d.Drains {
		n, now := s.Node, m.p.Now()
		if _, err := m.p.Nodes.UpdateNode(ctx, fence, n.ID, func(x *api.Node) error {
			if x.Drain == nil {
				x.Drain = &api.Drain{StartedAt: now, Deadline: now.Add(time.Hour)}
			}
			return nil
		}); err != nil {
			return fmt.Errorf("drain node %s: %w", n.Name, err)
		}
		if err := m.p.EvalJobsOnNode(ctx, fence, n.ID, api.TriggerNodeUpdate); err != nil {
			return fmt.Errorf("evaluate the jobs of drained node %s: %w", n.Name, err)
		}
		m.drained[s.Key] = true
		m.p.Log.Warn("draining node: its ESXi host entered maintenance mode", "node", n.Name, "vcenter", s.VCenter, "host", s.Host)
		m.Notify([]api.VSphereChange{{VCenter: s.VCenter, Kind: "node", ID: "node-" + n.ID, Name: n.Name, Type: api.VSphereNodeDrained,
			From: s.Host, Message: fmt.Sprintf("node %s is draining: host %s entered maintenance mode", n.Name, s.Host), Time: now}})
	}
	return nil
}

// Status is a collector's status with the node matches filled in.
func (m *Monitor) Status(c *vsphere.Collector, full bool) api.VSphereStatus {
	st := c.Status(full)
	m.mu.Lock()
	for i := range st.VMs {
		st.VMs[i].Node = m.matches.VMNode[st.Connection.Name+"/"+st.VMs[i].ID]
	}
	st.Conflicts = append([]string(nil), m.matches.Conflicts...)
	m.mu.Unlock()
	return st
}

// VCenter is one running vCenter collector as the Virtualization page
// draws it: its full status with node matches, and the history of one of
// its objects by ID.
type VCenter struct {
	Status  api.VSphereStatus
	History func(id string) []api.VSphereSample
}

// VCenters lists the running collectors (only the leader runs them), by
// connection name.
func (m *Monitor) VCenters() []VCenter {
	var out []VCenter
	for _, c := range m.Collectors() {
		out = append(out, VCenter{Status: m.Status(c, true), History: func(id string) []api.VSphereSample {
			h, _ := c.History(id)
			return h.Samples
		}})
	}
	return out
}

// GantryVMs lists Gantry's own VMs (qemu tasks of live allocations) as
// the Virtualization page and the gantry_vsphere_vm_* series show them,
// from the view and the node history this server holds.
func (m *Monitor) GantryVMs() []vsphere.GantryVM {
	return vsphere.GantryVMs(vsphere.GantryState{
		Allocs: m.p.View.Allocs(state.AllocFilter{}),
		Job:    m.p.View.Job,
		NodeName: func(id string) string {
			if n, ok := m.p.View.Node(id); ok {
				return n.Name
			}
			return ""
		},
		Latest: m.p.Latest,
	})
}

// LeaderGantryVMs is GantryVMs on the leader and nothing elsewhere: like
// the vCenter series, the Gantry VMs' series come from one server, so
// that a sum over servers counts each VM once.
func (m *Monitor) LeaderGantryVMs() []vsphere.GantryVM {
	if !m.p.Leading() {
		return nil
	}
	return m.GantryVMs()
}
