package ui

import (
	"bytes"
	"embed"
	"fmt"
	"html"
	"html/template"
	"io"
	"math"
	"net"
	"net/url"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/versions"
)

//go:embed templates/*.html
var templateFS embed.FS

// Base is what every page carries: which page it is, for the script's
// live updates (the topics and keys of events that change it), the store
// index it was rendered at (the event stream resumes from there), and
// the time it was rendered at (the UI reads no clock).
type Base struct {
	Page   string
	Key    string // the object the page shows, "" for lists
	Title  string
	Index  int64
	Now    time.Time
	Topics []string
	Keys   []string
}

// Count is a number of things in one state.
type Count struct {
	Name string
	N    int
}

// Usage is an amount used of a total.
type Usage struct {
	Name        string
	Used, Total float64
	Unit        string
}

// Overview is the cluster at a glance.
type Overview struct {
	Base
	Status     api.StatusResponse
	NodesShown bool // the token may read nodes
	Nodes      []Count
	NodeTotal  int
	Allocs     []Count
	Jobs       []Count
	Capacity   []Usage
	Queues     []QueueView
	QueueShown bool
	Events     []EventView
}

// QueueView is a queue's usage against its guarantee and limit.
type QueueView struct {
	Name       string
	Weight     int
	Namespaces []string
	Dims       []QueueDim
	Borrowing  bool
	Starved    bool // work waits while usage is under the guarantee
	Waiting    int  // evaluations waiting for placement
}

// QueueDim is one resource of a queue.
type QueueDim struct {
	Name, Unit              string
	Usage, Guarantee, Limit float64
	HasLimit, StarvedHere   bool
	Pending                 float64
}

// EventView is one event of the recent-events list.
type EventView struct {
	Index     int64
	Time      time.Time
	Topic     string
	Type      string
	Namespace string
	Key       string
	Job       string // the job of an allocation or evaluation
	Name      string // a readable name: an allocation's, a node's
	Summary   string
}

// Link is the page of the event's object, "" when it has none.
func (e EventView) Link() string {
	switch e.Topic {
	case api.TopicJob:
		return jobURL(e.Namespace, e.Key)
	case api.TopicAllocation:
		return "/ui/allocations/" + url.PathEscape(e.Key)
	case api.TopicNode:
		return "/ui/nodes/" + url.PathEscape(e.Key)
	case api.TopicEvaluation:
		if e.Job != "" {
			return jobURL(e.Namespace, e.Job)
		}
	case api.TopicDeployment:
		return "/ui/deployments"
	case api.TopicAudit:
		return "/ui/audit"
	}
	return ""
}

// Label is how the event's object is named: IDs shortened.
func (e EventView) Label() string {
	switch e.Topic {
	case api.TopicAllocation, api.TopicEvaluation, api.TopicNode, api.TopicAudit, api.TopicDeployment:
		if e.Name != "" {
			return e.Name
		}
		if e.Topic == api.TopicDeployment && e.Job != "" {
			return "deployment " + api.ShortID(e.Key) + " of " + e.Job
		}
		return api.ShortID(e.Key)
	}
	return e.Key
}

// JobsPage lists jobs.
type JobsPage struct {
	Base
	Jobs []*api.JobSummary
}

// JobPage is one job: groups, allocations, versions and their diff,
// rollout progress and placement failures.
type JobPage struct {
	Base
	Summary  *api.JobSummary
	Allocs   []*api.Allocation
	Failures []*api.Evaluation // latest evaluations that could not place everything
	// EvalGroups are the job's latest evaluations, alike ones grouped;
	// EvalCount counts every kept one.
	EvalGroups []EvalGroup
	EvalCount  int
	Versions   []*api.Job
	DiffFrom   uint64
	DiffTo     uint64
	Diff       []api.FieldDiff
	HasDiff    bool
	Rollout    Rollout
}

