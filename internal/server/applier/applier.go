// Package applier commits a scheduled plan to the store in transactions
// that never split what must happen together.
//
// A plan is cut into units: every placement of a gang group is one unit
// (all-or-nothing), and every preemption set (the allocations evicted on a
// node together with the placements made on that node) is one unit, merged
// with a gang that places there. Other placements and plain updates (stops,
// lost, in-place changes) are units of one. Units are packed in order into
// steps of at most Limits.TargetPlace placements (a soft size, for etcd's
// log), and a step may grow past that only to keep a unit whole; no step
// exceeds the store's hard limits (operations and bytes per transaction).
// A unit that cannot fit those limits on its own is refused before anything
// is written (ErrUnitTooLarge).
//
// The last step carries the evaluation's final status and its follow-ups.
// When a step after the first fails, the steps before it stay committed:
// the Result says how much was, and the caller records it on the
// evaluation and leaves the rest to a follow-up evaluation (see Partial).
//
// The applier changes the world only through Store, one method wide; it
// reads no clock.
package applier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/state"
)

// Store commits one step atomically, or not at all. *state.Store is one.
type Store interface {
	ApplyPlan(ctx context.Context, c *state.PlanCommit) (int64, error)
}

// Limits bound one transaction.
type Limits struct {
	// TargetPlace is the preferred number of placements per step (0: no
	// preference); a step grows past it only to keep a unit whole.
	TargetPlace int
	// MaxOps is the store's limit on operations (and, separately, on
	// comparisons) in one transaction: etcd's --max-txn-ops.
	MaxOps int
	// MaxBytes bounds the estimated size of one transaction, below
	// etcd's --max-request-bytes.
	MaxBytes int
}

// Embedded are the limits the embedded etcd is started with
// (state.EmbeddedMaxTxnOps, state.EmbeddedMaxRequestBytes), with room left
// for keys, comparisons and framing.
var Embedded = Limits{TargetPlace: 500, MaxOps: state.EmbeddedMaxTxnOps, MaxBytes: state.EmbeddedMaxRequestBytes * 3 / 4}

// External are the limits of an etcd cluster with its defaults (128
// operations, 1.5 MiB requests).
var External = Limits{TargetPlace: 50, MaxOps: 128, MaxBytes: 1 << 20}

// ErrUnitTooLarge is returned, before anything is written, when a gang or a
// preemption set needs more than one transaction may hold. Retrying cannot
// help; raising the store's limits can.
var ErrUnitTooLarge = errors.New("a gang or preemption set does not fit in one transaction")

// Plan is what one evaluation commits.
type Plan struct {
	Fence *state.Fence
	// Eval is the evaluation's final status, written with the last step.
	Eval *api.Evaluation
	// FollowUps are evaluations created with the last step.
	FollowUps []*api.Evaluation
	// Deployments are written with the first step.
	Deployments []*api.Deployment
	// Update are changed allocations that depend on no placement (stops,
	// lost, in-place changes).
	Update []*api.Allocation
	// Preempt are allocations stopped to make room; each belongs to the
	// preemption set of its node.
	Preempt []*api.Allocation
	// Place are new allocations.
	Place []*api.Allocation
	// Gangs names the groups whose placements are all-or-nothing.
	Gangs map[string]bool
	// Guards are the plan revisions of the nodes that receive placements,
	// as the plan was checked against them.
	Guards map[string]int64
}

// Result says what was committed.
type Result struct {
	// Rev is the store revision of the last committed step (0: none).
	Rev int64
	// Steps and Placed count the committed steps and placements.
	Steps, Placed int
	// Done is true when every step, the evaluation's included, committed.
	Done bool
	// NodeRevs are the plan revisions the committed steps left on the
	// nodes they placed on: the next plan's guards for those nodes.
	NodeRevs map[string]int64
}

// Partial reports whether some, but not all, of a plan was committed.
func (r Result) Partial() bool { return r.Steps > 0 && !r.Done }

// Applier commits plans through a Store within Limits.
type Applier struct {
	Store  Store
	Limits Limits
}

// unit is what commits together.
type unit struct {
	place, update []*api.Allocation
	ops, bytes    int
}

