package defragplan

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/scheduler"
	st "github.com/gantryhq/gantry/internal/scheduler/schedtest"
	"pgregory.net/rapid"
)

const a100 = "NVIDIA A100-SXM4-40GB"

// world is a small cluster written by hand: nodes, jobs and allocations.
type world struct {
	nodes  []*api.Node
	jobs   map[string]*api.Job
	allocs []*api.Allocation
}

func newWorld(nodes ...*api.Node) *world { return &world{nodes: nodes, jobs: map[string]*api.Job{}} }

// shareJob is a service of count shares of milli, with migrate as given.
func (w *world) shareJob(name string, milli int, migrate bool, opts ...st.GroupOpt) *api.Job {
	opts = append([]st.GroupOpt{st.Task("main", 100, 256, st.Share(milli, 0, false))}, opts...)
	j := st.Job(name, st.Group("g", 0, opts...))
	j.Groups[0].Migrate = migrate
	w.jobs[j.Key()] = j
	return j
}

func (w *world) node(name string) *api.Node {
	for _, n := range w.nodes {
		if n.Name == name {
			return n
		}
	}
	panic("no node " + name)
}

// share places replica i of job j's group on GPU g of node.
func (w *world) share(j *api.Job, node string, g int) *api.Allocation {
	n := w.node(node)
	grp := j.Groups[0]
	milli := grp.Tasks[0].Resources.GPU.Share.Milli
	i := grp.Count
	grp.Count++
	a := &api.Allocation{ID: fmt.Sprintf("%s-%d", j.Name, i), Namespace: j.Namespace, Job: j.Name, Group: grp.Name, Index: i,
		NodeID: n.ID, NodeName: n.Name, DesiredStatus: api.AllocDesiredRun, ClientStatus: api.AllocRunning,
		Resources: map[string]*api.AllocatedResources{"main": {CPU: 100, Memory: 256,
			GPU: &api.AllocatedGPU{Share: &api.ShareAssignment{GPU: n.GPUs[g].UUID, Milli: milli, Memory: n.GPUs[g].Memory * milli / 1000}}}}}
	w.allocs = append(w.allocs, a)
	return a
}

// wholeJob is a service whose replicas each hold count whole GPUs.
func (w *world) wholeJob(name string, count int, migrate bool, opts ...st.GroupOpt) *api.Job {
	opts = append([]st.GroupOpt{st.Task("main", 100, 256, st.WholeGPUs(count, ""))}, opts...)
	j := st.Job(name, st.Group("g", 0, opts...))
	j.Groups[0].Migrate = migrate
	w.jobs[j.Key()] = j
	return j
}

// whole places a replica of job j's group on GPUs gs of node, whole.
func (w *world) whole(j *api.Job, node string, gs ...int) *api.Allocation {
	n := w.node(node)
	grp := j.Groups[0]
	i := grp.Count
	grp.Count++
	var uuids []string
	for _, g := range gs {
		uuids = append(uuids, n.GPUs[g].UUID)
	}
	a := &api.Allocation{ID: fmt.Sprintf("%s-%d", j.Name, i), Namespace: j.Namespace, Job: j.Name, Group: grp.Name, Index: i,
		NodeID: n.ID, NodeName: n.Name, DesiredStatus: api.AllocDesiredRun, ClientStatus: api.AllocRunning,
		Resources: map[string]*api.AllocatedResources{"main": {CPU: 100, Memory: 256, GPU: &api.AllocatedGPU{Devices: uuids}}}}
	w.allocs = append(w.allocs, a)
	return a
}

func (w *world) input(target *api.Job, count int) *Input {
	in := &Input{Nodes: w.nodes, Allocs: w.allocs, Jobs: w.jobs, Target: target, Count: count}
	if target != nil {
		w.jobs[target.Key()] = target
		in.Group = target.Groups[0].Name
	}
	return in
}

func wholeTarget(count int) *api.Job {
	return st.Job("train", st.Group("g", count, st.Task("main", 100, 256, st.WholeGPUs(1, ""))))
}

func gpuNode(name string, gpus int, opts ...st.GPUOpt) *api.Node {
	return st.Node(name, st.CPU(16000), st.Memory(65536), st.GPUs(gpus, a100, 40960, opts...))
}

