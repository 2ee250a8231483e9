package validate

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/jobspec"
	"github.com/gantryhq/gantry/internal/scheduler"
)

// Class says what a problem means for submitting the job.
type Class int

const (
	// Invalid: the job is wrong in itself or conflicts with what the
	// cluster holds; the server rejects it whole.
	Invalid Class = iota
	// Unplaceable: the cluster as it is can never run it (no node big
	// enough, no such GPU, …); the server accepts it, because nodes may
	// join, and warns.
	Unplaceable
	// Advice: probably a mistake, harmless to the cluster; the server
	// accepts the job and warns.
	Advice
)

func (c Class) String() string {
	switch c {
	case Invalid:
		return "invalid"
	case Unplaceable:
		return "unplaceable"
	}
	return "advice"
}

// Problem is one thing wrong with a job, located by the path of the field
// it is about, spelled as jobspec spells paths.
type Problem struct {
	Class   Class
	Path    string
	Message string
}

func (p Problem) String() string {
	if p.Path == "" {
		return p.Message
	}
	return p.Path + ": " + p.Message
}

// Cluster is the snapshot the checks read. Engine is the scheduler whose
// feasibility checks decide what fits (nil: the default engine).
type Cluster struct {
	Nodes  []*api.Node
	Queues []*api.Queue
	Jobs   []*api.Job // every job the cluster holds, stopped ones too
	Engine *scheduler.Engine
	// Ideal, when set, is Engine's prepared shape of Nodes, kept by a
	// caller that asks about many jobs between changes of the nodes.
	Ideal *scheduler.Ideal
	// QueueView, when set, is scheduler.NewQueues of Nodes and Queues
	// (no allocations), kept by such a caller between changes of the
	// nodes or the queues; it is only read.
	QueueView *scheduler.Queues
}

// Job checks a job that jobspec accepted (Canonicalize and Validate, or
// Parse) and returns every problem: Rules, then Shape. With a nil cluster
// only the rules internal to the job run.
func Job(job *api.Job, c *Cluster) []Problem {
	return append(Rules(job, c), Shape(job, c)...)
}

// Rules are the quick checks: the rules internal to the job and, with a
// cluster, its conflicts with what the cluster holds (load-balancer
// ports) and the advice on its namespace. The server runs them on every
// job it reads.
func Rules(job *api.Job, c *Cluster) []Problem {
	if job == nil {
		return nil
	}
	v := &checker{job: job}
	v.internal()
	if c != nil {
		v.services(c)
		v.namespace(c)
	}
	return v.out
}

// Shape checks the job against the shape of the cluster: what no node,
// queue or the whole cluster could ever hold even when empty. Every
// problem it returns is Unplaceable. It asks the scheduler for each
// verdict, which costs about one placement of the job.
func Shape(job *api.Job, c *Cluster) []Problem {
	if job == nil || c == nil {
		return nil
	}
	v := &checker{job: job}
	v.cluster(c)
	return v.out
}

// Split returns the problems of each class.
func Split(ps []Problem) (invalid, unplaceable, advice []Problem) {
	for _, p := range ps {
		switch p.Class {
		case Invalid:
			invalid = append(invalid, p)
		case Unplaceable:
			unplaceable = append(unplaceable, p)
		default:
			advice = append(advice, p)
		}
	}
	return
}

type checker struct {
	job *api.Job
	out []Problem
}

func (v *checker) add(class Class, path, format string, args ...any) {
	v.out = append(v.out, Problem{Class: class, Path: path, Message: fmt.Sprintf(format, args...)})
}

func gpath(i int) string { return "groups[" + strconv.Itoa(i) + "]" }

func tpath(i, j int) string { return gpath(i) + ".tasks[" + strconv.Itoa(j) + "]" }

