package admission

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/audit"
	"github.com/gantryhq/gantry/internal/driver"
	"github.com/gantryhq/gantry/internal/driver/docker"
)

// The stand-ins for what only placement decides. They never reach a node.
const (
	// AllocID is the allocation ID of the containers admission judges.
	AllocID = "00000000-0000-4000-8000-000000000000"
	// NodeID names the node they would run on.
	NodeID = "admission"
	// BindAddress is the node address their ports bind to: agents bind
	// task ports to their own address (--node-address), which admission
	// cannot know; this documentation address (RFC 5737) stands for it.
	BindAddress = "192.0.2.1"
)

// Finding is one failing check on one task's container, with what the
// policy does with it.
type Finding struct {
	Group  string       `json:"group"`
	Task   string       `json:"task"`
	Path   string       `json:"path"` // the task in the spec: groups[i].tasks[j]
	Action audit.Action `json:"action"`
	audit.Finding
}

// Review is the verdict on one job.
type Review struct {
	Namespace string    `json:"namespace"`
	Job       string    `json:"job"`
	Blocking  []Finding `json:"blocking"`
	Warning   []Finding `json:"warning"`
}

// Admitted reports whether no finding blocks.
func (r *Review) Admitted() bool { return len(r.Blocking) == 0 }

// TaskConfig is the driver configuration admission judges for one task:
// the task as the spec gives it, with ports, resources and GPUs as the
// scheduler would allocate them (dynamic ports from the default port
// range, GPUs under stand-in identifiers), on a stand-in node.
func TaskConfig(job *api.Job, g *api.Group, t *api.Task) *driver.TaskConfig {
	res := &api.AllocatedResources{CPU: t.Resources.CPU, Memory: t.Resources.Memory, Disk: t.Resources.Disk}
	for i, p := range t.Config.Ports {
		host := p.Static
		if host == 0 {
			host = api.DefaultPortRange.Min + i
		}
		res.Ports = append(res.Ports, api.AllocatedPort{Name: p.Name, Host: host, To: p.To})
	}
	if r := t.Resources.GPU; r != nil {
		switch {
		case r.Count > 0:
			gpu := &api.AllocatedGPU{}
			for i := range r.Count {
				gpu.Devices = append(gpu.Devices, "GPU-admission-"+strconv.Itoa(i))
			}
			res.GPU = gpu
		case r.MIG != "":
			res.GPU = &api.AllocatedGPU{MIG: &api.MIGAssignment{GPU: "GPU-admission-0", Profile: r.MIG, InstanceUUID: "MIG-admission-0"}}
		case r.Share != nil:
			res.GPU = &api.AllocatedGPU{Share: &api.ShareAssignment{GPU: "GPU-admission-0", Milli: r.Share.Milli, Memory: r.Share.Memory}}
		}
	}
	cfg := &driver.TaskConfig{
		NodeID: NodeID, AllocID: AllocID, Namespace: job.Namespace, Job: job.Name, Group: g.Name,
		Task: t, Resources: res, BindAddress: BindAddress,
	}
	cfg.Env = driver.TaskEnv(cfg, false)
	return cfg
}

// Audit judges the container the Docker driver would create for cfg, as
// the runtime audit judges a running one: the same checks, over the create
// request, with the task's allocation known (its GPUs, whether the agent
// checks its health) and the engine unknown.
func Audit(cfg *driver.TaskConfig) ([]audit.Finding, error) {
	return AuditOn(cfg, nil)
}

// Host is what admission knows of the machines a job's containers would
// run on: where the engine's socket is, and where the host paths the job
// names lead once their symlinks are resolved (audit.Engine's Sockets and
// HostPaths). The caller resolves them (audit.ResolveHostPaths over
// HostPaths(job)); nil judges every path as written, with /var/run as /run.
type Host struct {
	Sockets   []string
	HostPaths map[string]string
}

