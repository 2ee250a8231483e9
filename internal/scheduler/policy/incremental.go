package policy

import (
	"cmp"
	"slices"
	"strings"

	"github.com/gantryhq/gantry/internal/api"
)

// IncrementalLearner is LearnerOf kept up to date as jobs arrive, change
// and go: after Sync(jobs) its Learnt is LearnerOf(jobs...).Learnt(),
// exactly (the same weights, bit for bit), at a cost that grows with how
// far back in the order the earliest change lies rather than with the
// number of jobs.
//
// The fold is a prefix computation over the jobs in LearnerOf's order
// (ModifyIndex, ties by key): the state after a job depends only on the
// jobs before it. A changed job leaves its old position and takes a new
// one (its new ModifyIndex: usually the end); a job that goes leaves its
// position; a new job takes one. Everything before the first of those
// positions folds as before, so the learner resumes from a mark it took
// there and folds only the rest. A mark (every markEvery jobs) holds the
// history-dependent part of the fold (the typical set in use, the
// largest index, the counters); the replica counts at a mark are not
// stored but recovered from the counts of all the jobs minus those of the
// jobs after it, which are folded again anyway. Memory is one entry per
// job (its key and shapes) and one mark per markEvery jobs.
//
// Folding a job is cheap when it provably cannot move the typical set in
// use (see skip): the learner then only adds its replicas to the counts
// instead of computing the typical set and its drift. That is a proof
// about the arithmetic, with margin for rounding, not an approximation:
// the jobs it skips are those on which adopt would have kept the set in
// use.
//
// Jobs are taken as values: a job whose key the learner holds is unchanged
// when Sync is given the same pointer, and folded again otherwise (the
// store's view replaces a job's value on every change). It is not safe
// for concurrent use.
type IncrementalLearner struct {
	order []*folded          // the jobs folded, in LearnerOf's order
	byKey map[string]*folded // the same, by key
	marks []mark             // marks[c]: the fold after order[:c*markEvery]
	st    foldState          // the fold after all of order
	gen   uint64             // Sync's stamp on the entries it was given
}

// markEvery is how many jobs apart the learner keeps marks: a change
// refolds at most markEvery-1 jobs before its position, and the marks
// cost a few words each (the typical set in use is shared between marks
// until it is replaced). A variable only so that tests can take marks
// often.
var markEvery = 256

// folded is one job as the learner folds it.
type folded struct {
	job    *api.Job
	key    string
	shapes []Replicas // what it counts: none when stopped or without replicas
	n      int        // the replicas it counts
	seen   uint64     // the last Sync that was given this value
}

func newFolded(job *api.Job) *folded {
	f := &folded{job: job, key: job.Key()}
	if !job.Stop { // Workload.Observe forgets a stopped job
		f.shapes = JobShapes(job)
		for _, r := range f.shapes {
			f.n += r.N
		}
	}
	return f
}

// byFold is LearnerOf's order (byIndex) on folded entries.
func byFold(a, b *folded) int {
	return cmp.Or(cmp.Compare(a.job.ModifyIndex, b.job.ModifyIndex), strings.Compare(a.key, b.key))
}

// mark is the part of the fold that the jobs' counts do not give back.
type mark struct {
	total, jobs int
	inUse       []Typical // never changed in place: shared
	last        int64
}

// foldState is what Learner holds, for jobs folded once each in order
// (so a job only ever adds to the counts), plus the base of skip.
type foldState struct {
	counts      ranking
	total, jobs int
	inUse       []Typical
	last        int64
	base        skip
	full        int // jobs folded in full (not skipped), over the learner's life

	t   []Typical // scratch: the typical set of the job being folded
	out []bool    // scratch: for ranking.drift
}

