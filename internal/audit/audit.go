package audit

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/system"
)

// Benchmark names the benchmark and version whose ids and titles the checks
// carry.
const Benchmark = "CIS Docker Benchmark v1.6.0"

// Severity ranks how much a failing check weakens isolation.
type Severity string

// Severities, lowest first.
const (
	SeverityLow      Severity = "low"
	SeverityMedium   Severity = "medium"
	SeverityHigh     Severity = "high"
	SeverityCritical Severity = "critical"
)

// Rank orders severities: low 1 … critical 4, anything else 0.
func (s Severity) Rank() int {
	switch s {
	case SeverityLow:
		return 1
	case SeverityMedium:
		return 2
	case SeverityHigh:
		return 3
	case SeverityCritical:
		return 4
	}
	return 0
}

// Valid reports whether s is one of the four severities.
func (s Severity) Valid() bool { return s.Rank() > 0 }

// Status is the verdict of one check on one container or engine.
type Status string

const (
	// StatusPass: the setting the check looks for is safe.
	StatusPass Status = "pass"
	// StatusFail: the setting weakens isolation; the finding's detail says
	// which setting and what was found.
	StatusFail Status = "fail"
	// StatusInfo: the check cannot be judged here, usually because the
	// host lacks the mechanism (no AppArmor) or the engine does not report
	// the setting; the detail states the host condition found.
	StatusInfo Status = "info"
)

// Result is what a check function returns.
type Result struct {
	Status Status
	// Detail says what was found, in one line: the offending setting, or
	// the host condition that decided the verdict.
	Detail string
	// Severity overrides the check's own severity for this result (a
	// dangerous capability is critical, a benign one medium); empty means
	// the check's severity.
	Severity Severity
}

func pass(format string, args ...any) Result {
	return Result{Status: StatusPass, Detail: fmt.Sprintf(format, args...)}
}

func fail(format string, args ...any) Result {
	return Result{Status: StatusFail, Detail: fmt.Sprintf(format, args...)}
}

func failAt(sev Severity, format string, args ...any) Result {
	return Result{Status: StatusFail, Severity: sev, Detail: fmt.Sprintf(format, args...)}
}

func info(format string, args ...any) Result {
	return Result{Status: StatusInfo, Detail: fmt.Sprintf(format, args...)}
}

// Check is one container runtime check of the benchmark.
type Check struct {
	ID          string   // benchmark id, "5.5"
	Name        string   // short identifier, "PrivilegedContainer" (SARIF rule name)
	Title       string   // benchmark title
	Severity    Severity // severity of a failure unless the result says otherwise
	Remediation string   // one line: what to change
	// Run judges one container. It must not do I/O or read the clock, and
	// must tolerate missing sections of the inspect (AuditContainer fills
	// nil Config, HostConfig and NetworkSettings with empty values).
	Run func(c *container.InspectResponse, e *Engine) Result
}

// EngineCheck is one engine-level check (daemon configuration).
type EngineCheck struct {
	ID          string
	Name        string
	Title       string
	Severity    Severity
	Remediation string
	Run         func(e *Engine) Result
}

// Engine is what the checks know about the Docker engine: its info as the
// API reports it, and, when the caller could read them, the daemon settings
// the API does not report and the work Gantry runs on the node.
type Engine struct {
	Info   system.Info
	Daemon *DaemonConfig // nil: not known
	// Allocations is what the node's agent knows of the tasks it runs;
	// nil when the caller does not know (an audit outside an agent).
	Allocations Allocations
	// Sockets are where the caller found the engine's API socket (the
	// client's unix:// address), besides DefaultSockets and the
	// containerd address the engine's info reports.
	Sockets []string
	// HostPaths maps host paths the containers name (bind-mount sources,
	// device nodes, Sockets) to where their symlinks lead on the host,
	// when the caller could resolve them there (ResolveHostPaths). A path
	// missing here is judged as given.
	HostPaths map[string]string
}

// Allocations maps each Gantry task the node runs, by TaskKey, to what it
// was given. With it the checks judge Gantry's containers against their
// allocation: 5.18 flags a container that sees a GPU it was not allocated
// (any container Gantry did not start is allocated none), and 5.27 trusts
// a gantry.checks label only on a task the agent checks.
type Allocations map[string]TaskAllocation