func TestDecide(t *testing.T) {
	eng := scheduler.New(scheduler.Config{})
	cases := []struct {
		name  string
		build func() (*world, *Input)
		want  string // moves as "<alloc>:<from>/<gpus>-><to>/<gpus>" joined by spaces, then "fits" / "freed N" / "why: …"
		err   error
	}{
		{"two half-empty GPUs: one share moves, one GPU is whole", func() (*world, *Input) {
			w := newWorld(gpuNode("a", 1), gpuNode("b", 1))
			j := w.shareJob("inf", 300, true)
			w.share(j, "a", 0)
			w.share(j, "b", 0)
			return w, w.input(wholeTarget(1), 1)
		}, "inf-0:a/[0]->b/[0] fits", nil},
		{"groups without migrate never move", func() (*world, *Input) {
			w := newWorld(gpuNode("a", 1), gpuNode("b", 1))
			j := w.shareJob("inf", 300, false)
			w.share(j, "a", 0)
			w.share(j, "b", 0)
			return w, w.input(wholeTarget(1), 1)
		}, "why: no plan of at most 8 moves of replicas that allow migration (migrate: true) makes room for train/g", nil},
		{"gangs never move, even with migrate", func() (*world, *Input) {
			w := newWorld(gpuNode("a", 1), gpuNode("b", 1))
			j := w.shareJob("inf", 300, true, st.Gang(2))
			w.share(j, "a", 0)
			w.share(j, "b", 0)
			return w, w.input(wholeTarget(1), 1)
		}, "why: no plan of at most 8 moves of replicas that allow migration (migrate: true) makes room for train/g", nil},
		{"a GPU in MIG mode is never a destination", func() (*world, *Input) {
			w := newWorld(gpuNode("a", 2, func(i int, g *api.GPUDevice) {
				if i == 0 {
					g.MIGEnabled = true
				}
			}), gpuNode("b", 1))
			j := w.shareJob("inf", 300, true)
			w.share(j, "a", 1)
			w.share(j, "b", 0)
			return w, w.input(wholeTarget(1), 1)
		}, "inf-0:a/[1]->b/[0] fits", nil},
		{"a GPU bound to vfio-pci (VMs only) is never a destination", func() (*world, *Input) {
			w := newWorld(gpuNode("a", 2, func(i int, g *api.GPUDevice) {
				if i == 0 {
					g.Passthrough = true
				}
			}), gpuNode("b", 1))
			j := w.shareJob("inf", 300, true)
			w.share(j, "a", 1)
			w.share(j, "b", 0)
			return w, w.input(wholeTarget(1), 1)
		}, "inf-0:a/[1]->b/[0] fits", nil},
		{"constraints keep a replica where it may run", func() (*world, *Input) {
			w := newWorld(st.Node("a", st.CPU(16000), st.Memory(65536), st.Label("zone", "x"), st.GPUs(1, a100, 40960)), gpuNode("b", 1))
			pinned := w.shareJob("pinned", 300, true, st.Constraint("${node.labels.zone}", "=", "x"))
			free := w.shareJob("free", 300, true)
			w.share(pinned, "a", 0)
			w.share(free, "b", 0)
			return w, w.input(wholeTarget(1), 1)
		}, "free-0:b/[0]->a/[0] fits", nil},
		{"two waiting replicas need two GPUs freed", func() (*world, *Input) {
			w := newWorld(gpuNode("a", 2), gpuNode("b", 2))
			j := w.shareJob("inf", 200, true)
			w.share(j, "a", 0)
			w.share(j, "a", 1)
			w.share(j, "b", 0)
			w.share(j, "b", 1)
			return w, w.input(wholeTarget(2), 2)
		}, "inf-0:a/[0]->b/[0] inf-1:a/[1]->b/[0] fits", nil},
		{"fits already", func() (*world, *Input) {
			w := newWorld(gpuNode("a", 2))
			w.share(w.shareJob("inf", 300, true), "a", 0)
			return w, w.input(wholeTarget(1), 1)
		}, "fits now", nil},
		{"without a job: shares consolidate and GPUs become whole", func() (*world, *Input) {
			w := newWorld(gpuNode("a", 1), gpuNode("b", 1), gpuNode("c", 1))
			j := w.shareJob("inf", 250, true)
			w.share(j, "a", 0)
			w.share(j, "b", 0)
			w.share(j, "c", 0)
			return w, w.input(nil, 0)
		}, "inf-0:a/[0]->b/[0] inf-2:c/[0]->b/[0] freed 2", nil},
		{"no GPUs in the cluster", func() (*world, *Input) {
			w := newWorld(st.Node("a"))
			return w, w.input(wholeTarget(1), 1)
		}, "", ErrNoGPUs},
		{"a CPU-only job has nothing to make room for", func() (*world, *Input) {
			w := newWorld(gpuNode("a", 1))
			return w, w.input(st.Job("web", st.Group("g", 1, st.Task("main", 100, 256))), 1)
		}, "", ErrNotGPUWork},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, in := tc.build()
			p, err := Decide(eng, in)
			if tc.err != nil || err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err %v, want %v", err, tc.err)
				}
				return
			}
			if got := render(p); got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}

