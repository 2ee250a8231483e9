package policy

import (
	"maps"
	"math"
	"slices"
)

// ranking holds replica counts by shape in the order typicalOf sorts
// them (most replicas first, equal counts the larger shape first), kept
// sorted as counts change, so that the typical set is a prefix of it and
// needs no sort. It computes the typical set and its drift from a set in
// use with exactly typicalOf's and Drift's arithmetic, term by term in
// the same order, so that the weights and the drift are the same bits.
type ranking struct {
	e   []rankEntry
	pos map[Shape]int // index in e
}

type rankEntry struct {
	shape Shape
	n     int
	u     int // 1 + its index in the typical set in use; 0: not in it
}

func newRanking() ranking { return ranking{pos: map[Shape]int{}} }

func (r ranking) clone() ranking { return ranking{e: slices.Clone(r.e), pos: maps.Clone(r.pos)} }

// before is typicalOf's order.
func before(a, b *rankEntry) bool {
	return a.n > b.n || a.n == b.n && b.shape.less(a.shape) < 0
}

func (r *ranking) swap(i, j int) {
	r.e[i], r.e[j] = r.e[j], r.e[i]
	r.pos[r.e[i].shape], r.pos[r.e[j].shape] = i, j
}

// add counts n more replicas of s.
func (r *ranking) add(s Shape, n int) {
	i, ok := r.pos[s]
	if !ok {
		i = len(r.e)
		r.e = append(r.e, rankEntry{shape: s})
		r.pos[s] = i
	}
	r.e[i].n += n
	for ; i > 0 && before(&r.e[i], &r.e[i-1]); i-- {
		r.swap(i, i-1)
	}
}

// sub counts n fewer replicas of s (counted at least n); a shape left
// with none is dropped, as typicalOf's counts hold none.
func (r *ranking) sub(s Shape, n int) {
	i := r.pos[s]
	r.e[i].n -= n
	for ; i+1 < len(r.e) && before(&r.e[i+1], &r.e[i]); i++ {
		r.swap(i, i+1)
	}
	if r.e[i].n == 0 { // the last: every other shape has replicas
		delete(r.pos, s)
		r.e = r.e[:i]
	}
}

// markInUse records which shapes are in the typical set in use.
func (r *ranking) markInUse(inUse []Typical) {
	for i := range r.e {
		r.e[i].u = 0
	}
	for j, y := range inUse {
		if i, ok := r.pos[y.Shape]; ok {
			r.e[i].u = j + 1
		}
	}
}

// typical is typicalCut(counts, total, Coverage), written into buf: the
// typical set, and the count of the first shape left out (0: none).
func (r *ranking) typical(total int, buf []Typical) ([]Typical, int) {
	q := Coverage * float64(total)
	cum, k := 0.0, 0
	for k < len(r.e) && cum < q {
		cum += float64(r.e[k].n)
		k++
	}
	next := 0
	if k < len(r.e) {
		next = r.e[k].n
	}
	t := buf[:0]
	for i := range k {
		t = append(t, Typical{Shape: r.e[i].shape, Weight: float64(r.e[i].n) / cum})
	}
	return t, next
}

// drift is Drift(t, inUse) for t the typical set just computed (the
// first len(t) shapes) and inUse the set markInUse recorded; out is
// scratch space.
func (r *ranking) drift(t, inUse []Typical, out []bool) float64 {
	out = out[:0]
	for range inUse {
		out = append(out, true)
	}
	d := 0.0
	for i, x := range t {
		w := 0.0
		if u := r.e[i].u; u > 0 {
			w = inUse[u-1].Weight
			out[u-1] = false
		}
		d += math.Abs(x.Weight - w)
	}
	for j, y := range inUse {
		if out[j] {
			d += y.Weight
		}
	}
	return d / 2
}
