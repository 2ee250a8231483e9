package compose

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/gantryhq/gantry/internal/api"
)

// Dependency conditions of depends_on.
const (
	ConditionStarted   = types.ServiceConditionStarted
	ConditionHealthy   = types.ServiceConditionHealthy
	ConditionCompleted = types.ServiceConditionCompletedSuccessfully
)

// What a service gets when its deploy.resources say nothing: Compose
// sets no limit, Gantry must reserve something to place it.
const (
	DefaultCPU    = 100 // millicores
	DefaultMemory = 256 // MiB
)

// Options change how a project is translated.
type Options struct {
	// Strict turns every warning about an unsupported option into an
	// error.
	Strict bool
}

// Result is a translated project: one job per service, in start order.
type Result struct {
	Project   string
	Namespace string
	Services  []*Service
	// Warnings are one sentence each: per service, the options Gantry
	// ignores, and what behaves differently from Docker (named volumes
	// stay on their node).
	Warnings []string
}

// Service is one Compose service and the job it became.
type Service struct {
	Name      string // as the Compose file names it
	Job       *api.Job
	DependsOn []Dependency
	// Image is the image the service runs, for the pre-flight check.
	Image string
	// Published are the load-balancer ports the service listens on.
	Published []int
}

// Dependency is one depends_on entry.
type Dependency struct {
	Service   string `json:"service"`
	Condition string `json:"condition"`
}

