package scheduler

import (
	"fmt"
	"testing"

	"pgregory.net/rapid"

	"github.com/gantryhq/gantry/internal/api"
)

// TestBucketOfOrder: bucketOf is monotone in free millicores, stays below
// emptyBase (so every empty node's bucket lies above every bucket of a
// node in use), and a bucket above 16 millicores holds values within 1/16
// of each other.
func TestBucketOfOrder(t *testing.T) {
	prev := -1
	for free := -5; free <= 1<<20; free++ {
		b := bucketOf(free)
		if b < prev || b < 0 || b >= emptyBase {
			t.Fatalf("bucketOf(%d) = %d after %d", free, b, prev)
		}
		prev = b
	}
	for _, free := range []int{1 << 20, 1 << 30, 1<<31 - 1} {
		if b := bucketOf(free); b >= emptyBase {
			t.Fatalf("bucketOf(%d) = %d, not below %d", free, b, emptyBase)
		}
	}
	lowest := map[int]int{}
	for free := 16; free <= 200000; free++ {
		b := bucketOf(free)
		if _, ok := lowest[b]; !ok {
			lowest[b] = free
		}
		if lo := lowest[b]; free-lo > lo/16 {
			t.Fatalf("bucket %d holds %d and %d", b, lo, free)
		}
	}
}

// TestFreeIndexProperty: after any sequence of allocations added and
// removed, every schedulable node sits in the bucket of its class that
// nodeBucket gives (empty nodes by capacity above the nodes in use, by
// free cpu), exactly once, the non-empty bits and sizes agree with the
// buckets, and unschedulable nodes are in no bucket.
func TestFreeIndexProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		var nodes []*api.Node
		for i := rapid.IntRange(1, 12).Draw(t, "nodes"); i > 0; i-- {
			n := &api.Node{
				ID: fmt.Sprintf("id-%d", i), Name: fmt.Sprintf("n%d", i), Status: api.NodeStatusReady,
				Resources:  api.NodeResources{CPU: rapid.SampledFrom([]int{0, 500, 4000, 6000, 16000, 96000}).Draw(t, "cpu"), Memory: 1 << 20},
				Ineligible: rapid.IntRange(0, 5).Draw(t, "ineligible") == 0,
			}
			nodes = append(nodes, n)
		}
		c := NewCluster(&Snapshot{Nodes: nodes})
		var live []*api.Allocation
		for i := rapid.IntRange(0, 60).Draw(t, "steps"); i > 0; i-- {
			if len(live) > 0 && rapid.IntRange(0, 2).Draw(t, "remove") == 0 {
				k := rapid.IntRange(0, len(live)-1).Draw(t, "which")
				if !c.Remove(live[k]) {
					t.Fatalf("remove %d", k)
				}
				live = append(live[:k], live[k+1:]...)
			} else {
				n := nodes[rapid.IntRange(0, len(nodes)-1).Draw(t, "node")]
				a := &api.Allocation{ID: fmt.Sprintf("a%d", i), Namespace: "default", Job: "j", Group: "g", NodeID: n.ID,
					Resources: map[string]*api.AllocatedResources{"t": {CPU: rapid.IntRange(0, 20000).Draw(t, "acpu")}}}
				if !c.Add(a) {
					t.Fatalf("add to %s", n.ID)
				}
				live = append(live, a)
			}
			checkFreeIndex(t, c)
		}
	})
}

func checkFreeIndex(t *rapid.T, c *Cluster) {
	x := c.index
	seen := map[int32]bool{}
	for _, ci := range x.order {
		cl := x.classes[ci]
		size := 0
		for b := range cl.buckets {
			l := cl.buckets[b]
			if (cl.nonEmpty[b/64]>>(b%64))&1 == 1 != (len(l) > 0) {
				t.Fatalf("class %d bucket %d: non-empty bit disagrees with %d nodes", ci, b, len(l))
			}
			for p, i := range l {
				n := c.nodes[i]
				switch {
				case seen[i]:
					t.Fatalf("node %s indexed twice", n.node.Name)
				case !n.schedulable:
					t.Fatalf("unschedulable node %s indexed", n.node.Name)
				case int(x.class[i]) != ci || classOf(n) != ci:
					t.Fatalf("node %s in class %d, belongs to %d", n.node.Name, ci, classOf(n))
				case b != nodeBucket(n) || int(x.bucket[i]) != b || int(x.pos[i]) != p:
					t.Fatalf("node %s (cpu %d of %d, %d allocs) in bucket %d at %d, recorded %d at %d, belongs to %d",
						n.node.Name, n.cpu, n.capCPU, len(n.allocs), b, p, x.bucket[i], x.pos[i], nodeBucket(n))
				case (len(n.allocs) == 0) != (b >= emptyBase):
					t.Fatalf("node %s with %d allocs in bucket %d", n.node.Name, len(n.allocs), b)
				}
				seen[i] = true
				size++
			}
		}
		if size != cl.size {
			t.Fatalf("class %d: size %d, holds %d", ci, cl.size, size)
		}
	}
	for _, n := range c.nodes {
		if n.schedulable != seen[int32(n.index)] || !n.schedulable && x.bucket[n.index] != -1 {
			t.Fatalf("node %s: schedulable %v, indexed %v (bucket %d)", n.node.Name, n.schedulable, seen[int32(n.index)], x.bucket[n.index])
		}
	}
}
