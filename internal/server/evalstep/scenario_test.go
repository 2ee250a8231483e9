package evalstep_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/scheduler"
	"github.com/gantryhq/gantry/internal/scheduler/schedtest"
	"github.com/gantryhq/gantry/internal/server/applier"
	"github.com/gantryhq/gantry/internal/server/broker"
	"github.com/gantryhq/gantry/internal/server/evalstep"
	"github.com/gantryhq/gantry/internal/state"
)

// TestScenarios runs the scripts in testdata: the pure step, the
// reconciler and the scheduler over an in-memory cluster, evaluations
// picked by the broker's queue and decisions applied through a port that
// behaves as the store does (a guard per node, create-only allocations,
// the leader's fence). Run with -rewrite to regenerate the expected
// output. Commands:
//
//	node name=N [cpu=M] [mem=MiB]      add a ready node
//	job name=J count=C cpu=M mem=MiB [gang] [priority=P]
//	                                   register (a new version) and evaluate
//	eval job=J trigger=T               another component asks for an evaluation
//	stop job=J                         stop the job and evaluate
//	running job=J                      the node reports J's live allocations running
//	finish job=J                       the node reports J's stopped allocations complete (capacity freed)
//	take node=N cpu=M mem=MiB [priority=P]
//	                                   another plan places work on N (its guard moves)
//	node-down name=N                   the node monitor marks N down and evaluates its jobs
//	tick d=DURATION                    the clock moves
//	step                               the next evaluation's decision, not applied
//	apply                              apply the last decision through the port
//	depose / elect                     this leader loses / a leader holds the fence
//	run                                pick, step and apply until nothing is ready, as the worker does
//	allocs / evals                     print the state
//
// Every scenario runs twice: with a view that walks each node's
// allocations in the re-check, and with one that also sums them as the
// leader's does (evalstep.UsageView); both must print the same.
func TestScenarios(t *testing.T) {
	for _, sums := range []bool{false, true} {
		t.Run(fmt.Sprintf("sums=%v", sums), func(t *testing.T) {
			datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
				w := newWorld()
				w.sums = sums
				datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
					return w.do(t, d)
				})
			})
		})
	}
}

type world struct {
	now      time.Time
	rev      int64
	seq      int
	capIndex int64
	jobs     map[string]*api.Job
	nodes    map[string]*api.Node
	allocs   map[string]*api.Allocation
	evals    map[string]*api.Evaluation
	deploys  map[string]*api.Deployment
	nodePlan map[string]int64
	deposed  bool
	sums     bool // the view sums each node's usage (usageWorld)
	q        *broker.Queue
	sched    scheduler.Scheduler
	last     *evalstep.Decision
}

func newWorld() *world {
	return &world{
		now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), jobs: map[string]*api.Job{}, nodes: map[string]*api.Node{},
		allocs: map[string]*api.Allocation{}, evals: map[string]*api.Evaluation{}, deploys: map[string]*api.Deployment{},
		nodePlan: map[string]int64{}, q: broker.New(), sched: scheduler.New(scheduler.Config{}),
	}
}

func (w *world) newID() string {
	w.seq++
	return fmt.Sprintf("x%02d", w.seq)
}

func (w *world) putEval(e *api.Evaluation) {
	e.ModifyIndex = w.rev
	w.evals[e.ID] = e
	w.q.Upsert(e)
}

func (w *world) newEval(job, trigger string, prio int) *api.Evaluation {
	w.rev++
	e := evalstep.NewEval(w.newID(), api.DefaultNamespace, job, trigger, w.now)
	e.Priority = prio
	w.putEval(e)
	return e
}

func arg(d *datadriven.TestData, key, def string) string {
	for _, a := range d.CmdArgs {
		if a.Key == key {
			if len(a.Vals) == 0 {
				return "true"
			}
			return a.Vals[0]
		}
	}
	return def
}

func num(t *testing.T, d *datadriven.TestData, key string, def int) int {
	var n int
	if _, err := fmt.Sscan(arg(d, key, fmt.Sprint(def)), &n); err != nil {
		t.Fatalf("%s: %s is not a number", d.Pos, key)
	}
	return n
}

