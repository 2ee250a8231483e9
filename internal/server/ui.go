package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gantryhq/gantry/internal/acl"
	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/state"
	"github.com/gantryhq/gantry/internal/ui"
)

// The web UI. Every /ui/ address serves the same shell, which holds no
// data; its script asks /ui/fragments/... for the page's HTML with the
// caller's token in the X-Gantry-Token header, so each fragment is
// authorized like the API endpoint that reads the same objects (see
// routeRules), and a browser without a token sees nothing but the sign-in
// form. No cookie is ever set: nothing a cross-site request carries by
// itself opens the UI.

// uiRoutes registers the UI's routes through the server's handle (which
// authorizes each against routeRules).
func (s *Server) uiRoutes(handle0 func(string, func(http.ResponseWriter, *http.Request) error)) {
	// The fragments are also served inside the shell, for browsers
	// without JavaScript: s.ui.frags dispatches them the same way.
	frags := http.NewServeMux()
	s.ui.frags = frags
	handle := func(pattern string, h func(http.ResponseWriter, *http.Request) error) {
		handle0(pattern, h)
		if strings.HasPrefix(pattern, "GET /ui/fragments/") {
			frags.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
				r2, err := s.authorize(pattern, r)
				if err == nil {
					err = h(w, r2)
				}
				if err != nil {
					s.writeError(w, r, err)
				}
			})
		}
	}
	handle("GET /ui", func(w http.ResponseWriter, r *http.Request) error {
		http.Redirect(w, r, "/ui/", http.StatusMovedPermanently)
		return nil
	})
	handle("GET /ui/{path...}", s.handleUIShell)
	handle("GET /ui/assets/{file}", s.handleUIAsset)
	handle("GET /ui/fragments/{rest...}", func(w http.ResponseWriter, r *http.Request) error {
		return notFound("the UI has no page %s", strings.TrimPrefix(r.URL.Path, "/ui/fragments"))
	})
	handle("GET /ui/fragments/overview", s.handleUIOverview)
	handle("GET /ui/fragments/jobs", s.handleUIJobs)
	handle("GET /ui/fragments/jobs/{name}", s.handleUIJob)
	handle("GET /ui/fragments/allocations/{id}", s.handleUIAlloc)
	handle("GET /ui/fragments/nodes", s.handleUINodes)
	handle("GET /ui/fragments/nodes/{id}", s.handleUINode)
	s.uiPageRoutes(handle)
}

func uiHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", ui.ContentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
}

// handleUIShell serves the shell. Its script loads the page with the
// caller's token; for a browser without JavaScript the shell carries the
// page as a caller without a token may read it (nothing, with ACLs on).
func (s *Server) handleUIShell(w http.ResponseWriter, r *http.Request) error {
	uiHeaders(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(ui.ShellWith(s.anonymousFragment(r)))
	return nil
}

// anonymousFragment renders the page of a /ui/ address as a request
// without a token gets it; nil when that is refused or fails.
func (s *Server) anonymousFragment(r *http.Request) []byte {
	page := strings.Trim(strings.TrimPrefix(r.URL.Path, "/ui"), "/")
	if page == "" {
		page = "overview"
	}
	u := "/ui/fragments/" + page
	if r.URL.RawQuery != "" {
		u += "?" + r.URL.RawQuery
	}
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, u, nil)
	if err != nil {
		return nil
	}
	req.RemoteAddr, req.TLS = r.RemoteAddr, r.TLS
	rec := &fragmentRecorder{header: http.Header{}, status: http.StatusOK}
	s.ui.frags.ServeHTTP(rec, req)
	if rec.status != http.StatusOK {
		return nil
	}
	return rec.body.Bytes()
}

// fragmentRecorder keeps a fragment's answer.
type fragmentRecorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (f *fragmentRecorder) Header() http.Header         { return f.header }
func (f *fragmentRecorder) WriteHeader(code int)        { f.status = code }
func (f *fragmentRecorder) Write(b []byte) (int, error) { return f.body.Write(b) }

func (s *Server) handleUIAsset(w http.ResponseWriter, r *http.Request) error {
	data, ct, ok := ui.Asset(r.PathValue("file"))
	if !ok {
		return notFound("the UI has no asset %q", r.PathValue("file"))
	}
	uiHeaders(w)
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Cache-Control", "no-cache")
	w.Write(data)
	return nil
}