// TaskAllocation is what one task was given.
type TaskAllocation struct {
	// GPUs are the device identifiers the task may see (GPU UUIDs, or
	// MIG-… instance identifiers), as NVIDIA_VISIBLE_DEVICES names them.
	GPUs []string `json:"gpus,omitempty"`
	// Checks is how many health checks the agent runs against the task.
	Checks int `json:"checks,omitempty"`
}

// TaskKey identifies a task of an allocation: "<alloc id>/<task>".
func TaskKey(alloc, task string) string { return alloc + "/" + task }

// DaemonConfig holds daemon settings that the engine API does not report,
// read from the daemon's configuration (daemon.json) by the caller. A nil
// field means the setting was not found there, so the daemon's built-in
// default applies.
type DaemonConfig struct {
	NoNewPrivileges *bool `json:"no-new-privileges,omitempty"`
}

// securityOption returns the key/value pairs of the engine's security
// option with the given name ("seccomp", "apparmor", "userns", ...), as
// reported in Info.SecurityOptions ("name=seccomp,profile=default").
func (e *Engine) securityOption(name string) (map[string]string, bool) {
	if e == nil {
		return nil, false
	}
	for _, opt := range e.Info.SecurityOptions {
		kv := map[string]string{}
		for _, part := range strings.Split(opt, ",") {
			k, v, _ := strings.Cut(part, "=")
			kv[k] = v
		}
		if kv["name"] == name {
			return kv, true
		}
	}
	return nil, false
}

// known reports whether the engine's info was collected at all.
func (e *Engine) known() bool {
	return e != nil && (e.Info.ServerVersion != "" || len(e.Info.SecurityOptions) > 0)
}

// securityOptions renders the engine's security options for details.
func (e *Engine) securityOptions() string {
	if e == nil || len(e.Info.SecurityOptions) == 0 {
		return "none"
	}
	return strings.Join(e.Info.SecurityOptions, "; ")
}

// usernsRemapped reports whether the engine remaps user namespaces.
func (e *Engine) usernsRemapped() bool {
	_, ok := e.securityOption("userns")
	return ok
}

// Labels Gantry puts on the containers it starts (see internal/driver).
const (
	LabelNamespace = "gantry.namespace"
	LabelJob       = "gantry.job"
	LabelGroup     = "gantry.group"
	LabelAlloc     = "gantry.alloc"
	LabelTask      = "gantry.task"
	// LabelChecks lists the health checks the Gantry agent runs against
	// the task (CIS 5.27 accepts it in place of an engine HEALTHCHECK).
	LabelChecks = "gantry.checks"
)

// Finding is the verdict of one check on one container (or on the engine,
// when ContainerID is empty).
type Finding struct {
	CheckID     string   `json:"check"`
	Title       string   `json:"title"`
	Severity    Severity `json:"severity"`
	Status      Status   `json:"status"`
	Detail      string   `json:"detail"`
	Remediation string   `json:"remediation,omitempty"`

	ContainerID   string `json:"container_id,omitempty"`
	ContainerName string `json:"container,omitempty"`
	Image         string `json:"image,omitempty"`

	// Gantry's identity of the container, from its gantry.* labels; empty
	// for containers Gantry did not start.
	Namespace string `json:"namespace,omitempty"`
	Job       string `json:"job,omitempty"`
	Group     string `json:"group,omitempty"`
	Alloc     string `json:"alloc,omitempty"`
	Task      string `json:"task,omitempty"`
}

// Failed reports whether the finding is a failure.
func (f Finding) Failed() bool { return f.Status == StatusFail }

// Report is one audit of one node's engine and containers.
type Report struct {
	Node          string    `json:"node"`
	Time          time.Time `json:"time"` // when the audit was taken, given by the caller
	EngineVersion string    `json:"engine_version,omitempty"`
	Containers    int       `json:"containers"`
	// Engine holds the engine-level findings (section 2 and 5.1).
	Engine []Finding `json:"engine"`
	// Findings holds every container finding, by container then check.
	Findings []Finding `json:"findings"`
}

// Failures returns the failing findings, engine ones first.
func (r Report) Failures() []Finding {
	var out []Finding
	for _, f := range r.Engine {
		if f.Failed() {
			out = append(out, f)
		}
	}
	for _, f := range r.Findings {
		if f.Failed() {
			out = append(out, f)
		}
	}
	return out
}

