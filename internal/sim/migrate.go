package sim

import (
	"context"
	"fmt"
	"maps"
	"math"
	"slices"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/defrag"
	"github.com/gantryhq/gantry/internal/gpu"
	"github.com/gantryhq/gantry/internal/scheduler"
	"github.com/gantryhq/gantry/internal/scheduler/policy"
)

// Migration is how a replay may move placed tasks (`--migrate`): when a
// task fits nowhere, internal/defrag proposes moves of placed GPU tasks
// that make room for it, as long as the moves made so far stay within
// Budget percent of the tasks placed so far. A task moved while task i
// was tried does not move again before task i+Window.
type Migration struct {
	Budget float64 // percent of tasks placed so far; 0 is the one-pass replay
	Window int64   // in tasks tried
	// Breadth is how many candidate nodes a search tries in full (0: the
	// defrag default).
	Breadth int
}

// DefaultWindow is the default --migrate-window.
const DefaultWindow = 1000

// retryAfter is how many placements a failed search waits before the same
// ask is searched again (a move retries it at once).
const retryAfter = 32

// ReplayMigrate is Replay with migration: every task is tried once, in
// order, with the engine; one that fits nowhere gets a move plan from
// defrag.Find when the budget allows one, the moves are carried out on
// the scheduler's cluster (each a stop and a placement on another node,
// checked with scheduler.Fit) and the task is planned again, which must
// then place it. It returns the points, the tasks placed and the moves
// made. With a zero budget it is Replay.
func ReplayMigrate(ctx context.Context, eng *scheduler.Engine, nodes []*api.Node, tasks []Task, metric *policy.FragModel, m Migration) ([]Point, int, int, error) {
	if m.Budget <= 0 {
		points, placed, err := Replay(ctx, eng, nodes, tasks, metric)
		return points, placed, 0, err
	}
	c := eng.NewCluster(&scheduler.Snapshot{Nodes: nodes})
	mir := newMirror(c)
	var free []int
	cs := c.Nodes()
	frags := make([]float64, len(cs))
	idles := make([]int64, len(cs))
	var frag float64
	var idle int64
	remeasure := func(n *scheduler.NodeState) {
		var model string
		free, model = policy.NodeFree(n, free)
		cpu, _ := n.CPU()
		f := metric.Frag(metric.Class(model), cpu, free)
		var sum int64
		for _, v := range free {
			sum += int64(v)
		}
		k := n.Index()
		frag += f - frags[k]
		idle += sum - idles[k]
		frags[k], idles[k] = f, sum
	}
	for _, n := range cs {
		remeasure(n)
	}
	points := make([]Point, 0, len(tasks))
	var arrived, used int64
	placed, moves := 0, 0
	// A search that found nothing for an ask is not repeated for the same
	// ask until a move has been made or retryAfter more tasks have been
	// placed: placements mostly take room, so it would rarely find more,
	// and once the cluster is full most tasks are asks that failed before.
	type failed struct{ moves, placed int }
	hopeless := map[defrag.Ask]failed{}
	for i := range tasks {
		if i%256 == 0 && ctx.Err() != nil {
			return nil, 0, 0, ctx.Err()
		}
		t := &tasks[i]
		req := &scheduler.Request{Job: TaskJob(i, t), Place: []scheduler.Placement{{Group: "t"}}}
		plan, err := eng.Plan(c, req)
		if err != nil {
			return nil, 0, 0, fmt.Errorf("task %d (%s): %w", i, t.Name, err)
		}
		if len(plan.Placed) == 0 && t.GPUs > 0 {
			allowed := int(math.Floor(m.Budget/100*float64(placed))) - moves
			ask := defrag.Ask{CPU: t.CPU, Memory: t.Memory, Count: t.GPUs, Milli: t.Milli, Model: t.Model}
			if f, seen := hopeless[ask]; allowed > 0 && (!seen || f.moves != moves || placed-f.placed >= retryAfter) {
				p, ok := defrag.Find(mir.s, ask, defrag.Options{MaxMoves: allowed, Now: int64(i), Window: m.Window, MaxNodes: m.Breadth})
				if !ok || len(p.Moves) == 0 {
					hopeless[ask] = failed{moves, placed}
					goto tried
				}
				touched, err := mir.apply(p, ask, int64(i), m.Window)
				if err != nil {
					return nil, 0, 0, fmt.Errorf("task %d (%s): moves: %w", i, t.Name, err)
				}
				moves += len(p.Moves)
				for _, n := range touched {
					remeasure(n)
				}
				if plan, err = eng.Plan(c, req); err != nil {
					return nil, 0, 0, fmt.Errorf("task %d (%s): %w", i, t.Name, err)
				}
				if len(plan.Placed) == 0 {
					return nil, 0, 0, fmt.Errorf("task %d (%s): still fits nowhere after %d moves made room on %s", i, t.Name, len(p.Moves), cs[p.Node].Node().Name)
				}
			}
		}
	tried:
		demand := int64(t.GPUMilli())
		arrived += demand
		if len(plan.Placed) == 1 {
			placed++
			used += demand
			a := plan.Placed[0]
			if err := mir.add(a, t); err != nil {
				return nil, 0, 0, fmt.Errorf("task %d (%s): %w", i, t.Name, err)
			}
			remeasure(c.Node(a.NodeID))
		}
		points = append(points, Point{Arrived: arrived, Used: used, Frag: frag, Idle: idle})
	}
	return points, placed, moves, nil
}

