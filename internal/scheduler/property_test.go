package scheduler_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"pgregory.net/rapid"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/gpu"
	"github.com/gantryhq/gantry/internal/scheduler"
	"github.com/gantryhq/gantry/internal/scheduler/policy"
	. "github.com/gantryhq/gantry/internal/scheduler/schedtest"
)

var gpuModels = []struct {
	model string
	mem   int
}{
	{"Tesla T4", 15360},
	{"NVIDIA H100 80GB HBM3", 81559},
	{"NVIDIA A100-SXM4-40GB", 40960},
	{"NVIDIA A30", 24576},
}

var profiles = []string{"1g.5gb", "1g.10gb", "2g.10gb", "3g.20gb", "4g.20gb", "7g.40gb", "1g.5gb+me",
	"1g.20gb", "2g.20gb", "3g.40gb", "7g.80gb", "1g.6gb", "2g.12gb", "4g.24gb"}

// drawNode draws a node: one of several shapes, labels, a small port
// range (so ports collide), and maybe GPUs of one model, some in MIG mode
// with legal pre-existing instances, some unhealthy, enforced or linked.
func drawNode(t *rapid.T, i int) *api.Node {
	label := fmt.Sprintf("node%d", i)
	opts := []NodeOpt{
		CPU(rapid.SampledFrom([]int{1000, 2000, 4000, 8000, 16000}).Draw(t, label+"cpu")),
		Memory(rapid.SampledFrom([]int{2048, 4096, 8192, 32768}).Draw(t, label+"mem")),
		Disk(rapid.SampledFrom([]int{0, 5000, 20000}).Draw(t, label+"disk")),
		Label("zone", rapid.SampledFrom([]string{"a", "b", "c"}).Draw(t, label+"zone")),
		Label("rack", rapid.SampledFrom([]string{"r0", "r1", "r2", "r3"}).Draw(t, label+"rack")),
		Class(rapid.SampledFrom([]string{"", "cpu", "gpu"}).Draw(t, label+"class")),
		PortRange(30000, 30000+rapid.IntRange(0, 4).Draw(t, label+"ports")),
	}
	switch rapid.IntRange(0, 9).Draw(t, label+"status") {
	case 0:
		opts = append(opts, Status(api.NodeStatusDown))
	case 1:
		opts = append(opts, Ineligible())
	}
	if rapid.Bool().Draw(t, label+"gpus") {
		m := gpuModels[rapid.IntRange(0, len(gpuModels)-1).Draw(t, label+"model")]
		count := rapid.IntRange(1, 8).Draw(t, label+"count")
		var gopts []GPUOpt
		if rapid.Bool().Draw(t, label+"nvlink") {
			gopts = append(gopts, NVLinked())
		}
		if rapid.IntRange(0, 4).Draw(t, label+"unhealthy") == 0 {
			gopts = append(gopts, Unhealthy(rapid.IntRange(0, count-1).Draw(t, label+"which")))
		}
		if rapid.Bool().Draw(t, label+"enforced") {
			gopts = append(gopts, Enforced())
		}
		mig := m.model != "Tesla T4" && rapid.Bool().Draw(t, label+"mig")
		if mig {
			gopts = append(gopts, MIGMode(rapid.Bool().Draw(t, label+"managed")))
		}
		opts = append(opts, GPUs(count, m.model, m.mem, gopts...))
		if mig {
			opts = append(opts, func(n *api.Node) { seedInstances(t, label, n) })
		}
	}
	return Node(fmt.Sprintf("n%02d", i), opts...)
}