func (w *world) do(t *testing.T, d *datadriven.TestData) string {
	switch d.Cmd {
	case "node":
		name := arg(d, "name", "")
		n := schedtest.Node(name, schedtest.CPU(num(t, d, "cpu", 4000)), schedtest.Memory(num(t, d, "mem", 8192)))
		n.ID = name
		w.rev++
		n.ModifyIndex, w.capIndex = w.rev, w.rev
		w.nodes[n.ID] = n
		return "ok"
	case "job":
		name := arg(d, "name", "")
		var gopts []schedtest.GroupOpt
		count := num(t, d, "count", 1)
		if arg(d, "gang", "") != "" {
			gopts = append(gopts, schedtest.Gang(count))
		}
		gopts = append(gopts, schedtest.Task("main", num(t, d, "cpu", 500), num(t, d, "mem", 256)))
		j := schedtest.Job(name, schedtest.Priority(num(t, d, "priority", api.DefaultPriority)), schedtest.Group(name, count, gopts...))
		if old, ok := w.jobs[name]; ok {
			j.Version = old.Version + 1
		}
		w.rev++
		j.ModifyIndex = w.rev
		w.jobs[name] = j
		e := w.newEval(name, api.TriggerJobRegister, j.Priority)
		return fmt.Sprintf("eval %s %s", e.ID, e.TriggeredBy)
	case "eval":
		j := w.jobs[arg(d, "job", "")]
		e := w.newEval(j.Name, arg(d, "trigger", api.TriggerJobRegister), j.Priority)
		return fmt.Sprintf("eval %s %s", e.ID, e.TriggeredBy)
	case "stop":
		j := *w.jobs[arg(d, "job", "")]
		j.Stop = true
		w.rev++
		j.ModifyIndex = w.rev
		w.jobs[j.Name] = &j
		e := w.newEval(j.Name, api.TriggerJobDeregister, j.Priority)
		return fmt.Sprintf("eval %s %s", e.ID, e.TriggeredBy)
	case "running":
		job := arg(d, "job", "")
		var out []string
		for _, a := range w.sortedAllocs() {
			if a.Job == job && a.DesiredStatus == api.AllocDesiredRun && a.ClientStatus == api.AllocPending {
				c := *a
				w.rev++
				c.ClientStatus, c.ModifyIndex = api.AllocRunning, w.rev
				w.allocs[a.ID] = &c
				out = append(out, allocName(&c))
			}
		}
		return "running " + strings.Join(out, " ")
	case "finish":
		job := arg(d, "job", "")
		var out []string
		for _, a := range w.sortedAllocs() {
			if a.Job == job && a.DesiredStatus == api.AllocDesiredStop && !a.ClientTerminal() {
				c := *a
				w.rev++
				c.ClientStatus, c.ModifyIndex = api.AllocComplete, w.rev
				w.allocs[a.ID] = &c
				w.capIndex = w.rev
				out = append(out, allocName(&c))
			}
		}
		return fmt.Sprintf("complete %s (capacity index %d)", strings.Join(out, " "), w.capIndex)
	case "take":
		node := arg(d, "node", "")
		w.rev++
		a := &api.Allocation{ID: w.newID(), Namespace: api.DefaultNamespace, Job: "other", Group: "other", NodeID: node, NodeName: node,
			Priority:      num(t, d, "priority", 0),
			DesiredStatus: api.AllocDesiredRun, ClientStatus: api.AllocRunning, ModifyIndex: w.rev, CreateTime: w.now, ModifyTime: w.now,
			Resources: map[string]*api.AllocatedResources{"main": {CPU: num(t, d, "cpu", 0), Memory: num(t, d, "mem", 0)}}}
		w.allocs[a.ID] = a
		w.nodePlan[node] = w.rev
		return fmt.Sprintf("another plan placed %s on %s", a.ID, node)
	case "node-down":
		n := *w.nodes[arg(d, "name", "")]
		w.rev++
		n.Status, n.StatusReason, n.StatusChanged, n.ModifyIndex = api.NodeStatusDown, "no heartbeat", w.now, w.rev
		w.nodes[n.ID] = &n
		w.capIndex = w.rev
		seen := map[string]bool{}
		var out []string
		for _, a := range w.sortedAllocs() {
			if a.NodeID != n.ID || a.ClientTerminal() || seen[a.Job] {
				continue
			}
			seen[a.Job] = true
			e := w.newEval(a.Job, api.TriggerNodeUpdate, a.Priority)
			e.NodeID = n.ID
			out = append(out, fmt.Sprintf("eval %s %s %s", e.ID, e.TriggeredBy, a.Job))
		}
		return strings.Join(out, "\n")
	case "tick":
		dur, err := time.ParseDuration(arg(d, "d", "0s"))
		if err != nil {
			t.Fatalf("%s: %v", d.Pos, err)
		}
		w.now = w.now.Add(dur)
		return fmt.Sprintf("now +%s", dur)
	case "depose":
		w.deposed = true
		return "this leader's fence no longer holds"
	case "elect":
		w.deposed = false
		return "a leader holds the fence"
	case "step":
		e, _ := w.q.Next(w.now, w.capIndex)
		if e == nil {
			return "nothing ready"
		}
		dec, err := evalstep.Step(w.input(e))
		if err != nil {
			return "error: " + err.Error()
		}
		w.last = dec
		return describe(e, dec)
	case "apply":
		if w.last == nil {
			t.Fatalf("%s: apply without a step", d.Pos)
		}
		out, err := evalstep.Apply(context.Background(), w, w.last)
		w.last = nil
		return describeOutcome(out, err)
	case "run":
		return w.run()
	case "allocs":
		var out []string
		for _, a := range w.sortedAllocs() {
			line := fmt.Sprintf("%s %s on %s: %s/%s", a.ID, allocName(a), a.NodeID, a.DesiredStatus, a.ClientStatus)
			if a.DesiredReason != "" {
				line += " (" + a.DesiredReason + ")"
			}
			out = append(out, line)
		}
		return strings.TrimSpace(strings.Join(out, "\n"))
	case "evals":
		es := make([]*api.Evaluation, 0, len(w.evals))
		for _, e := range w.evals {
			es = append(es, e)
		}
		sort.Slice(es, func(i, j int) bool { return es[i].ID < es[j].ID })
		var out []string
		for _, e := range es {
			out = append(out, evalLine(e))
		}
		return strings.Join(out, "\n")
	}
	t.Fatalf("%s: unknown command %q", d.Pos, d.Cmd)
	return ""
}

