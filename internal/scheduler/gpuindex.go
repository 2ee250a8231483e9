package scheduler

import (
	"math/bits"

	"github.com/gantryhq/gantry/internal/gpu"
)

// gpuIndex buckets the schedulable nodes with GPUs by free shape, so that
// a GPU request looks at the nodes that could hold it, tightest first,
// instead of at every node with GPUs:
//   - idle: by whole devices free (a whole-GPU ask of k walks up from k;
//     a share also takes an idle device);
//   - partial: by the most free milli on a device already shared (a share
//     of m walks up from m: shares pack onto shared devices first);
//   - mig: by the most free compute slices on a MIG device, or the
//     compute of a free instance.
//
// It only orders candidates: a search that finds nothing through it
// looks at every node, so it never changes what is feasible.
type gpuIndex struct {
	idle, partial, mig keyIndex
}

// keyIndex is a set of node indices bucketed by a small key (0..63).
type keyIndex struct {
	buckets  [64][]int32
	nonEmpty uint64
	key      []int8 // per node index: its bucket, or -1
	pos      []int32
}

func newGPUIndex(nodes int) *gpuIndex {
	x := &gpuIndex{}
	for _, k := range []*keyIndex{&x.idle, &x.partial, &x.mig} {
		k.key = make([]int8, nodes)
		k.pos = make([]int32, nodes)
		for i := range k.key {
			k.key[i] = -1
		}
	}
	return x
}

// milliKey maps free milli (1..1000) to a bucket, monotone.
func milliKey(m int) int { return min(63, m*63/1000) }

func (x *gpuIndex) update(n *NodeState) {
	idle, partial, mig := -1, -1, -1
	if n.schedulable {
		if n.gpuIdle > 0 {
			idle = min(63, n.gpuIdle)
		}
		if n.gpuPartialMax > 0 {
			partial = milliKey(n.gpuPartialMax)
		}
		if n.gpuMIGFree > 0 {
			mig = min(63, n.gpuMIGFree)
		}
	}
	x.idle.set(n.index, idle)
	x.partial.set(n.index, partial)
	x.mig.set(n.index, mig)
}

func (k *keyIndex) set(i, b int) {
	old := int(k.key[i])
	if old == b {
		return
	}
	if old >= 0 {
		l := k.buckets[old]
		p := k.pos[i]
		last := l[len(l)-1]
		l[p] = last
		k.pos[last] = p
		k.buckets[old] = l[:len(l)-1]
		if len(k.buckets[old]) == 0 {
			k.nonEmpty &^= 1 << old
		}
	}
	k.key[i] = int8(b)
	if b >= 0 {
		k.pos[i] = int32(len(k.buckets[b]))
		k.buckets[b] = append(k.buckets[b], int32(i))
		k.nonEmpty |= 1 << b
	}
}

// next returns the first non-empty bucket at or above b (up) or at or
// below b (down), or -1.
func (k *keyIndex) next(b int, up bool) int {
	if b < 0 || b > 63 {
		return -1
	}
	if up {
		w := k.nonEmpty >> b
		if w == 0 {
			return -1
		}
		return b + bits.TrailingZeros64(w)
	}
	w := k.nonEmpty << (63 - b)
	if w == 0 {
		return -1
	}
	return b - bits.LeadingZeros64(w)
}

// walk considers the nodes of buckets lo..63, tightest first (spread:
// the emptiest first, down to lo), from a rotating start inside each
// bucket. It reports true when the search has enough candidates.
func (p *planner) walk(k *keyIndex, lo int, s *search) bool {
	up := !p.spread
	b := lo
	if !up {
		b = 63
	}
	for b = k.next(b, up); b >= lo; b = k.next(b+step(up), up) {
		l := k.buckets[b]
		off := int(mix(p.seed, uint64(b), p.selections) % uint64(len(l)))
		for j := range l {
			if s.consider(p.c.nodes[l[(off+j)%len(l)]], false) {
				return true
			}
		}
	}
	return false
}

// searchGPU looks for a node for GPU work through the GPU index, by the
// form of the group's first GPU ask.
func (p *planner) searchGPU(g *groupPlan, s *search) {
	x := p.c.gpuIndex
	a := &g.gpu[0]
	switch a.Form {
	case gpu.FormWhole:
		p.walk(&x.idle, min(63, a.Count), s)
	case gpu.FormShare:
		if !p.walk(&x.partial, milliKey(a.Milli), s) {
			p.walk(&x.idle, 1, s)
		}
	default:
		p.walk(&x.mig, 1, s)
	}
}
