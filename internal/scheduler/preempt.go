package scheduler

import (
	"fmt"
	"sort"

	"github.com/gantryhq/gantry/internal/api"
)

// victim is an allocation that may be evicted for the group being placed.
type victim struct {
	a        *api.Allocation
	queue    string
	res      Resources
	borrowed bool // its queue uses more than its guarantee
}

// preempt looks for the node where evicting allocations makes room for
// one replica of g, evicts them and returns the node (or nil).
//
// An allocation may be evicted when it belongs to another job and either
// has a lower priority than the job being placed, or — reclaim — the
// job's queue stays within its guarantee with this replica while the
// allocation's queue is borrowing (uses more than its guarantee). An
// eviction never takes another queue below its guarantee in a dimension
// the evicted allocation uses. Among nodes, the fewest victims win, then
// the lowest total priority, then the node order.
func (p *planner) preempt(g *groupPlan) *NodeState {
	if p.e.cfg.DisablePreemption {
		return nil
	}
	qb := p.c.queues
	reclaim := within(qb.usage[p.queue], g.demand, qb.guarantee(p.queue))
	if reclaim {
		reclaim = false
		for q, u := range qb.usage {
			if q != p.queue && borrowing(u, qb.guarantee(q)) {
				reclaim = true
				break
			}
		}
	}
	if !reclaim && !p.c.anyBelow(p.job.Priority) {
		return nil
	}
	var (
		best     *NodeState
		bestV    []*victim
		bestPrio int
		cands    []*victim
		usage    = map[string]Resources{}
	)
	for _, n := range p.c.nodes {
		if !n.schedulable || len(n.allocs) == 0 || n.capCPU < g.cpu || n.capMem < g.mem || (n.capDisk > 0 && n.capDisk < g.disk) {
			continue
		}
		cands = cands[:0]
		sumCPU, sumMem := n.capCPU-n.cpu, n.capMem-n.mem
		for _, a := range n.allocs {
			if a.Priority >= p.job.Priority && !reclaim {
				continue
			}
			if p.placed[a] || (a.Job == p.job.Name && a.Namespace == p.job.Namespace) {
				continue
			}
			vq := qb.of(a.Namespace)
			borrowed := vq != p.queue && borrowing(qb.usage[vq], qb.guarantee(vq))
			if a.Priority >= p.job.Priority && !(reclaim && borrowed) {
				continue
			}
			v := &victim{a: a, queue: vq, res: AllocResources(a), borrowed: borrowed}
			cands = append(cands, v)
			sumCPU += int(v.res.CPU)
			sumMem += int(v.res.Memory)
		}
		if len(cands) == 0 || sumCPU < g.cpu || sumMem < g.mem || !p.staticOK(g, n) {
			continue
		}
		sort.Slice(cands, func(i, j int) bool {
			a, b := cands[i], cands[j]
			if a.borrowed != b.borrowed {
				return a.borrowed
			}
			if a.a.Priority != b.a.Priority {
				return a.a.Priority < b.a.Priority
			}
			if sa, sb := a.res.CPU+a.res.Memory+a.res.GPU, b.res.CPU+b.res.Memory+b.res.GPU; sa != sb {
				return sa > sb
			}
			return a.a.ID < b.a.ID
		})
		chosen := p.victimsOn(g, n, cands, usage)
		if chosen == nil {
			continue
		}
		prio := 0
		for _, v := range chosen {
			prio += v.a.Priority
		}
		if best == nil || len(chosen) < len(bestV) || (len(chosen) == len(bestV) && prio < bestPrio) {
			best, bestV, bestPrio = n, chosen, prio
		}
	}
	if best == nil {
		return nil
	}
	for _, v := range bestV {
		why := fmt.Sprintf("preempted by %s (priority %d) to place group %s", p.jobKey, p.job.Priority, g.group.Name)
		if v.a.Priority >= p.job.Priority {
			why = fmt.Sprintf("reclaimed for queue %s (within its guarantee) by %s group %s: queue %s borrowed beyond its guarantee",
				p.queue, p.jobKey, g.group.Name, v.queue)
		}
		p.c.Remove(v.a)
		p.log = append(p.log, logEntry{a: v.a})
		p.plan.Preempt = append(p.plan.Preempt, Preemption{AllocID: v.a.ID, Reason: why})
	}
	return best
}

// staticOK reports whether n passes the checks that evictions cannot
// change: status, drivers, constraints, distinct hosts.
func (p *planner) staticOK(g *groupPlan, n *NodeState) bool {
	switch p.check(g, n).code() {
	case cNotReady, cDriver, cConstraint, cDistinct:
		return false
	}
	return true
}

// victimsOn picks, among the sorted candidates of n, a small set whose
// eviction lets g fit: it evicts in order until g fits, then gives back
// every victim not needed (the last chosen first). It leaves n as it found
// it and returns nil when no set works.
func (p *planner) victimsOn(g *groupPlan, n *NodeState, cands []*victim, usage map[string]Resources) []*victim {
	qb := p.c.queues
	clear(usage)
	var chosen []*victim
	fits := false
	for _, v := range cands {
		u, ok := usage[v.queue]
		if !ok {
			u = qb.usage[v.queue]
		}
		if v.queue != p.queue && !guaranteeSafe(u, v.res, qb.guarantee(v.queue)) {
			continue
		}
		usage[v.queue] = u.Sub(v.res)
		_ = n.apply(v.a, -1, false)
		chosen = append(chosen, v)
		if p.check(g, n) == 0 {
			fits = true
			break
		}
	}
	if fits {
		for i := len(chosen) - 1; i >= 0; i-- {
			_ = n.apply(chosen[i].a, 1, false)
			if p.check(g, n) == 0 {
				chosen = append(chosen[:i], chosen[i+1:]...)
				continue
			}
			_ = n.apply(chosen[i].a, -1, false)
		}
	}
	for _, v := range chosen {
		_ = n.apply(v.a, 1, false)
	}
	if !fits {
		return nil
	}
	return chosen
}

// guaranteeSafe reports whether a queue using usage keeps its guarantee
// in every dimension res uses after giving res back.
func guaranteeSafe(usage, res, guarantee Resources) bool {
	u, r, g := usage.dims(), res.dims(), guarantee.dims()
	for i := range u {
		if r[i] > 0 && g[i] > 0 && u[i]-r[i] < g[i] {
			return false
		}
	}
	return true
}