// Rollout is how far the job's allocations have moved to its current
// version.
type Rollout struct {
	Version  uint64
	Desired  int
	Current  int // live allocations on the current version
	Healthy  int // of which healthy
	Older    int // live allocations still on older versions
	Complete bool
}

// BatchProgress is how far a batch job's replicas have run to completion:
// a batch job has no rollout.
type BatchProgress struct {
	Desired, Complete, Running, Pending, Failed int
	Done                                        bool
}

// BatchProgressOf adds up a batch job's groups.
func BatchProgressOf(s *api.JobSummary) BatchProgress {
	var p BatchProgress
	for _, g := range s.Job.Groups {
		p.Desired += g.Count
		if gs := s.Groups[g.Name]; gs != nil {
			p.Complete += gs.Complete
			p.Running += gs.Running
			p.Pending += gs.Pending
			p.Failed += gs.Failed
		}
	}
	p.Done = p.Complete >= p.Desired
	return p
}

// AllocPage is one allocation with its tasks, health, usage and logs.
type AllocPage struct {
	Base
	Alloc    *api.Allocation
	Node     *api.Node
	Tasks    []TaskView
	Charts   []Chart
	LogTasks []string
}

// TaskView is a task's resources and state.
type TaskView struct {
	Name      string
	Driver    string // from the job; empty when the job is gone
	Resources *api.AllocatedResources
	State     *api.TaskState
}

// NodesPage lists nodes with their usage.
type NodesPage struct {
	Base
	Nodes []NodeRow
}

// NodeRow is a node with what is placed on it.
type NodeRow struct {
	Node      *api.Node
	CPU, Mem  Usage
	Allocs    int
	GPUs      int
	GPUsBad   int
	GPUsInUse int
}

// NodePage is one node: resources, labels, drivers, health, GPU map,
// allocations and usage history.
type NodePage struct {
	Base
	Row    NodeRow
	Disk   Usage
	GPUs   []GPUView
	Allocs []*api.Allocation
	Charts []Chart
	Sample *api.NodeSample
}