// seedInstances gives each MIG GPU a few legal existing instances.
func seedInstances(t *rapid.T, label string, n *api.Node) {
	for gi := range n.GPUs {
		g := &n.GPUs[gi]
		d := gpu.NewDevices([]api.GPUDevice{*g})[0]
		for k := rapid.IntRange(0, 3).Draw(t, fmt.Sprintf("%s-gpu%d-ins", label, gi)); k > 0; k-- {
			name := rapid.SampledFrom(profiles).Draw(t, label+"prof")
			p, ok := d.Profile(name)
			if !ok {
				continue
			}
			s, ok := d.BestStart(&p)
			if !ok {
				continue
			}
			_ = d.AddMIG(name, s, p.Size, "", true)
			g.MIGInstances = append(g.MIGInstances, api.MIGInstance{UUID: fmt.Sprintf("MIG-%s-%d", g.UUID, s), Profile: name, Start: s, Size: p.Size})
		}
	}
}

func drawQueues(t *rapid.T) []*api.Queue {
	var qs []*api.Queue
	for i := rapid.IntRange(0, 3).Draw(t, "queues"); i > 0; i-- {
		q := &api.Queue{Name: fmt.Sprintf("q%d", i), Weight: rapid.IntRange(1, 3).Draw(t, "weight"),
			Namespaces: []string{fmt.Sprintf("ns%d", i)},
			Guarantee: api.QueueLimits{CPU: rapid.SampledFrom([]int{0, 2000, 8000}).Draw(t, "gcpu"),
				GPU: rapid.SampledFrom([]float64{0, 1, 4}).Draw(t, "ggpu")}}
		if rapid.Bool().Draw(t, "limited") {
			q.Limit = &api.QueueLimits{CPU: rapid.SampledFrom([]int{0, 8000, 20000}).Draw(t, "lcpu"),
				GPU: rapid.SampledFrom([]float64{0, 2, 6}).Draw(t, "lgpu")}
			if q.Limit.CPU > 0 && q.Limit.CPU < q.Guarantee.CPU {
				q.Limit.CPU = q.Guarantee.CPU
			}
			if q.Limit.GPU > 0 && q.Limit.GPU < q.Guarantee.GPU {
				q.Limit.GPU = q.Guarantee.GPU
			}
		}
		qs = append(qs, q)
	}
	return qs
}

func drawTask(t *rapid.T, name string, statics ...int) GroupOpt {
	opts := []TaskOpt{DiskMiB(rapid.IntRange(0, 3000).Draw(t, "disk"))}
	for i := rapid.IntRange(0, len(statics)).Draw(t, "nports"); i > 0; i-- {
		opts = append(opts, Port(fmt.Sprintf("p%d", i), rapid.SampledFrom([]int{0, 0, statics[i-1]}).Draw(t, "port")))
	}
	switch rapid.IntRange(0, 5).Draw(t, "gpu") {
	case 1:
		opts = append(opts, WholeGPUs(rapid.IntRange(1, 4).Draw(t, "count"), rapid.SampledFrom([]string{"", "H100*", "*T4|A30"}).Draw(t, "model")))
	case 2:
		opts = append(opts, MIG(rapid.SampledFrom(profiles).Draw(t, "profile")))
	case 3:
		opts = append(opts, Share(rapid.IntRange(1, 1000).Draw(t, "milli"), rapid.SampledFrom([]int{0, 0, 4096, 30000}).Draw(t, "smem"), rapid.IntRange(0, 3).Draw(t, "enforce") == 0))
	}
	return Task(name, rapid.IntRange(0, 3000).Draw(t, "cpu"), rapid.IntRange(0, 4000).Draw(t, "mem"), opts...)
}

