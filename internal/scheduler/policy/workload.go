package policy

import (
	"math"
	"slices"

	"github.com/gantryhq/gantry/internal/api"
)

// Coverage is the share of replicas the typical tasks cover, as in the
// FGD study and the trace replay.
const Coverage = 0.95

// Replicas is a number of replicas of one shape.
type Replicas struct {
	Shape
	N int
}

// JobShapes returns what a job adds to a workload: for each group with
// replicas, the shape of one replica and the group's count, in group
// order. The shape is the one ShapeOf reads from the scheduler's Ask: the
// CPU of all the group's tasks together and the first GPU request among
// its tasks (whole GPUs: Count GPUs of 1000 milli; a share: one GPU of its
// milli), with the model pattern as written. A group whose first GPU
// request is a MIG instance is left out: the fragmentation model knows
// nothing of MIG devices (NodeFree counts them as holding no free milli).
func JobShapes(job *api.Job) []Replicas {
	var out []Replicas
	for _, g := range job.Groups {
		if g == nil || g.Count <= 0 {
			continue
		}
		var s Shape
		var first *api.GPURequest
		for _, t := range g.Tasks {
			if t == nil {
				continue
			}
			s.CPU += t.Resources.CPU
			if first == nil && t.Resources.GPU != nil {
				first = t.Resources.GPU
			}
		}
		if first != nil {
			switch {
			case first.MIG != "":
				continue
			case first.Share != nil:
				s.Milli, s.Count = first.Share.Milli, 1
			default:
				s.Milli, s.Count = 1000, first.Count
			}
			s.Model = first.Model
		}
		out = append(out, Replicas{Shape: s, N: g.Count})
	}
	return out
}

// Workload learns the typical tasks of a cluster online, from the jobs
// submitted to it so far. It knows only what Observe was told, so it
// never looks at work still to come.
//
// Each job counts as the latest version observed, one entry per replica
// of each of its groups (JobShapes); a stopped or forgotten job no longer
// counts. Typical is a function of the set of jobs counted, not of the
// order they came in: the same jobs give the same typical set. With no
// replicas counted it is empty, and a policy that needs it cannot be
// built (Served then falls back to the core's BestFit). A Learner folds
// jobs into one and keeps the typical set in use as a versioned value
// (Learnt).
//
// A Workload is not safe for concurrent use.
type Workload struct {
	jobs   map[string][]Replicas // by job key
	counts map[Shape]int
	total  int
}

// NewWorkload returns an empty workload.
func NewWorkload() *Workload {
	return &Workload{jobs: map[string][]Replicas{}, counts: map[Shape]int{}}
}

// Observe counts the job as submitted, replacing what an earlier version
// of it counted; a stopped job is forgotten. It reports whether what the
// workload counts changed.
func (w *Workload) Observe(job *api.Job) bool {
	key := job.Key()
	if job.Stop {
		return w.Forget(key)
	}
	rs := JobShapes(job)
	if slices.Equal(rs, w.jobs[key]) {
		return false
	}
	w.Forget(key)
	if len(rs) == 0 {
		return true
	}
	w.jobs[key] = rs
	for _, r := range rs {
		w.counts[r.Shape] += r.N
		w.total += r.N
	}
	return true
}

// Forget stops counting the job with this key (namespace/name). It
// reports whether the job was counted.
func (w *Workload) Forget(key string) bool {
	rs, ok := w.jobs[key]
	for _, r := range rs {
		if w.counts[r.Shape] -= r.N; w.counts[r.Shape] == 0 {
			delete(w.counts, r.Shape)
		}
		w.total -= r.N
	}
	delete(w.jobs, key)
	return ok
}

// Replicas is the number of replicas counted.
func (w *Workload) Replicas() int { return w.total }

// Typical returns the typical tasks of the jobs counted: TypicalTasks
// over their replicas with Coverage. It is empty when nothing is counted.
func (w *Workload) Typical() []Typical { return typicalOf(w.counts, w.total, Coverage) }

// Drift is the distance between two typical sets: the total variation
// distance between them as distributions over shapes (half the sum of the
// differences of their weights, a shape missing from one weighing 0
// there), in [0, 1]. It is the share of the replicas that would have to
// change shape to turn one set into the other.
func Drift(a, b []Typical) float64 {
	d := 0.0
	for _, x := range a {
		w := 0.0
		for _, y := range b {
			if y.Shape == x.Shape {
				w = y.Weight
				break
			}
		}
		d += math.Abs(x.Weight - w)
	}
	for _, y := range b {
		if !slices.ContainsFunc(a, func(x Typical) bool { return x.Shape == y.Shape }) {
			d += y.Weight
		}
	}
	return d / 2
}
