package ui

import (
	"fmt"
	"html"
	"html/template"
	"sort"
	"strings"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/audit"
)

// The list pages of every object an operator looks at: allocations,
// evaluations, deployments, services, events, queues, audit findings and
// the topology of the cluster. Each is read with a GET form whose fields
// are the page's filters, so it works without JavaScript.

// Option is one choice of a filter's select.
type Option struct {
	Value, Label string
}

// AllocsPage lists allocations, filtered by job, node and status.
type AllocsPage struct {
	Base
	Job, Node, Status string // the filters in force ("" for any)
	Jobs, Nodes       []Option
	Statuses          []string
	Allocs            []*api.Allocation
	Total             int // allocations the caller may read, before filtering
	Truncated         int // matching allocations not listed (the newest are)
}

// EvalsPage lists evaluations with their reasons, filtered by job, status
// and trigger, and grouped by default: evaluations of one job, trigger and
// status that did the same thing (placed nothing, say) are one row.
type EvalsPage struct {
	Base
	Job, Status, Trigger string
	Grouped              bool
	Jobs                 []Option
	Statuses, Triggers   []string
	Groups               []EvalGroup
	Evals                []*api.Evaluation // when not grouped
	Total, Matching      int
	Truncated            int
}

// EvalGroup is a run of alike evaluations.
type EvalGroup struct {
	Namespace, Job, Trigger, Status string
	Count                           int
	Placed, Stopped                 int // in total
	NothingDone                     bool
	Latest                          *api.Evaluation
	First                           time.Time
}

// GroupEvals groups evaluations (any order) by job, trigger, status and
// whether they changed anything; the group with the newest evaluation
// comes first.
func GroupEvals(evals []*api.Evaluation) []EvalGroup {
	type key struct {
		ns, job, trig, st string
		idle              bool
	}
	idx := map[key]int{}
	var out []EvalGroup
	for _, e := range evals {
		idle := e.Placed == 0 && e.Stopped == 0 && len(e.FailedGroups) == 0
		k := key{e.Namespace, e.Job, e.TriggeredBy, e.Status, idle}
		i, ok := idx[k]
		if !ok {
			i = len(out)
			idx[k] = i
			out = append(out, EvalGroup{Namespace: e.Namespace, Job: e.Job, Trigger: e.TriggeredBy, Status: e.Status, NothingDone: idle, Latest: e, First: e.CreateTime})
		}
		g := &out[i]
		g.Count++
		g.Placed += e.Placed
		g.Stopped += e.Stopped
		if e.ModifyIndex > g.Latest.ModifyIndex {
			g.Latest = e
		}
		if e.CreateTime.Before(g.First) {
			g.First = e.CreateTime
		}
	}
	sort.SliceStable(out, func(a, b int) bool { return out[a].Latest.ModifyIndex > out[b].Latest.ModifyIndex })
	return out
}

// EvalReason says in words why an evaluation ended as it did.
func EvalReason(e *api.Evaluation) string {
	var parts []string
	if e.StatusDescription != "" {
		parts = append(parts, e.StatusDescription)
	}
	for _, g := range sortedKeys(e.FailedGroups) {
		parts = append(parts, fmt.Sprintf("group %s: %s", g, e.FailedGroups[g].String()))
	}
	if len(parts) == 0 {
		switch {
		case e.Placed > 0 || e.Stopped > 0:
			return fmt.Sprintf("placed %d, stopped %d", e.Placed, e.Stopped)
		case e.Status == api.EvalComplete:
			return "nothing to change"
		}
		return "–"
	}
	return strings.Join(parts, "; ")
}

// DeploymentsPage lists deployments, newest first.
type DeploymentsPage struct {
	Base
	Deployments []DeploymentView
}

// DeploymentView is a deployment with its groups' progress and what the
// caller may do with it.
type DeploymentView struct {
	D          *api.Deployment
	Groups     []DeploymentGroupView
	Latest     bool // the job's newest deployment
	CanWrite   bool // the caller's token may promote and revert the job
	Promotable bool
	RevertTo   *uint64 // the version a revert button registers again
}

