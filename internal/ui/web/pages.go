package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gantryhq/gantry/internal/acl"
	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/audit"
	"github.com/gantryhq/gantry/internal/server"
	"github.com/gantryhq/gantry/internal/state"
	"github.com/gantryhq/gantry/internal/ui"
)

// The UI's list pages: allocations, evaluations, deployments, services,
// events, queues, audit findings and topology. Each reads what the API
// endpoint of the same objects reads, under the same rule (routeRules).

// uiListLimit bounds the rows a list page shows; the newest are kept.
const uiListLimit = 500

func (u *UI) uiPageRoutes(handle func(string, func(http.ResponseWriter, *http.Request) error)) {
	handle("GET /ui/fragments/allocations", u.handleUIAllocs)
	handle("GET /ui/fragments/evaluations", u.handleUIEvals)
	handle("GET /ui/fragments/deployments", u.handleUIDeployments)
	handle("GET /ui/fragments/services", u.handleUIServices)
	handle("GET /ui/fragments/events", u.handleUIEvents)
	handle("GET /ui/fragments/queues", u.handleUIQueues)
	handle("GET /ui/fragments/audit", u.handleUIAudit)
	handle("GET /ui/fragments/topology", u.handleUITopology)
}

// jobOptions lists the visible jobs for a filter, by name.
func (u *UI) jobOptions(r *http.Request) []ui.Option {
	seen := map[string]bool{}
	var out []ui.Option
	for _, j := range u.view.Jobs("") {
		if u.visible(r, j.Namespace) && !seen[j.Name] {
			seen[j.Name] = true
			out = append(out, ui.Option{Value: j.Name, Label: j.Name})
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Value < out[b].Value })
	return out
}

