package jobspec

import (
	"path"
	"regexp"
	"sort"
	"strings"

	"github.com/gantryhq/gantry/internal/api"
)

// Validate checks a decoded job against the spec's rules and returns every
// problem, with paths but no lines, in the order found. It is pure: it
// reads only the job, which it does not change. Call Canonicalize first;
// Validate does not apply defaults and reports fields they would have set.
//
// Parse runs the same checks, so a spec gets the same messages from a file
// as from a JSON body.
func Validate(job *api.Job) []FieldError {
	v := &validator{}
	if job == nil {
		v.add("", "the job is missing")
		return v.errs
	}
	v.job(job)
	return v.errs
}

type validator struct{ collector }

// Operators of constraints and affinities.
var (
	constraintOperators = []string{"=", "!=", "<", "<=", ">", ">=", "regexp", "version", "semver",
		"set_contains", "set_contains_any", "is_set", "is_not_set", "distinct_hosts"}
	attributePattern  = regexp.MustCompile(`^\$\{node\.[^{}$\s]+\}$`)
	migPattern        = regexp.MustCompile(`^[1-7]g\.[1-9][0-9]{0,3}gb(\+me)?$`)
	capabilityPattern = lazyRegexp(`^[A-Z][A-Z0-9_]{0,63}$`)
	computeCapability = regexp.MustCompile(`^[0-9]{1,2}\.[0-9]{1,2}$`)
	envName           = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

func (v *validator) job(job *api.Job) {
	v.name("name", job.Name)
	v.name("namespace", job.Namespace)
	switch job.Type {
	case api.JobService, api.JobBatch:
	case "":
		v.add("type", "is required; use service or batch")
	default:
		v.add("type", "%s is not a job type; use service or batch", quote(string(job.Type)))
	}
	if job.Priority < api.MinPriority || job.Priority > api.MaxPriority {
		v.add("priority", "must be between %d and %d, not %d", api.MinPriority, api.MaxPriority, job.Priority)
	}
	switch job.Placement {
	case "", api.PlacementBinpack, api.PlacementSpread:
	default:
		v.add("placement", "%s is not a placement algorithm; use binpack or spread, or leave it out for the cluster's default", quote(job.Placement))
	}

	if len(job.Groups) == 0 {
		v.add("groups", "must list at least one group")
		return
	}
	groups := v.bounded("groups", len(job.Groups), MaxGroups, "groups")
	names := map[string]string{}
	for i, g := range job.Groups[:groups] {
		p := index("groups", i)
		if g == nil {
			v.add(p, "must be a group, not null")
			continue
		}
		v.unique(names, p+".name", g.Name, "group")
		v.group(job, g, p)
	}
}

func (v *validator) group(job *api.Job, g *api.Group, p string) {
	v.name(p+".name", g.Name)
	if g.Count < 0 || g.Count > MaxCount {
		v.add(p+".count", "must be between 0 and %d, not %d", MaxCount, g.Count)
	}
	if g.Gang != nil {
		switch {
		case g.Gang.Min < 1:
			v.add(p+".gang.min", "must be at least 1, not %d", g.Gang.Min)
		case g.Count > 0 && g.Gang.Min > g.Count:
			v.add(p+".gang.min", "must not exceed the group's count (%d), not %d", g.Count, g.Gang.Min)
		}
		if g.Migrate {
			v.add(p+".migrate", "a gang group is never moved (a move would split it); remove migrate or the gang")
		}
	}
	if g.Migrate {
		for _, t := range g.Tasks {
			if t != nil && t.Resources.GPU != nil && t.Resources.GPU.MIG != "" {
				v.add(p+".migrate", "task %s holds a MIG instance, which is never moved (it is pinned to its slices); remove migrate", t.Name)
				break
			}
		}
	}
	for i, c := range g.Constraints[:v.bounded(p+".constraints", len(g.Constraints), MaxConstraints, "constraints")] {
		v.constraint(index(p+".constraints", i), c.Attribute, c.Operator, c.Value, true)
	}
	for i, a := range g.Affinities[:v.bounded(p+".affinities", len(g.Affinities), MaxConstraints, "affinities")] {
		q := index(p+".affinities", i)
		v.constraint(q, a.Attribute, a.Operator, a.Value, false)
		if a.Weight == 0 || a.Weight < -100 || a.Weight > 100 {
			v.add(q+".weight", "must be between -100 and 100 and not 0, not %d", a.Weight)
		}
	}
	for i, s := range g.Spread[:v.bounded(p+".spread", len(g.Spread), MaxSpreads, "spread blocks")] {
		v.spread(index(p+".spread", i), s)
	}
	if r := g.Restart; r != nil {
		v.restart(p+".restart", r)
	}
	if d := g.Disconnect; d != nil && d.StopAfter < 0 {
		v.add(p+".disconnect.stop_after", "must not be negative, not %s; give how long a node cut off from the servers keeps this group running (like 5m), or leave it out to never stop it", d.StopAfter)
	}
	if g.Update != nil {
		if msg, ok := unsupported("groups[].update"); ok {
			v.add(p+".update", "%s", msg)
		} else {
			v.update(job, g, p+".update")
		}
	}

	if len(g.Tasks) == 0 {
		v.add(p+".tasks", "must list at least one task")
	}
	tasks := g.Tasks[:v.bounded(p+".tasks", len(g.Tasks), MaxTasks, "tasks")]
	names := map[string]string{}
	static := map[int]string{} // host port → path of the port that took it
	for i, t := range tasks {
		q := index(p+".tasks", i)
		if t == nil {
			v.add(q, "must be a task, not null")
			continue
		}
		v.unique(names, q+".name", t.Name, "task")
		v.task(t, q)
		for j, port := range t.Config.Ports[:min(len(t.Config.Ports), MaxPorts)] {
			if port.Static <= 0 || port.Static > 65535 {
				continue
			}
			pp := index(q+".config.ports", j) + ".static"
			if first, ok := static[port.Static]; ok {
				v.add(pp, "host port %d is already taken by %s; the tasks of a group share a node, so their static ports must differ", port.Static, first)
				continue
			}
			static[port.Static] = pp
		}
	}

	if len(g.Services) > 0 {
		if msg, ok := unsupported("groups[].services"); ok {
			v.add(p+".services", "%s", msg)
		} else {
			v.services(g, tasks, p+".services")
		}
	}
}

func (v *validator) constraint(p, attr, op, value string, hard bool) {
	switch {
	case op == "":
		v.add(p+".operator", "is required; use one of %s", strings.Join(constraintOperators, " "))
		return
	case !hard && op == "distinct_hosts":
		v.add(p+".operator", "distinct_hosts is a constraint, not an affinity; move it to constraints")
		return
	case !contains(constraintOperators, op):
		v.add(p+".operator", "%s is not an operator; use one of %s", quote(op), strings.Join(constraintOperators, " "))
		return
	}
	if op == "distinct_hosts" {
		if attr != "" {
			v.add(p+".attribute", "must be left out: distinct_hosts takes no attribute")
		}
		if value != "" {
			v.add(p+".value", "must be left out: distinct_hosts takes no value")
		}
		return
	}
	v.attribute(p+".attribute", attr)
	switch op {
	case "is_set", "is_not_set":
		if value != "" {
			v.add(p+".value", "must be left out: %s takes no value", op)
		}
	default:
		if value == "" {
			v.add(p+".value", "is required by the %s operator", op)
		} else if v.length(p+".value", value, MaxString) && op == "regexp" {
			if _, err := regexp.Compile(value); err != nil {
				v.add(p+".value", "is not a valid regular expression: %s", strings.TrimPrefix(err.Error(), "error parsing regexp: "))
			}
		}
	}
}

func (v *validator) attribute(p, attr string) {
	switch {
	case attr == "":
		v.add(p, `is required; name a node property like "${node.labels.zone}"`)
	case len(attr) > MaxShortString:
		v.add(p, "must be at most %d bytes long, not %d", MaxShortString, len(attr))
	case !attributePattern.MatchString(attr):
		v.add(p, `%s is not a node property; write it as "${node.…}", like "${node.labels.zone}"`, quote(attr))
	}
}

func (v *validator) spread(p string, s api.Spread) {
	v.attribute(p+".attribute", s.Attribute)
	if len(s.Targets) > MaxTargets {
		v.add(p+".targets", "has %d entries; at most %d are allowed", len(s.Targets), MaxTargets)
		return
	}
	keys := make([]string, 0, len(s.Targets))
	for k := range s.Targets {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	sum := 0
	for _, k := range keys {
		pct := s.Targets[k]
		q := field(p+".targets", k)
		if k == "" || len(k) > MaxShortString {
			v.add(q, "must name a value of 1 to %d bytes", MaxShortString)
		}
		if pct < 0 || pct > 100 {
			v.add(q, "must be a percentage between 0 and 100, not %d", pct)
			continue
		}
		sum += pct
	}
	if sum > 100 {
		v.add(p+".targets", "add up to %d%%; the targets may add up to at most 100%%", sum)
	}
}

func (v *validator) restart(p string, r *api.RestartPolicy) {
	if r.Attempts < 0 || r.Attempts > MaxRestartAttempts {
		v.add(p+".attempts", "must be between 0 and %d, not %d", MaxRestartAttempts, r.Attempts)
	}
	if r.Interval <= 0 {
		v.add(p+".interval", "must be longer than 0s, not %s", r.Interval)
	}
	if r.Delay < 0 {
		v.add(p+".delay", "must not be negative, not %s", r.Delay)
	}
	switch r.Mode {
	case api.RestartModeDelay, api.RestartModeFail:
	case "":
		v.add(p+".mode", "is required; use delay or fail")
	default:
		v.add(p+".mode", "%s is not a restart mode; use delay or fail", quote(r.Mode))
	}
}

// update holds the rules for rolling updates.
func (v *validator) update(job *api.Job, g *api.Group, p string) {
	u := g.Update
	if job.Type == api.JobBatch {
		v.add(p, "applies only to service jobs; remove it from this batch job")
		return
	}
	if u.MaxParallel < 1 || u.MaxParallel > MaxUpdateMaxParallel {
		v.add(p+".max_parallel", "must be between 1 and %d, not %d", MaxUpdateMaxParallel, u.MaxParallel)
	}
	if u.Canary < 0 || u.Canary > MaxCount {
		v.add(p+".canary", "must be between 0 and %d, not %d", MaxCount, u.Canary)
	}
	if u.MinHealthyTime < 0 {
		v.add(p+".min_healthy_time", "must not be negative, not %s", u.MinHealthyTime)
	}
	if u.HealthyDeadline < 0 {
		v.add(p+".healthy_deadline", "must not be negative, not %s", u.HealthyDeadline)
	} else if u.HealthyDeadline > 0 && u.MinHealthyTime >= u.HealthyDeadline {
		v.add(p+".healthy_deadline", "must be longer than min_healthy_time (%s), not %s", u.MinHealthyTime, u.HealthyDeadline)
	}
	if u.ProgressDeadline < 0 {
		v.add(p+".progress_deadline", "must not be negative, not %s", u.ProgressDeadline)
	} else if u.ProgressDeadline > 0 && u.ProgressDeadline < u.HealthyDeadline {
		v.add(p+".progress_deadline", "must be at least healthy_deadline (%s), not %s", u.HealthyDeadline, u.ProgressDeadline)
	}
}

// services holds the rules for services.
func (v *validator) services(g *api.Group, tasks []*api.Task, p string) {
	declared := map[string]int{} // port name → tasks declaring it
	for _, t := range tasks {
		if t == nil {
			continue
		}
		seen := map[string]bool{}
		for _, port := range t.Config.Ports {
			if !seen[port.Name] {
				seen[port.Name] = true
				declared[port.Name]++
			}
		}
	}
	names := map[string]string{}
	for i, s := range g.Services[:v.bounded(p, len(g.Services), MaxServices, "services")] {
		q := index(p, i)
		v.name(q+".name", s.Name)
		v.unique(names, q+".name", s.Name, "service")
		switch n := declared[s.Port]; {
		case s.Port == "":
			v.add(q+".port", "is required; name a port declared by one of the group's tasks")
		case n == 0:
			v.add(q+".port", "%s is not a port of any task in this group; declare it under a task's config.ports", quote(s.Port))
		case n > 1:
			v.add(q+".port", "%s is declared by %d tasks of this group; rename the ports so that it names one", quote(s.Port), n)
		}
		if s.LB != nil {
			v.serviceLB(s.LB, q+".lb")
		}
	}
}

// serviceLB holds the rules for a service's load-balancer block.
func (v *validator) serviceLB(lb *api.ServiceLB, p string) {
	if lb.Port < 1 || lb.Port > 65535 {
		v.add(p+".port", "must be a port between 1 and 65535, not %d: load balancers listen on it", lb.Port)
	}
	switch lb.Policy {
	case "", api.LBRoundRobin, api.LBLeastOutstanding, api.LBP2C:
	default:
		v.add(p+".policy", "%s is not a policy; use round_robin, least_outstanding or p2c", quote(lb.Policy))
	}
	switch lb.Protocol {
	case "", api.LBProtocolHTTP, api.LBProtocolTCP:
	default:
		v.add(p+".protocol", "%s is not a protocol; use http or tcp", quote(lb.Protocol))
	}
}

func (v *validator) task(t *api.Task, p string) {
	v.name(p+".name", t.Name)
	c := t.Config
	cp := p + ".config"
	switch t.Driver {
	case api.DriverDocker:
		if c.Image == "" {
			v.add(cp+".image", "is required by the docker driver")
		}
	case api.DriverExec:
		if c.Command == "" {
			v.add(cp+".command", "is required by the exec driver")
		}
		if c.Image != "" {
			v.add(cp+".image", "applies only to the docker driver; the exec driver runs config.command")
		}
		if len(c.Entrypoint) > 0 {
			v.add(cp+".entrypoint", "applies only to the docker driver; the exec driver runs config.command")
		}
	case api.DriverQEMU:
		v.qemu(t, p, cp)
	case api.DriverWasm:
		// See wasm.go.
	case api.DriverNull:
		// Pretend tasks (fault tests, scale runs): command optional.
	case "":
		v.add(p+".driver", "is required; use docker, exec, qemu or wasm")
	default:
		v.add(p+".driver", "%s is not a driver; use docker, exec, qemu or wasm", quote(t.Driver))
	}
	if t.Driver != api.DriverQEMU {
		v.qemuKeys(t, cp)
	}
	v.wasm(t, cp)
	if v.length(cp+".image", c.Image, MaxString) && t.Driver != api.DriverQEMU && strings.ContainsAny(c.Image, " \t\r\n") {
		v.add(cp+".image", "%s is not an image reference: it must not contain white space", quote(c.Image))
	}
	v.length(cp+".command", c.Command, MaxString)
	v.strings(cp+".args", c.Args, MaxArgs, "arguments")
	v.strings(cp+".entrypoint", c.Entrypoint, MaxArgs, "entries")
	v.env(cp+".env", c.Env)
	ports := map[string]bool{}
	names := map[string]string{}
	for i, port := range c.Ports[:v.bounded(cp+".ports", len(c.Ports), MaxPorts, "ports")] {
		q := index(cp+".ports", i)
		v.name(q+".name", port.Name)
		v.unique(names, q+".name", port.Name, "port")
		ports[port.Name] = true
		if port.To < 0 || port.To > 65535 {
			v.add(q+".to", "must be a port number between 1 and 65535, not %d", port.To)
		}
		if port.Static < 0 || port.Static > 65535 {
			v.add(q+".static", "must be a port number between 1 and 65535, not %d", port.Static)
		}
	}
	v.isolation(t, cp)
	v.resources(p+".resources", t.Resources)
	for i, ch := range t.Checks[:v.bounded(p+".checks", len(t.Checks), MaxChecks, "checks")] {
		v.check(index(p+".checks", i), ch, ports)
	}
	if t.Security != nil {
		if msg, ok := unsupported("groups[].tasks[].security"); ok {
			v.add(p+".security", "%s", msg)
		} else {
			v.security(p+".security", t.Driver, t.Security)
		}
	}
}

func (v *validator) env(p string, env map[string]string) {
	if len(env) > MaxEnv {
		v.add(p, "has %d entries; at most %d are allowed", len(env), MaxEnv)
		return
	}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		q := field(p, k)
		if len(k) > MaxShortString || !envName.MatchString(k) {
			v.add(q, "%s is not a variable name; use letters, digits and _, not starting with a digit, at most %d bytes", quote(k), MaxShortString)
		}
		v.length(q, env[k], MaxEnvValue)
	}
}

func (v *validator) resources(p string, r api.Resources) {
	switch {
	case r.CPU <= 0:
		v.add(p+".cpu", "must be greater than 0 (millicores), not %d", r.CPU)
	case r.CPU > MaxCPU:
		v.add(p+".cpu", "must be at most %d millicores (1000 cores), not %d", MaxCPU, r.CPU)
	}
	switch {
	case r.Memory <= 0:
		v.add(p+".memory", "must be greater than 0 (MiB), not %d", r.Memory)
	case r.Memory > MaxMemoryMiB:
		v.add(p+".memory", "must be at most %d MiB (16 TiB), not %d", MaxMemoryMiB, r.Memory)
	}
	switch {
	case r.Disk < 0:
		v.add(p+".disk", "must not be negative, not %d", r.Disk)
	case r.Disk > MaxDiskMiB:
		v.add(p+".disk", "must be at most %d MiB (1 PiB), not %d", MaxDiskMiB, r.Disk)
	}
	if r.GPU != nil {
		v.gpu(p+".gpu", r.GPU)
	}
}

func (v *validator) gpu(p string, g *api.GPURequest) {
	var forms []string
	if g.Count != 0 {
		forms = append(forms, "count")
	}
	if g.MIG != "" {
		forms = append(forms, "mig")
	}
	if g.Share != nil {
		forms = append(forms, "share")
	}
	switch len(forms) {
	case 0:
		v.add(p, "must set exactly one of count (whole GPUs), mig (a MIG profile) or share (part of one GPU)")
	case 1:
	default:
		v.add(p, "sets %s; set exactly one of count, mig or share", strings.Join(forms, " and "))
	}
	if g.Count != 0 && (g.Count < 1 || g.Count > MaxGPUCount) {
		v.add(p+".count", "must be between 1 and %d, not %d", MaxGPUCount, g.Count)
	}
	if g.MIG != "" && !migPattern.MatchString(g.MIG) {
		v.add(p+".mig", "%s is not a MIG profile; use a profile name like 1g.10gb or 3g.40gb", quote(g.MIG))
	}
	if s := g.Share; s != nil {
		if s.Milli < 1 || s.Milli > 1000 {
			v.add(p+".share.milli", "must be between 1 and 1000 (thousandths of one GPU), not %d", s.Milli)
		}
		if s.Memory < 0 || s.Memory > MaxMemoryMiB {
			v.add(p+".share.memory", "must be between 0 and %d MiB, not %d", MaxMemoryMiB, s.Memory)
		}
	}
	if g.Model != "" && v.length(p+".model", g.Model, MaxShortString) {
		if _, err := path.Match(g.Model, ""); err != nil {
			v.add(p+".model", "%s is not a valid pattern; use a model name with * and ? wildcards, like \"H100*\"", quote(g.Model))
		}
	}
	if g.MemoryMin < 0 || g.MemoryMin > MaxMemoryMiB {
		v.add(p+".memory_min", "must be between 0 and %d MiB, not %d", MaxMemoryMiB, g.MemoryMin)
	}
	if cc := g.ComputeCapabilityMin; cc != "" && !computeCapability.MatchString(cc) {
		v.add(p+".compute_capability_min", "%s is not a compute capability; write it as major.minor, like \"8.0\"", quote(cc))
	}
}

func (v *validator) check(p string, c api.Check, ports map[string]bool) {
	needPort := func() {
		switch {
		case c.Port == "":
			v.add(p+".port", "is required by %s checks; name one of the task's ports", c.Type)
		case !ports[c.Port]:
			v.add(p+".port", "%s is not a port of this task; name one declared under config.ports", quote(c.Port))
		}
	}
	switch c.Type {
	case api.CheckHTTP:
		needPort()
		switch {
		case c.Path == "":
			v.add(p+".path", `is required by http checks; give a path like "/healthz"`)
		case !strings.HasPrefix(c.Path, "/") || strings.ContainsAny(c.Path, " \t\r\n"):
			v.add(p+".path", `%s is not a URL path; it must start with "/" and contain no white space`, quote(c.Path))
		default:
			v.length(p+".path", c.Path, MaxString)
		}
	case api.CheckTCP:
		needPort()
	case api.CheckExec:
		if len(c.Command) == 0 {
			v.add(p+".command", `is required by exec checks; give the program and its arguments, like ["pg_isready"]`)
		}
	case "":
		v.add(p+".type", "is required; use http, tcp or exec")
	default:
		v.add(p+".type", "%s is not a check type; use http, tcp or exec", quote(c.Type))
	}
	if c.Type != api.CheckHTTP && c.Path != "" {
		v.add(p+".path", "applies only to http checks")
	}
	if c.Type == api.CheckExec && c.Port != "" {
		v.add(p+".port", "applies only to http and tcp checks")
	}
	if c.Type != api.CheckExec && len(c.Command) > 0 {
		v.add(p+".command", "applies only to exec checks")
	}
	v.strings(p+".command", c.Command, MaxArgs, "entries")
	if c.Interval <= 0 {
		v.add(p+".interval", "must be longer than 0s, not %s", c.Interval)
	}
	if c.Timeout <= 0 {
		v.add(p+".timeout", "must be longer than 0s, not %s", c.Timeout)
	} else if c.Interval > 0 && c.Timeout > c.Interval {
		v.add(p+".timeout", "must not be longer than the interval (%s), not %s", c.Interval, c.Timeout)
	}
	if c.Failures < 1 || c.Failures > MaxCheckFailures {
		v.add(p+".failures", "must be between 1 and %d, not %d", MaxCheckFailures, c.Failures)
	}
	if c.Grace < 0 {
		v.add(p+".grace", "must not be negative, not %s", c.Grace)
	}
}

// security holds the rules for container security settings (see also
// isolation.go).
func (v *validator) security(p, drv string, s *api.Security) {
	v.securityModes(p, drv, s)
	if v.length(p+".user", s.User, MaxShortString) && strings.ContainsAny(s.User, " \t\r\n") {
		v.add(p+".user", "%s is not a user; give a name or uid[:gid] without white space", quote(s.User))
	}
	for _, caps := range []struct {
		key  string
		list []string
	}{{"cap_add", s.CapAdd}, {"cap_drop", s.CapDrop}} {
		q := p + "." + caps.key
		for i, c := range caps.list[:v.bounded(q, len(caps.list), MaxCapabilities, "capabilities")] {
			if !capabilityPattern().MatchString(c) {
				v.add(index(q, i), "%s is not a capability; use names like NET_ADMIN or ALL", quote(c))
			}
		}
	}
}

// name checks an identifier.
func (v *validator) name(p, s string) {
	switch {
	case s == "":
		v.add(p, "is required; names %s", api.NameRule)
	case !api.ValidName(s):
		v.add(p, "%s is not a valid name; names %s", quote(s), api.NameRule)
	}
}

// unique reports a name already used by a sibling.
func (v *validator) unique(seen map[string]string, p, name, what string) {
	if name == "" {
		return
	}
	if first, ok := seen[name]; ok {
		v.add(p, "%s is already the name of %s; each %s needs its own name", quote(name), strings.TrimSuffix(first, ".name"), what)
		return
	}
	seen[name] = p
}

// bounded reports a list longer than max and returns how many of its
// entries to check.
func (v *validator) bounded(p string, n, max int, what string) int {
	if n > max {
		v.add(p, "has %d %s; at most %d are allowed", n, what, max)
		return max
	}
	return n
}

// length reports a string over max bytes or holding a NUL byte, and says
// whether it passed.
func (v *validator) length(p, s string, max int) bool {
	switch {
	case len(s) > max:
		v.add(p, "is %d bytes long; at most %d are allowed", len(s), max)
	case strings.IndexByte(s, 0) >= 0:
		v.add(p, "must not contain NUL bytes")
	default:
		return true
	}
	return false
}

func (v *validator) strings(p string, list []string, max int, what string) {
	for i, s := range list[:v.bounded(p, len(list), max, what)] {
		v.length(index(p, i), s, MaxString)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