func render(p *api.DefragPlan) string {
	var out []string
	for _, m := range p.Moves {
		out = append(out, fmt.Sprintf("%s:%s/%v->%s/%v", m.Alloc, m.FromNode, m.FromGPUs, m.ToNode, m.ToGPUs))
	}
	switch {
	case p.FitsNow:
		out = append(out, "fits now")
	case p.Freed > 0:
		out = append(out, fmt.Sprintf("freed %d", p.Freed))
	case p.Fits:
		out = append(out, "fits")
	default:
		out = append(out, "why: "+p.Why)
	}
	return strings.Join(out, " ")
}

// apply carries a plan out on the allocations as the server would: each
// moved replica relocated, the old one gone.
func apply(in *Input, p *api.DefragPlan) ([]*api.Allocation, error) {
	byID := map[string]*api.Node{}
	for _, n := range in.Nodes {
		byID[n.ID] = n
	}
	out := slices.Clone(in.Allocs)
	for _, m := range p.Moves {
		i := slices.IndexFunc(out, func(a *api.Allocation) bool { return a.ID == m.Alloc })
		if i < 0 {
			return nil, fmt.Errorf("move of %s: no such allocation (moved twice?)", m.Alloc)
		}
		n := byID[m.ToNodeID]
		var gs []int
		for _, g := range m.ToGPUs {
			gs = append(gs, slices.IndexFunc(n.GPUs, func(d api.GPUDevice) bool { return d.Index == g }))
		}
		moved := Relocate(out[i], n, gs)
		moved.ID = m.Alloc + "-moved"
		out[i] = moved
	}
	return out, nil
}

// TestPlanInvariants draws clusters of shared and whole-GPU work (shares,
// and replicas holding one or two whole GPUs), some of it movable, and
// checks every plan Decide returns: applied, no node is over-allocated
// (scheduler.Fit), no MIG GPU receives work, only replicas of groups with
// migrate and without a gang move, each at most once, a replica of whole
// GPUs moves whole (as many GPUs, all on one node), every group keeps as
// many replicas as before (a move replaces, never removes: with apply's
// replacement-first order no group has fewer healthy replicas, whatever
// its max_parallel), and the job it was made for then places
// (scheduler.Plan, no preemption).
func TestPlanInvariants(t *testing.T) {
	eng := scheduler.New(scheduler.Config{})
	for _, mix := range []struct {
		name              string
		minGPUs, maxWhole int
		maxShares         int
		// per is the most GPUs per replica of a whole-GPU target.
		per int
	}{
		{"shares first", 1, 4, 14, 2},
		// Nodes of two or more GPUs, mostly whole-GPU replicas and a job
		// that needs two GPUs of one node: moving whole replicas is
		// what makes room.
		{"whole GPUs first", 2, -1, 2, 2},
	} {
		t.Run(mix.name, func(t *testing.T) {
			plans, wholeMoves := planInvariants(t, eng, mix.minGPUs, mix.maxWhole, mix.maxShares, mix.per)
			t.Logf("%d non-empty plans checked, %d moves of whole GPUs among them", plans, wholeMoves)
			if mix.name == "whole GPUs first" && wholeMoves == 0 {
				t.Error("no plan moved a whole-GPU replica: the generator does not reach them")
			}
		})
	}
}