// Step is one transaction of a plan: allocations to create and to
// change. The first step also writes the deployments, the last the
// evaluation and its follow-ups.
type Step struct {
	Place, Update []*api.Allocation
	ops, bytes    int
}

// Apply commits p in as few steps as the limits allow, never splitting a
// unit. On an error the Result says what committed before it.
func (ap *Applier) Apply(ctx context.Context, p *Plan) (Result, error) {
	steps, err := ap.Steps(p)
	if err != nil {
		return Result{}, err
	}
	guards := make(map[string]int64, len(p.Guards))
	for n, r := range p.Guards {
		guards[n] = r
	}
	res := Result{NodeRevs: map[string]int64{}}
	for i, st := range steps {
		c := &state.PlanCommit{Fence: p.Fence, Place: st.Place, Update: st.Update, NodeGuards: map[string]int64{}}
		for _, a := range c.Place {
			c.NodeGuards[a.NodeID] = guards[a.NodeID]
		}
		if i == 0 {
			c.Deployments = p.Deployments
		}
		if i == len(steps)-1 {
			c.Eval, c.FollowUps = p.Eval, p.FollowUps
		}
		rev, err := ap.Store.ApplyPlan(ctx, c)
		if err != nil {
			return res, err
		}
		for n := range c.NodeGuards {
			guards[n], res.NodeRevs[n] = rev, rev
		}
		res.Rev, res.Steps, res.Placed = rev, res.Steps+1, res.Placed+len(c.Place)
	}
	res.Done = true
	return res, nil
}

// Steps cuts p into the transactions Apply commits, in order.
func (ap *Applier) Steps(p *Plan) ([]*Step, error) {
	units := ap.units(p)
	lim := ap.Limits
	evalOps, evalBytes := 0, 0
	if p.Eval != nil {
		evalOps, evalBytes = 1, size(p.Eval)
	}
	for _, e := range p.FollowUps {
		evalOps, evalBytes = evalOps+1, evalBytes+size(e)
	}
	deployOps, deployBytes := len(p.Deployments), 0
	for _, d := range p.Deployments {
		deployBytes += size(d)
	}
	// Fixed costs: the fence's comparison and a step's share of node
	// guards are counted with each unit (one guard per placement at most).
	const fixedOps = 1
	if fixedOps+deployOps+evalOps > lim.MaxOps || deployBytes+evalBytes > lim.MaxBytes {
		return nil, fmt.Errorf("%d evaluation(s) and %d deployment(s): %w (the store allows %d operations and %d bytes)",
			evalOps, deployOps, ErrUnitTooLarge, lim.MaxOps, lim.MaxBytes)
	}
	for _, u := range units {
		if fixedOps+u.ops > lim.MaxOps || u.bytes > lim.MaxBytes {
			return nil, fmt.Errorf("%s needs %d operations and about %d bytes: %w (the store allows %d operations and %d bytes per transaction; raise etcd's --max-txn-ops and --max-request-bytes)",
				describe(u), u.ops, u.bytes, ErrUnitTooLarge, lim.MaxOps, lim.MaxBytes)
		}
	}
	var steps []*Step
	cur := &Step{ops: fixedOps + deployOps, bytes: deployBytes}
	empty := true
	for _, u := range units {
		fits := cur.ops+u.ops <= lim.MaxOps && cur.bytes+u.bytes <= lim.MaxBytes
		soft := lim.TargetPlace <= 0 || len(cur.Place)+len(u.place) <= lim.TargetPlace || len(cur.Place) == 0
		if !empty && !(fits && soft) {
			steps = append(steps, cur)
			cur = &Step{ops: fixedOps}
		}
		empty = false
		cur.Place = append(cur.Place, u.place...)
		cur.Update = append(cur.Update, u.update...)
		cur.ops += u.ops
		cur.bytes += u.bytes
	}
	if cur.ops+evalOps > lim.MaxOps || cur.bytes+evalBytes > lim.MaxBytes {
		steps = append(steps, cur)
		cur = &Step{ops: fixedOps}
	}
	steps = append(steps, cur)
	return steps, nil
}