// internal runs the rules that read only the job.
func (v *checker) internal() {
	lb := map[int]string{}     // load-balancer port → path of the service that took it
	static := map[int]string{} // static host port → path of the first port asking it
	for i, g := range v.job.Groups {
		if g == nil {
			continue
		}
		for j, t := range g.Tasks {
			if t == nil {
				continue
			}
			for k, p := range t.Config.Ports {
				if p.Static > 0 {
					if _, ok := static[p.Static]; !ok {
						static[p.Static] = fmt.Sprintf("%s.config.ports[%d]", tpath(i, j), k)
					}
				}
			}
		}
	}
	for i, g := range v.job.Groups {
		if g == nil {
			continue
		}
		v.update(i, g)
		for j, s := range g.Services {
			if s.LB == nil || s.LB.Port <= 0 {
				continue
			}
			p := fmt.Sprintf("%s.services[%d].lb.port", gpath(i), j)
			if first, ok := lb[s.LB.Port]; ok {
				v.add(Invalid, p, "port %d is already the load-balancer port of %s; each service needs its own port", s.LB.Port, strings.TrimSuffix(first, ".lb.port"))
				continue
			}
			lb[s.LB.Port] = p
			if sp, ok := static[s.LB.Port]; ok {
				v.add(Invalid, p, "port %d is also the static host port of %s; load balancers listen on it on every node that runs one, so the two collide: choose another port for one of them", s.LB.Port, sp)
			}
		}
	}
}