// run is the worker's loop: pick, step, apply; a replan or a conflict is
// tried again, at most as often as the server does.
func (w *world) run() string {
	var b strings.Builder
	for picks := 0; picks < 20; picks++ {
		e, _ := w.q.Next(w.now, w.capIndex)
		if e == nil {
			b.WriteString("nothing ready")
			return b.String()
		}
		for attempt := 1; ; attempt++ {
			dec, err := evalstep.Step(w.input(e))
			if err != nil {
				fmt.Fprintf(&b, "error: %v\n", err)
				return b.String()
			}
			b.WriteString(describe(e, dec) + "\n")
			var class evalstep.Class
			if dec.Kind == evalstep.Replan {
				class = evalstep.Retry
			} else {
				out, err := evalstep.Apply(context.Background(), w, dec)
				b.WriteString(describeOutcome(out, err) + "\n")
				if err == nil {
					break
				}
				class = classify(err)
			}
			f := evalstep.OnFailure(e, w.evals[e.ID], class, attempt, "attempt failed", w.now)
			switch {
			case f.StepDown:
				b.WriteString("step down: leadership moved\n")
				return b.String()
			case f.Backoff > 0:
				fmt.Fprintf(&b, "retry %d after %s\n", attempt, f.Backoff)
				e = w.evals[e.ID]
				continue
			}
			fmt.Fprintf(&b, "failed: %s\n", f.Eval.StatusDescription)
			w.rev++
			w.putEval(f.Eval)
			break
		}
	}
	b.WriteString("(stopped after 20 picks)")
	return b.String()
}

func classify(err error) evalstep.Class {
	switch {
	case errors.Is(err, state.ErrNotLeader):
		return evalstep.NotLeader
	case errors.Is(err, state.ErrConflict):
		return evalstep.Retry
	}
	return evalstep.FailOnce
}

func (w *world) input(e *api.Evaluation) *evalstep.Input {
	job := w.jobs[e.Job]
	snap := &evalstep.Snapshot{Job: job, Nodes: map[string]*api.Node{}, Versions: map[uint64]*api.Job{}, Cluster: w, CapacityIndex: w.capIndex}
	if w.sums {
		snap.Cluster = usageWorld{w}
	}
	for _, a := range w.sortedAllocs() {
		if a.Job == e.Job {
			snap.Allocs = append(snap.Allocs, a)
			if n, ok := w.nodes[a.NodeID]; ok {
				snap.Nodes[a.NodeID] = n
			}
		}
	}
	for _, o := range w.evals {
		if o.Job == e.Job {
			snap.Evals = append(snap.Evals, o)
		}
	}
	sort.Slice(snap.Evals, func(i, j int) bool { return snap.Evals[i].ModifyIndex < snap.Evals[j].ModifyIndex })
	sched := evalstep.SchedulerFunc(func(req *scheduler.Request) (*scheduler.Plan, error) {
		cs := &scheduler.Snapshot{}
		for _, id := range w.nodeIDs() {
			cs.Nodes = append(cs.Nodes, w.nodes[id])
		}
		for _, a := range w.sortedAllocs() {
			if !a.Terminal() {
				cs.Allocs = append(cs.Allocs, a)
			}
		}
		return w.sched.Schedule(cs, req, w.now)
	})
	return &evalstep.Input{Eval: e, Snap: snap, Now: w.now, Sched: sched, NewID: w.newID}
}