// Lookup returns the service with that Compose name, or nil.
func (r *Result) Lookup(name string) *Service {
	for _, s := range r.Services {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// Errors are the problems that keep a project from being translated, one
// sentence each; nothing is deployed when there is one.
type Errors []string

func (e Errors) Error() string {
	if len(e) == 1 {
		return e[0]
	}
	return fmt.Sprintf("%d problems:\n  %s", len(e), strings.Join(e, "\n  "))
}

// Translate turns a loaded Compose project into Gantry jobs. It is pure:
// it reads nothing but p and never touches the cluster, so `compose
// config` prints exactly what `compose up` submits.
//
// Every service becomes one job named after it (lower case, _ and . as -)
// in the namespace named after the project, with one group and one docker
// task. What Gantry cannot do is named in one warning per service, never
// dropped silently; with o.Strict those warnings are errors. Problems that
// make the project undeployable (two services publishing one port, a
// dependency cycle, a value Gantry cannot express) come back as Errors,
// all of them at once.
func Translate(p *types.Project, o Options) (*Result, error) {
	ns := identifier(p.Name)
	res := &Result{Project: p.Name, Namespace: ns}
	var errs Errors
	if !api.ValidName(ns) {
		errs = append(errs, fmt.Sprintf("project name %q does not make a Gantry namespace (%s); choose another with -p", p.Name, api.NameRule))
	}
	names := make([]string, 0, len(p.Services))
	for n := range p.Services {
		names = append(names, n)
	}
	sort.Strings(names)

	jobNames := map[string]string{}
	lbPorts := map[int]string{} // load-balancer port → "service web publishes it"
	completes := map[string]bool{}
	for _, n := range names {
		for dep, d := range p.Services[n].DependsOn {
			if d.Condition == ConditionCompleted {
				completes[dep] = true
			}
		}
	}
	byName := map[string]*Service{}
	for _, n := range names {
		svc := p.Services[n]
		t := &translator{p: p, svc: svc, ns: ns, completes: completes[n]}
		job := t.job()
		if other, dup := jobNames[job.Name]; dup {
			t.fail("services %q and %q both become job %q; rename one of them", other, n, job.Name)
		}
		jobNames[job.Name] = n
		for _, lb := range t.published {
			if other, taken := lbPorts[lb]; taken {
				t.fail("service %q and service %q both publish port %d; give one of them another published port", other, n, lb)
				continue
			}
			lbPorts[lb] = n
		}
		s := &Service{Name: n, Job: job, Image: svc.Image, Published: t.published}
		for _, dep := range sortedKeys(svc.DependsOn) {
			cond := svc.DependsOn[dep].Condition
			if cond == "" {
				cond = ConditionStarted
			}
			s.DependsOn = append(s.DependsOn, Dependency{Service: dep, Condition: cond})
		}
		byName[n] = s
		if len(t.ignored) > 0 {
			msg := fmt.Sprintf("service %s: ignoring unsupported options: %s", n, strings.Join(t.ignored, ", "))
			if o.Strict {
				t.errs = append(t.errs, msg+" (--strict)")
			} else {
				res.Warnings = append(res.Warnings, msg)
			}
		}
		res.Warnings = append(res.Warnings, t.notes...)
		errs = append(errs, t.errs...)
	}

	// Every service reaches every other by its Compose name through the
	// node's DNS for containers (the agent's, with --lb): the project's
	// namespace is the containers' search domain, and the name answers
	// with the node's load balancer, which serves the service's ports.

	order, err := startOrder(names, byName)
	if err != nil {
		errs = append(errs, err.Error())
	}
	if len(errs) > 0 {
		return nil, errs
	}
	res.Services = order
	return res, nil
}

// startOrder sorts services so that each comes after what it depends on
// (names sorted within a level), or says which dependency is missing or
// which services form a cycle.
func startOrder(names []string, byName map[string]*Service) ([]*Service, error) {
	var out []*Service
	done := map[string]bool{}
	for len(out) < len(names) {
		progressed := false
		for _, n := range names {
			if done[n] {
				continue
			}
			ready := true
			for _, d := range byName[n].DependsOn {
				if byName[d.Service] == nil {
					return nil, fmt.Errorf("service %s depends on %q, which the project does not define (or whose profile is not active)", n, d.Service)
				}
				if !done[d.Service] {
					ready = false
				}
			}
			if ready {
				done[n] = true
				out = append(out, byName[n])
				progressed = true
			}
		}
		if !progressed {
			var cycle []string
			for _, n := range names {
				if !done[n] {
					cycle = append(cycle, n)
				}
			}
			return nil, fmt.Errorf("services %s depend on each other in a cycle; remove one of the depends_on entries", strings.Join(cycle, ", "))
		}
	}
	return out, nil
}

type translator struct {
	p         *types.Project
	svc       types.ServiceConfig
	ns        string
	completes bool // another service waits for this one to complete

	ignored   []string // unsupported options, for the one warning line
	notes     []string // other warnings, whole sentences
	errs      []string
	published []int
}

func (t *translator) ignore(key string)       { t.ignored = append(t.ignored, key) }
func (t *translator) note(f string, a ...any) { t.notes = append(t.notes, fmt.Sprintf(f, a...)) }
func (t *translator) fail(f string, a ...any) { t.errs = append(t.errs, fmt.Sprintf(f, a...)) }
func (t *translator) failf(key, f string, a ...any) {
	t.fail("service %s: %s %s", t.svc.Name, key, fmt.Sprintf(f, a...))
}

var notIdent = regexp.MustCompile(`[^a-z0-9-]+`)

// identifier turns a Compose name into a Gantry one: lower case, runs of
// other characters as one dash.
func identifier(s string) string {
	s = notIdent.ReplaceAllString(strings.ToLower(s), "-")
	return strings.Trim(s, "-")
}

func (t *translator) job() *api.Job {
	s := t.svc
	name := identifier(s.Name)
	if !api.ValidName(name) {
		t.fail("service %q does not make a Gantry job name (%s); rename it", s.Name, api.NameRule)
	}
	t.unknownKeys()

	task := &api.Task{Name: name, Driver: api.DriverDocker}
	c := &task.Config
	c.Image = s.Image
	if s.Image == "" {
		t.failf("image", "is not set; Gantry runs images and does not build them (build it, then name it in image:)")
	}
	if len(s.Command) > 0 {
		c.Command, c.Args = s.Command[0], append([]string(nil), s.Command[1:]...)
	}
	c.Entrypoint = append([]string(nil), s.Entrypoint...)
	if len(s.Environment) > 0 {
		c.Env = map[string]string{}
		for k, v := range s.Environment {
			if v != nil { // unset in the environment: Compose leaves it out too
				c.Env[k] = *v
			}
		}
	}
	c.WorkingDir = s.WorkingDir
	task.Security = security(&s)
	if len(s.Labels) > 0 || (s.Deploy != nil && len(s.Deploy.Labels) > 0) {
		c.Labels = map[string]string{}
		for k, v := range s.Labels {
			c.Labels[k] = v
		}
		if s.Deploy != nil {
			for k, v := range s.Deploy.Labels {
				c.Labels[k] = v
			}
		}
	}

	task.Resources = api.Resources{CPU: DefaultCPU, Memory: DefaultMemory}
	group := &api.Group{Name: name, Count: 1, Tasks: []*api.Task{task}}
	job := &api.Job{Name: name, Namespace: t.ns, Type: api.JobService, Priority: api.DefaultPriority, Groups: []*api.Group{group}}

	t.ports(group, task)
	t.healthcheck(task)
	t.deploy(job, group, task)
	t.restart(job, group)
	t.volumes(task)
	t.files(task)
	t.extras(job, task)
	if t.completes && job.Type != api.JobBatch {
		job.Type = api.JobBatch
	}
	if job.Type == api.JobBatch && group.Update != nil {
		group.Update = nil // batch work is not rolled
	}
	return job
}

// supported lists the service keys Translate reads; for nested maps, the
// sub-keys it reads. Any other key present in a loaded service is named in
// the service's warning line.
var supported = map[string]map[string]bool{
	"image": nil, "command": nil, "entrypoint": nil, "environment": nil, "working_dir": nil,
	"user": nil, "labels": nil, "scale": nil, "restart": nil, "ports": nil, "expose": nil,
	"read_only": nil, "privileged": nil, "cap_add": nil, "cap_drop": nil,
	"healthcheck": nil, "depends_on": nil, "volumes": nil, "secrets": nil, "configs": nil,
	"profiles": nil, "networks": nil,
	// env_file is read by compose-go into environment; extends is merged by compose-go.
	"env_file": nil, "extends": nil,
	"deploy": {"replicas": true, "resources": true, "update_config": true, "restart_policy": true,
		"placement": true, "labels": true, "mode": true},
}

// unknownKeys names every key of the service that Translate does not
// read, found from the loaded service itself so that no key is dropped
// silently, whichever version of the Compose spec added it.
func (t *translator) unknownKeys() {
	b, err := json.Marshal(t.svc)
	if err != nil {
		t.fail("service %s: %v", t.svc.Name, err)
		return
	}
	var m map[string]json.RawMessage
	_ = json.Unmarshal(b, &m)
	for _, k := range sortedKeys(m) {
		sub, known := supported[k]
		switch {
		case !known:
			t.ignore(k)
		case sub != nil:
			var inner map[string]json.RawMessage
			if json.Unmarshal(m[k], &inner) == nil {
				for _, ik := range sortedKeys(inner) {
					if !sub[ik] {
						t.ignore(k + "." + ik)
					}
				}
			}
		}
	}
	// networks: the default network is what every service gets; others
	// (and aliases on it) are not Gantry's.
	for _, n := range sortedKeys(t.svc.Networks) {
		if n != "default" || t.svc.Networks[n] != nil {
			t.ignore("networks." + n)
		}
	}
}

// ports: each target port becomes a named port of the task; each service
// port is published on the load balancers: a published port there, an
// unpublished one (and every expose entry) at its target port, so that
// other services reach it by name at the port they write.
func (t *translator) ports(g *api.Group, task *api.Task) {
	type entry struct {
		target, lb int
		proto      string
		name       string
	}
	var entries []entry
	seen := map[int]bool{}
	for i, p := range t.svc.Ports {
		key := fmt.Sprintf("ports[%d]", i)
		if p.Protocol != "" && p.Protocol != "tcp" {
			t.ignore(key + ".protocol=" + p.Protocol)
			continue
		}
		if p.HostIP != "" {
			t.ignore(key + ".host_ip")
		}
		if p.Mode == "host" {
			t.ignore(key + ".mode=host")
		}
		lb := int(p.Target)
		if p.Published != "" {
			n, err := strconv.Atoi(p.Published)
			if err != nil {
				t.failf(key, "publishes the range %q; Gantry publishes one port per target, write each one", p.Published)
				continue
			}
			lb = n
		}
		proto := api.LBProtocolTCP
		if p.AppProtocol == "http" {
			proto = api.LBProtocolHTTP
		}
		if seen[int(p.Target)] {
			continue
		}
		seen[int(p.Target)] = true
		entries = append(entries, entry{target: int(p.Target), lb: lb, proto: proto, name: p.Name})
	}
	for _, e := range t.svc.Expose {
		n, err := strconv.Atoi(strings.TrimSuffix(e, "/tcp"))
		if err != nil {
			t.ignore("expose " + e)
			continue
		}
		if !seen[n] {
			seen[n] = true
			entries = append(entries, entry{target: n, lb: n, proto: api.LBProtocolTCP})
		}
	}
	for i, e := range entries {
		if e.target < 1 || e.target > 65535 || e.lb < 1 || e.lb > 65535 {
			t.failf("ports", "maps %d to %d; both must be in 1..65535", e.lb, e.target)
			continue
		}
		name := identifier(e.name)
		if name == "" || !api.ValidName(name) {
			name = fmt.Sprintf("p%d", e.target)
		}
		task.Config.Ports = append(task.Config.Ports, api.PortSpec{Name: name, To: e.target})
		svcName := identifier(t.svc.Name)
		if i > 0 {
			svcName = fmt.Sprintf("%s-%d", svcName, e.target)
		}
		g.Services = append(g.Services, api.Service{Name: svcName, Port: name, LB: &api.ServiceLB{Port: e.lb, Protocol: e.proto}})
		t.published = append(t.published, e.lb)
	}
}

// healthcheck: CMD and CMD-SHELL become an exec check, NONE (or disable)
// none.
func (t *translator) healthcheck(task *api.Task) {
	h := t.svc.HealthCheck
	if h == nil || h.Disable || len(h.Test) == 0 {
		return
	}
	var cmd []string
	switch h.Test[0] {
	case "NONE":
		return
	case "CMD":
		cmd = append([]string(nil), h.Test[1:]...)
	case "CMD-SHELL":
		cmd = []string{"/bin/sh", "-c", strings.Join(h.Test[1:], " ")}
	default:
		t.failf("healthcheck.test", "starts with %q; use CMD, CMD-SHELL or NONE", h.Test[0])
		return
	}
	if len(cmd) == 0 {
		t.failf("healthcheck.test", "names no command")
		return
	}
	ch := api.Check{Type: api.CheckExec, Command: cmd}
	if h.Interval != nil {
		ch.Interval = api.Duration(*h.Interval)
	}
	if h.Timeout != nil {
		ch.Timeout = api.Duration(*h.Timeout)
	}
	if h.Retries != nil {
		ch.Failures = int(*h.Retries)
	}
	if h.StartPeriod != nil {
		ch.Grace = api.Duration(*h.StartPeriod)
	}
	if h.StartInterval != nil {
		t.ignore("healthcheck.start_interval")
	}
	task.Checks = []api.Check{ch}
}

func (t *translator) deploy(job *api.Job, g *api.Group, task *api.Task) {
	if t.svc.Scale != nil {
		g.Count = *t.svc.Scale
	}
	d := t.svc.Deploy
	if d == nil {
		return
	}
	if d.Replicas != nil {
		g.Count = *d.Replicas
	}
	switch d.Mode {
	case "", "replicated":
	default:
		t.ignore("deploy.mode=" + d.Mode)
	}
	t.resources(task, d.Resources)
	if u := d.UpdateConfig; u != nil {
		up := &api.UpdateStrategy{MaxParallel: 1}
		if u.Parallelism != nil {
			up.MaxParallel = int(*u.Parallelism)
			if up.MaxParallel == 0 { // Swarm: 0 updates every task at once
				up.MaxParallel = max(g.Count, 1)
			}
		}
		if u.Delay != 0 {
			up.MinHealthyTime = api.Duration(u.Delay)
		}
		switch u.FailureAction {
		case "", "pause":
		case "rollback":
			up.AutoRevert = true
		default:
			t.ignore("deploy.update_config.failure_action=" + u.FailureAction)
		}
		switch u.Order {
		case "", "stop-first", "start-first":
		default:
			t.ignore("deploy.update_config.order=" + u.Order)
		}
		if u.Monitor != 0 {
			t.ignore("deploy.update_config.monitor")
		}
		if u.MaxFailureRatio != 0 {
			t.ignore("deploy.update_config.max_failure_ratio")
		}
		g.Update = up
	}
	if rc := d.RollbackConfig; rc != nil {
		t.ignore("deploy.rollback_config")
	}
	t.placement(g, d.Placement)
}

func (t *translator) resources(task *api.Task, r types.Resources) {
	pick := func(f func(*types.Resource) bool) *types.Resource {
		for _, x := range []*types.Resource{r.Reservations, r.Limits} {
			if x != nil && f(x) {
				return x
			}
		}
		return nil
	}
	// CPU is a share in Gantry: the reservation when given, else the
	// limit. Memory is a hard limit: the limit when given, else the
	// reservation.
	if x := pick(func(x *types.Resource) bool { return x.NanoCPUs > 0 }); x != nil {
		task.Resources.CPU = int(math.Round(float64(x.NanoCPUs) * 1000))
	}
	for _, x := range []*types.Resource{r.Limits, r.Reservations} {
		if x != nil && x.MemoryBytes > 0 {
			task.Resources.Memory = int((int64(x.MemoryBytes) + 1<<20 - 1) >> 20)
			break
		}
	}
	for _, x := range []struct {
		key string
		r   *types.Resource
	}{{"limits", r.Limits}, {"reservations", r.Reservations}} {
		if x.r == nil {
			continue
		}
		if x.r.Pids != 0 {
			t.ignore("deploy.resources." + x.key + ".pids")
		}
		if len(x.r.GenericResources) > 0 {
			t.ignore("deploy.resources." + x.key + ".generic_resources")
		}
		for i, dev := range x.r.Devices {
			key := fmt.Sprintf("deploy.resources.%s.devices[%d]", x.key, i)
			if !contains(dev.Capabilities, "gpu") {
				t.ignore(key)
				continue
			}
			if dev.Driver != "" && dev.Driver != "nvidia" {
				t.ignore(key + ".driver=" + dev.Driver)
			}
			if len(dev.Options) > 0 {
				t.ignore(key + ".options")
			}
			n := int(dev.Count)
			switch {
			case len(dev.IDs) > 0:
				n = len(dev.IDs)
				t.note("service %s: %s asks for the GPUs %s; Gantry places %d whole GPU(s) of its choosing on a node that has them", t.svc.Name, key, strings.Join(dev.IDs, ", "), n)
			case n < 0:
				t.failf(key, `asks for count "all"; Gantry places a number of GPUs: write count: N`)
				continue
			case n == 0:
				n = 1
			}
			task.Resources.GPU = &api.GPURequest{Count: n}
		}
	}
}

var constraintExpr = regexp.MustCompile(`^\s*([A-Za-z0-9_.\-]+)\s*(==|!=)\s*(.+?)\s*$`)

// placement: node.labels.X and node.hostname constraints, spread
// preferences over node.labels.X.
func (t *translator) placement(g *api.Group, p types.Placement) {
	for i, c := range p.Constraints {
		key := fmt.Sprintf("deploy.placement.constraints[%d]", i)
		m := constraintExpr.FindStringSubmatch(c)
		if m == nil {
			t.failf(key, "%q is not a constraint; write it as node.labels.<key> == <value>", c)
			continue
		}
		attr, ok := nodeAttribute(m[1])
		if !ok {
			t.ignore(key + "=" + m[1])
			continue
		}
		op := "="
		if m[2] == "!=" {
			op = "!="
		}
		g.Constraints = append(g.Constraints, api.Constraint{Attribute: attr, Operator: op, Value: m[3]})
	}
	for i, pref := range p.Preferences {
		attr, ok := nodeAttribute(pref.Spread)
		if !ok || !strings.HasPrefix(pref.Spread, "node.labels.") {
			t.ignore(fmt.Sprintf("deploy.placement.preferences[%d]", i))
			continue
		}
		g.Spread = append(g.Spread, api.Spread{Attribute: attr})
	}
	if p.MaxReplicas != 0 {
		t.ignore("deploy.placement.max_replicas_per_node")
	}
}

// nodeAttribute maps a Swarm node attribute to a Gantry one.
func nodeAttribute(s string) (string, bool) {
	switch {
	case strings.HasPrefix(s, "node.labels.") && len(s) > len("node.labels."):
		return "${" + s + "}", true
	case strings.HasPrefix(s, "engine.labels.") && len(s) > len("engine.labels."):
		return "${node.labels." + strings.TrimPrefix(s, "engine.labels.") + "}", true
	case s == "node.hostname":
		return "${node.name}", true
	case s == "node.id":
		return "${node.id}", true
	}
	return "", false
}

// security carries the service's user and its container settings over
// as Compose means them. A Compose container's root filesystem is
// writable unless read_only says otherwise, where a Gantry task's is
// read-only by default: most public images (databases, web servers)
// write outside their volumes, so the translation keeps Compose's
// default and the isolation policy warns about it (CIS 5.13), as it
// judges privileged and added capabilities.
func security(s *types.ServiceConfig) *api.Security {
	readOnly := s.ReadOnly
	return &api.Security{
		User:           s.User,
		ReadOnlyRootfs: &readOnly,
		Privileged:     s.Privileged,
		CapAdd:         slices.Clone(s.CapAdd),
		CapDrop:        slices.Clone(s.CapDrop),
	}
}

var onFailure = regexp.MustCompile(`^on-failure(?::(\d+))?$`)

// restart: "no" and on-failure make batch work (it is meant to finish);
// always and unless-stopped a service. deploy.restart_policy says the same
// in Swarm's words, with attempts, delay and window.
func (t *translator) restart(job *api.Job, g *api.Group) {
	var pol *api.RestartPolicy
	switch r := t.svc.Restart; {
	case r == "":
	case r == "no":
		job.Type = api.JobBatch
		pol = &api.RestartPolicy{Attempts: 0, Mode: api.RestartModeFail}
	case r == "always" || r == "unless-stopped":
	case onFailure.MatchString(r):
		job.Type = api.JobBatch
		def := api.DefaultRestartPolicy(api.JobBatch)
		pol = &def
		if m := onFailure.FindStringSubmatch(r); m[1] != "" {
			pol.Attempts, _ = strconv.Atoi(m[1])
		}
	default:
		t.failf("restart", "%q is not a restart policy; use no, always, on-failure[:N] or unless-stopped", r)
	}
	if d := t.svc.Deploy; d != nil && d.RestartPolicy != nil {
		rp := d.RestartPolicy
		switch rp.Condition {
		case "", "any":
			job.Type = api.JobService
		case "none":
			job.Type = api.JobBatch
		case "on-failure":
			job.Type = api.JobBatch
		default:
			t.failf("deploy.restart_policy.condition", "%q is not a condition; use none, on-failure or any", rp.Condition)
		}
		def := api.DefaultRestartPolicy(job.Type)
		pol = &def
		if rp.Condition == "none" {
			pol.Attempts = 0
		}
		if rp.MaxAttempts != nil {
			pol.Attempts = int(*rp.MaxAttempts)
		}
		if rp.Delay != nil {
			pol.Delay = api.Duration(*rp.Delay)
		}
		if rp.Window != nil && *rp.Window > 0 {
			pol.Interval = api.Duration(*rp.Window)
		}
	}
	g.Restart = pol
}

// volumes: named volumes become node-local Docker volumes (with a
// warning: they do not follow a replica to another node), bind mounts
// stay bind mounts; tmpfs and anonymous volumes are not Gantry's.
func (t *translator) volumes(task *api.Task) {
	var named []string
	for i, v := range t.svc.Volumes {
		key := fmt.Sprintf("volumes[%d]", i)
		opt := ""
		if v.ReadOnly {
			opt = ":ro"
		}
		switch v.Type {
		case types.VolumeTypeBind:
			task.Config.Volumes = append(task.Config.Volumes, v.Source+":"+v.Target+opt)
		case types.VolumeTypeVolume:
			if v.Source == "" {
				t.ignore(key + " (anonymous volume)")
				continue
			}
			name := v.Source
			if vc, ok := t.p.Volumes[v.Source]; ok && vc.Name != "" {
				name = vc.Name
			}
			task.Config.DockerVolumes = append(task.Config.DockerVolumes, name+":"+v.Target+opt)
			named = append(named, name)
		default:
			t.ignore(key + " (" + v.Type + ")")
		}
	}
	if len(named) > 0 {
		t.note("service %s: named volume(s) %s are node-local Docker volumes: each node keeps its own, and a replica moved to another node does not take the data with it", t.svc.Name, strings.Join(named, ", "))
	}
}

// files: secrets and configs backed by a file become read-only bind
// mounts of that file (at /run/secrets/<name>, or their target); those
// from the environment or inline content are not supported.
func (t *translator) files(task *api.Task) {
	mount := func(kind string, i int, ref types.FileReferenceConfig, file string, defTarget string) {
		key := fmt.Sprintf("%s[%d]", kind, i)
		if file == "" {
			t.ignore(key + " " + ref.Source + " (not from a file)")
			return
		}
		target := ref.Target
		if target == "" {
			target = defTarget
		} else if !strings.HasPrefix(target, "/") {
			target = "/run/secrets/" + target
		}
		if ref.UID != "" || ref.GID != "" || ref.Mode != nil {
			t.ignore(key + ".uid/gid/mode")
		}
		task.Config.Volumes = append(task.Config.Volumes, file+":"+target+":ro")
	}
	for i, s := range t.svc.Secrets {
		mount("secrets", i, types.FileReferenceConfig(s), t.p.Secrets[s.Source].File, "/run/secrets/"+s.Source)
	}
	for i, c := range t.svc.Configs {
		mount("configs", i, types.FileReferenceConfig(c), t.p.Configs[c.Source].File, "/"+c.Source)
	}
}

// extras reads the x-gantry key: GPU forms and a priority.
func (t *translator) extras(job *api.Job, task *api.Task) {
	raw, ok := t.svc.Extensions[Extension]
	if !ok {
		return
	}
	b, err := json.Marshal(raw)
	if err != nil {
		t.failf(Extension, "cannot be read: %v", err)
		return
	}
	var x Extras
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&x); err != nil {
		t.failf(Extension, "cannot be read (%v); it takes gpu: {count, model, memory_min, compute_capability_min, mig, share: {milli, memory, enforce}} and priority", err)
		return
	}
	if x.GPU != nil {
		if task.Resources.GPU != nil {
			t.note("service %s: %s.gpu replaces the GPU reservation under deploy.resources", t.svc.Name, Extension)
		}
		task.Resources.GPU = x.GPU
	}
	if x.Priority != nil {
		job.Priority = *x.Priority
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

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