// update holds the rules for update strategies that can never make
// progress.
func (v *checker) update(i int, g *api.Group) {
	u := g.Update
	if u == nil {
		return
	}
	p := gpath(i) + ".update"
	switch {
	case u.Canary > 0 && g.Count == 0:
		v.add(Invalid, p+".canary", "asks for %s but the group runs no replicas (count 0), so none could ever start; set canary to 0 or raise count", plural(u.Canary, "canary", "canaries"))
	case u.Canary > g.Count:
		v.add(Invalid, p+".canary", "asks for %d canaries but the group runs only %d replicas; each canary stands in for an old replica, so set canary to at most %d", u.Canary, g.Count, g.Count)
	}
	// A replica is healthy once all its checks pass (none before its
	// grace), and counts once it stayed healthy for min_healthy_time.
	var grace time.Duration
	gracePath := ""
	for j, t := range g.Tasks {
		if t == nil {
			continue
		}
		for k, c := range t.Checks {
			if c.Grace.D() > grace {
				grace, gracePath = c.Grace.D(), fmt.Sprintf("%s.checks[%d].grace", tpath(i, j), k)
			}
		}
	}
	if grace <= 0 {
		return // without a grace, jobspec compares min_healthy_time with the deadlines
	}
	earliest := grace + u.MinHealthyTime.D()
	key, deadline := "healthy_deadline", u.HealthyDeadline.D()
	if deadline <= 0 {
		key, deadline = "progress_deadline", u.ProgressDeadline.D()
	}
	if deadline > 0 && earliest >= deadline {
		v.add(Invalid, p+"."+key, "is %s, but no replica can count as healthy before %s (%s %s, then min_healthy_time %s), so every update would fail; make it longer than %s or shorten the grace",
			api.Duration(deadline), api.Duration(earliest), gracePath, api.Duration(grace), u.MinHealthyTime, api.Duration(earliest))
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}

// cluster runs the rules that read the cluster.
func (v *checker) cluster(c *Cluster) {
	eng := c.Engine
	if eng == nil {
		eng = scheduler.New(scheduler.Config{})
	}
	if len(c.Nodes) == 0 {
		v.add(Unplaceable, "", "the cluster has no nodes yet, so nothing can be placed; the job would wait until an agent joins")
		return
	}
	ideal := c.Ideal
	if ideal == nil {
		ideal = eng.NewIdeal(c.Nodes)
	}
	groups, err := eng.FeasibilityOn(ideal, v.job)
	if err != nil {
		// The server runs scheduler.Validate before this; a job it
		// rejects has nothing more to learn here.
		return
	}
	queues := c.QueueView
	if queues == nil {
		queues = scheduler.NewQueues(&scheduler.Snapshot{Nodes: c.Nodes, Queues: c.Queues})
	}
	for i, gf := range groups {
		g := v.job.Groups[i]
		v.queue(c, queues, i, g, gf)
		v.shape(i, g, gf)
	}
}

// services reports load-balancer ports other jobs' services hold.
func (v *checker) services(c *Cluster) {
	type holder struct {
		job     *api.Job
		service string
	}
	held := map[int]holder{}
	for _, j := range c.Jobs {
		if j == nil || j.Stop || j.Key() == v.job.Key() {
			continue
		}
		for _, g := range j.Groups {
			if g == nil {
				continue
			}
			for _, s := range g.Services {
				if s.LB != nil && s.LB.Port > 0 {
					if _, ok := held[s.LB.Port]; !ok {
						held[s.LB.Port] = holder{j, s.Name}
					}
				}
			}
		}
	}
	for i, g := range v.job.Groups {
		if g == nil {
			continue
		}
		for j, s := range g.Services {
			if s.LB == nil {
				continue
			}
			if h, ok := held[s.LB.Port]; ok {
				v.add(Invalid, fmt.Sprintf("%s.services[%d].lb.port", gpath(i), j),
					"port %d is already the load-balancer port of service %s.%s (job %s); load balancers serve one service per port, so choose another port or stop that job",
					s.LB.Port, h.service, h.job.Namespace, h.job.Key())
			}
		}
	}
}

// namespace advises on a namespace that no queue lists and no job uses:
// likely a typo, since using it creates it.
func (v *checker) namespace(c *Cluster) {
	ns := v.job.Namespace
	known := map[string]bool{api.DefaultNamespace: true}
	for _, q := range c.Queues {
		if q == nil {
			continue
		}
		for _, n := range q.Namespaces {
			known[n] = true
		}
	}
	for _, j := range c.Jobs {
		if j != nil {
			known[j.Namespace] = true
		}
	}
	if known[ns] {
		return
	}
	names := make([]string, 0, len(known))
	for n := range known {
		names = append(names, n)
	}
	sort.Strings(names)
	best, dist := "", 3
	for _, n := range names {
		if d := jobspec.EditDistance(ns, n); d < dist {
			best, dist = n, d
		}
	}
	msg := fmt.Sprintf("%q is a new namespace: no queue lists it and no job runs in it, so queue %s will serve it", ns, api.DefaultQueue)
	if best != "" {
		msg += fmt.Sprintf("; did you mean %q?", best)
	} else {
		msg += "; the namespaces in use are " + list(names, 8)
	}
	v.add(Advice, "namespace", "%s", msg)
}

// queue reports a group that its queue's limit can never admit, even with
// nothing else running: one replica, or for a gang gang.min of them.
func (v *checker) queue(c *Cluster, queues *scheduler.Queues, i int, g *api.Group, gf scheduler.GroupFeasibility) {
	n, what := int64(1), "one replica"
	if g.Gang != nil && g.Gang.Min > 1 {
		n, what = int64(g.Gang.Min), fmt.Sprintf("a gang of %d replicas", g.Gang.Min)
	}
	demand := gf.Demand.Scale(n)
	if queues.Admit(v.job.Namespace, demand) == nil {
		return
	}
	name := queues.QueueOf(v.job.Namespace)
	var limit *api.QueueLimits
	for _, q := range c.Queues {
		if q != nil && q.Name == name {
			limit = q.Limit
		}
	}
	if limit == nil {
		return
	}
	l := scheduler.FromLimits(*limit)
	dims := []struct {
		name        string
		ask, lim    int64
		unit, limit string
	}{
		{"cpu", demand.CPU, l.CPU, "millicores", strconv.FormatInt(l.CPU, 10)},
		{"memory", demand.Memory, l.Memory, "MiB", strconv.FormatInt(l.Memory, 10)},
		{"gpu", demand.GPU, l.GPU, "thousandths of a GPU", strconv.FormatInt(l.GPU, 10)},
	}
	for _, d := range dims {
		if d.lim > 0 && d.ask > d.lim {
			v.add(Unplaceable, gpath(i), "%s asks %d %s of %s, more than the %s that queue %s (serving namespace %s) may ever use; raise the queue's limit or run the job in a namespace of another queue",
				what, d.ask, d.unit, d.name, d.limit, name, v.job.Namespace)
			return
		}
	}
}

// shape reports what no node of the cluster could ever hold.
func (v *checker) shape(i int, g *api.Group, gf scheduler.GroupFeasibility) {
	if gf.Fits > 0 || gf.Nodes == nil { // Nodes nil: enough nodes fit
		v.atOnce(i, g, gf)
		return
	}
	before := len(v.out)
	v.drivers(i, g, gf)
	v.constraints(i, g, gf)
	v.resources(i, g, gf)
	v.gpus(i, g, gf)
	if len(v.out) > before {
		return
	}
	// Every dimension is met by some node, but no node meets them all:
	// say what stops each one, in the scheduler's words.
	var why []string
	for _, nf := range gf.Nodes {
		why = append(why, fmt.Sprintf("%s (%s)", nodeName(nf.Node), emptyReason.Replace(nf.Reason)))
	}
	v.add(Unplaceable, gpath(i), "no node can hold one replica even when empty, each for another reason: %s", list(why, 5))
}

// atOnce reports a gang or count larger than the empty cluster holds.
func (v *checker) atOnce(i int, g *api.Group, gf scheduler.GroupFeasibility) {
	if gf.AtOnce >= gf.Asked {
		return
	}
	if g.Gang != nil && g.Gang.Min > gf.AtOnce {
		v.add(Unplaceable, gpath(i)+".gang.min", "a gang of %d replicas must be placed at once, but the cluster holds at most %d replicas of this group even when empty; lower gang.min to %d or add nodes",
			g.Gang.Min, gf.AtOnce, gf.AtOnce)
		return
	}
	if g.Count > gf.AtOnce {
		v.add(Unplaceable, gpath(i)+".count", "asks for %d replicas, but the cluster holds at most %d of them even when empty; the other %d would wait for nodes to join",
			g.Count, gf.AtOnce, g.Count-gf.AtOnce)
	}
}

func (v *checker) drivers(i int, g *api.Group, gf scheduler.GroupFeasibility) {
	for j, t := range g.Tasks {
		if !everyNode(gf.Nodes, func(nf scheduler.NodeFeasibility) bool { return slices.Contains(nf.MissingDrivers, j) }) {
			continue
		}
		have := map[string][]string{}
		for _, nf := range gf.Nodes {
			for name, d := range nf.Node.Drivers {
				if d.Detected {
					have[name] = append(have[name], nodeName(nf.Node))
				}
			}
		}
		v.add(Unplaceable, tpath(i, j)+".driver", "no node offers the %s driver; %s", t.Driver, offers("the drivers nodes offer are", have, "no node reports any driver"))
	}
}

func (v *checker) constraints(i int, g *api.Group, gf scheduler.GroupFeasibility) {
	if len(g.Constraints) == 0 {
		return
	}
	for _, nf := range gf.Nodes {
		if len(nf.FailedConstraints) == 0 {
			return // some node satisfies them all
		}
	}
	// A constraint that every node fails: name the values that exist.
	alone := false
	for k, c := range g.Constraints {
		if !everyNode(gf.Nodes, func(nf scheduler.NodeFeasibility) bool { return slices.Contains(nf.FailedConstraints, k) }) {
			continue
		}
		alone = true
		values := map[string][]string{}
		for _, nf := range gf.Nodes {
			if val, ok := scheduler.AttributeValue(nf.Node, c.Attribute); ok {
				values[strconv.Quote(val)] = append(values[strconv.Quote(val)], nodeName(nf.Node))
			}
		}
		v.add(Unplaceable, fmt.Sprintf("%s.constraints[%d]", gpath(i), k), "no node satisfies %s; %s",
			constraintText(c), offers("the values nodes have are", values, "no node sets "+c.Attribute))
	}
	if alone {
		return
	}
	// Each constraint is met somewhere, never all on one node: name the
	// nodes that miss the fewest.
	fewest := len(g.Constraints) + 1
	for _, nf := range gf.Nodes {
		fewest = min(fewest, len(nf.FailedConstraints))
	}
	var near []string
	for _, nf := range gf.Nodes {
		if len(nf.FailedConstraints) != fewest {
			continue
		}
		var failed []string
		for _, k := range nf.FailedConstraints {
			failed = append(failed, fmt.Sprintf("constraints[%d] (%s)", k, constraintText(g.Constraints[k])))
		}
		near = append(near, nodeName(nf.Node)+" fails only "+strings.Join(failed, " and "))
	}
	v.add(Unplaceable, gpath(i)+".constraints", "no node satisfies all %d constraints together; closest: %s", len(g.Constraints), list(near, 3))
}

func constraintText(c api.Constraint) string {
	if c.Value == "" {
		return c.Attribute + " " + c.Operator
	}
	return c.Attribute + " " + c.Operator + " " + strconv.Quote(c.Value)
}

// resources reports cpu, memory, disk and ports no node holds even empty.
func (v *checker) resources(i int, g *api.Group, gf scheduler.GroupFeasibility) {
	dims := []struct {
		key, unit string
		ok        func(scheduler.NodeFeasibility) bool
		ask       func(api.Resources) int
		cap       func(api.NodeResources) int
	}{
		{"cpu", "millicores", func(n scheduler.NodeFeasibility) bool { return n.CPU },
			func(r api.Resources) int { return r.CPU }, func(r api.NodeResources) int { return r.CPU }},
		{"memory", "MiB", func(n scheduler.NodeFeasibility) bool { return n.Memory },
			func(r api.Resources) int { return r.Memory }, func(r api.NodeResources) int { return r.Memory }},
		{"disk", "MiB", func(n scheduler.NodeFeasibility) bool { return n.Disk },
			func(r api.Resources) int { return r.Disk }, func(r api.NodeResources) int { return r.Disk }},
	}
	for _, d := range dims {
		fits := false
		for _, nf := range gf.Nodes {
			if d.ok(nf) {
				fits = true
				break
			}
		}
		if fits {
			continue
		}
		// The largest node in this dimension.
		var big *api.Node
		for _, nf := range gf.Nodes {
			if big == nil || d.cap(nf.Node.Allocatable()) > d.cap(big.Allocatable()) {
				big = nf.Node
			}
		}
		largest := d.cap(big.Allocatable())
		sum, reported := 0, false
		for j, t := range g.Tasks {
			ask := d.ask(t.Resources)
			sum += ask
			if ask > largest {
				v.add(Unplaceable, tpath(i, j)+".resources."+d.key, "asks %d %s, but the largest node, %s, can hold %d even when empty; lower it or add a bigger node",
					ask, d.unit, nodeName(big), largest)
				reported = true
			}
		}
		if !reported {
			v.add(Unplaceable, gpath(i)+".tasks", "the group's tasks ask %d %s of %s together (they share a node), but the largest node, %s, can hold %d even when empty",
				sum, d.unit, d.key, nodeName(big), largest)
		}
	}
	ports := false
	for _, nf := range gf.Nodes {
		ports = ports || nf.Ports
	}
	if !ports {
		v.add(Unplaceable, gpath(i)+".tasks", "the group's tasks need more dynamic host ports than any node's port range holds")
	}
}

// emptyReason words the scheduler's reasons for a node that holds
// nothing: nothing is exhausted, the node is too small.
var emptyReason = strings.NewReplacer(
	"dynamic ports exhausted", "too few dynamic ports",
	"cpu exhausted", "too little cpu",
	"memory exhausted", "too little memory",
	"disk exhausted", "too little disk",
)

func nodeName(n *api.Node) string {
	if n.Name != "" {
		return n.Name
	}
	return n.ID
}

// everyNode reports whether every node has the problem: true for none.
func everyNode(nodes []scheduler.NodeFeasibility, has func(scheduler.NodeFeasibility) bool) bool {
	for _, nf := range nodes {
		if !has(nf) {
			return false
		}
	}
	return true
}

// list joins at most max items, saying how many more there are.
func list(items []string, max int) string {
	if len(items) <= max {
		return strings.Join(items, ", ")
	}
	return strings.Join(items[:max], ", ") + fmt.Sprintf(" and %d more", len(items)-max)
}

// offers renders "what exists" as `lead "a" (n1, n2), "b" (n3)`, values
// sorted, or none when there is nothing.
func offers(lead string, have map[string][]string, none string) string {
	if len(have) == 0 {
		return none
	}
	keys := make([]string, 0, len(have))
	for k := range have {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	items := make([]string, len(keys))
	for i, k := range keys {
		nodes := have[k]
		sort.Strings(nodes)
		items[i] = k + " (" + list(nodes, 3) + ")"
	}
	return lead + " " + list(items, 8)
}