// The world is the step's View.

func (w *world) Node(id string) (*api.Node, bool) { n, ok := w.nodes[id]; return n, ok }
func (w *world) NodePlanIndex(id string) int64    { return w.nodePlan[id] }
func (w *world) Alloc(id string) (*api.Allocation, bool) {
	a, ok := w.allocs[id]
	return a, ok
}
func (w *world) NodeAllocsUnsorted(id string) []*api.Allocation {
	var out []*api.Allocation
	for _, a := range w.sortedAllocs() {
		if a.NodeID == id {
			out = append(out, a)
		}
	}
	return out
}

// usageWorld is the world as a view that sums each node's usage, as the
// leader's store does.
type usageWorld struct{ *world }

func (u usageWorld) NodeChecks(ids []string) []state.NodeCheck {
	out := make([]state.NodeCheck, len(ids))
	for i, id := range ids {
		out[i].Node, out[i].PlanIndex = u.nodes[id], u.nodePlan[id]
		for _, a := range u.NodeAllocsUnsorted(id) {
			if !a.Terminal() {
				out[i].Usage.Add(a, 1)
			}
		}
	}
	return out
}

// The world is the step's Planner, with the store's rules.

func (w *world) SubmitPlan(ctx context.Context, p *applier.Plan) (applier.Result, error) {
	ap := &applier.Applier{Store: commitFunc(w.commit), Limits: applier.Embedded}
	return ap.Apply(ctx, p)
}

func (w *world) UpdateEval(_ context.Context, e *api.Evaluation, create ...*api.Evaluation) (int64, error) {
	return w.commit(&state.PlanCommit{Eval: e, FollowUps: create})
}

func (w *world) DeleteEvals(_ context.Context, ids []string) error {
	if w.deposed {
		return fmt.Errorf("delete evaluations: %w", state.ErrNotLeader)
	}
	w.rev++
	for _, id := range ids {
		delete(w.evals, id)
		w.q.Remove(id)
	}
	return nil
}

type commitFunc func(c *state.PlanCommit) (int64, error)

func (f commitFunc) ApplyPlan(_ context.Context, c *state.PlanCommit) (int64, error) { return f(c) }

// commit is the store's plan transaction: the fence, the node guards, the
// evaluation's and updated allocations' indexes, create-only placements.
func (w *world) commit(c *state.PlanCommit) (int64, error) {
	if w.deposed {
		return 0, fmt.Errorf("apply plan: %w", state.ErrNotLeader)
	}
	for node, g := range c.NodeGuards {
		if w.nodePlan[node] != g {
			return 0, fmt.Errorf("node %s changed since the plan was checked: %w", node, state.ErrConflict)
		}
	}
	if c.Eval != nil {
		if cur, ok := w.evals[c.Eval.ID]; ok && cur.ModifyIndex != c.Eval.ModifyIndex {
			return 0, fmt.Errorf("evaluation %s changed: %w", c.Eval.ID, state.ErrConflict)
		}
	}
	for _, a := range c.Update {
		if cur, ok := w.allocs[a.ID]; !ok || cur.ModifyIndex != a.ModifyIndex {
			return 0, fmt.Errorf("allocation %s changed: %w", a.ID, state.ErrConflict)
		}
	}
	for _, a := range c.Place {
		if _, ok := w.allocs[a.ID]; ok {
			return 0, fmt.Errorf("allocation %s exists: %w", a.ID, state.ErrConflict)
		}
	}
	w.rev++
	for _, a := range c.Update {
		u := *a
		u.ModifyIndex = w.rev
		if u.DesiredStatus == api.AllocDesiredStop || u.ClientTerminal() {
			w.capIndex = w.rev
		}
		w.allocs[u.ID] = &u
	}
	for _, a := range c.Place {
		p := *a
		p.ModifyIndex = w.rev
		w.allocs[p.ID] = &p
		w.nodePlan[p.NodeID] = w.rev
	}
	for _, d := range c.Deployments {
		dc := *d
		dc.ModifyIndex = w.rev
		w.deploys[dc.ID] = &dc
	}
	if c.Eval != nil {
		e := *c.Eval
		w.putEval(&e)
	}
	for _, f := range c.FollowUps {
		e := *f
		w.putEval(&e)
	}
	return w.rev, nil
}