// skip is what the learner knew of the typical set at the last job it
// folded in full (computing the typical set), from which it decides
// whether the jobs after it can move the set in use. With counts c
// there, S the shapes of the typical set t (k of them, covering x
// replicas, the least common counted min times), next the count of the
// most common shape left out of it, and d the drift of t from the set in
// use u, let R more replicas be added, in any shapes. Then:
//
//  1. if min > next+R, the shapes of S still come first in the order
//     typicalOf sorts them in (a shape outside S, or a new one, has at
//     most next+R);
//  2. if x ≥ 0.95·(total+R) (kept with a margin, as 20x ≥ 19(total+R)+1),
//     those k shapes still reach the coverage;
//  3. if k is 1, or x+R−min < 0.95·(total+R) (with a margin), the k−1
//     most common of them still do not (they hold at most x+a−min of the
//     a ≤ R replicas that went to S);
//
// so the typical set is again S, its weights those of counts c+a over
// S, a total variation of at most a/(x+a) ≤ R/(x+R) from t; and
//
//  4. if d + R/(x+R) stays under RebuildDrift by more than rounding can
//     account for (1e-9: the sums are of a few dozen terms of 2^-53
//     relative error),
//
// the drift from u is under RebuildDrift (the triangle inequality), so
// adopt keeps u on every job folded until then.
type skip struct {
	ok                   bool
	k, x, min, next, tot int
	drift                float64
}

// covers reports whether the typical set in use stays, the counts being
// total now.
func (b skip) covers(total int) bool {
	r := total - b.tot
	return b.ok && b.min > b.next+r &&
		20*b.x >= 19*(b.tot+r)+1 &&
		(b.k == 1 || 20*(b.x+r-b.min)+1 <= 19*(b.tot+r)) &&
		b.drift+float64(r)/float64(b.x+r)+1e-9 < RebuildDrift
}

// add folds one job, as Learner.Add does.
func (s *foldState) add(f *folded) {
	s.last = max(s.last, f.job.ModifyIndex)
	if f.n == 0 {
		// The counts stay and so does the typical set: adopt keeps the
		// set in use, as it did on the job before.
		return
	}
	s.jobs++
	for _, r := range f.shapes {
		s.counts.add(r.Shape, r.N)
	}
	s.total += f.n
	if s.base.covers(s.total) {
		return
	}
	// adopt(s.inUse, typicalOf(counts)), without allocating unless the
	// set is replaced.
	s.full++
	var next int
	s.t, next = s.counts.typical(s.total, s.t)
	d := 0.0
	if len(s.inUse) > 0 {
		s.out = slices.Grow(s.out[:0], len(s.inUse))
		d = s.counts.drift(s.t, s.inUse, s.out)
	}
	if len(s.inUse) == 0 || d >= RebuildDrift { // adopt's rule, t being nonempty
		s.inUse, d = slices.Clone(s.t), 0 // the drift of a set from itself
		s.counts.markInUse(s.inUse)
	}
	k := len(s.t)
	x := 0
	for _, e := range s.counts.e[:k] {
		x += e.n
	}
	s.base = skip{ok: true, k: k, x: x, min: s.counts.e[k-1].n, next: next, tot: s.total, drift: d}
}

func (s *foldState) mark() mark {
	return mark{total: s.total, jobs: s.jobs, inUse: s.inUse, last: s.last}
}

func (s *foldState) learnt() *Learnt {
	return newLearnt(s.last, s.jobs, s.total, slices.Clone(s.inUse))
}

// NewIncrementalLearner returns a learner that has folded no job.
func NewIncrementalLearner() *IncrementalLearner {
	return &IncrementalLearner{byKey: map[string]*folded{}, marks: []mark{{}},
		st: foldState{counts: newRanking()}}
}

// Learnt is LearnerOf(jobs...).Learnt() of the jobs of the last Sync.
func (l *IncrementalLearner) Learnt() *Learnt { return l.st.learnt() }

// Last is the largest ModifyIndex folded.
func (l *IncrementalLearner) Last() int64 { return l.st.last }

// Len is the number of jobs folded.
func (l *IncrementalLearner) Len() int { return len(l.order) }