// DeploymentGroupView is one group of a deployment.
type DeploymentGroupView struct {
	Name string
	G    *api.DeploymentGroup
}

// Progress is the group's healthy replicas of desired, as a bar.
func (g DeploymentGroupView) Progress() Usage {
	return Usage{Name: "healthy replicas of " + g.Name, Used: float64(g.G.Healthy), Total: float64(g.G.Desired)}
}

// ServicesPage lists published services with their endpoints and, where
// agents run load balancers, their figures.
type ServicesPage struct {
	Base
	Services []ServiceView
	LBNote   string // why figures are missing, when they are
}

// ServiceView is one service.
type ServiceView struct {
	*api.ServiceInfo
	LB       *LBFigures
	ByAddr   map[string]LBEndpoint
	Unserved bool // an lb block, and no load balancer reports the service
}

// LBFigures adds up what the load balancers report for a service.
type LBFigures struct {
	Requests    float64 // answered, every status class
	Errors      float64 // 5xx and endpoint errors
	Retries     float64
	Outstanding float64
	NoEndpoint  float64
	Balancers   int // agents that report the service
}

// LBEndpoint is what the load balancers report for one endpoint.
type LBEndpoint struct {
	Requests, Errors, Outstanding float64
	Up                            bool
}

// EventsPage lists events of the store's history, filtered by topic and
// key, and follows new ones; ?index= resumes after an index.
type EventsPage struct {
	Base
	Topics     []string // every topic, for the form
	Selected   map[string]bool
	Key        string
	From       int64 // the events listed come after this index
	Events     []EventView
	Last       int64 // the newest index listed
	Compacted  int64 // >0: the store no longer holds From; its oldest index
	Truncated  bool  // older matching events were left out
	PartialRun bool  // reading the history stopped before the page's index
}

// QueuesPage lists queues with their usage and what waits in each.
type QueuesPage struct {
	Base
	Queues  []QueueView
	Waiting []QueuedEval // blocked evaluations: work that waits for capacity
	Pending int          // evaluations queued for the scheduler (some wait for a restart delay)
}

// QueuedEval is an evaluation waiting for capacity in a queue.
type QueuedEval struct {
	Queue string
	Eval  *api.Evaluation
}

// AuditPage shows the latest audit of every node, per node and container.
type AuditPage struct {
	Base
	CanScan    bool // the caller may ask for a scan now
	PolicyNote string
	Nodes      []AuditNode
}

// AuditNode is one node's latest report.
type AuditNode struct {
	NodeID, NodeName string
	Stored           time.Time
	Report           audit.Report
	Engine           []AuditFinding
	Containers       []AuditContainer
	Blocking, Warn   int
}

// AuditContainer is one container's failing findings.
type AuditContainer struct {
	Name, ID, Image       string
	Namespace, Job, Alloc string
	Findings              []AuditFinding
}

// AuditFinding is a finding with the action the policy gives it.
type AuditFinding struct {
	audit.Finding
	Action string // block, warn, ignore; "" for passing findings
}

// BuildAuditNode sorts a node's report into engine findings and failing
// findings per container, each with the policy's action.
func BuildAuditNode(id, name string, stored time.Time, r audit.Report, p audit.Policy) AuditNode {
	n := AuditNode{NodeID: id, NodeName: name, Stored: stored, Report: r}
	act := func(f audit.Finding) string {
		if !f.Failed() {
			return ""
		}
		a := string(p.Action(f.Namespace, f.CheckID, f.Severity))
		switch a {
		case string(audit.ActionBlock):
			n.Blocking++
		case string(audit.ActionWarn):
			n.Warn++
		}
		return a
	}
	for _, f := range r.Engine {
		n.Engine = append(n.Engine, AuditFinding{f, act(f)})
	}
	byID := map[string]int{}
	for _, f := range r.Findings {
		if !f.Failed() {
			continue
		}
		i, ok := byID[f.ContainerID]
		if !ok {
			i = len(n.Containers)
			byID[f.ContainerID] = i
			n.Containers = append(n.Containers, AuditContainer{Name: f.ContainerName, ID: f.ContainerID, Image: f.Image, Namespace: f.Namespace, Job: f.Job, Alloc: f.Alloc})
		}
		n.Containers[i].Findings = append(n.Containers[i].Findings, AuditFinding{f, act(f)})
	}
	return n
}