func drawJob(t *rapid.T, i int) *api.Job {
	opts := []JobOpt{
		Namespace(fmt.Sprintf("ns%d", rapid.IntRange(0, 3).Draw(t, "ns"))),
		Priority(rapid.IntRange(0, 100).Draw(t, "prio")),
		Placement(rapid.SampledFrom([]string{"", "binpack", "spread"}).Draw(t, "alg")),
	}
	for g := rapid.IntRange(1, 2).Draw(t, "groups"); g > 0; g-- {
		count := rapid.IntRange(1, 6).Draw(t, "replicas")
		gopts := []GroupOpt{drawTask(t, "a", 8080, 30001)}
		if rapid.Bool().Draw(t, "second-task") {
			// Sometimes the same static port as task a: an invalid job.
			gopts = append(gopts, drawTask(t, "b", rapid.SampledFrom([]int{9090, 9090, 9090, 8080}).Draw(t, "bport")))
		}
		if rapid.IntRange(0, 2).Draw(t, "gang") == 0 {
			gopts = append(gopts, Gang(rapid.IntRange(1, count).Draw(t, "min")))
		}
		switch rapid.IntRange(0, 5).Draw(t, "constraint") {
		case 0:
			gopts = append(gopts, Constraint("${node.labels.zone}", "=", rapid.SampledFrom([]string{"a", "b"}).Draw(t, "zone")))
		case 1:
			gopts = append(gopts, Constraint("", "distinct_hosts", ""))
		case 2:
			gopts = append(gopts, Constraint("${node.class}", "!=", "cpu"))
		}
		if rapid.Bool().Draw(t, "affinity") {
			gopts = append(gopts, Affinity("${node.labels.rack}", "=", "r1", rapid.SampledFrom([]int{-50, 30, 100}).Draw(t, "weight")))
		}
		if rapid.IntRange(0, 3).Draw(t, "spread") == 0 {
			gopts = append(gopts, Spread("${node.labels.zone}", map[string]int{"a": 60, "b": 40}))
		}
		opts = append(opts, Group(fmt.Sprintf("g%d", g), count, gopts...))
	}
	return Job(fmt.Sprintf("job%d", i), opts...)
}

