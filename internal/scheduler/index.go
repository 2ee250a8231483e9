package scheduler

import (
	"math/bits"
	"sort"
)

// freeIndex buckets the schedulable nodes by capacity class (the power of
// two of their cpu, and whether they have GPUs) and, inside a class, by
// free cpu: nodes holding allocations by their free cpu (sixteen buckets
// per power of two, so a bucket's nodes differ by at most 1/16 of their
// free cpu), empty nodes apart, by capacity, in buckets above every
// bucket of the nodes in use. Binpack scores any node in use above any
// empty node (fitScore), so a placement looks, in every class, first at
// the nodes in use that can hold it, tightest first, and only then at the
// empty ones, largest first; spread at the empty ones first, then at the
// nodes in use, emptiest first — the nodes that score best inside the
// class — instead of scoring every node. It is updated as allocations
// come and go. It only orders candidates: a search that finds nothing
// checks every node.
type freeIndex struct {
	classes []*classIndex // by class id; nil when unused
	order   []int         // class ids in use, ascending
	class   []int16       // per node index: its class
	bucket  []int16       // per node index: its bucket, or -1
	pos     []int32       // per node index: its position in the bucket
}

type classIndex struct {
	buckets  [nBuckets][]int32
	nonEmpty [nBuckets / 64]uint64
	size     int
}

// The buckets of a class: [0, emptyBase) hold the nodes in use by free
// cpu, [emptyBase, nBuckets) the empty nodes by capacity.
const (
	emptyBase = 256
	nBuckets  = 2 * emptyBase
)

// bucketOf maps millicores to a bucket in [0, emptyBase): monotone in
// free, sixteen buckets per power of two (exact below 16).
func bucketOf(free int) int {
	if free <= 0 {
		return 0
	}
	l := bits.Len(uint(free))
	if l <= 4 {
		return free
	}
	b := 16*(l-4) + (free>>(l-5))&15
	if b >= emptyBase {
		return emptyBase - 1
	}
	return b
}

// nodeBucket is the bucket of a schedulable node: by free cpu when it
// holds allocations, by capacity above them when it is empty.
func nodeBucket(n *NodeState) int {
	if len(n.allocs) == 0 {
		return emptyBase + bucketOf(n.capCPU)
	}
	return bucketOf(n.capCPU - n.cpu)
}

func classOf(n *NodeState) int {
	c := bits.Len(uint(max(n.capCPU, 0))) * 2
	if len(n.gpus) > 0 {
		c++
	}
	return c
}

func newFreeIndex(nodes []*NodeState) *freeIndex {
	x := &freeIndex{class: make([]int16, len(nodes)), bucket: make([]int16, len(nodes)), pos: make([]int32, len(nodes))}
	for i, n := range nodes {
		c := classOf(n)
		x.class[i] = int16(c)
		x.bucket[i] = -1
		for len(x.classes) <= c {
			x.classes = append(x.classes, nil)
		}
		if x.classes[c] == nil {
			x.classes[c] = &classIndex{}
			x.order = append(x.order, c)
		}
	}
	sort.Ints(x.order)
	return x
}

// update moves node i to bucket b of its class (b < 0: out of the index).
func (x *freeIndex) update(i int, b int) {
	old := int(x.bucket[i])
	if old == b {
		return
	}
	ci := x.classes[x.class[i]]
	if old >= 0 {
		l := ci.buckets[old]
		p := x.pos[i]
		last := l[len(l)-1]
		l[p] = last
		x.pos[last] = p
		ci.buckets[old] = l[:len(l)-1]
		if len(ci.buckets[old]) == 0 {
			ci.nonEmpty[old/64] &^= 1 << (old % 64)
		}
		ci.size--
	}
	x.bucket[i] = int16(b)
	if b >= 0 {
		x.pos[i] = int32(len(ci.buckets[b]))
		ci.buckets[b] = append(ci.buckets[b], int32(i))
		ci.nonEmpty[b/64] |= 1 << (b % 64)
		ci.size++
	}
}

// next returns the first non-empty bucket at or above b going up (or at
// or below b going down), or -1.
func (ci *classIndex) next(b int, up bool) int {
	for b >= 0 && b < nBuckets {
		w := ci.nonEmpty[b/64]
		if up {
			w >>= b % 64
			if w != 0 {
				return b + bits.TrailingZeros64(w)
			}
			b = (b/64 + 1) * 64
		} else {
			w <<= 63 - b%64
			if w != 0 {
				return b - bits.LeadingZeros64(w)
			}
			b = b/64*64 - 1
		}
	}
	return -1
}

func (c *Cluster) reindex(n *NodeState) {
	b := -1
	if n.schedulable {
		b = nodeBucket(n)
	}
	c.index.update(n.index, b)
	if len(n.gpus) > 0 {
		c.gpuIndex.update(n)
	}
	if c.memos != nil {
		c.noteChange(n)
	}
}