// TopologyPage draws every node as a box of its CPU, memory and GPUs,
// filled by the allocations that hold them.
type TopologyPage struct {
	Base
	Nodes []TopoNode
	Jobs  []TopoJob // the legend
}

// TopoNode is one node of the topology.
type TopoNode struct {
	Node     *api.Node
	CPU, Mem Usage
	Allocs   []TopoAlloc
	GPUs     []GPUView
}

// TopoAlloc is one live allocation's share of its node.
type TopoAlloc struct {
	ID, Name, Namespace, Job, Status string
	CPU, Memory                      int // millicores, MiB
}

// TopoJob is a job of the legend with its colour.
type TopoJob struct {
	Namespace, Name, Colour string
}

// BuildTopoNode lays out a node with its live allocations.
func BuildTopoNode(n *api.Node, allocs []*api.Allocation) TopoNode {
	al := n.Allocatable()
	t := TopoNode{Node: n, CPU: Usage{Name: "CPU", Total: float64(al.CPU) / 1000, Unit: "cores"}, Mem: Usage{Name: "Memory", Total: float64(al.Memory), Unit: "MiB"}}
	for _, a := range allocs {
		if a.NodeID != n.ID || a.ClientTerminal() {
			continue
		}
		ta := TopoAlloc{ID: a.ID, Name: a.Name(), Namespace: a.Namespace, Job: a.Job, Status: a.ClientStatus}
		for _, r := range a.Resources {
			if r != nil {
				ta.CPU += r.CPU
				ta.Memory += r.Memory
			}
		}
		t.CPU.Used += float64(ta.CPU) / 1000
		t.Mem.Used += float64(ta.Memory)
		t.Allocs = append(t.Allocs, ta)
	}
	sort.SliceStable(t.Allocs, func(i, j int) bool {
		x, y := t.Allocs[i], t.Allocs[j]
		if x.Namespace+"/"+x.Job != y.Namespace+"/"+y.Job {
			return x.Namespace+"/"+x.Job < y.Namespace+"/"+y.Job
		}
		return x.Name < y.Name
	})
	t.GPUs = BuildGPUMap(n, allocs)
	return t
}

// Topology geometry.
const (
	topoW, topoBarH, topoGPU = 340, 22, 30
)