// Sync makes the learner fold jobs (one value per key): it refolds from
// the mark before the first position that a new, changed or removed job
// takes or leaves.
func (l *IncrementalLearner) Sync(jobs []*api.Job) {
	l.gen++
	var in []*folded
	p, kept := len(l.order), 0
	for _, j := range jobs {
		if f := l.byKey[j.Key()]; f != nil && f.job == j {
			f.seen = l.gen
			kept++
			continue
		}
		// A new job, or a new value of one (the old value is not
		// stamped, and goes).
		f := newFolded(j)
		in = append(in, f)
		p = min(p, l.insertAt(f))
	}
	if len(in) == 0 && kept == len(l.order) {
		return
	}
	if kept < len(l.order) {
		// The first job that went, if it comes before p.
		if i := slices.IndexFunc(l.order[:p], func(f *folded) bool { return f.seen != l.gen }); i >= 0 {
			p = i
		}
	}
	gen := l.gen
	st, from, tail, marks := l.refold(p, func(f *folded) bool { return f.seen != gen }, in, true)
	for _, f := range l.order[from:] {
		if f.seen != gen {
			delete(l.byKey, f.key)
		}
	}
	for _, f := range in {
		f.seen = gen
		l.byKey[f.key] = f
	}
	l.order = append(l.order[:from], tail...)
	l.marks = append(l.marks[:from/markEvery+1], marks...)
	l.st = st
}

// LearntWith is the Learnt of the jobs folded with job in place of the
// job of its key (or added to them), without changing the learner: what
// Sync then Learnt would give.
func (l *IncrementalLearner) LearntWith(job *api.Job) *Learnt {
	f := newFolded(job)
	old := l.byKey[f.key]
	p := l.insertAt(f)
	if old != nil {
		p = min(p, l.insertAt(old))
	}
	st, _, _, _ := l.refold(p, func(e *folded) bool { return e == old }, []*folded{f}, false)
	return st.learnt()
}

// insertAt is the position of f in the order (where it is, or would go).
func (l *IncrementalLearner) insertAt(f *folded) int {
	i, _ := slices.BinarySearchFunc(l.order, f, byFold)
	return i
}

// refold folds the order with the entries drop reports left out and in
// merged in, p being at most the position of the first entry that moves.
// It resumes from the fold of all the jobs when p is past them, else from
// the last mark at or before p, and returns the fold, the position it
// resumed from, the order from there and the marks taken after it. It
// uses l.st's counts in place when commit is set (and they are then the
// returned fold's), a copy otherwise.
func (l *IncrementalLearner) refold(p int, drop func(*folded) bool, in []*folded, commit bool) (foldState, int, []*folded, []mark) {
	st := l.st
	if !commit {
		st.counts = st.counts.clone()
	}
	from := len(l.order)
	if p < len(l.order) {
		from = p / markEvery * markEvery
		m := l.marks[from/markEvery]
		for _, f := range l.order[from:] {
			for _, r := range f.shapes {
				st.counts.sub(r.Shape, r.N)
			}
		}
		st.counts.markInUse(m.inUse)
		st = foldState{counts: st.counts, total: m.total, jobs: m.jobs, inUse: m.inUse, last: m.last, full: st.full, t: st.t, out: st.out}
	}
	slices.SortFunc(in, byFold)
	tail := make([]*folded, 0, len(l.order)-from+len(in))
	old := l.order[from:]
	for len(old) > 0 || len(in) > 0 {
		switch {
		case len(old) > 0 && drop(old[0]):
			old = old[1:]
		case len(in) == 0 || len(old) > 0 && byFold(old[0], in[0]) < 0:
			tail, old = append(tail, old[0]), old[1:]
		default:
			tail, in = append(tail, in[0]), in[1:]
		}
	}
	var marks []mark
	for i, f := range tail {
		st.add(f)
		if commit && (from+i+1)%markEvery == 0 {
			marks = append(marks, st.mark())
		}
	}
	return st, from, tail, marks
}