// HostPaths returns the host paths the job's docker tasks name (volume
// sources and device nodes), for the caller to resolve into Host.
func HostPaths(job *api.Job) []string {
	var out []string
	for _, g := range job.Groups {
		for _, t := range g.Tasks {
			if t == nil || t.Driver != api.DriverDocker {
				continue
			}
			for _, v := range t.Config.Volumes {
				if src, _, _ := strings.Cut(v, ":"); strings.HasPrefix(src, "/") {
					out = append(out, src)
				}
			}
			for _, d := range t.Config.Devices {
				if src, _, _ := strings.Cut(d, ":"); strings.HasPrefix(src, "/") {
					out = append(out, src)
				}
			}
		}
	}
	return out
}

// AuditOn is Audit with what is known of the host (see Host).
func AuditOn(cfg *driver.TaskConfig, h *Host) ([]audit.Finding, error) {
	spec, err := docker.BuildContainer(cfg)
	if err != nil {
		return nil, err
	}
	var gpu *api.AllocatedGPU
	if cfg.Resources != nil {
		gpu = cfg.Resources.GPU
	}
	e := &audit.Engine{Allocations: audit.Allocations{
		audit.TaskKey(cfg.AllocID, cfg.Task.Name): {GPUs: driver.GPUVisibleDevices(gpu), Checks: len(cfg.Task.Checks)},
	}}
	if h != nil {
		e.Sockets, e.HostPaths = h.Sockets, h.HostPaths
	}
	return audit.AuditCreate(spec.Name, spec.Config, spec.HostConfig, e), nil
}

// Check reviews every docker task of job under policy p, in the job's
// namespace. Exec tasks are not containers and are not judged. An error
// means a task's container could not be built at all (the spec is
// invalid for the driver).
func Check(p audit.Policy, job *api.Job) (*Review, error) {
	return CheckOn(p, job, nil)
}

// CheckOn is Check with what is known of the host (see Host).
func CheckOn(p audit.Policy, job *api.Job, h *Host) (*Review, error) {
	rv := &Review{Namespace: job.Namespace, Job: job.Name, Blocking: []Finding{}, Warning: []Finding{}}
	for gi, g := range job.Groups {
		for ti, t := range g.Tasks {
			if t == nil || (t.Driver != api.DriverDocker && t.Driver != api.DriverQEMU) {
				continue
			}
			path := fmt.Sprintf("groups[%d].tasks[%d]", gi, ti)
			var fs []audit.Finding
			if t.Driver == api.DriverQEMU {
				fs = auditQEMU(t)
			} else {
				var err error
				if fs, err = AuditOn(TaskConfig(job, g, t), h); err != nil {
					return nil, fmt.Errorf("%s: %w", path, err)
				}
			}
			for _, f := range fs {
				if !f.Failed() {
					continue
				}
				tf := Finding{Group: g.Name, Task: t.Name, Path: path, Finding: f}
				switch tf.Action = p.Action(job.Namespace, f.CheckID, f.Severity); tf.Action {
				case audit.ActionBlock:
					rv.Blocking = append(rv.Blocking, tf)
				case audit.ActionWarn:
					rv.Warning = append(rv.Warning, tf)
				}
			}
		}
	}
	return rv, nil
}

// auditQEMU judges a qemu task: its extra QEMU arguments, if any.
func auditQEMU(t *api.Task) []audit.Finding {
	if len(t.Config.Args) == 0 {
		return nil
	}
	return []audit.Finding{{
		CheckID: audit.CheckQEMUArgs, Title: "Extra QEMU arguments are not passed to VMs", Severity: audit.SeverityHigh,
		Status: audit.StatusFail, Detail: fmt.Sprintf("config.args passes %q to QEMU, which can give the VM host devices and files", t.Config.Args),
		Remediation: "Remove config.args, or ask an operator for a namespace exception for " + audit.CheckQEMUArgs,
	}}
}

// Line renders a finding in one line: "task web/server: 5.5 Ensure that
// privileged containers are not used (critical): runs privileged: …".
func (f Finding) Line() string {
	return fmt.Sprintf("task %s/%s: %s %s (%s): %s", f.Group, f.Task, f.CheckID, f.Title, f.Severity, f.Detail)
}

