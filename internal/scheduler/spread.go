package scheduler

import (
	"fmt"
	"sort"
	"strings"
)

// spreadIndex holds a group's first spread as an index: the nodes that
// pass the group's static checks (status, drivers, constraints), grouped
// by their value of the spread attribute into buckets, with each bucket's
// target share and the replicas of the group it holds.
//
// A placement looks only at the buckets furthest below their share at
// this step (largest share×(replicas+1) − count, ties together), and at
// the next such level only when none of their nodes fits. That keeps each
// value within one replica of its share at every step, whatever the
// candidate sampling, as long as the values that are due have room.
type spreadIndex struct {
	names []string  // per bucket: the value, or otherValues
	share []float64 // per bucket: target share; they sum to 1
	count []int     // per bucket: replicas of the group it holds
	nodes [][]int32 // per bucket: node indices, ascending
	of    map[string]int
	other int // bucket of the values targets do not list, or -1
	total int // replicas counted in buckets

	tried []bool // per bucket, during one selection
	level []int
}

const otherValues = "(other values)"

// newSpreadIndex builds the index of sp over the nodes that pass static.
// Even spread: one bucket per value present on such a node, equal shares.
// Targets: one bucket per listed value, plus one for every other value
// when the targets leave a remainder and such nodes exist; shares are the
// percentages normalized over those buckets.
func newSpreadIndex(sp *spreadPlan, nodes []*NodeState, static func(*NodeState) bool) *spreadIndex {
	x := &spreadIndex{of: map[string]int{}, other: -1}
	bucket := func(name string, share float64) int {
		x.names = append(x.names, name)
		x.share = append(x.share, share)
		x.count = append(x.count, 0)
		x.nodes = append(x.nodes, nil)
		return len(x.names) - 1
	}
	if sp.targets != nil {
		keys := make([]string, 0, len(sp.targets))
		for v := range sp.targets {
			keys = append(keys, v)
		}
		sort.Strings(keys)
		for _, v := range keys {
			x.of[v] = bucket(v, float64(sp.targets[v]))
		}
	}
	for _, n := range nodes {
		v, ok := sp.attr.get(n.node)
		if !ok || !static(n) {
			continue
		}
		b, known := x.of[v]
		switch {
		case known:
		case sp.targets == nil:
			b = bucket(v, 1)
			x.of[v] = b
		case sp.sum >= 100:
			continue
		default:
			if x.other < 0 {
				x.other = bucket(otherValues, float64(100-sp.sum))
			}
			b = x.other
		}
		x.nodes[b] = append(x.nodes[b], int32(n.index))
	}
	sum := 0.0
	for _, s := range x.share {
		sum += s
	}
	for i := range x.share {
		if sum > 0 {
			x.share[i] /= sum
		}
	}
	x.tried = make([]bool, len(x.names))
	return x
}

// bucketOf returns the bucket of a node's value, or -1.
func (x *spreadIndex) bucketOf(sp *spreadPlan, n *NodeState) int {
	v, ok := sp.attr.get(n.node)
	if !ok {
		return -1
	}
	if b, known := x.of[v]; known {
		return b
	}
	return x.other
}

func (x *spreadIndex) add(b, sign int) {
	if b >= 0 {
		x.count[b] += sign
		x.total += sign
	}
}

// deficit is how far bucket b is below its share once the next replica
// is placed.
func (x *spreadIndex) deficit(b int) float64 {
	return x.share[b]*float64(x.total+1) - float64(x.count[b])
}

// nextLevel returns the untried buckets of the largest deficit, marking
// them tried, or nil when every bucket was tried.
func (x *spreadIndex) nextLevel() []int {
	x.level = x.level[:0]
	best := 0.0
	for b := range x.names {
		if x.tried[b] {
			continue
		}
		d := x.deficit(b)
		switch {
		case len(x.level) == 0 || d > best+1e-9:
			x.level = append(x.level[:0], b)
			best = d
		case d > best-1e-9:
			x.level = append(x.level, b)
		}
	}
	for _, b := range x.level {
		x.tried[b] = true
	}
	return x.level
}

func (x *spreadIndex) resetTried() {
	for b := range x.tried {
		x.tried[b] = false
	}
}

// fullText names the buckets found full in the last selection, for an
// explanation, and the nodes they hold.
func (x *spreadIndex) fullText(sp *spreadPlan) (string, int) {
	var names []string
	nodes := 0
	for b := range x.names {
		if x.tried[b] {
			names = append(names, x.names[b])
			nodes += len(x.nodes[b])
		}
	}
	if len(names) == 0 {
		return "", 0
	}
	const shown = 5
	more := ""
	if len(names) > shown {
		more = fmt.Sprintf(" (+%d more)", len(names)-shown)
		names = names[:shown]
	}
	return fmt.Sprintf("spread %s: no room in %s%s", sp.text, strings.Join(names, ", "), more), nodes
}

// searchSpread looks for the best node for one replica of g among the
// spread buckets, level by level (see spreadIndex). With limit > 0 it
// samples each level: every bucket of the level offers a share of the
// sample, from a rotating start.
func (p *planner) searchSpread(g *groupPlan, s *search) *NodeState {
	x := g.spreadIdx
	x.resetTried()
	nodes := p.c.nodes
	for level := x.nextLevel(); len(level) > 0; level = x.nextLevel() {
		s.found = 0
		if s.limit <= 0 {
			for _, b := range level {
				for _, i := range x.nodes[b] {
					s.consider(nodes[i], false)
				}
			}
		} else {
			quota := max(2, (s.limit+len(level)-1)/len(level))
			start := int(mix(p.seed, uint64(len(level)), p.selections) % uint64(len(level)))
		walk:
			for k := range level {
				l := x.nodes[level[(start+k)%len(level)]]
				if len(l) == 0 {
					continue
				}
				off := int(mix(p.seed, uint64(k), p.selections) % uint64(len(l)))
				before := s.found
				for j := range l {
					if s.consider(nodes[l[(off+j)%len(l)]], false) {
						break walk
					}
					if s.found-before >= quota {
						break
					}
				}
			}
		}
		s.undefer()
		if s.best != nil {
			return s.best
		}
	}
	return nil
}