var funcs = template.FuncMap{
	"short": api.ShortID,
	"ago": func(now, t time.Time) string {
		if t.IsZero() {
			return "–"
		}
		d := now.Sub(t)
		switch {
		case d < 0:
			return "just now"
		case d < time.Minute:
			return fmt.Sprintf("%ds ago", int(d.Seconds()))
		case d < time.Hour:
			return fmt.Sprintf("%dm ago", int(d.Minutes()))
		case d < 48*time.Hour:
			return fmt.Sprintf("%dh ago", int(d.Hours()))
		}
		return fmt.Sprintf("%dd ago", int(d.Hours()/24))
	},
	"utc":         func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
	"iso":         func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"status":      StatusClass,
	"allocStatus": AllocStatus,
	"jobURL":      jobURL,
	"diffURL": func(ns, name string, from, to uint64) string {
		q := url.Values{}
		if ns != "" && ns != api.DefaultNamespace {
			q.Set("namespace", ns)
		}
		q.Set("diff", fmt.Sprintf("%d..%d", from, to))
		return "/ui/jobs/" + url.PathEscape(name) + "?" + q.Encode()
	},
	"allocURL": func(id string) string { return "/ui/allocations/" + url.PathEscape(id) },
	"nodeURL":  func(id string) string { return "/ui/nodes/" + url.PathEscape(id) },
	"join":     strings.Join,
	"keys":     mapKeys,
	// components are a node's component versions (package versions reads
	// them from its attributes), for the node page.
	"components": func(n *api.Node) map[string]string { return versions.FromNodes([]*api.Node{n})[n.Name] },
	"kind":       api.TaskKind,
	"bar":        Bar,
	"num":        formatValue,
	"gpuSVG":     GPUMapSVG,
	"moveLines":  MoveLines,
	"swatch":     Swatch,
	"chartSVG":   func(c Chart) template.HTML { return c.SVG() },
	"legend":     func(c Chart) []LegendItem { return c.Legend() },
	"mib": func(m int) string {
		if m >= 1024 {
			return formatValue(float64(m)/1024) + " GiB"
		}
		return fmt.Sprintf("%d MiB", m)
	},
	"cores": func(milli int) string { return formatValue(float64(milli)/1000) + " cores" },
	"gpuDesc": func(g *api.AllocatedGPU) string {
		switch {
		case g == nil:
			return ""
		case g.MIG != nil:
			s := fmt.Sprintf("MIG %s at slices %d–%d of GPU %s", g.MIG.Profile, g.MIG.Start, g.MIG.Start+g.MIG.Size-1, api.ShortID(g.MIG.GPU))
			if g.MIG.InstanceUUID != "" {
				s += " (instance " + api.ShortID(g.MIG.InstanceUUID) + ")"
			}
			return s
		case g.Share != nil:
			return fmt.Sprintf("%d‰ of GPU %s, %d MiB", g.Share.Milli, api.ShortID(g.Share.GPU), g.Share.Memory)
		}
		ids := make([]string, len(g.Devices))
		for i, d := range g.Devices {
			ids[i] = api.ShortID(d)
		}
		return "whole GPU " + strings.Join(ids, ", ")
	},
	"ports": func(ps []api.AllocatedPort) string {
		var out []string
		for _, p := range ps {
			out = append(out, fmt.Sprintf("%s %d→%d", p.Name, p.Host, p.To))
		}
		return strings.Join(out, ", ")
	},
	"groupCount": func(s *api.JobSummary) string {
		run, want, healthy := 0, 0, 0
		for _, g := range s.Groups {
			run += g.Running
			want += g.Desired
			healthy += g.Healthy
		}
		return fmt.Sprintf("%d/%d running, %d healthy", run, want, healthy)
	},
	"group": func(s *api.JobSummary, name string) *api.GroupSummary { return s.Groups[name] },
	"restarts": func(a *api.Allocation) int {
		n := 0
		for _, t := range a.TaskStates {
			n += t.Restarts
		}
		return n
	},
	"queueBar": func(d QueueDim) Usage {
		return Usage{Name: d.Name + " used of guarantee", Used: d.Usage, Total: d.Guarantee, Unit: d.Unit}
	},
	"rolloutBar": func(r Rollout) Usage {
		return Usage{Name: "replicas on the current version", Used: float64(r.Current), Total: float64(r.Desired)}
	},
	"batchProgress": BatchProgressOf,
	"evalReason":    EvalReason,
	"topoSVG":       TopologySVG,
	"endpointAddr": func(e api.ServiceEndpoint) string {
		return net.JoinHostPort(e.Address, strconv.Itoa(e.Port))
	},
	"deployStatus": func(s string) string {
		switch s {
		case api.DeploymentRunning:
			return "warn"
		case api.DeploymentSuccessful:
			return "ok"
		case api.DeploymentFailed:
			return "bad"
		}
		return "plain"
	},
	"eventsURL": func(p EventsPage, index int64) string {
		q := url.Values{}
		for _, t := range p.Topics {
			if p.Selected[t] {
				q.Add("topic", t)
			}
		}
		if p.Key != "" {
			q.Set("key", p.Key)
		}
		q.Set("index", strconv.FormatInt(index, 10))
		return "/ui/events?" + q.Encode()
	},
	"progressBar": func(p BatchProgress) Usage {
		return Usage{Name: "replicas complete", Used: float64(p.Complete), Total: float64(p.Desired)}
	},
	"prev": func(v uint64) uint64 {
		if v == 0 {
			return 0
		}
		return v - 1
	},
	"free": func(u Usage) float64 { return math.Max(0, u.Total-u.Used) },
	"pageAttrs": func(b Base) template.HTMLAttr {
		return template.HTMLAttr(fmt.Sprintf(`data-page="%s" data-key="%s" data-title="%s" data-index="%d" data-now="%s" data-topics="%s" data-keys="%s"`,
			html.EscapeString(b.Page), html.EscapeString(b.Key), html.EscapeString(b.Title), b.Index, b.Now.UTC().Format(time.RFC3339Nano),
			html.EscapeString(strings.Join(b.Topics, " ")), html.EscapeString(strings.Join(b.Keys, " "))))
	},
}