func (u *UI) handleUIAllocs(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	p := ui.AllocsPage{Base: u.base("allocations", "", "Allocations", []string{api.TopicAllocation}, nil),
		Job: q.Get("job"), Node: q.Get("node"), Status: q.Get("status"),
		Statuses: []string{api.AllocPending, api.AllocRunning, api.AllocComplete, api.AllocFailed, api.AllocLost}}
	if p.Status != "" && !contains(p.Statuses, p.Status) {
		return badRequest("status %q is not an allocation status; use %s", p.Status, strings.Join(p.Statuses, ", "))
	}
	p.Jobs = u.jobOptions(r)
	var nodeID string
	if p.Node != "" {
		n, err := u.lookups.FindNode(p.Node)
		if err != nil {
			return err
		}
		nodeID = n.ID
	}
	for _, n := range u.view.Nodes() {
		p.Nodes = append(p.Nodes, ui.Option{Value: n.ID, Label: n.Name})
		if n.ID == nodeID {
			p.Node = n.ID
		}
	}
	sort.Slice(p.Nodes, func(a, b int) bool { return p.Nodes[a].Label < p.Nodes[b].Label })
	for _, a := range u.view.Allocs(state.AllocFilter{}) {
		if !u.visible(r, a.Namespace) {
			continue
		}
		p.Total++
		if (p.Job == "" || a.Job == p.Job) && (nodeID == "" || a.NodeID == nodeID) && (p.Status == "" || a.ClientStatus == p.Status) {
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
	if len(p.Allocs) > uiListLimit {
		p.Truncated = len(p.Allocs) - uiListLimit
		p.Allocs = p.Allocs[:uiListLimit]
	}
	return u.renderUI(w, "allocations", p)
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

func (u *UI) handleUIEvals(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	p := ui.EvalsPage{Base: u.base("evaluations", "", "Evaluations", []string{api.TopicEvaluation}, nil),
		Job: q.Get("job"), Status: q.Get("status"), Trigger: q.Get("trigger"), Grouped: q.Get("view") != "each",
		Statuses: []string{api.EvalPending, api.EvalBlocked, api.EvalComplete, api.EvalFailed}}
	if v := q.Get("view"); v != "" && v != "each" && v != "grouped" {
		return badRequest("view %q: use grouped or each", v)
	}
	p.Jobs = u.jobOptions(r)
	triggers := map[string]bool{}
	var match []*api.Evaluation
	for _, e := range u.view.Evals("", "") {
		if !u.visible(r, e.Namespace) {
			continue
		}
		p.Total++
		triggers[e.TriggeredBy] = true
		if (p.Job == "" || e.Job == p.Job) && (p.Status == "" || e.Status == p.Status) && (p.Trigger == "" || e.TriggeredBy == p.Trigger) {
			match = append(match, e)
		}
	}
	p.Triggers = sortedNames(triggers)
	p.Matching = len(match)
	sort.SliceStable(match, func(a, b int) bool { return match[a].ModifyIndex > match[b].ModifyIndex })
	if p.Grouped {
		p.Groups = ui.GroupEvals(match)
		if len(p.Groups) > uiListLimit {
			p.Truncated = len(p.Groups) - uiListLimit
			p.Groups = p.Groups[:uiListLimit]
		}
	} else {
		if len(match) > uiListLimit {
			p.Truncated = len(match) - uiListLimit
			match = match[:uiListLimit]
		}
		p.Evals = match
	}
	return u.renderUI(w, "evaluations", p)
}

func (u *UI) handleUIDeployments(w http.ResponseWriter, r *http.Request) error {
	p := ui.DeploymentsPage{Base: u.base("deployments", "", "Deployments", []string{api.TopicDeployment, api.TopicJob}, nil)}
	var ds []*api.Deployment
	for _, d := range u.view.Deployments("", "") {
		if u.visible(r, d.Namespace) {
			ds = append(ds, d)
		}
	}
	sort.SliceStable(ds, func(a, b int) bool {
		if !ds[a].CreateTime.Equal(ds[b].CreateTime) {
			return ds[a].CreateTime.After(ds[b].CreateTime)
		}
		return ds[a].JobVersion > ds[b].JobVersion
	})
	latest := map[string]bool{}
	for _, d := range ds {
		v := ui.DeploymentView{D: d, CanWrite: u.can(r, d.Namespace, acl.SubmitJob)}
		for _, name := range sortedKeysOf(d.Groups) {
			v.Groups = append(v.Groups, ui.DeploymentGroupView{Name: name, G: d.Groups[name]})
		}
		if !latest[d.JobKey()] {
			latest[d.JobKey()] = true
			v.Latest = true
			v.Promotable = d.RequiresPromotion()
			if j, ok := u.view.Job(d.Namespace, d.Job); ok && j.Version == d.JobVersion && d.JobVersion > 0 && !j.Stop {
				v.RevertTo = u.revertTarget(ds, d)
			}
		}
		if len(p.Deployments) < uiListLimit {
			p.Deployments = append(p.Deployments, v)
		}
	}
	return u.renderUI(w, "deployments", p)
}

// revertTarget is the version a revert button offers for a job's latest
// deployment: the newest earlier version whose deployment succeeded, else
// the version before.
func (u *UI) revertTarget(ds []*api.Deployment, d *api.Deployment) *uint64 {
	for _, o := range ds {
		if o.JobKey() == d.JobKey() && o.JobVersion < d.JobVersion && o.Status == api.DeploymentSuccessful {
			v := o.JobVersion
			return &v
		}
	}
	v := d.JobVersion - 1
	return &v
}

func sortedKeysOf[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (u *UI) handleUIServices(w http.ResponseWriter, r *http.Request) error {
	p := ui.ServicesPage{Base: u.base("services", "", "Services", []string{api.TopicAllocation, api.TopicJob}, nil)}
	var withLB bool
	for _, svc := range u.catalog.Catalog().Services {
		if u.visible(r, svc.Namespace) {
			p.Services = append(p.Services, ui.ServiceView{ServiceInfo: svc})
			withLB = withLB || svc.LB != nil
		}
	}
	if withLB {
		figures, errs := u.lbFigures(r.Context())
		for i := range p.Services {
			v := &p.Services[i]
			if f, ok := figures[v.Namespace+"/"+v.Name]; ok {
				v.LB, v.ByAddr = &f.total, f.endpoints
			} else if v.ServiceInfo.LB != nil {
				v.Unserved = true
			}
		}
		if len(errs) > 0 {
			p.LBNote = "Load-balancer figures are missing from " + strings.Join(errs, "; ") + "."
		}
	}
	return u.renderUI(w, "services", p)
}

type lbService struct {
	total     ui.LBFigures
	endpoints map[string]ui.LBEndpoint
}

// lbFigures reads the gantry_lb_* series of every ready agent's /metrics
// (agents started with --lb serve them) and adds them up by service and
// endpoint. An agent that does not answer in time is named in errs.
func (u *UI) lbFigures(ctx context.Context) (map[string]*lbService, []string) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var mu sync.Mutex
	var wg sync.WaitGroup
	out := map[string]*lbService{}
	var errs []string
	for _, n := range u.view.Nodes() {
		if n.Status != api.NodeStatusReady || n.HTTPAddr == "" {
			continue
		}
		wg.Add(1)
		go func(n *api.Node) {
			defer wg.Done()
			fams, err := u.metrics.AgentMetrics(ctx, n)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Sprintf("node %s (%v)", n.Name, err))
				return
			}
			seen := map[string]bool{}
			get := func(key string) *lbService {
				f := out[key]
				if f == nil {
					f = &lbService{endpoints: map[string]ui.LBEndpoint{}}
					out[key] = f
				}
				if !seen[key] {
					seen[key] = true
					f.total.Balancers++
				}
				return f
			}
			for name, fam := range fams {
				if !strings.HasPrefix(name, "gantry_lb_") {
					continue
				}
				for _, m := range fam.GetMetric() {
					l := map[string]string{}
					for _, lp := range m.GetLabel() {
						l[lp.GetName()] = lp.GetValue()
					}
					f := get(l["namespace"] + "/" + l["service"])
					ep := f.endpoints[l["endpoint"]]
					v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
					switch name {
					case "gantry_lb_requests_total":
						f.total.Requests += v
						ep.Requests += v
						if l["code"] == "5xx" || l["code"] == "error" {
							f.total.Errors += v
							ep.Errors += v
						}
					case "gantry_lb_retries_total":
						f.total.Retries += v
					case "gantry_lb_outstanding_requests":
						f.total.Outstanding += v
						ep.Outstanding += v
					case "gantry_lb_endpoint_up":
						ep.Up = ep.Up || v > 0
					case "gantry_lb_no_endpoint_total":
						f.total.NoEndpoint += v
						continue
					default:
						continue
					}
					f.endpoints[l["endpoint"]] = ep
				}
			}
		}(n)
	}
	wg.Wait()
	sort.Strings(errs)
	return out, errs
}

func (u *UI) handleUIEvents(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	topics := []string{api.TopicJob, api.TopicAllocation, api.TopicEvaluation, api.TopicDeployment, api.TopicNode, api.TopicQueue, api.TopicAudit}
	p := ui.EventsPage{Topics: topics, Selected: map[string]bool{}, Key: strings.TrimSpace(q.Get("key"))}
	var sel []string
	for _, t := range q["topic"] {
		if !server.KnownTopic(t) {
			return badRequest("unknown event topic %q: use %s", t, strings.Join(topics, ", "))
		}
		if !p.Selected[t] {
			p.Selected[t] = true
			sel = append(sel, t)
		}
	}
	var keys []string
	if p.Key != "" {
		keys = []string{p.Key}
	}
	p.Base = u.base("events", "", "Events", sel, keys)
	target := p.Index
	given := q.Get("index") != ""
	if given {
		n, err := strconv.ParseInt(q.Get("index"), 10, 64)
		if err != nil || n < 0 {
			return badRequest("index %q must be a non-negative integer", q.Get("index"))
		}
		p.From = n
	} else {
		p.From = max(target-eventsLookBack, 0)
	}
	keep := func(e api.Event, v ui.EventView) bool {
		return (len(p.Selected) == 0 || p.Selected[e.Topic]) && (p.Key == "" || e.Key == p.Key || v.Job == p.Key || v.Name == p.Key) &&
			u.eventVisible(r, e.Topic, e.Namespace)
	}
	evs, last, err := u.readEvents(r.Context(), p.From, target, keep)
	var ce *state.CompactedError
	if errors.As(err, &ce) {
		if given {
			p.Compacted = ce.Oldest
			return u.renderUI(w, "eventsPage", p)
		}
		p.From = ce.Oldest - 1
		evs, last, err = u.readEvents(r.Context(), p.From, target, keep)
	}
	if err != nil {
		return err
	}
	p.PartialRun = last < target && len(evs) == 0
	if len(evs) > eventsShown {
		p.Truncated = true
		evs = evs[len(evs)-eventsShown:]
	}
	for i := len(evs) - 1; i >= 0; i-- {
		p.Events = append(p.Events, evs[i])
	}
	if len(p.Events) > 0 {
		p.Last = p.Events[0].Index
	}
	return u.renderUI(w, "eventsPage", p)
}

const (
	eventsLookBack = 5000 // revisions the events page reads without ?index=
	eventsShown    = 200
)

// readEvents reads the store's events after from up to target (the index
// the page was rendered at), oldest first. The history comes back in one
// go; reading stops once target is reached or the stream goes quiet.
func (u *UI) readEvents(ctx context.Context, from, target int64, keep func(api.Event, ui.EventView) bool) ([]ui.EventView, int64, error) {
	if from >= target {
		return nil, from, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	var out []ui.EventView
	var last int64
	quiet := time.AfterFunc(time.Second, cancel)
	defer quiet.Stop()
	errDone := errors.New("done")
	// Index 0 means "from now" to the store; the history starts at 1.
	err := u.events.Events(ctx, max(from, 1), state.EventFilter{}, u.cluster.Now, func(es []api.Event) error {
		quiet.Reset(300 * time.Millisecond)
		for _, e := range es {
			if e.Index > target {
				return errDone
			}
			last = e.Index
			v := ui.Summarize(e)
			if keep(e, v) {
				out = append(out, v)
				if len(out) > 4*eventsShown {
					out = append([]ui.EventView(nil), out[len(out)-eventsShown:]...)
				}
			}
		}
		if last >= target {
			return errDone
		}
		return nil
	})
	if err != nil && !errors.Is(err, errDone) && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		return nil, last, err
	}
	return out, last, nil
}

func (u *UI) handleUIQueues(w http.ResponseWriter, r *http.Request) error {
	p := ui.QueuesPage{Base: u.base("queues", "", "Queues", []string{api.TopicQueue, api.TopicEvaluation, api.TopicAllocation}, nil)}
	for _, q := range u.queues.QueueReports() {
		p.Queues = append(p.Queues, queueView(q))
	}
	qs := u.queues.Queues()
	for _, e := range u.view.Evals("", "") {
		if !u.visible(r, e.Namespace) {
			continue
		}
		switch e.Status {
		case api.EvalBlocked:
			p.Waiting = append(p.Waiting, ui.QueuedEval{Queue: qs.QueueOf(e.Namespace), Eval: e})
		case api.EvalPending:
			p.Pending++
		}
	}
	sort.SliceStable(p.Waiting, func(a, b int) bool {
		x, y := p.Waiting[a], p.Waiting[b]
		if x.Queue != y.Queue {
			return x.Queue < y.Queue
		}
		return x.Eval.Priority > y.Eval.Priority
	})
	return u.renderUI(w, "queues", p)
}

func (u *UI) handleUIAudit(w http.ResponseWriter, r *http.Request) error {
	p := ui.AuditPage{Base: u.base("audit", "", "Audit findings", []string{api.TopicAudit}, nil), CanScan: u.can(r, "", acl.Operator)}
	doc, err := u.policy.AdmissionPolicy(r.Context())
	if err != nil {
		return err
	}
	if doc.Default {
		p.PolicyNote = "Each failure is marked block or warn by the default policy ('gantry policy show')."
	} else {
		p.PolicyNote = "Each failure is marked block or warn by the cluster's policy ('gantry policy show')."
	}
	ids, reports, err := u.records.NodeAudits(r.Context())
	if err != nil {
		return err
	}
	for i, data := range reports {
		var nr audit.NodeReport
		if err := json.Unmarshal(data, &nr); err != nil {
			continue
		}
		name := nr.Report.Node
		if n, ok := u.view.Node(ids[i]); ok {
			name = n.Name
		}
		p.Nodes = append(p.Nodes, ui.BuildAuditNode(nr.NodeID, name, nr.ModifyTime, nr.Report, doc.Policy))
	}
	sort.Slice(p.Nodes, func(a, b int) bool { return p.Nodes[a].NodeName < p.Nodes[b].NodeName })
	return u.renderUI(w, "auditPage", p)
}

func (u *UI) handleUITopology(w http.ResponseWriter, r *http.Request) error {
	p := ui.TopologyPage{Base: u.base("topology", "", "Topology", []string{api.TopicNode, api.TopicAllocation}, nil)}
	byNode := map[string][]*api.Allocation{}
	for _, a := range u.view.Allocs(state.AllocFilter{Live: true}) {
		byNode[a.NodeID] = append(byNode[a.NodeID], a)
	}
	jobs := map[string]ui.TopoJob{}
	for _, n := range u.view.Nodes() {
		t := ui.BuildTopoNode(n, byNode[n.ID])
		for _, a := range t.Allocs {
			jobs[a.Namespace+"/"+a.Job] = ui.TopoJob{Namespace: a.Namespace, Name: a.Job, Colour: ui.JobColour(a.Namespace, a.Job)}
		}
		p.Nodes = append(p.Nodes, t)
	}
	sort.Slice(p.Nodes, func(a, b int) bool { return p.Nodes[a].Node.Name < p.Nodes[b].Node.Name })
	for _, k := range sortedKeysOf(jobs) {
		p.Jobs = append(p.Jobs, jobs[k])
	}
	return u.renderUI(w, "topology", p)
}

// queueView is the queue as the UI shows it.
func queueView(q server.QueueReport) ui.QueueView {
	v := ui.QueueView{Name: q.Status.Name, Weight: q.Status.Weight, Namespaces: q.Status.Namespaces,
		Borrowing: q.Status.Borrowing, Starved: q.IsStarved(), Waiting: q.Waiting}
	use, g := server.QueueFigures(q.Status.Usage), server.QueueFigures(q.Status.Guarantee)
	pend := server.QueueFigures(q.Pending.Limits())
	var lim [3]float64
	if q.Status.Limit != nil {
		lim = server.QueueFigures(*q.Status.Limit)
	}
	for i, d := range server.QueueDims {
		v.Dims = append(v.Dims, ui.QueueDim{Name: d.Name, Unit: d.Unit, Usage: use[i], Guarantee: g[i], Limit: lim[i],
			HasLimit: q.Status.Limit != nil, StarvedHere: q.Starved[i], Pending: pend[i]})
	}
	return v
}