// AuditContainer runs every container check on c.
func AuditContainer(c container.InspectResponse, e *Engine) []Finding {
	normalize(&c)
	base := Finding{
		ContainerID:   c.ID,
		ContainerName: strings.TrimPrefix(c.Name, "/"),
		Image:         c.Config.Image,
		Namespace:     c.Config.Labels[LabelNamespace],
		Job:           c.Config.Labels[LabelJob],
		Group:         c.Config.Labels[LabelGroup],
		Alloc:         c.Config.Labels[LabelAlloc],
		Task:          c.Config.Labels[LabelTask],
	}
	out := make([]Finding, 0, len(containerChecks))
	for _, ch := range containerChecks {
		r := runSafely(func() Result { return ch.Run(&c, e) })
		f := base
		f.CheckID, f.Title, f.Remediation = ch.ID, ch.Title, ch.Remediation
		f.Status, f.Detail = r.Status, r.Detail
		f.Severity = ch.Severity
		if r.Severity != "" {
			f.Severity = r.Severity
		}
		out = append(out, f)
	}
	return out
}

// AuditEngine runs every engine-level check.
func AuditEngine(e *Engine) []Finding {
	out := make([]Finding, 0, len(engineChecks))
	for _, ch := range engineChecks {
		r := runSafely(func() Result { return ch.Run(e) })
		f := Finding{CheckID: ch.ID, Title: ch.Title, Remediation: ch.Remediation,
			Status: r.Status, Detail: r.Detail, Severity: ch.Severity}
		if r.Severity != "" {
			f.Severity = r.Severity
		}
		out = append(out, f)
	}
	return out
}

// NewReport audits the engine and every given container. Containers are
// reported in order of name (then ID), so that a report over the same
// inputs is always the same.
func NewReport(node string, at time.Time, e *Engine, containers []container.InspectResponse) Report {
	sorted := append([]container.InspectResponse(nil), containers...)
	sort.SliceStable(sorted, func(i, j int) bool {
		if sorted[i].Name != sorted[j].Name {
			return sorted[i].Name < sorted[j].Name
		}
		return sorted[i].ID < sorted[j].ID
	})
	r := Report{Node: node, Time: at, Containers: len(sorted), Engine: AuditEngine(e), Findings: []Finding{}}
	if e != nil {
		r.EngineVersion = e.Info.ServerVersion
	}
	for _, c := range sorted {
		r.Findings = append(r.Findings, AuditContainer(c, e)...)
	}
	return r
}

// runSafely turns a panicking check into an info result, so that one
// malformed inspect cannot take down the agent's audit loop.
func runSafely(run func() Result) (r Result) {
	defer func() {
		if p := recover(); p != nil {
			r = info("check could not judge this container: internal error: %v", p)
		}
	}()
	return run()
}

// normalize fills the sections of an inspect that checks read, so that a
// partial record (a fixture, a container half-created) cannot panic them.
func normalize(c *container.InspectResponse) {
	if c.Config == nil {
		c.Config = &container.Config{}
	}
	if c.HostConfig == nil {
		c.HostConfig = &container.HostConfig{}
	}
	if c.NetworkSettings == nil {
		c.NetworkSettings = &container.NetworkSettings{}
	}
	if c.State == nil {
		c.State = &container.State{}
	}
}

// Checks returns the container checks in benchmark order.
func Checks() []Check { return append([]Check(nil), containerChecks...) }

// EngineChecks returns the engine-level checks in benchmark order.
func EngineChecks() []EngineCheck { return append([]EngineCheck(nil), engineChecks...) }

// knownCheck reports whether id names a container or engine check.
// CheckQEMUArgs is Gantry's own admission check, beside the CIS ones: a
// qemu task whose config.args pass extra arguments straight to QEMU
// (devices, host files, monitors) can reach the node beyond its VM, as a
// privileged container can. The default policy blocks it; a namespace
// exception allows it.
const CheckQEMUArgs = "gantry.qemu-args"

func knownCheck(id string) bool {
	if id == CheckQEMUArgs {
		return true
	}
	for _, c := range containerChecks {
		if c.ID == id {
			return true
		}
	}
	for _, c := range engineChecks {
		if c.ID == id {
			return true
		}
	}
	return false
}

// lessID orders benchmark ids numerically ("5.4" < "5.10" < "5.32").
func lessID(a, b string) bool {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(as) && i < len(bs); i++ {
		x, errx := strconv.Atoi(as[i])
		y, erry := strconv.Atoi(bs[i])
		if errx != nil || erry != nil {
			if as[i] != bs[i] {
				return as[i] < bs[i]
			}
			continue
		}
		if x != y {
			return x < y
		}
	}
	return len(as) < len(bs)
}