func planInvariants(tt *testing.T, eng *scheduler.Engine, minGPUs, maxWhole, maxShares, per int) (plans, wholeMoves int) {
	rapid.Check(tt, func(t *rapid.T) {
		w := newWorld()
		for i := range rapid.IntRange(2, 4).Draw(t, "nodes") {
			gpus := rapid.IntRange(minGPUs, 4).Draw(t, fmt.Sprintf("gpus%d", i))
			mig := rapid.IntRange(-1, gpus-1).Draw(t, fmt.Sprintf("mig%d", i))
			w.nodes = append(w.nodes, gpuNode(fmt.Sprintf("n%d", i), gpus, func(k int, g *api.GPUDevice) { g.MIGEnabled = k == mig }))
		}
		free := map[string]int{} // GPU UUID → free milli
		var slots []struct {
			node string
			g    int
		}
		for _, n := range w.nodes {
			for g, d := range n.GPUs {
				if !d.MIGEnabled {
					free[d.UUID] = 1000
					slots = append(slots, struct {
						node string
						g    int
					}{n.Name, g})
				}
			}
		}
		if len(slots) == 0 {
			return
		}
		// Whole-GPU replicas first, on GPUs nothing else holds: one GPU,
		// or two of one node.
		if maxWhole < 0 {
			// Every GPU drawn one by one: idle, or held whole by a
			// replica that may move, may not, or is a gang.
			for k, sl := range slots {
				// 0 (the value rapid draws most): a replica that may move.
				kind := rapid.IntRange(0, 3).Draw(t, fmt.Sprintf("fill%d", k))
				if kind == 1 {
					continue
				}
				var opts []st.GroupOpt
				if kind == 3 {
					opts = append(opts, st.Gang(1))
				}
				free[w.node(sl.node).GPUs[sl.g].UUID] = 0
				w.whole(w.wholeJob(fmt.Sprintf("f%d", k), 1, kind == 0, opts...), sl.node, sl.g)
			}
		}
		for k := range rapid.IntRange(0, max(maxWhole, 0)).Draw(t, "wholes") {
			s := slots[rapid.IntRange(0, len(slots)-1).Draw(t, fmt.Sprintf("wslot%d", k))]
			gs := []int{s.g}
			if rapid.Bool().Draw(t, fmt.Sprintf("two%d", k)) {
				for g, d := range w.node(s.node).GPUs {
					if g != s.g && !d.MIGEnabled && free[d.UUID] == 1000 {
						gs = append(gs, g)
						break
					}
				}
			}
			taken := false
			for _, g := range gs {
				taken = taken || free[w.node(s.node).GPUs[g].UUID] < 1000
			}
			if taken {
				continue
			}
			for _, g := range gs {
				free[w.node(s.node).GPUs[g].UUID] = 0
			}
			kind := rapid.IntRange(0, 2).Draw(t, fmt.Sprintf("wkind%d", k))
			var opts []st.GroupOpt
			if kind == 2 {
				opts = append(opts, st.Gang(1))
			}
			j := w.wholeJob(fmt.Sprintf("w%d", k), len(gs), kind != 1, opts...)
			w.whole(j, s.node, gs...)
		}
		for k := range rapid.IntRange(0, maxShares).Draw(t, "shares") {
			milli := rapid.IntRange(1, 6).Draw(t, fmt.Sprintf("milli%d", k)) * 100
			s := slots[rapid.IntRange(0, len(slots)-1).Draw(t, fmt.Sprintf("slot%d", k))]
			u := w.node(s.node).GPUs[s.g].UUID
			if free[u] < milli {
				continue
			}
			free[u] -= milli
			kind := rapid.IntRange(0, 2).Draw(t, fmt.Sprintf("kind%d", k))
			var opts []st.GroupOpt
			if kind == 2 {
				opts = append(opts, st.Gang(1))
			}
			j := w.shareJob(fmt.Sprintf("j%d", k), milli, kind != 1, opts...)
			w.share(j, s.node, s.g)
		}
		var target *api.Job
		count := 1
		if maxWhole < 0 {
			// A replica that needs two GPUs of one node.
			target = wholeTarget(1)
			target.Groups[0].Tasks[0].Resources.GPU.Count = 2
		} else if rapid.Bool().Draw(t, "whole") {
			count = rapid.IntRange(1, 2).Draw(t, "count")
			target = wholeTarget(count)
			// Two GPUs of one node per replica: room that moving a
			// replica of whole GPUs off a node can make.
			target.Groups[0].Tasks[0].Resources.GPU.Count = rapid.IntRange(1, per).Draw(t, "per")
		} else if rapid.Bool().Draw(t, "job") {
			target = st.Job("train", st.Group("g", 1, st.Task("main", 100, 256, st.Share(rapid.IntRange(1, 9).Draw(t, "ask")*100, 0, false))))
		}
		in := w.input(target, count)
		p, err := Decide(eng, in)
		if err != nil {
			t.Fatalf("decide: %v", err)
		}
		if len(p.Moves) == 0 {
			if p.Fits != p.FitsNow && target != nil {
				t.Fatalf("an empty plan that fits must fit now: %+v", p)
			}
			return
		}
		plans++
		for _, m := range p.Moves {
			if m.Milli >= 1000 {
				wholeMoves++
			}
		}
		after, err := apply(in, p)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, m := range p.Moves {
			if seen[m.Alloc] {
				t.Fatalf("%s moved twice", m.Alloc)
			}
			seen[m.Alloc] = true
			g := w.jobs[api.JobKey(m.Namespace, m.Job)].LookupGroup(m.Group)
			if !g.Migrate || g.Gang != nil {
				t.Fatalf("%s moved: migrate %v, gang %v", m.Name, g.Migrate, g.Gang)
			}
			if m.Milli >= 1000 && len(m.ToGPUs) != len(m.FromGPUs) {
				t.Fatalf("%s held %d whole GPUs and moves onto %d", m.Name, len(m.FromGPUs), len(m.ToGPUs))
			}
			if m.Milli < 1000 && len(m.ToGPUs) != 1 {
				t.Fatalf("a share %s moves onto %d GPUs", m.Name, len(m.ToGPUs))
			}
			n := w.node(m.ToNode)
			for _, k := range m.ToGPUs {
				if n.GPUs[k].MIGEnabled {
					t.Fatalf("%s moved onto %s GPU %d, in MIG mode", m.Name, m.ToNode, k)
				}
			}
		}
		replicas := func(as []*api.Allocation) map[string]int {
			out := map[string]int{}
			for _, a := range as {
				out[a.JobKey()+"/"+a.Group]++
			}
			return out
		}
		for i, a := range after {
			// A moved replica holds as much GPU as before, on its new node.
			_, was := gpuTask(in.Allocs[i])
			_, is := gpuTask(a)
			if len(was.Devices) != len(is.Devices) || (was.Share == nil) != (is.Share == nil) {
				t.Fatalf("%s held %+v and holds %+v after the moves", a.Name(), was, is)
			}
		}
		if b, a := replicas(in.Allocs), replicas(after); fmt.Sprint(b) != fmt.Sprint(a) {
			t.Fatalf("replicas per group before %v, after %v", b, a)
		}
		c := scheduler.NewCluster(&scheduler.Snapshot{Nodes: w.nodes, Allocs: after})
		for _, n := range c.Nodes() {
			if err := scheduler.Fit(n.Node(), n.Allocs()); err != nil {
				t.Fatalf("after the moves: %v", err)
			}
		}
		if target != nil {
			req := &scheduler.Request{Job: target}
			for i := range count {
				req.Place = append(req.Place, scheduler.Placement{Group: "g", Index: i})
			}
			pl, err := scheduler.New(scheduler.Config{DisablePreemption: true}).Plan(c, req)
			if err != nil || len(pl.Placed) != count {
				t.Fatalf("after %d moves the job does not place: %v %v", len(p.Moves), err, pl.Failed)
			}
		} else if p.Freed == 0 {
			t.Fatalf("moves without a job freed nothing")
		}
		// Same input, same plan.
		again, _ := Decide(eng, w.input(target, count))
		if render(again) != render(p) {
			t.Fatalf("not deterministic:\n%s\n%s", render(p), render(again))
		}
	})
	return plans, wholeMoves
}
