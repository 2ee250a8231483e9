package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/state"
	"github.com/gantryhq/gantry/internal/vsphere"
)

// The virtualization monitor's leader glue: it runs one vsphere.Collector
// per stored connection while this server leads, records the changes
// they report as events, keeps the vsphere.* attributes of nodes matched
// to VMs by BIOS UUID current, and drains matched nodes whose host enters
// maintenance when the connection asks for it. Collectors run in their
// own goroutines and only hand changes over through a queue: a slow
// vCenter never holds up the broker or any store write of the scheduler.

// vsphereState is the server's view of its collectors.
type vsphereState struct {
	mu      sync.Mutex
	running map[string]*vsphereRun
	matches vsphere.Matches
	pending []api.VSphereChange
	wake    chan struct{}
	// drained remembers node+host pairs drained for one maintenance, so
	// an operator who re-enables the node is not overruled.
	drained map[string]bool
	// opts are the collectors' options (history size, round interval).
	opts vsphere.Options
}

type vsphereRun struct {
	c      *vsphere.Collector
	raw    string
	cancel context.CancelFunc
	done   chan struct{}
}

// VSphereConfig tunes the collectors of every connection.
type VSphereConfig struct {
	// Interval is the performance round (default 20 s).
	Interval time.Duration
	// History is the samples kept per host, VM and datastore (default
	// vsphere.DefaultHistory), HistoryInterval the least time between two.
	History         int
	HistoryInterval time.Duration
}

func (s *Server) vsphereInit() {
	s.vs.running = map[string]*vsphereRun{}
	s.vs.wake = make(chan struct{}, 1)
	s.vs.drained = map[string]bool{}
	s.vs.opts = vsphere.Options{Interval: s.cfg.VSphere.Interval, History: s.cfg.VSphere.History, HistoryInterval: s.cfg.VSphere.HistoryInterval}
	s.registry.MustRegister(vsphere.NewMetrics(s.vsphereCollectors, s.leaderGantryVMs))
}

// vsphereCollectors lists the running collectors by connection name.
func (s *Server) vsphereCollectors() []*vsphere.Collector {
	s.vs.mu.Lock()
	defer s.vs.mu.Unlock()
	names := make([]string, 0, len(s.vs.running))
	for n := range s.vs.running {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]*vsphere.Collector, len(names))
	for i, n := range names {
		out[i] = s.vs.running[n].c
	}
	return out
}

func (s *Server) vsphereNotify(cs []api.VSphereChange) {
	s.vs.mu.Lock()
	s.vs.pending = append(s.vs.pending, cs...)
	s.vs.mu.Unlock()
	select {
	case s.vs.wake <- struct{}{}:
	default:
	}
}