// mirror keeps internal/defrag's model of the cluster in step with the
// scheduler's: one item per placed GPU task, with its allocation.
type mirror struct {
	c      *scheduler.Cluster
	s      *defrag.State
	node   map[string]int // node ID → index
	gpu    []map[string]int
	allocs []*api.Allocation // by item
}

func newMirror(c *scheduler.Cluster) *mirror {
	m := &mirror{c: c, node: map[string]int{}}
	var nodes []defrag.Node
	for i, n := range c.Nodes() {
		cpu, _ := n.CPU()
		mem, _ := n.Memory()
		dn := defrag.Node{Name: n.Node().Name, CPU: cpu, Memory: mem}
		idx := map[string]int{}
		for g, d := range n.GPUs() {
			dn.GPUs = append(dn.GPUs, defrag.GPU{Model: d.Model, Free: d.FreeMilli, Users: d.Users, MIG: d.MIGEnabled})
			idx[d.UUID] = g
		}
		nodes = append(nodes, dn)
		m.node[n.Node().ID] = i
		m.gpu = append(m.gpu, idx)
	}
	m.s = defrag.NewState(nodes)
	return m
}

// add records a placed task.
func (m *mirror) add(a *api.Allocation, t *Task) error {
	r := a.Resources["t"]
	if r == nil || (r.GPU == nil) != (t.GPUs == 0) {
		return fmt.Errorf("allocation on %s does not hold what task %s asked", a.NodeID, t.Name)
	}
	n := m.node[a.NodeID]
	// Work without GPUs is pinned: the replay moves GPU tasks only.
	it := defrag.Item{Node: n, Milli: t.Milli, CPU: r.CPU, Memory: r.Memory, Model: t.Model, Pinned: t.GPUs == 0}
	var uuids []string
	switch {
	case r.GPU == nil:
	case r.GPU.Share != nil:
		uuids = []string{r.GPU.Share.GPU}
	default:
		uuids = r.GPU.Devices
	}
	for _, u := range uuids {
		it.GPUs = append(it.GPUs, m.gpu[n][u])
	}
	id, err := m.s.Place(it)
	if err != nil {
		return fmt.Errorf("the move model disagrees with the scheduler: %w", err)
	}
	if id != len(m.allocs) {
		return fmt.Errorf("the move model numbered item %d, expected %d", id, len(m.allocs))
	}
	m.allocs = append(m.allocs, a)
	return nil
}

// apply carries out a plan's moves in the model and on the cluster, and
// checks every node they touch with scheduler.Fit. It returns the nodes
// touched.
func (m *mirror) apply(p defrag.Plan, ask defrag.Ask, now, window int64) ([]*scheduler.NodeState, error) {
	if err := m.s.Apply(p, ask, now, window); err != nil {
		return nil, err
	}
	cs := m.c.Nodes()
	touched := map[int]bool{p.Node: true}
	for _, mv := range p.Moves {
		old := m.allocs[mv.Item]
		dst := cs[mv.To]
		a := *old
		a.NodeID = dst.Node().ID
		r := *old.Resources["t"]
		devs := dst.GPUs()
		switch g := old.Resources["t"].GPU; {
		case g == nil:
		case g.Share != nil:
			s, d := g.Share, devs[mv.ToGPUs[0]]
			r.GPU = &api.AllocatedGPU{Share: &api.ShareAssignment{GPU: d.UUID, Milli: s.Milli, Memory: gpu.ShareMemory(s.Milli, 0, d.Memory), Enforce: s.Enforce}}
		default:
			g := &api.AllocatedGPU{}
			for _, k := range mv.ToGPUs {
				g.Devices = append(g.Devices, devs[k].UUID)
			}
			r.GPU = g
		}
		a.Resources = map[string]*api.AllocatedResources{"t": &r}
		if !m.c.Remove(old) {
			return nil, fmt.Errorf("move of item %d: the cluster does not hold its allocation", mv.Item)
		}
		if !m.c.Add(&a) {
			return nil, fmt.Errorf("move of item %d: node %s unknown", mv.Item, a.NodeID)
		}
		m.allocs[mv.Item] = &a
		touched[mv.From], touched[mv.To] = true, true
	}
	var out []*scheduler.NodeState
	for _, k := range slices.Sorted(maps.Keys(touched)) {
		n := cs[k]
		if err := scheduler.Fit(n.Node(), n.Allocs()); err != nil {
			return nil, fmt.Errorf("after the moves: %w", err)
		}
		out = append(out, n)
	}
	return out, nil
}
