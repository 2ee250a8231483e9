package web

import (
	"bytes"
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
	"github.com/gantryhq/gantry/internal/server"
	"github.com/gantryhq/gantry/internal/state"
	"github.com/gantryhq/gantry/internal/ui"
)

// Every /ui/ address serves the same shell, which holds no data; its
// script asks /ui/fragments/... for the page's HTML with the caller's
// token in the X-Gantry-Token header, so each fragment is authorized like
// the API endpoint that reads the same objects (the server's routeRules),
// and a browser without a token sees nothing but the sign-in form. No
// cookie is ever set: nothing a cross-site request carries by itself
// opens the UI.

// routes mounts the UI's routes on the server, each authorized by the
// rule the server keeps for its pattern.
func (u *UI) routes(rt Router) {
	// The fragments are also served inside the shell, for browsers
	// without JavaScript: u.frags dispatches them the same way.
	frags := http.NewServeMux()
	u.frags = frags
	handle := func(pattern string, h func(http.ResponseWriter, *http.Request) error) {
		hh := rt.Route(pattern, h)
		rt.Mount(pattern, hh)
		if strings.HasPrefix(pattern, "GET /ui/fragments/") {
			frags.Handle(pattern, hh)
		}
	}
	handle("GET /ui", func(w http.ResponseWriter, r *http.Request) error {
		http.Redirect(w, r, "/ui/", http.StatusMovedPermanently)
		return nil
	})
	handle("GET /ui/{path...}", u.handleUIShell)
	handle("GET /ui/assets/{file}", u.handleUIAsset)
	handle("GET /ui/fragments/{rest...}", func(w http.ResponseWriter, r *http.Request) error {
		return notFound("the UI has no page %s", strings.TrimPrefix(r.URL.Path, "/ui/fragments"))
	})
	handle("GET /ui/fragments/overview", u.handleUIOverview)
	handle("GET /ui/fragments/jobs", u.handleUIJobs)
	handle("GET /ui/fragments/jobs/{name}", u.handleUIJob)
	handle("GET /ui/fragments/allocations/{id}", u.handleUIAlloc)
	handle("GET /ui/fragments/nodes", u.handleUINodes)
	handle("GET /ui/fragments/nodes/{id}", u.handleUINode)
	u.uiPageRoutes(handle)
	// The Virtualization page may be the leader's answer, forwarded: it
	// is not put into the shell.
	rt.Mount("GET /ui/fragments/virtualization", rt.Route("GET /ui/fragments/virtualization", u.handleUIVirtualization))
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
func (u *UI) handleUIShell(w http.ResponseWriter, r *http.Request) error {
	uiHeaders(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(ui.ShellWith(u.anonymousFragment(r)))
	return nil
}

// anonymousFragment renders the page of a /ui/ address as a request
// without a token gets it; nil when that is refused or fails.
func (u *UI) anonymousFragment(r *http.Request) []byte {
	page := strings.Trim(strings.TrimPrefix(r.URL.Path, "/ui"), "/")
	if page == "" {
		page = "overview"
	}
	addr := "/ui/fragments/" + page
	if r.URL.RawQuery != "" {
		addr += "?" + r.URL.RawQuery
	}
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, addr, nil)
	if err != nil {
		return nil
	}
	req.RemoteAddr, req.TLS = r.RemoteAddr, r.TLS
	rec := &fragmentRecorder{header: http.Header{}, status: http.StatusOK}
	u.frags.ServeHTTP(rec, req)
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

func (u *UI) handleUIAsset(w http.ResponseWriter, r *http.Request) error {
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

func (u *UI) renderUI(w http.ResponseWriter, page string, data any) error {
	uiHeaders(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	return ui.Render(w, page, data)
}

// can reports whether the caller holds capability c in namespace ns (""
// for cluster-wide capabilities).
func (u *UI) can(r *http.Request, ns string, c acl.Capability) bool {
	return u.access.Allow(r, ns, c) == nil
}

// visible reports whether list results of namespace ns may be shown.
func (u *UI) visible(r *http.Request, ns string) bool {
	return u.can(r, ns, acl.Read)
}

// base starts a page. The index is read before anything else, so the
// event stream the page follows resumes from no later than what it shows.
func (u *UI) base(page, key, title string, topics, keys []string) ui.Base {
	return ui.Base{Page: page, Key: key, Title: title, Index: u.view.Index(), Now: u.cluster.Now(), Topics: topics, Keys: keys}
}

func (u *UI) handleUIOverview(w http.ResponseWriter, r *http.Request) error {
	p := ui.Overview{Base: u.base("overview", "", "Overview", nil, nil), QueueShown: true}
	p.Status = u.cluster.Status()
	p.Status.Index, p.Status.Time = p.Index, p.Now
	nodes := u.view.Nodes()
	var live []*api.Allocation
	allocCounts := map[string]int{}
	for _, a := range u.view.Allocs(state.AllocFilter{}) {
		if !u.visible(r, a.Namespace) {
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
	for _, j := range u.view.Jobs("") {
		if u.visible(r, j.Namespace) {
			jobCounts[u.jobs.JobSummary(j).Status]++
		}
	}
	for _, st := range []string{api.JobStatusRunning, api.JobStatusPending, api.JobStatusDead} {
		if jobCounts[st] > 0 {
			p.Jobs = append(p.Jobs, ui.Count{Name: st, N: jobCounts[st]})
		}
	}
	if u.can(r, "", acl.NodeRead) {
		p.NodesShown = true
		p.NodeTotal = len(nodes)
		nc := map[string]int{}
		var cpu, mem, gpus ui.Usage
		cpu.Name, cpu.Unit, mem.Name, mem.Unit, gpus.Name, gpus.Unit = "CPU", "cores", "Memory", "GiB", "GPUs", "held"
		byNode := map[string][]*api.Allocation{}
		for _, a := range u.view.Allocs(state.AllocFilter{Live: true}) {
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
	for _, q := range u.queues.QueueReports() {
		p.Queues = append(p.Queues, queueView(q))
	}
	p.Events = u.recentEvents(r, 25)
	return u.renderUI(w, "overview", p)
}

func (u *UI) handleUIJobs(w http.ResponseWriter, r *http.Request) error {
	ns := r.URL.Query().Get("namespace")
	if ns != "" && !api.ValidName(ns) {
		return badRequest("namespace %q %s", ns, api.NameRule)
	}
	p := ui.JobsPage{Base: u.base("jobs", "", "Jobs", []string{api.TopicJob, api.TopicAllocation, api.TopicEvaluation}, nil)}
	for _, j := range u.view.Jobs(ns) {
		if u.visible(r, j.Namespace) {
			p.Jobs = append(p.Jobs, u.jobs.JobSummary(j))
		}
	}
	return u.renderUI(w, "jobs", p)
}

func (u *UI) handleUIJob(w http.ResponseWriter, r *http.Request) error {
	b := u.base("job", "", "", []string{api.TopicJob, api.TopicAllocation, api.TopicEvaluation, api.TopicDeployment}, nil)
	j, err := u.lookups.LookupJob(r)
	if err != nil {
		return err
	}
	b.Key, b.Title, b.Keys = j.Key(), "Job "+j.Name, []string{j.Name}
	p := ui.JobPage{Base: b, Summary: u.jobs.JobSummary(j)}
	p.Allocs = u.view.Allocs(state.AllocFilter{Namespace: j.Namespace, Job: j.Name})
	sort.SliceStable(p.Allocs, func(a, b int) bool {
		x, y := p.Allocs[a], p.Allocs[b]
		if x.ClientTerminal() != y.ClientTerminal() {
			return !x.ClientTerminal()
		}
		return x.CreateTime.After(y.CreateTime)
	})
	evals := u.view.Evals(j.Namespace, j.Name)
	sort.SliceStable(evals, func(a, b int) bool { return evals[a].ModifyIndex > evals[b].ModifyIndex })
	seen := map[string]bool{}
	for i, e := range evals {
		// The placement failures that still hold: blocked evaluations
		// (waiting for capacity) and the latest finished one.
		latest := i == 0 || (e.Status != api.EvalPending && evals[0].Status == api.EvalPending && i == 1)
		if len(e.FailedGroups) > 0 && (e.Status == api.EvalBlocked || latest) && !seen[e.ID] {
			c := *e
			c.FailedGroups = u.jobs.Annotate(copyExplanations(e.FailedGroups))
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
	vs, err := u.records.JobVersions(r.Context(), j.Namespace, j.Name)
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
		p.DiffFrom, p.DiffTo, p.HasDiff, p.Diff = from, to, true, server.DiffJobs(a, c)
	}
	p.Rollout = rollout(j, p.Allocs)
	// Deployments (rolling updates) report their progress in the
	// rollout region once the deployment type exists; the rollout above
	// is derived from the allocations' job versions and health.
	return u.renderUI(w, "job", p)
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

func (u *UI) handleUIAlloc(w http.ResponseWriter, r *http.Request) error {
	b := u.base("alloc", "", "", []string{api.TopicAllocation, api.TopicNode}, nil)
	a, err := u.lookups.FindAlloc(r.PathValue("id"))
	if err != nil {
		return err
	}
	if err := u.access.Allow(r, a.Namespace, acl.Read); err != nil {
		return err
	}
	b.Key, b.Title, b.Keys = a.ID, "Allocation "+a.Name(), []string{a.ID}
	p := ui.AllocPage{Base: b, Alloc: a}
	var devices []api.GPUDevice
	if n, ok := u.view.Node(a.NodeID); ok {
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
	if j, ok := u.view.Job(a.Namespace, a.Job); ok {
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
	p.Charts = ui.AllocCharts(u.metrics.AllocMetrics(a), devices)
	return u.renderUI(w, "alloc", p)
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
		for _, u := range server.AllocGPUs(a) {
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

func (u *UI) handleUINodes(w http.ResponseWriter, r *http.Request) error {
	p := ui.NodesPage{Base: u.base("nodes", "", "Nodes", []string{api.TopicNode, api.TopicAllocation}, nil)}
	byNode := map[string][]*api.Allocation{}
	for _, a := range u.view.Allocs(state.AllocFilter{Live: true}) {
		byNode[a.NodeID] = append(byNode[a.NodeID], a)
	}
	for _, n := range u.view.Nodes() {
		p.Nodes = append(p.Nodes, nodeRow(n, byNode[n.ID]))
	}
	return u.renderUI(w, "nodes", p)
}

func (u *UI) handleUINode(w http.ResponseWriter, r *http.Request) error {
	b := u.base("node", "", "", []string{api.TopicNode, api.TopicAllocation}, nil)
	n, err := u.lookups.FindNode(r.PathValue("id"))
	if err != nil {
		return err
	}
	b.Key, b.Title, b.Keys = n.ID, "Node "+n.Name, []string{n.ID}
	all := u.view.Allocs(state.AllocFilter{NodeID: n.ID})
	p := ui.NodePage{Base: b, Row: nodeRow(n, all), GPUs: ui.BuildGPUMap(n, all)}
	u.markDefragMoves(r, n, p.GPUs)
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
		if u.visible(r, a.Namespace) {
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
	samples := u.metrics.NodeHistory(n.ID)
	if len(samples) > 0 {
		last := samples[len(samples)-1]
		p.Sample = &last
	}
	p.Charts = ui.NodeCharts(samples, n.GPUs)
	return u.renderUI(w, "node", p)
}

// Recent events for the overview: the UI follows the event stream
// from the first time the UI asks, starting a little in the past, and
// keeps the latest ones in memory.

const (
	recentKept     = 200
	recentBackfill = 5000 // revisions to look back when it starts
)

type recentEvent struct {
	ui.EventView
}

func (u *UI) recentEvents(r *http.Request, n int) []ui.EventView {
	u.once.Do(u.followEvents)
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []ui.EventView
	for i := len(u.recent) - 1; i >= 0 && len(out) < n; i-- {
		e := u.recent[i]
		if u.eventVisible(r, e.Topic, e.Namespace) {
			out = append(out, e.EventView)
		}
	}
	return out
}

// eventVisible applies the event stream's visibility rules.
func (u *UI) eventVisible(r *http.Request, topic, ns string) bool {
	switch {
	case ns != "":
		return u.can(r, ns, acl.Read)
	case topic == api.TopicNode:
		return u.can(r, "", acl.NodeRead)
	default:
		return u.can(r, "", acl.OperatorRead)
	}
}

// followEvents starts the goroutine that keeps the recent events; it
// stops when the context given to Mount ends.
func (u *UI) followEvents() {
	ctx := u.ctx
	target := u.view.Index()
	from := max(target-recentBackfill, 1)
	first := make(chan struct{})
	var firstOnce sync.Once
	go func() {
		for ctx.Err() == nil {
			err := u.events.Events(ctx, from, state.EventFilter{}, u.cluster.Now, func(es []api.Event) error {
				u.mu.Lock()
				defer u.mu.Unlock()
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
					u.recent = append(u.recent, recentEvent{v})
					from = e.Index
				}
				if from >= target {
					firstOnce.Do(func() { close(first) })
				}
				if len(u.recent) > recentKept {
					u.recent = append([]recentEvent(nil), u.recent[len(u.recent)-recentKept:]...)
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

// markDefragMoves marks the latest proposed plan's moves on a node's GPU
// map: moves whose replica still runs where the plan found it, the
// destination only until the replacement is placed. A proposal that
// cannot be read leaves the map unmarked.
func (u *UI) markDefragMoves(r *http.Request, n *api.Node, views []ui.GPUView) {
	rec, err := u.records.DefragProposal(r.Context())
	if err != nil || rec == nil || rec.Plan == nil || len(rec.Plan.Moves) == 0 {
		return
	}
	started := map[string]bool{}
	var moves []api.DefragMove
	for _, m := range rec.Plan.Moves {
		if old, ok := u.view.Alloc(m.Alloc); !ok || old.DesiredStatus != api.AllocDesiredRun || old.ClientTerminal() || !u.visible(r, old.Namespace) {
			continue
		}
		moves = append(moves, m)
	}
	for _, a := range u.view.Allocs(state.AllocFilter{}) {
		if a.Move != "" && a.PreviousAlloc != "" {
			started[a.PreviousAlloc] = true
		}
	}
	ui.MarkMoves(views, n.Name, moves, started)
}