// migReference checks MIG layouts with its own simple logic: per
// MIG-enabled GPU, the reported instances plus the instances allocations
// create never share a memory slice, and every created one starts at a
// slot the table (or the node's override) allows for its profile, with
// the profile's size.
func migReference(h *Harness) error {
	for _, n := range h.Nodes {
		for _, g := range n.GPUs {
			if !g.MIGEnabled {
				continue
			}
			geo := gpu.GeometryFor(g.Model, g.Memory)
			var used [16]string
			take := func(what string, start, size int) error {
				for s := start; s < start+size; s++ {
					if s < 0 || s >= len(used) {
						return fmt.Errorf("%s outside the GPU", what)
					}
					if used[s] != "" {
						return fmt.Errorf("GPU %s slice %d: %s overlaps %s", g.UUID, s, what, used[s])
					}
					used[s] = what
				}
				return nil
			}
			reported := map[int]bool{}
			for _, in := range g.MIGInstances {
				reported[in.Start] = true
				if err := take("reported "+in.Profile, in.Start, in.Size); err != nil {
					return err
				}
			}
			for _, a := range h.Live("") {
				for _, r := range a.Resources {
					if r.GPU == nil || r.GPU.MIG == nil || r.GPU.MIG.GPU != g.UUID || reported[r.GPU.MIG.Start] {
						continue
					}
					m := r.GPU.MIG
					p := geo.Profile(m.Profile)
					if p == nil || p.Size != m.Size {
						return fmt.Errorf("%s: profile %s size %d unknown on %s", a.Name(), m.Profile, m.Size, g.Model)
					}
					starts := p.Starts
					if o, ok := g.MIGPlacements[m.Profile]; ok {
						starts = o
					}
					legal := false
					for _, s := range starts {
						legal = legal || s == m.Start
					}
					if !legal || !m.Create {
						return fmt.Errorf("%s: %s at %d is not a legal created instance (create=%v)", a.Name(), m.Profile, m.Start, m.Create)
					}
					if err := take(a.Name()+" "+m.Profile, m.Start, m.Size); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}

// TestProperties runs random jobs against random clusters, with the
// core's BestFit or with a server's GPU policy (policy.Served on the
// Learnt of the jobs so far, the job planned included, passed in the
// request as the server does), and checks after
// every plan: no over-allocation on any dimension (Fit on every node); MIG
// instances never overlap and sit at legal positions (independent
// reference); unhealthy GPUs never get new work; gangs all or nothing;
// preemption never takes another queue below its guarantee and only
// evicts lower priorities or borrowed capacity; the same input gives the
// same plan, whatever the order of the snapshot; the snapshot is never
// modified.
func TestProperties(t *testing.T) {
	var stats struct{ jobs, placed, preempted, failed int }
	defer func() { t.Logf("%+v", stats) }()
	rapid.Check(t, func(t *rapid.T) {
		cfg := scheduler.Config{
			Algorithm:         rapid.SampledFrom([]string{"", "spread"}).Draw(t, "cluster-alg"),
			SampleSize:        rapid.SampledFrom([]int{0, 2, -1}).Draw(t, "sample"),
			DisablePreemption: rapid.IntRange(0, 3).Draw(t, "nopreempt") == 0,
		}
		gpuPolicy := rapid.SampledFrom([]string{"", policy.Gantry, policy.FGD}).Draw(t, "gpu-policy")
		var learnt []*api.Job
		h := New(cfg)
		for i := rapid.IntRange(1, 12).Draw(t, "nodes"); i > 0; i-- {
			h.AddNodes(drawNode(t, i))
		}
		h.AddQueues(drawQueues(t)...)
		unhealthy := map[string]bool{}
		for _, n := range h.Nodes {
			for _, g := range n.GPUs {
				if g.Unhealthy {
					unhealthy[g.UUID] = true
				}
			}
		}
		for i := rapid.IntRange(1, 8).Draw(t, "jobs"); i > 0; i-- {
			job := drawJob(t, i)
			stats.jobs++
			counted := *job
			counted.ModifyIndex = int64(i)
			learnt = append(learnt, &counted)
			snap := h.Snapshot()
			req := h.Request(job)
			if gpuPolicy != "" {
				req.Scorer, _ = policy.Serve(gpuPolicy, policy.Learn(learnt...))
			}
			frozen, _ := json.Marshal(snap)
			plan, err := h.Sched.Schedule(snap, req, h.Now)
			if after, _ := json.Marshal(snap); !bytes.Equal(frozen, after) {
				t.Fatalf("job %d: Schedule modified the snapshot", i)
			}
			if verr := scheduler.Validate(job); verr != nil {
				if !errors.Is(err, scheduler.ErrInvalid) {
					t.Fatalf("job %d: invalid (%v) but Schedule said %v", i, verr, err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("job %d: %v", i, err)
			}
			// Same input, same plan — also with the snapshot reordered.
			again, _ := h.Sched.Schedule(snap, req, h.Now)
			shuffled := &scheduler.Snapshot{Queues: snap.Queues,
				Nodes: reversed(snap.Nodes), Allocs: reversed(snap.Allocs)}
			third, _ := h.Sched.Schedule(shuffled, req, h.Now)
			if !reflect.DeepEqual(plan, again) || !reflect.DeepEqual(plan, third) {
				t.Fatalf("job %d: plans differ for the same input", i)
			}
			before := queueUsage(h)
			liveBefore := map[string]*api.Allocation{}
			for _, a := range h.Live("") {
				liveBefore[a.ID] = a
			}
			h.Apply(plan)
			if err := h.Check(); err != nil {
				t.Fatalf("job %d: %v", i, err)
			}
			if err := migReference(h); err != nil {
				t.Fatalf("job %d: %v", i, err)
			}
			checkPlan(t, h, job, req, plan, unhealthy, before, liveBefore)
			stats.placed += len(plan.Placed)
			stats.preempted += len(plan.Preempt)
			stats.failed += len(plan.Failed)
		}
	})
}

func reversed[T any](s []T) []T {
	out := make([]T, len(s))
	for i, x := range s {
		out[len(s)-1-i] = x
	}
	return out
}

func queueUsage(h *Harness) *scheduler.Queues { return scheduler.NewQueues(h.Snapshot()) }

func checkPlan(t *rapid.T, h *Harness, job *api.Job, req *scheduler.Request, plan *scheduler.Plan,
	unhealthy map[string]bool, before *scheduler.Queues, liveBefore map[string]*api.Allocation) {
	placed := map[string]int{}
	for _, a := range plan.Placed {
		placed[a.Group]++
		for _, r := range a.Resources {
			if r.GPU == nil {
				continue
			}
			uuids := append([]string(nil), r.GPU.Devices...)
			if r.GPU.Share != nil {
				uuids = append(uuids, r.GPU.Share.GPU)
			}
			if r.GPU.MIG != nil {
				uuids = append(uuids, r.GPU.MIG.GPU)
			}
			for _, u := range uuids {
				if unhealthy[u] {
					t.Fatalf("%s placed on unhealthy GPU %s", a.Name(), u)
				}
			}
		}
	}
	asked := map[string]int{}
	for _, p := range req.Place {
		asked[p.Group]++
	}
	for _, g := range job.Groups {
		if g.Gang == nil || asked[g.Name] == 0 {
			continue
		}
		existing := g.Count - asked[g.Name]
		if n := placed[g.Name]; n > 0 && existing+n < g.Gang.Min {
			t.Fatalf("gang %s: %d placed + %d existing < min %d", g.Name, n, existing, g.Gang.Min)
		}
		if ex := plan.Failed[g.Name]; placed[g.Name] == 0 && (ex == nil || ex.Unplaced != asked[g.Name]) {
			t.Fatalf("gang %s: nothing placed but explanation %v", g.Name, ex)
		}
	}
	for name, ex := range plan.Failed {
		sum := 0
		for _, r := range ex.Reasons {
			if !strings.HasPrefix(r.Reason, "gang ") && !strings.HasPrefix(r.Reason, "spread ") {
				sum += r.Nodes
			}
		}
		if sum > ex.NodesEvaluated && !strings.HasPrefix(ex.Reasons[0].Reason, "queue ") {
			t.Fatalf("group %s: reasons count %d nodes of %d evaluated: %s", name, sum, ex.NodesEvaluated, ex)
		}
	}
	after := queueUsage(h)
	jobQueue := after.QueueOf(job.Namespace)
	guarantee := map[string]scheduler.Resources{}
	for _, q := range h.Queues {
		guarantee[q.Name] = scheduler.FromLimits(q.Guarantee)
	}
	for _, x := range plan.Preempt {
		v := liveBefore[x.AllocID]
		if v == nil {
			t.Fatalf("preempted %s, which was not live", x.AllocID)
		}
		vq := after.QueueOf(v.Namespace)
		if v.JobKey() == job.Key() {
			t.Fatalf("preempted its own job's %s", v.Name())
		}
		if v.Priority >= job.Priority {
			g := guarantee[jobQueue]
			if vq == jobQueue || g.IsZero() {
				t.Fatalf("%s (priority %d) preempted by priority %d without a reclaim", v.Name(), v.Priority, job.Priority)
			}
			if u, g := before.Usage(vq), guarantee[vq]; !(u.CPU > g.CPU || u.Memory > g.Memory || u.GPU > g.GPU) {
				t.Fatalf("reclaimed from queue %s, which was not borrowing", vq)
			}
		}
		if vq == jobQueue {
			continue
		}
		u, g, r := after.Usage(vq), guarantee[vq], scheduler.AllocResources(v)
		if (r.CPU > 0 && g.CPU > 0 && u.CPU < g.CPU) || (r.Memory > 0 && g.Memory > 0 && u.Memory < g.Memory) ||
			(r.GPU > 0 && g.GPU > 0 && u.GPU < g.GPU) {
			t.Fatalf("preempting %s took queue %s below its guarantee: usage %+v guarantee %+v", v.Name(), vq, u, g)
		}
	}
}