func (s *Server) renderUI(w http.ResponseWriter, page string, data any) error {
	uiHeaders(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	return ui.Render(w, page, data)
}

// can reports whether the caller holds capability c in namespace ns (""
// for cluster-wide capabilities).
func (s *Server) can(r *http.Request, ns string, c acl.Capability) bool {
	return s.allow(r, ns, c) == nil
}

// base starts a page. The index is read before anything else, so the
// event stream the page follows resumes from no later than what it shows.
func (s *Server) base(page, key, title string, topics, keys []string) ui.Base {
	return ui.Base{Page: page, Key: key, Title: title, Index: s.store.Index(), Now: s.now(), Topics: topics, Keys: keys}
}

func (s *Server) handleUIOverview(w http.ResponseWriter, r *http.Request) error {
	p := ui.Overview{Base: s.base("overview", "", "Overview", nil, nil), QueueShown: true}
	p.Status = api.StatusResponse{Server: s.cfg.ID, Leader: s.IsLeader(), Index: p.Index, Version: s.cfg.Version, Time: p.Now}
	nodes := s.store.Nodes()
	var live []*api.Allocation
	allocCounts := map[string]int{}
	for _, a := range s.store.Allocs(state.AllocFilter{}) {
		if !s.visible(r, a.Namespace) {
			continue
		}
		allocCounts[a.ClientStatus]++
		if !a.ClientTerminal() {
			live = append(live, a)
		}
	}
	for _, st := range []string{api.AllocPending, api.AllocRunning, api.AllocComplete, api.AllocFailed, api.AllocLost} {
		if allocCounts[st] > 0 {
			p.Allocs = append(p.Allocs, ui.Count{Name: st, N: allocCounts[st]})
		}
	}
	jobCounts := map[string]int{}
	for _, j := range s.store.Jobs("") {
		if s.visible(r, j.Namespace) {
			jobCounts[s.summarize(j).Status]++
		}
	}
	for _, st := range []string{api.JobStatusRunning, api.JobStatusPending, api.JobStatusDead} {
		if jobCounts[st] > 0 {
			p.Jobs = append(p.Jobs, ui.Count{Name: st, N: jobCounts[st]})
		}
	}
	if s.can(r, "", acl.NodeRead) {
		p.NodesShown = true
		p.NodeTotal = len(nodes)
		nc := map[string]int{}
		var cpu, mem, gpus ui.Usage
		cpu.Name, cpu.Unit, mem.Name, mem.Unit, gpus.Name, gpus.Unit = "CPU", "cores", "Memory", "GiB", "GPUs", "held"
		byNode := map[string][]*api.Allocation{}
		for _, a := range s.store.Allocs(state.AllocFilter{Live: true}) {
			byNode[a.NodeID] = append(byNode[a.NodeID], a)
		}
		for _, n := range nodes {
			nc[n.Status]++
			if n.Ineligible {
				nc["ineligible"]++
			}
			if n.Drain != nil {
				nc["draining"]++
			}
			if n.Status != api.NodeStatusReady {
				continue
			}
			row := nodeRow(n, byNode[n.ID])
			cpu.Used += row.CPU.Used
			cpu.Total += row.CPU.Total
			mem.Used += row.Mem.Used / 1024
			mem.Total += row.Mem.Total / 1024
			gpus.Used += float64(row.GPUsInUse)
			gpus.Total += float64(row.GPUs)
		}
		for _, st := range []string{api.NodeStatusReady, api.NodeStatusDown, api.NodeStatusInit, "ineligible", "draining"} {
			if nc[st] > 0 || st == api.NodeStatusReady || st == api.NodeStatusDown {
				p.Nodes = append(p.Nodes, ui.Count{Name: st, N: nc[st]})
			}
		}
		p.Capacity = []ui.Usage{cpu, mem}
		if gpus.Total > 0 {
			p.Capacity = append(p.Capacity, gpus)
		}
	}
	for _, q := range s.queueReports() {
		p.Queues = append(p.Queues, q.view())
	}
	p.Events = s.recentEvents(r, 25)
	return s.renderUI(w, "overview", p)
}

func (s *Server) handleUIJobs(w http.ResponseWriter, r *http.Request) error {
	ns := r.URL.Query().Get("namespace")
	if ns != "" && !api.ValidName(ns) {
		return badRequest("namespace %q %s", ns, api.NameRule)
	}
	p := ui.JobsPage{Base: s.base("jobs", "", "Jobs", []string{api.TopicJob, api.TopicAllocation, api.TopicEvaluation}, nil)}
	for _, j := range s.store.Jobs(ns) {
		if s.visible(r, j.Namespace) {
			p.Jobs = append(p.Jobs, s.summarize(j))
		}
	}
	return s.renderUI(w, "jobs", p)
}

func (s *Server) handleUIJob(w http.ResponseWriter, r *http.Request) error {
	b := s.base("job", "", "", []string{api.TopicJob, api.TopicAllocation, api.TopicEvaluation, api.TopicDeployment}, nil)
	j, err := s.lookupJob(r)
	if err != nil {
		return err
	}
	b.Key, b.Title, b.Keys = j.Key(), "Job "+j.Name, []string{j.Name}
	p := ui.JobPage{Base: b, Summary: s.summarize(j)}
	p.Allocs = s.store.Allocs(state.AllocFilter{Namespace: j.Namespace, Job: j.Name})
	sort.SliceStable(p.Allocs, func(a, b int) bool {
		x, y := p.Allocs[a], p.Allocs[b]
		if x.ClientTerminal() != y.ClientTerminal() {
			return !x.ClientTerminal()
		}
		return x.CreateTime.After(y.CreateTime)
	})
	evals := s.store.Evals(j.Namespace, j.Name)
	sort.SliceStable(evals, func(a, b int) bool { return evals[a].ModifyIndex > evals[b].ModifyIndex })
	seen := map[string]bool{}
	for i, e := range evals {
		// The placement failures that still hold: blocked evaluations
		// (waiting for capacity) and the latest finished one.
		latest := i == 0 || (e.Status != api.EvalPending && evals[0].Status == api.EvalPending && i == 1)
		if len(e.FailedGroups) > 0 && (e.Status == api.EvalBlocked || latest) && !seen[e.ID] {
			c := *e
			c.FailedGroups = s.annotate(copyExplanations(e.FailedGroups))
			p.Failures = append(p.Failures, &c)
			seen[e.ID] = true
		}
	}
	// Alike evaluations (a run of retries that changed nothing, say) are
	// one row; the evaluations page lists each.
	p.EvalCount = len(evals)
	p.EvalGroups = ui.GroupEvals(evals)
	if len(p.EvalGroups) > 10 {
		p.EvalGroups = p.EvalGroups[:10]
	}
	vs, err := s.store.JobVersions(r.Context(), j.Namespace, j.Name)
	if err != nil {
		return err
	}
	sort.SliceStable(vs, func(a, b int) bool { return vs[a].Version > vs[b].Version })
	p.Versions = vs
	from, to, ok := diffRange(r.URL.Query().Get("diff"), vs)
	if r.URL.Query().Get("diff") != "" && !ok {
		return badRequest("diff %q: give two kept versions as A..B", r.URL.Query().Get("diff"))
	}
	if ok {
		var a, c *api.Job
		for _, v := range vs {
			if v.Version == from {
				a = v
			}
			if v.Version == to {
				c = v
			}
		}
		p.DiffFrom, p.DiffTo, p.HasDiff, p.Diff = from, to, true, diffJobs(a, c)
	}
	p.Rollout = rollout(j, p.Allocs)
	// Deployments (rolling updates) report their progress in the
	// rollout region once the deployment type exists; the rollout above
	// is derived from the allocations' job versions and health.
	return s.renderUI(w, "job", p)
}

func copyExplanations(m map[string]*api.Explanation) map[string]*api.Explanation {
	out := make(map[string]*api.Explanation, len(m))
	for k, v := range m {
		c := *v
		c.Reasons = append([]api.ReasonCount(nil), v.Reasons...)
		out[k] = &c
	}
	return out
}

// diffRange reads "A..B" against the kept versions; without one it picks
// the latest version against the one before it.
func diffRange(q string, vs []*api.Job) (from, to uint64, ok bool) {
	has := func(v uint64) bool {
		for _, j := range vs {
			if j.Version == v {
				return true
			}
		}
		return false
	}
	if q == "" {
		if len(vs) < 2 {
			return 0, 0, false
		}
		return vs[1].Version, vs[0].Version, true
	}
	a, b, found := strings.Cut(q, "..")
	x, err1 := strconv.ParseUint(a, 10, 64)
	y, err2 := strconv.ParseUint(b, 10, 64)
	if !found || err1 != nil || err2 != nil || !has(x) || !has(y) {
		return 0, 0, false
	}
	return x, y, true
}

// rollout measures how far a job's allocations have moved to its current
// version.
func rollout(j *api.Job, allocs []*api.Allocation) ui.Rollout {
	r := ui.Rollout{Version: j.Version}
	if !j.Stop {
		for _, g := range j.Groups {
			r.Desired += g.Count
		}
	}
	for _, a := range allocs {
		if a.DesiredStatus != api.AllocDesiredRun || a.ClientTerminal() {
			continue
		}
		if a.JobVersion == j.Version {
			r.Current++
			if a.Health == api.HealthHealthy && a.ClientStatus == api.AllocRunning {
				r.Healthy++
			}
		} else {
			r.Older++
		}
	}
	r.Complete = r.Current >= r.Desired && r.Older == 0
	return r
}

func (s *Server) handleUIAlloc(w http.ResponseWriter, r *http.Request) error {
	b := s.base("alloc", "", "", []string{api.TopicAllocation, api.TopicNode}, nil)
	a, err := s.findAlloc(r.PathValue("id"))
	if err != nil {
		return err
	}
	if err := s.allow(r, a.Namespace, acl.Read); err != nil {
		return err
	}
	b.Key, b.Title, b.Keys = a.ID, "Allocation "+a.Name(), []string{a.ID}
	p := ui.AllocPage{Base: b, Alloc: a}
	var devices []api.GPUDevice
	if n, ok := s.store.Node(a.NodeID); ok {
		p.Node = n
		devices = n.GPUs
	}
	names := map[string]bool{}
	for t := range a.Resources {
		names[t] = true
	}
	for t := range a.TaskStates {
		names[t] = true
	}
	drivers := map[string]string{}
	if j, ok := s.store.Job(a.Namespace, a.Job); ok {
		for _, g := range j.Groups {
			if g.Name == a.Group {
				for _, t := range g.Tasks {
					drivers[t.Name] = t.Driver
				}
			}
		}
	}
	for _, t := range sortedNames(names) {
		p.Tasks = append(p.Tasks, ui.TaskView{Name: t, Driver: drivers[t], Resources: a.Resources[t], State: a.TaskStates[t]})
		if _, ok := a.Resources[t]; ok {
			p.LogTasks = append(p.LogTasks, t)
		}
	}
	p.Charts = ui.AllocCharts(s.allocMetrics(a), devices)
	return s.renderUI(w, "alloc", p)
}

func sortedNames(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// nodeRow adds up what a node's live allocations hold.
func nodeRow(n *api.Node, live []*api.Allocation) ui.NodeRow {
	al := n.Allocatable()
	row := ui.NodeRow{Node: n, GPUs: len(n.GPUs),
		CPU: ui.Usage{Name: "CPU", Total: float64(al.CPU) / 1000, Unit: "cores"},
		Mem: ui.Usage{Name: "Memory", Total: float64(al.Memory), Unit: "MiB"}}
	held := map[string]bool{}
	for _, a := range live {
		if a.NodeID != n.ID || a.ClientTerminal() {
			continue
		}
		row.Allocs++
		for _, u := range allocGPUs(a) {
			held[u] = true
		}
		for _, t := range a.Resources {
			if t == nil {
				continue
			}
			row.CPU.Used += float64(t.CPU) / 1000
			row.Mem.Used += float64(t.Memory)
		}
	}
	for _, g := range n.GPUs {
		if g.Unhealthy {
			row.GPUsBad++
		}
		if held[g.UUID] {
			row.GPUsInUse++
		}
	}
	return row
}

func (s *Server) handleUINodes(w http.ResponseWriter, r *http.Request) error {
	p := ui.NodesPage{Base: s.base("nodes", "", "Nodes", []string{api.TopicNode, api.TopicAllocation}, nil)}
	byNode := map[string][]*api.Allocation{}
	for _, a := range s.store.Allocs(state.AllocFilter{Live: true}) {
		byNode[a.NodeID] = append(byNode[a.NodeID], a)
	}
	for _, n := range s.store.Nodes() {
		p.Nodes = append(p.Nodes, nodeRow(n, byNode[n.ID]))
	}
	return s.renderUI(w, "nodes", p)
}

func (s *Server) handleUINode(w http.ResponseWriter, r *http.Request) error {
	b := s.base("node", "", "", []string{api.TopicNode, api.TopicAllocation}, nil)
	n, err := s.findNode(r.PathValue("id"))
	if err != nil {
		return err
	}
	b.Key, b.Title, b.Keys = n.ID, "Node "+n.Name, []string{n.ID}
	all := s.store.Allocs(state.AllocFilter{NodeID: n.ID})
	p := ui.NodePage{Base: b, Row: nodeRow(n, all), GPUs: ui.BuildGPUMap(n, all)}
	s.markDefragMoves(r, n, p.GPUs)
	al := n.Allocatable()
	p.Disk = ui.Usage{Name: "Disk", Total: float64(al.Disk), Unit: "MiB"}
	for _, a := range all {
		if !a.ClientTerminal() {
			for _, t := range a.Resources {
				if t != nil {
					p.Disk.Used += float64(t.Disk)
				}
			}
		}
		// Allocations of namespaces the caller may not read are counted
		// in the node's usage but not listed.
		if s.visible(r, a.Namespace) {
			p.Allocs = append(p.Allocs, a)
		}
	}
	sort.SliceStable(p.Allocs, func(i, j int) bool {
		x, y := p.Allocs[i], p.Allocs[j]
		if x.ClientTerminal() != y.ClientTerminal() {
			return !x.ClientTerminal()
		}
		return x.CreateTime.After(y.CreateTime)
	})
	samples := s.history.Get(n.ID)
	if len(samples) > 0 {
		last := samples[len(samples)-1]
		p.Sample = &last
	}
	p.Charts = ui.NodeCharts(samples, n.GPUs)
	return s.renderUI(w, "node", p)
}

// Recent events for the overview: the server follows the event stream
// from the first time the UI asks, starting a little in the past, and
// keeps the latest ones in memory.

const (
	recentKept     = 200
	recentBackfill = 5000 // revisions to look back when it starts
)

type uiState struct {
	frags  http.Handler // the fragments, for the shell (see uiRoutes)
	once   sync.Once
	stop   context.CancelFunc // ends the follower, at shutdown
	mu     sync.Mutex
	recent []recentEvent // oldest first, at most recentKept
}

type recentEvent struct {
	ui.EventView
}

func (s *Server) recentEvents(r *http.Request, n int) []ui.EventView {
	s.ui.once.Do(s.followEvents)
	s.ui.mu.Lock()
	defer s.ui.mu.Unlock()
	var out []ui.EventView
	for i := len(s.ui.recent) - 1; i >= 0 && len(out) < n; i-- {
		e := s.ui.recent[i]
		if s.eventVisible(r, e.Topic, e.Namespace) {
			out = append(out, e.EventView)
		}
	}
	return out
}

// eventVisible applies the event stream's visibility rules.
func (s *Server) eventVisible(r *http.Request, topic, ns string) bool {
	switch {
	case ns != "":
		return s.can(r, ns, acl.Read)
	case topic == api.TopicNode:
		return s.can(r, "", acl.NodeRead)
	default:
		return s.can(r, "", acl.OperatorRead)
	}
}

// followEvents starts the goroutine that keeps the recent events; it
// stops when the HTTP server shuts down.
func (s *Server) followEvents() {
	ctx, cancel := context.WithCancel(context.Background())
	s.ui.stop = cancel
	if s.httpSrv != nil {
		s.httpSrv.RegisterOnShutdown(cancel)
	}
	target := s.store.Index()
	from := max(target-recentBackfill, 1)
	first := make(chan struct{})
	var firstOnce sync.Once
	go func() {
		for ctx.Err() == nil {
			err := s.store.Events(ctx, from, state.EventFilter{}, s.now, func(es []api.Event) error {
				s.ui.mu.Lock()
				defer s.ui.mu.Unlock()
				for _, e := range es {
					v := ui.Summarize(e)
					if e.Topic == api.TopicNode && e.Index <= target {
						// Node records carry no change time, so events
						// read back from history are stamped with the
						// time they are read; the node's last heartbeat
						// (or registration) is closer.
						var n api.Node
						if json.Unmarshal(e.Payload, &n) == nil && !n.LastHeartbeat.IsZero() && n.LastHeartbeat.Before(v.Time) {
							v.Time = n.LastHeartbeat
						}
					}
					s.ui.recent = append(s.ui.recent, recentEvent{v})
					from = e.Index
				}
				if from >= target {
					firstOnce.Do(func() { close(first) })
				}
				if len(s.ui.recent) > recentKept {
					s.ui.recent = append([]recentEvent(nil), s.ui.recent[len(s.ui.recent)-recentKept:]...)
				}
				return nil
			})
			var ce *state.CompactedError
			if errors.As(err, &ce) {
				from = ce.Oldest
				continue
			}
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}()
	// Give the first page the history it asked for, if it comes quickly.
	select {
	case <-first:
	case <-time.After(500 * time.Millisecond):
	}
}