// Warnings renders the warning findings, one line each with the
// remediation.
func (r *Review) Warnings() []string {
	out := make([]string, 0, len(r.Warning))
	for _, f := range r.Warning {
		out = append(out, f.Line()+"; remediation: "+f.Remediation)
	}
	return out
}

// Error describes a refusal: every blocking finding with its task and
// remediation, one per line, ordered by task then check.
func (r *Review) Error() string {
	fs := append([]Finding(nil), r.Blocking...)
	sort.SliceStable(fs, func(i, j int) bool {
		if fs[i].Path != fs[j].Path {
			return fs[i].Path < fs[j].Path
		}
		return lessID(fs[i].CheckID, fs[j].CheckID)
	})
	var b strings.Builder
	fmt.Fprintf(&b, "job %q in namespace %q is refused by the cluster's isolation policy (%s); %d blocking finding(s):",
		r.Job, r.Namespace, audit.Benchmark, len(fs))
	for _, f := range fs {
		fmt.Fprintf(&b, "\n  - %s\n    remediation: %s", f.Line(), f.Remediation)
	}
	b.WriteString("\nNothing was created. Change the spec, or ask an operator for a namespace exception ('gantry policy show').")
	return b.String()
}

// lessID orders benchmark ids numerically ("5.4" < "5.10").
func lessID(a, b string) bool {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(as) && i < len(bs); i++ {
		x, _ := strconv.Atoi(as[i])
		y, _ := strconv.Atoi(bs[i])
		if x != y {
			return x < y
		}
	}
	return len(as) < len(bs)
}

// Key is the spec path of the key that asks for what the finding blocks
// ("groups[0].tasks[1].security.privileged", "….config.volumes[2]"), so
// that a refusal is located at the offending line; the task's own path
// when no single key is to blame.
func (f Finding) Key(t *api.Task) string {
	field := map[string]string{
		"4.1": "security.user", "5.2": "security.apparmor", "5.4": "security.cap_add", "5.5": "security.privileged",
		"5.10": "config.network_mode", "5.13": "security.read_only_rootfs", "5.16": "config.pid_mode",
		"5.17": "config.ipc_mode", "5.21": "config.uts_mode", "5.22": "security.seccomp", "5.26": "security.no_new_privileges",
	}
	if k, ok := field[f.CheckID]; ok {
		return f.Path + "." + k
	}
	if t == nil {
		return f.Path
	}
	switch f.CheckID {
	case "5.6", "5.20", "5.32":
		for i, v := range t.Config.Volumes {
			if src, _, _ := strings.Cut(v, ":"); src != "" && strings.Contains(f.Detail, src+" -> ") {
				return fmt.Sprintf("%s.config.volumes[%d]", f.Path, i)
			}
		}
		if len(t.Config.Volumes) > 0 {
			return f.Path + ".config.volumes"
		}
	case "5.18":
		for i, d := range t.Config.Devices {
			if src, _, _ := strings.Cut(d, ":"); src != "" && strings.Contains(f.Detail, " "+src) {
				return fmt.Sprintf("%s.config.devices[%d]", f.Path, i)
			}
		}
		if len(t.Config.Devices) > 0 {
			return f.Path + ".config.devices"
		}
	}
	return f.Path
}

// FieldErrors are the blocking findings as located spec errors: the path
// of the offending key and the refusal in one line with its remediation,
// as `job validate`, `job run` and `job plan` print them.
func (r *Review) FieldErrors(job *api.Job) []api.FieldError {
	out := make([]api.FieldError, 0, len(r.Blocking))
	for _, f := range r.Blocking {
		var task *api.Task
		var gi, ti int
		if _, err := fmt.Sscanf(f.Path, "groups[%d].tasks[%d]", &gi, &ti); err == nil &&
			gi < len(job.Groups) && job.Groups[gi] != nil && ti < len(job.Groups[gi].Tasks) {
			task = job.Groups[gi].Tasks[ti]
		}
		out = append(out, api.FieldError{Path: f.Key(task),
			Message: "refused by the cluster's isolation policy: " + f.Line() + "; remediation: " + f.Remediation})
	}
	return out
}