// vsphereLoop runs while this server leads.
func (s *Server) vsphereLoop(ctx context.Context, fence *state.Fence) error {
	defer s.vsphereStopAll()
	t := time.NewTicker(3 * time.Second)
	defer t.Stop()
	for {
		if err := s.vsphereSync(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("read the vSphere connections", "err", err)
		}
		s.vs.mu.Lock()
		changes := s.vs.pending
		s.vs.pending = nil
		s.vs.mu.Unlock()
		if len(changes) > 0 {
			if err := s.store.PutVSphereChanges(ctx, changes); err != nil && ctx.Err() == nil {
				s.log.Warn("record vSphere events", "err", err)
			}
		}
		if err := s.vsphereApply(ctx, fence); errors.Is(err, state.ErrNotLeader) {
			return err
		} else if err != nil && ctx.Err() == nil {
			s.log.Warn("apply vSphere matches", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.vs.wake:
		case <-t.C:
		}
	}
}

// vsphereSync starts collectors for new or changed connections and stops
// those of removed ones.
func (s *Server) vsphereSync(ctx context.Context) error {
	conns, err := s.store.VSphereConnections(ctx)
	if err != nil {
		return err
	}
	// Stop removed or changed connections' collectors without holding the
	// lock: a collector finishing its last update calls vsphereNotify.
	var stopping []*vsphereRun
	s.vs.mu.Lock()
	for name, r := range s.vs.running {
		if raw, ok := conns[name]; !ok || string(raw) != r.raw {
			stopping = append(stopping, r)
			delete(s.vs.running, name)
		}
	}
	s.vs.mu.Unlock()
	for _, r := range stopping {
		r.cancel()
		<-r.done
		s.log.Info("vSphere collector stopped", "vcenter", r.c.Connection().Name)
	}
	s.vs.mu.Lock()
	defer s.vs.mu.Unlock()
	for name, raw := range conns {
		if _, ok := s.vs.running[name]; ok {
			continue
		}
		var c vsphere.Connection
		if err := json.Unmarshal(raw, &c); err != nil {
			s.log.Error("stored vSphere connection is not valid JSON; skipping it", "vcenter", name, "err", err)
			continue
		}
		opt := s.vs.opts
		opt.Log, opt.Notify = s.log, s.vsphereNotify
		col := vsphere.NewCollector(c, opt)
		cctx, cancel := context.WithCancel(context.Background())
		r := &vsphereRun{c: col, raw: string(raw), cancel: cancel, done: make(chan struct{})}
		go func() {
			defer close(r.done)
			col.Run(cctx)
		}()
		s.vs.running[name] = r
		s.log.Info("vSphere collector started", "vcenter", name, "url", c.URL)
	}
	return nil
}

func (s *Server) vsphereStopAll() {
	s.vs.mu.Lock()
	runs := s.vs.running
	s.vs.running = map[string]*vsphereRun{}
	s.vs.mu.Unlock()
	for _, r := range runs {
		r.cancel()
		<-r.done
	}
}

// vsphereApply matches nodes to VMs, updates their attributes and drains
// those on hosts in maintenance.
func (s *Server) vsphereApply(ctx context.Context, fence *state.Fence) error {
	cols := s.vsphereCollectors()
	var vms []vsphere.VMRef
	known := map[string]bool{} // vCenters with an inventory
	drainOn := map[string]bool{}
	maint := map[string]bool{} // vcenter/host in maintenance
	for _, c := range cols {
		inv := c.Inventory()
		if inv == nil {
			continue
		}
		conn := c.Connection()
		known[conn.Name] = true
		drainOn[conn.Name] = conn.DrainOnMaintenance
		for i := range inv.VMs {
			vms = append(vms, vsphere.VMRef{VCenter: conn.Name, VM: &inv.VMs[i]})
		}
		for _, h := range inv.Hosts {
			if h.Maintenance {
				maint[conn.Name+"/"+h.Name] = true
			}
		}
	}
	nodes := s.store.Nodes()
	var refs []vsphere.NodeUUID
	for _, n := range nodes {
		if u := n.Attributes[api.AttrBIOSUUID]; u != "" {
			refs = append(refs, vsphere.NodeUUID{ID: n.ID, Name: n.Name, UUID: u})
		}
	}
	m := vsphere.Match(refs, vms)
	s.vs.mu.Lock()
	newConflicts := diffStrings(m.Conflicts, s.vs.matches.Conflicts)
	s.vs.matches = m
	s.vs.mu.Unlock()
	for _, c := range newConflicts {
		s.log.Warn("vSphere node match is ambiguous", "problem", c)
		s.store.PutVSphereChanges(ctx, []api.VSphereChange{{VCenter: "gantry", Kind: "node", Name: "uuid-conflict", Type: api.VSphereNodeAmbiguous, Message: c, Time: s.now()}})
	}
	conns := map[string]bool{}
	for _, c := range cols {
		conns[c.Connection().Name] = true
	}
	for _, n := range nodes {
		cur := vsphere.VSphereAttrs(n.Attributes)
		want, matched := m.Attrs[n.ID]
		if !matched {
			// Keep what a vCenter not read yet (or unreachable since the
			// start) said; drop what a removed connection said.
			if vc := cur[api.AttrVSphereVCenter]; vc != "" && conns[vc] && !known[vc] {
				continue
			}
			want = map[string]string{}
		}
		if !maps.Equal(cur, want) {
			if _, err := s.store.UpdateNode(ctx, fence, n.ID, func(x *api.Node) error {
				if x.Attributes == nil {
					x.Attributes = map[string]string{}
				}
				maps.DeleteFunc(x.Attributes, func(k, _ string) bool { return strings.HasPrefix(k, "vsphere.") })
				maps.Copy(x.Attributes, want)
				return nil
			}); err != nil {
				return err
			}
			if matched {
				s.log.Info("node matched to a vSphere VM", "node", n.Name, "vcenter", want[api.AttrVSphereVCenter], "vm", want[api.AttrVSphereVM], "host", want[api.AttrVSphereHost])
				s.vsphereNotify([]api.VSphereChange{{VCenter: want[api.AttrVSphereVCenter], Kind: "node", ID: "node-" + n.ID, Name: n.Name, Type: api.VSphereNodeMatched,
					To: want[api.AttrVSphereHost], Message: fmt.Sprintf("node %s runs in VM %s on host %s", n.Name, want[api.AttrVSphereVM], want[api.AttrVSphereHost]), Time: s.now()}})
			}
		}
		if !matched {
			continue
		}
		vc, host := want[api.AttrVSphereVCenter], want[api.AttrVSphereHost]
		key := n.ID + "/" + vc + "/" + host
		if !maint[vc+"/"+host] {
			delete(s.vs.drained, key)
			continue
		}
		if !drainOn[vc] || s.vs.drained[key] || n.Drain != nil {
			continue
		}
		now := s.now()
		if _, err := s.store.UpdateNode(ctx, fence, n.ID, func(x *api.Node) error {
			if x.Drain == nil {
				x.Drain = &api.Drain{StartedAt: now, Deadline: now.Add(time.Hour)}
			}
			return nil
		}); err != nil {
			return err
		}
		if err := s.evalJobsOnNode(ctx, fence, n.ID, api.TriggerNodeUpdate); err != nil {
			return err
		}
		s.vs.drained[key] = true
		s.log.Warn("draining node: its ESXi host entered maintenance mode", "node", n.Name, "vcenter", vc, "host", host)
		s.vsphereNotify([]api.VSphereChange{{VCenter: vc, Kind: "node", ID: "node-" + n.ID, Name: n.Name, Type: api.VSphereNodeDrained,
			From: host, Message: fmt.Sprintf("node %s is draining: host %s entered maintenance mode", n.Name, host), Time: now}})
	}
	return nil
}

func diffStrings(cur, old []string) []string {
	seen := map[string]bool{}
	for _, o := range old {
		seen[o] = true
	}
	var out []string
	for _, c := range cur {
		if !seen[c] {
			out = append(out, c)
		}
	}
	return out
}

// HTTP API.

func (s *Server) vsphereRoutes(handle func(string, func(http.ResponseWriter, *http.Request) error)) {
	handle("GET /v1/vsphere/connections", s.handleVSphereList)
	handle("PUT /v1/vsphere/connections", s.handleVSphereAdd)
	handle("DELETE /v1/vsphere/connections/{name}", s.handleVSphereRemove)
	handle("GET /v1/vsphere/status", s.handleVSphereStatus)
	handle("GET /v1/vsphere/status/{name}", s.handleVSphereStatusOne)
	handle("GET /v1/vsphere/history/{key}", s.handleVSphereHistory)
}

func (s *Server) handleVSphereList(w http.ResponseWriter, r *http.Request) error {
	conns, err := s.store.VSphereConnections(r.Context())
	if err != nil {
		return err
	}
	out := []api.VSphereConnection{}
	for _, raw := range conns {
		var c vsphere.Connection
		if err := json.Unmarshal(raw, &c); err == nil {
			out = append(out, c.Public())
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	writeJSON(w, http.StatusOK, out)
	return nil
}

// whatCollectors is what only the leader has, for onLeader's sentences.
const whatCollectors = "the vCenter collectors"

func (s *Server) handleVSphereAdd(w http.ResponseWriter, r *http.Request) error {
	// The leader tries the connection: it is the server that will collect
	// from it, so the vCenter must be reachable from there.
	if done, err := s.onLeader(w, r, whatCollectors); done {
		return err
	}
	var req api.VSphereConnectRequest
	if err := s.decodeBody(w, r, &req); err != nil {
		return err
	}
	if !api.ValidName(req.Name) {
		return &httpError{status: http.StatusBadRequest, msg: fmt.Sprintf("connection name %q %s", req.Name, api.NameRule), field: "name"}
	}
	if req.Name == vsphere.GantrySource {
		return &httpError{status: http.StatusBadRequest, field: "name",
			msg: fmt.Sprintf("connection name %q is reserved for Gantry's own VMs (their gantry_vsphere_* series carry vcenter=%q); choose another", req.Name, vsphere.GantrySource)}
	}
	c := vsphere.Connection{Name: req.Name, URL: req.URL, User: req.User, Password: req.Password, CACert: req.CACert,
		Insecure: req.Insecure, DrainOnMaintenance: req.DrainOnMaintenance, CreateTime: s.now()}
	if err := c.Validate(); err != nil {
		return badRequest("%v", err)
	}
	if u, err := vsphere.ParseURL(c.URL); err == nil {
		c.URL = u.String()
	}
	if existing, err := s.store.VSphereConnections(r.Context()); err != nil {
		return err
	} else if _, ok := existing[c.Name]; ok {
		return &httpError{status: http.StatusConflict, msg: fmt.Sprintf("vSphere connection %s exists: remove it first with 'gantry vsphere remove %s'", c.Name, c.Name)}
	}
	// The connection is tried before anything is stored.
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	cl, err := vsphere.Dial(ctx, c)
	if err != nil {
		return &httpError{status: http.StatusBadRequest, msg: err.Error(), field: "url"}
	}
	lctx, lcancel := context.WithTimeout(context.Background(), 5*time.Second)
	cl.Logout(lctx)
	lcancel()
	raw, err := json.Marshal(c)
	if err != nil {
		return err
	}
	if err := s.store.CreateVSphereConnection(r.Context(), c.Name, raw); err != nil {
		if errors.Is(err, state.ErrConflict) {
			return &httpError{status: http.StatusConflict, msg: err.Error()}
		}
		return err
	}
	s.log.Info("vSphere connection added", "vcenter", c.Name, "url", c.URL, "user", c.User)
	s.vsphereNotify(nil)
	writeJSON(w, http.StatusOK, c.Public())
	return nil
}

func (s *Server) handleVSphereRemove(w http.ResponseWriter, r *http.Request) error {
	if done, err := s.onLeader(w, r, whatCollectors); done {
		return err
	}
	name := r.PathValue("name")
	if err := s.store.DeleteVSphereConnection(r.Context(), name); err != nil {
		if errors.Is(err, state.ErrNotFound) {
			return notFound("no vSphere connection named %q: 'gantry vsphere list' shows them", name)
		}
		return err
	}
	s.log.Info("vSphere connection removed", "vcenter", name)
	s.vsphereNotify(nil)
	writeJSON(w, http.StatusOK, struct{}{})
	return nil
}

// vsphereStatus is a collector's status with node matches filled in.
func (s *Server) vsphereStatus(c *vsphere.Collector, full bool) api.VSphereStatus {
	st := c.Status(full)
	s.vs.mu.Lock()
	for i := range st.VMs {
		st.VMs[i].Node = s.vs.matches.VMNode[st.Connection.Name+"/"+st.VMs[i].ID]
	}
	st.Conflicts = append([]string(nil), s.vs.matches.Conflicts...)
	s.vs.mu.Unlock()
	return st
}

// handleVSphereStatus lists every connection's status and, after them
// when there are any, Gantry's own VMs under the name "gantry" (the same
// list as the Virtualization page's and the gantry_vsphere_vm_* series).
// Only the leader collects: another server forwards the request to it.
func (s *Server) handleVSphereStatus(w http.ResponseWriter, r *http.Request) error {
	if done, err := s.onLeader(w, r, whatCollectors); done {
		return err
	}
	full := r.URL.Query().Get("full") == "true"
	out := []api.VSphereStatus{}
	for _, c := range s.vsphereCollectors() {
		out = append(out, s.vsphereStatus(c, full))
	}
	if vms := s.gantryVMs(); len(vms) > 0 {
		out = append(out, vsphere.GantryStatus(vms, full))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) handleVSphereStatusOne(w http.ResponseWriter, r *http.Request) error {
	if done, err := s.onLeader(w, r, whatCollectors); done {
		return err
	}
	if r.PathValue("name") == vsphere.GantrySource {
		writeJSON(w, http.StatusOK, vsphere.GantryStatus(s.gantryVMs(), true))
		return nil
	}
	for _, c := range s.vsphereCollectors() {
		if c.Connection().Name == r.PathValue("name") {
			writeJSON(w, http.StatusOK, s.vsphereStatus(c, true))
			return nil
		}
	}
	return notFound("no vSphere connection named %q: 'gantry vsphere list' shows them", r.PathValue("name"))
}

// handleVSphereHistory serves one host's, VM's or datastore's history, by
// name or managed object ID, in the connection ?vcenter= names (default:
// the first that has it).
func (s *Server) handleVSphereHistory(w http.ResponseWriter, r *http.Request) error {
	if done, err := s.onLeader(w, r, "the vSphere history"); done {
		return err
	}
	key, vc := r.PathValue("key"), r.URL.Query().Get("vcenter")
	for _, c := range s.vsphereCollectors() {
		if vc != "" && c.Connection().Name != vc {
			continue
		}
		if h, ok := c.History(key); ok {
			writeJSON(w, http.StatusOK, h)
			return nil
		}
	}
	return notFound("no host, VM or datastore named %q in the vSphere inventory: 'gantry vsphere status --json' lists them", key)
}

// leaderGantryVMs is gantryVMs on the leader and nothing elsewhere: like
// the vCenter series, the Gantry VMs' series come from one server, so
// that a sum over servers counts each VM once.
func (s *Server) leaderGantryVMs() []vsphere.GantryVM {
	if !s.IsLeader() {
		return nil
	}
	return s.gantryVMs()
}

// gantryVMs lists Gantry's own VMs (qemu tasks of live allocations) as
// the Virtualization page and the gantry_vsphere_vm_* series show them,
// from the store's view and the node history this server holds.
func (s *Server) gantryVMs() []vsphere.GantryVM {
	return vsphere.GantryVMs(vsphere.GantryState{
		Allocs: s.store.Allocs(state.AllocFilter{}),
		Job:    s.store.Job,
		NodeName: func(id string) string {
			if n, ok := s.store.Node(id); ok {
				return n.Name
			}
			return ""
		},
		Latest: func(node string) (api.NodeSample, bool) {
			h := s.history.Get(node)
			if len(h) == 0 {
				return api.NodeSample{}, false
			}
			return h[len(h)-1], true
		},
	})
}