func (w *world) sortedAllocs() []*api.Allocation {
	out := make([]*api.Allocation, 0, len(w.allocs))
	for _, a := range w.allocs {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (w *world) nodeIDs() []string {
	out := make([]string, 0, len(w.nodes))
	for id := range w.nodes {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

func allocName(a *api.Allocation) string { return fmt.Sprintf("%s[%d]", a.Group, a.Index) }

func evalLine(e *api.Evaluation) string {
	s := fmt.Sprintf("%s %s %s %s", e.ID, e.Job, e.TriggeredBy, e.Status)
	if !e.WaitUntil.IsZero() {
		s += " wait-until=" + e.WaitUntil.Format("15:04:05")
	}
	if e.Status == api.EvalBlocked {
		s += fmt.Sprintf(" planned-at=%d written-at=%d", e.SnapshotIndex, e.ModifyIndex)
	}
	if e.StatusDescription != "" {
		s += ": " + e.StatusDescription
	}
	return s
}

// describe prints a decision compactly and in a stable order.
func describe(e *api.Evaluation, d *evalstep.Decision) string {
	var b strings.Builder
	fmt.Fprintf(&b, "step %s %s (%s): %s", e.ID, e.Job, e.TriggeredBy, d.Kind)
	if d.Kind == evalstep.Replan {
		fmt.Fprintf(&b, ": %s", d.Reason)
		return b.String()
	}
	var place []string
	for _, a := range d.Placed {
		s := allocName(a) + "→" + a.NodeID
		if a.PreviousAlloc != "" {
			s += " (replaces " + a.PreviousAlloc + ")"
		}
		place = append(place, s)
	}
	sort.Strings(place)
	if len(place) > 0 {
		fmt.Fprintf(&b, "\n  place %s", strings.Join(place, ", "))
	}
	var upd []string
	for _, a := range d.Updates {
		upd = append(upd, fmt.Sprintf("%s %s %s/%s (%s)", a.ID, allocName(a), a.DesiredStatus, a.ClientStatus, a.DesiredReason))
	}
	for _, a := range d.Preempt {
		upd = append(upd, fmt.Sprintf("%s %s preempted", a.ID, allocName(a)))
	}
	sort.Strings(upd)
	for _, u := range upd {
		fmt.Fprintf(&b, "\n  update %s", u)
	}
	groups := make([]string, 0, len(d.Failed))
	for g := range d.Failed {
		groups = append(groups, g)
	}
	sort.Strings(groups)
	for _, g := range groups {
		fmt.Fprintf(&b, "\n  unplaced %s: %d", g, d.Failed[g].Unplaced)
	}
	fmt.Fprintf(&b, "\n  eval %s placed=%d stopped=%d", d.Eval.Status, d.Eval.Placed, d.Eval.Stopped)
	if d.Eval.StatusDescription != "" {
		fmt.Fprintf(&b, ": %s", d.Eval.StatusDescription)
	}
	for _, f := range d.FollowUps {
		fmt.Fprintf(&b, "\n  follow-up %s", evalLine(f))
	}
	if len(d.DropRetries) > 0 {
		fmt.Fprintf(&b, "\n  drop retries %s", strings.Join(d.DropRetries, " "))
	}
	var guards []string
	for n, g := range d.Guards {
		guards = append(guards, fmt.Sprintf("%s@%d", n, g))
	}
	sort.Strings(guards)
	if len(guards) > 0 {
		fmt.Fprintf(&b, "\n  guards %s", strings.Join(guards, " "))
	}
	return b.String()
}

func describeOutcome(out evalstep.Outcome, err error) string {
	switch {
	case err != nil && errors.Is(err, state.ErrNotLeader):
		return "apply: refused, not the leader; nothing written"
	case err != nil:
		return fmt.Sprintf("apply: failed after %d step(s): %v", out.Result.Steps, err)
	case out.Partial:
		return fmt.Sprintf("apply: committed in part, %d placement(s) in %d step(s) before %v", out.Result.Placed, out.Result.Steps, out.Cause)
	}
	return fmt.Sprintf("apply: committed rev=%d steps=%d placed=%d", out.Rev, out.Result.Steps, out.Result.Placed)
}