// units groups p's changes into what must commit together, plain updates
// first, then placements in the plan's order.
func (ap *Applier) units(p *Plan) []*unit {
	var out []*unit
	for _, a := range p.Update {
		out = append(out, &unit{update: []*api.Allocation{a}})
	}
	// Union-find over placement indexes and preemption sets.
	n := len(p.Place)
	parent := make([]int, n+len(p.Preempt))
	for i := range parent {
		parent[i] = i
	}
	var find func(int) int
	find = func(i int) int {
		for parent[i] != i {
			parent[i] = parent[parent[i]]
			i = parent[i]
		}
		return i
	}
	union := func(a, b int) {
		ra, rb := find(a), find(b)
		if ra == rb {
			return
		}
		if ra < rb {
			parent[rb] = ra
		} else {
			parent[ra] = rb
		}
	}
	gangFirst := map[string]int{}
	nodeFirst := map[string]int{}
	for i, a := range p.Place {
		if p.Gangs[a.Group] {
			g := a.Namespace + "\x00" + a.Job + "\x00" + a.Group
			if f, ok := gangFirst[g]; ok {
				union(f, i)
			} else {
				gangFirst[g] = i
			}
		}
		if _, ok := nodeFirst[a.NodeID]; !ok {
			nodeFirst[a.NodeID] = i
		}
	}
	preemptedNodes := map[string]bool{}
	for j, a := range p.Preempt {
		preemptedNodes[a.NodeID] = true
		if f, ok := nodeFirst[a.NodeID]; ok {
			union(f, n+j)
		} else {
			// Nothing placed on that node (should not happen): the
			// preemptions still commit together with each other.
			nodeFirst[a.NodeID] = n + j
		}
	}
	for i, a := range p.Place {
		if preemptedNodes[a.NodeID] {
			union(nodeFirst[a.NodeID], i)
		}
	}
	byRoot := map[int]*unit{}
	var order []int
	get := func(i int) *unit {
		r := find(i)
		u := byRoot[r]
		if u == nil {
			u = &unit{}
			byRoot[r] = u
			order = append(order, r)
		}
		return u
	}
	for i, a := range p.Place {
		u := get(i)
		u.place = append(u.place, a)
	}
	for j, a := range p.Preempt {
		u := get(n + j)
		u.update = append(u.update, a)
	}
	sort.Ints(order) // a unit sits where its first member was planned
	for _, r := range order {
		out = append(out, byRoot[r])
	}
	sizes := map[string]int{}
	for _, u := range out {
		nodes := map[string]bool{}
		for _, a := range u.place {
			nodes[a.NodeID] = true
			u.bytes += allocSize(sizes, a)
		}
		for _, a := range u.update {
			u.bytes += allocSize(sizes, a)
		}
		// One put and one comparison per allocation, one of each per node
		// guard.
		u.ops = len(u.place) + len(u.update) + len(nodes)
		u.bytes += 160 * len(nodes)
	}
	return out
}

// allocSize estimates the bytes an allocation adds to a transaction: its
// encoding, its key twice (put and comparison) and framing. Replicas of
// one group encode to nearly the same size, so one encoding per group is
// measured and the rest are given a margin.
func allocSize(cache map[string]int, a *api.Allocation) int {
	k := a.Namespace + "\x00" + a.Job + "\x00" + a.Group + "\x00" + a.DesiredStatus
	n, ok := cache[k]
	if !ok {
		n = size(a) + 512
		cache[k] = n
	}
	return n + 200
}

func size(v any) int {
	b, err := json.Marshal(v)
	if err != nil {
		return 4096
	}
	return len(b)
}

func describe(u *unit) string {
	switch {
	case len(u.place) > 0 && len(u.update) > 0:
		return fmt.Sprintf("a preemption set (%d placement(s), %d eviction(s))", len(u.place), len(u.update))
	case len(u.place) > 0:
		a := u.place[0]
		return fmt.Sprintf("gang %s/%s group %s (%d placements)", a.Namespace, a.Job, a.Group, len(u.place))
	default:
		return fmt.Sprintf("%d update(s)", len(u.update))
	}
}
