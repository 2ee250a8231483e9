package scheduler

import (
	"errors"
	"fmt"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/gpu"
)

// ErrInvalid is wrapped by every error that Validate and Schedule return
// for a request the scheduler cannot act on (a malformed job, group or
// queue). Retrying the same request cannot succeed.
var ErrInvalid = errors.New("invalid scheduling request")

// ErrInternal is returned when the scheduler hit a bug (a recovered
// panic). The evaluation should fail; the server keeps running.
var ErrInternal = errors.New("scheduler internal error")

// ValidationError locates what is wrong in a job: Field is a path such as
// "groups[0].tasks[1].resources.gpu.mig".
type ValidationError struct {
	Field string
	Msg   string
}

func (e *ValidationError) Error() string {
	if e.Field == "" {
		return e.Msg
	}
	return e.Field + ": " + e.Msg
}

// Unwrap makes every ValidationError match ErrInvalid.
func (e *ValidationError) Unwrap() error { return ErrInvalid }

// MaxGPUsPerTask bounds a whole-GPU count (and a node's GPUs tracked per
// bitmask).
const MaxGPUsPerTask = 64

// Validate checks everything the scheduler reads from a job: counts, gang
// sizes, resources, the GPU request forms, ports, constraints,
// affinities and spread. It returns nil or a *ValidationError (which
// matches ErrInvalid).
func Validate(job *api.Job) error {
	_, err := compileJob(job)
	return err
}

// compileJob validates the job and compiles each of its groups.
func compileJob(job *api.Job) ([]*groupPlan, error) {
	if job == nil {
		return nil, &ValidationError{Msg: "no job"}
	}
	if job.Priority < api.MinPriority || job.Priority > api.MaxPriority {
		return nil, &ValidationError{Field: "priority", Msg: fmt.Sprintf("%d is outside %d..%d", job.Priority, api.MinPriority, api.MaxPriority)}
	}
	switch job.Placement {
	case "", api.PlacementBinpack, api.PlacementSpread:
	default:
		return nil, &ValidationError{Field: "placement", Msg: fmt.Sprintf("%q: use binpack or spread", job.Placement)}
	}
	out := make([]*groupPlan, len(job.Groups))
	seen := make(map[string]bool, len(job.Groups))
	for i, g := range job.Groups {
		field := fmt.Sprintf("groups[%d]", i)
		if g == nil {
			return nil, &ValidationError{Field: field, Msg: "empty group"}
		}
		if seen[g.Name] {
			return nil, &ValidationError{Field: field + ".name", Msg: fmt.Sprintf("group %q declared twice", g.Name)}
		}
		seen[g.Name] = true
		gp, err := compileGroup(g, field)
		if err != nil {
			return nil, err
		}
		out[i] = gp
	}
	return out, nil
}