// templates are parsed at the first page rendered, not when the package
// initializes: every start of the gantry binary (each CLI command, each
// executor and wasm runner) initializes it, and parsing them took 7 ms.
var templates = sync.OnceValue(func() *template.Template {
	return template.Must(template.New("ui").Funcs(funcs).ParseFS(templateFS, "templates/*.html"))
})

// Render writes the named page's fragment.
func Render(w io.Writer, page string, data any) error {
	var buf bytes.Buffer
	if err := templates().ExecuteTemplate(&buf, page, data); err != nil {
		return fmt.Errorf("render page %s: %w", page, err)
	}
	_, err := buf.WriteTo(w)
	return err
}

// AllocStatus is how an allocation's status reads and the badge style
// that shows it: one that ended after failing its health checks (a
// replaced replica) reads "complete, failed its checks" in the failure
// style, not as a green "complete".
func AllocStatus(a *api.Allocation) Badge {
	if a.ClientStatus == api.AllocComplete && a.Health == api.HealthUnhealthy {
		return Badge{Label: "complete, failed its checks", Class: "bad"}
	}
	return Badge{Label: a.ClientStatus, Class: StatusClass(a.ClientStatus)}
}

// Badge is a status word and the style that shows it.
type Badge struct{ Label, Class string }

// StatusClass maps a status word to the badge style that shows it.
func StatusClass(s string) string {
	switch s {
	case api.AllocRunning, api.NodeStatusReady, api.HealthHealthy, api.AllocComplete, "ok":
		return "ok"
	case api.AllocPending, api.NodeStatusInit, "borrowing", "draining", "ineligible":
		return "warn"
	case api.AllocFailed, api.AllocLost, api.NodeStatusDown, api.HealthUnhealthy, api.EvalBlocked, "starved":
		return "bad"
	case api.JobStatusDead, "stop":
		return "plain"
	}
	return "info"
}

// Bar draws a used/total bar with its numbers, as SVG (no inline styles:
// the UI's content security policy forbids them).
func Bar(u Usage) template.HTML {
	frac := 0.0
	if u.Total > 0 {
		frac = math.Max(0, math.Min(u.Used/u.Total, 1))
	}
	label := strings.TrimSpace(fmt.Sprintf("%s %s of %s %s", u.Name, formatValue(u.Used), formatValue(u.Total), u.Unit))
	fill := Palette["bar-fill"]
	if u.Total > 0 && u.Used > u.Total {
		fill = Palette["bar-over"]
	}
	return template.HTML(fmt.Sprintf(`<svg class="bar" width="160" height="10" role="img" aria-label="%s"><rect width="160" height="10" rx="2" fill="%s"/><rect width="%.1f" height="10" rx="2" fill="%s"/></svg>`,
		html.EscapeString(label), Palette["bar-track"], 160*frac, fill))
}

func jobURL(ns, name string) string {
	u := "/ui/jobs/" + url.PathEscape(name)
	if ns != "" && ns != api.DefaultNamespace {
		u += "?namespace=" + url.QueryEscape(ns)
	}
	return u
}

// mapKeys lists a string-keyed map's keys in order, for templates.
func mapKeys(m any) []string {
	v := reflect.ValueOf(m)
	if v.Kind() != reflect.Map {
		return nil
	}
	out := make([]string, 0, v.Len())
	for _, k := range v.MapKeys() {
		out = append(out, k.String())
	}
	sort.Strings(out)
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