// TopologySVG draws one node: a CPU bar and a memory bar, each split into
// the allocations that hold it (coloured by job, each a link to the
// allocation), and one square per GPU filled as much as it is held.
func TopologySVG(t TopoNode) template.HTML {
	var b strings.Builder
	rows := 2
	h := 18 + rows*(topoBarH+18)
	if len(t.GPUs) > 0 {
		perRow := (topoW - 8) / (topoGPU + 6)
		h += 18 + ((len(t.GPUs)+perRow-1)/perRow)*(topoGPU+6)
	}
	fmt.Fprintf(&b, `<svg class="topo" viewBox="0 0 %d %d" width="%d" height="%d" role="group" aria-label="%s" data-topo-node="%s" font-size="11" font-family="system-ui, sans-serif">`,
		topoW, h, topoW, h, html.EscapeString("Node "+t.Node.Name), html.EscapeString(t.Node.Name))
	y := 4
	bar := func(label string, u Usage, amount func(TopoAlloc) float64, unit string) {
		fmt.Fprintf(&b, `<text x="0" y="%d" fill="%s">%s %s of %s %s</text>`, y+10, chartTextColour, label, formatValue(u.Used), formatValue(u.Total), unit)
		y += 14
		fmt.Fprintf(&b, `<rect x="0" y="%d" width="%d" height="%d" rx="3" fill="%s" stroke="%s"/>`, y, topoW, topoBarH, Palette["bar-track"], chartGridColor)
		x := 0.0
		for _, a := range t.Allocs {
			v := amount(a)
			if v <= 0 || u.Total <= 0 {
				continue
			}
			w := float64(topoW) * v / u.Total
			if x+w > topoW {
				w = topoW - x
			}
			if w <= 0 {
				break
			}
			name := fmt.Sprintf("%s: %s %s", a.Name, formatValue(v), unit)
			fmt.Fprintf(&b, `<a href="/ui/allocations/%s" class="piece" data-alloc="%s" data-job="%s" aria-label="%s"><title>%s</title><rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s" stroke="#ffffff"/></a>`,
				html.EscapeString(a.ID), html.EscapeString(a.ID), html.EscapeString(a.Job), html.EscapeString(name), html.EscapeString(name), x, y, w, topoBarH, JobColour(a.Namespace, a.Job))
			x += w
		}
		y += topoBarH + 4
	}
	bar("CPU", t.CPU, func(a TopoAlloc) float64 { return float64(a.CPU) / 1000 }, "cores")
	bar("Memory", t.Mem, func(a TopoAlloc) float64 { return float64(a.Memory) }, "MiB")
	if len(t.GPUs) > 0 {
		fmt.Fprintf(&b, `<text x="0" y="%d" fill="%s">GPUs</text>`, y+10, chartTextColour)
		y += 14
		perRow := (topoW - 8) / (topoGPU + 6)
		for i, g := range t.GPUs {
			gx, gy := (i%perRow)*(topoGPU+6), y+(i/perRow)*(topoGPU+6)
			held := 0.0
			var holders []string
			for _, p := range g.Pieces {
				switch p.Kind {
				case PieceWhole:
					held = 1
				case PieceMIG:
					if g.Slices > 0 {
						held += float64(p.Size) / float64(g.Slices)
					}
				case PieceShare:
					held += float64(p.Milli) / 1000
				}
				if p.Job != "" && !contains(holders, p.Job) {
					holders = append(holders, p.Job)
				}
			}
			if held > 1 {
				held = 1
			}
			what := fmt.Sprintf("GPU %d %s: %.0f%% held", g.Index, g.Model, held*100)
			if len(holders) > 0 {
				what += " by " + strings.Join(holders, ", ")
			}
			if g.Unhealthy {
				what += ", unhealthy"
			}
			fill := Palette["bar-fill"]
			if len(holders) == 1 {
				for _, p := range g.Pieces {
					if p.Job == holders[0] {
						fill = JobColour(p.Namespace, p.Job)
					}
				}
			}
			stroke := chartGridColor
			if g.Unhealthy {
				stroke = Palette["bar-over"]
			}
			fmt.Fprintf(&b, `<g class="topo-gpu" data-gpu-index="%d" data-held="%.2f" role="img" aria-label="%s"><title>%s</title><rect x="%d" y="%d" width="%d" height="%d" rx="3" fill="%s" stroke="%s" stroke-width="2"/>`,
				g.Index, held, html.EscapeString(what), html.EscapeString(what), gx, gy, topoGPU, topoGPU, Palette["bar-track"], stroke)
			if held > 0 {
				hh := float64(topoGPU) * held
				fmt.Fprintf(&b, `<rect x="%d" y="%.1f" width="%d" height="%.1f" rx="3" fill="%s"/>`, gx, float64(gy+topoGPU)-hh, topoGPU, hh, fill)
			}
			fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle" fill="%s">%d</text></g>`, gx+topoGPU/2, gy+topoGPU/2+4, chartTextColour, g.Index)
		}
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}