func verr(field, format string, args ...any) error {
	return &ValidationError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

func compileGroup(g *api.Group, field string) (*groupPlan, error) {
	gp := &groupPlan{group: g}
	if g.Count < 0 {
		return nil, verr(field+".count", "%d must not be negative", g.Count)
	}
	if g.Gang != nil {
		if g.Gang.Min < 1 || g.Gang.Min > g.Count {
			return nil, verr(field+".gang.min", "%d must be between 1 and the group's count %d", g.Gang.Min, g.Count)
		}
		gp.gang = g.Gang.Min
	}
	if len(g.Tasks) == 0 {
		return nil, verr(field+".tasks", "a group needs at least one task")
	}
	static := map[int]string{}
	tasks := map[string]bool{}
	for ti, t := range g.Tasks {
		tf := fmt.Sprintf("%s.tasks[%d]", field, ti)
		if t == nil {
			return nil, verr(tf, "empty task")
		}
		if tasks[t.Name] {
			return nil, verr(tf+".name", "task %q declared twice", t.Name)
		}
		tasks[t.Name] = true
		r := t.Resources
		switch {
		case r.CPU < 0:
			return nil, verr(tf+".resources.cpu", "%d must not be negative", r.CPU)
		case r.Memory < 0:
			return nil, verr(tf+".resources.memory", "%d must not be negative", r.Memory)
		case r.Disk < 0:
			return nil, verr(tf+".resources.disk", "%d must not be negative", r.Disk)
		}
		gp.cpu += r.CPU
		gp.mem += api.TaskMemory(t)
		gp.disk += r.Disk
		names := map[string]bool{}
		for pi, p := range t.Config.Ports {
			pf := fmt.Sprintf("%s.config.ports[%d]", tf, pi)
			if p.Name == "" || names[p.Name] {
				return nil, verr(pf+".name", "port names must be present and unique in a task")
			}
			names[p.Name] = true
			if p.To < 0 || p.To > 65535 {
				return nil, verr(pf+".to", "%d is not a port", p.To)
			}
			if p.Static < 0 || p.Static > 65535 {
				return nil, verr(pf+".static", "%d is not a port", p.Static)
			}
			if p.Static > 0 {
				if other, dup := static[p.Static]; dup {
					return nil, verr(pf+".static", "host port %d is also asked by %s", p.Static, other)
				}
				static[p.Static] = t.Name + "." + p.Name
				gp.static = append(gp.static, p.Static)
			} else {
				gp.dynamic++
			}
		}
		if r.GPU != nil {
			a, err := compileGPU(t.Name, r.GPU, tf+".resources.gpu")
			if err != nil {
				return nil, err
			}
			a.VM = t.Driver == api.DriverQEMU
			gp.gpu = append(gp.gpu, a)
			gp.gpuTask = append(gp.gpuTask, ti)
		}
	}
	for ci, c := range g.Constraints {
		cf := fmt.Sprintf("%s.constraints[%d]", field, ci)
		if normalizeOp(c.Operator) == OpDistinctHosts {
			switch c.Value {
			case "", "true":
				gp.distinct = true
			case "false":
			default:
				return nil, verr(cf+".value", "distinct_hosts takes true or false, not %q", c.Value)
			}
			continue
		}
		m, err := compileMatcher(c.Attribute, c.Operator, c.Value)
		if err != nil {
			return nil, verr(cf, "%v", err)
		}
		gp.constraints = append(gp.constraints, m)
	}
	for _, t := range g.Tasks {
		if t.Driver == api.DriverQEMU && t.Config.Accelerator == api.AccelKVM {
			// A VM that must have KVM goes only where the qemu driver
			// found /dev/kvm usable; the explanation says why.
			m, err := compileMatcher("${driver.qemu.kvm}", "=", "true")
			if err != nil {
				return nil, err
			}
			m.text = fmt.Sprintf("accelerator kvm of task %q (${driver.qemu.kvm} = true: KVM usable)", t.Name)
			gp.constraints = append(gp.constraints, m)
			break
		}
	}
	for ai, a := range g.Affinities {
		af := fmt.Sprintf("%s.affinities[%d]", field, ai)
		if a.Weight == 0 || a.Weight < -100 || a.Weight > 100 {
			return nil, verr(af+".weight", "%d must be in -100..100 and not 0", a.Weight)
		}
		if normalizeOp(a.Operator) == OpDistinctHosts {
			return nil, verr(af+".operator", "distinct_hosts is a constraint, not an affinity")
		}
		m, err := compileMatcher(a.Attribute, a.Operator, a.Value)
		if err != nil {
			return nil, verr(af, "%v", err)
		}
		gp.affinities = append(gp.affinities, weighted{m, a.Weight})
		gp.affinityTotal += abs(a.Weight)
	}
	for si, s := range g.Spread {
		sf := fmt.Sprintf("%s.spread[%d]", field, si)
		ref, err := parseAttr(s.Attribute)
		if err != nil || ref.kind == attrLiteral {
			return nil, verr(sf+".attribute", "%q is not a ${node.…} reference", s.Attribute)
		}
		sum := 0
		for v, pct := range s.Targets {
			if pct < 0 || pct > 100 {
				return nil, verr(sf+".targets."+v, "%d%% is outside 0..100", pct)
			}
			sum += pct
		}
		if sum > 100 {
			return nil, verr(sf+".targets", "targets add up to %d%%, more than 100", sum)
		}
		gp.spreads = append(gp.spreads, &spreadPlan{text: s.Attribute, attr: ref, targets: s.Targets, sum: sum})
	}
	gp.demand = GroupResources(g)
	return gp, nil
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

func compileGPU(task string, r *api.GPURequest, field string) (GPUAsk, error) {
	a := GPUAsk{Task: task, Model: r.Model, MemoryMin: r.MemoryMin}
	forms := 0
	if r.Count != 0 {
		forms++
	}
	if r.MIG != "" {
		forms++
	}
	if r.Share != nil {
		forms++
	}
	if forms != 1 {
		return a, verr(field, "give exactly one of count, mig or share")
	}
	if r.MemoryMin < 0 {
		return a, verr(field+".memory_min", "%d must not be negative", r.MemoryMin)
	}
	if r.ComputeCapabilityMin != "" {
		cc, ok := gpu.ParseCC(r.ComputeCapabilityMin)
		if !ok {
			return a, verr(field+".compute_capability_min", "%q: write major.minor, like 8.0", r.ComputeCapabilityMin)
		}
		a.CCMin = cc
	}
	if err := checkGlob(r.Model); err != nil {
		return a, verr(field+".model", "%v", err)
	}
	switch {
	case r.Count != 0:
		if r.Count < 0 || r.Count > MaxGPUsPerTask {
			return a, verr(field+".count", "%d must be between 1 and %d", r.Count, MaxGPUsPerTask)
		}
		a.Form, a.Count, a.Milli = gpu.FormWhole, r.Count, 1000
	case r.MIG != "":
		if !gpu.ValidProfileName(r.MIG) {
			return a, verr(field+".mig", "%q is not a MIG profile name like 3g.40gb", r.MIG)
		}
		a.Form, a.Count, a.Profile = gpu.FormMIG, 1, r.MIG
	default:
		s := r.Share
		if s.Milli < 1 || s.Milli > 1000 {
			return a, verr(field+".share.milli", "%d must be between 1 and 1000", s.Milli)
		}
		if s.Memory < 0 {
			return a, verr(field+".share.memory", "%d must not be negative", s.Memory)
		}
		a.Form, a.Count, a.Milli, a.Memory, a.Enforce = gpu.FormShare, 1, s.Milli, s.Memory, s.Enforce
	}
	return a, nil
}

func checkGlob(p string) error {
	if len(p) > 256 {
		return fmt.Errorf("model pattern longer than 256 characters")
	}
	for i := 0; i < len(p); i++ {
		if p[i] < 0x20 || p[i] == 0x7f {
			return fmt.Errorf("model pattern %q has a control character", p)
		}
	}
	return nil
}
