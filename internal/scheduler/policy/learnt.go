package policy

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"weak"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/gpu"
	"github.com/gantryhq/gantry/internal/scheduler"
)

// Learnt is what a server's GPU policy knows of the workload, as a value:
// the typical tasks in use for the jobs in the store at one index. It is
// an input of placement like the nodes and allocations are, so that
// whoever plans against the same store state (a `job plan`, the worker of
// `job run`, any leader) rates nodes alike.
//
// It is derived, never stored: a Learner computes it from the jobs
// alone, folding them in the order the store changed them (ModifyIndex).
// The typical set in use follows the one learnt from the jobs so far only
// once the two are RebuildDrift apart (Drift), as the policy learnt
// online before it was a value: replaying the fold over the jobs' own
// indexes reproduces exactly that history when jobs only arrive, and is
// still a function of the store's state when they change or go (a changed
// job is folded at its new index). Keeping the set in the store instead,
// updated by the leader through the fenced write path, would give the
// same guarantee at the cost of a key, a write per change and a rule for
// who writes it when; and dropping the drift rule (the exact set of the
// jobs, no history) made the replay's cpu250 list 0.35 points worse over
// seeds 42–51 and 4 points worse on seed 42.
//
// Version names the typical set: equal typical sets have equal versions,
// whatever index or jobs they came from, and a policy built on it places
// alike. It is what a plan or an evaluation reports as its input.
type Learnt struct {
	Version string `json:"version"`
	// Index is the ModifyIndex of the newest job it reflects (0: none).
	// It says where the value came from; it does not take part in
	// placement.
	Index    int64     `json:"index,omitempty"`
	Jobs     int       `json:"jobs"`     // jobs counted (with at least one replica)
	Replicas int       `json:"replicas"` // replicas counted
	Typical  []Typical `json:"typical,omitempty"`
}

// RebuildDrift is how far (Drift) the typical set learnt from the jobs
// must move from the one in use before a Learner replaces it: 5% of the
// replicas changing shape. On the trace replay (default and cpu250
// lists, three seeds), gantry learning online with it allocated within
// half a point of gantry given the whole task list up front, with about
// 60 rebuilds over 10,000 tasks (a 1% threshold: about the same
// allocation, five times the rebuilds).
const RebuildDrift = 0.05

// Learner folds jobs, in the order of their ModifyIndex, into the typical
// set in use (see Learnt). It is a cache of a pure function: a Learner
// that folded a set of jobs holds what LearnerOf of those jobs holds.
type Learner struct {
	work  *Workload
	inUse []Typical
	last  int64 // the largest ModifyIndex folded
	keys  map[string]bool
}

// NewLearner returns a Learner that has folded no job.
func NewLearner() *Learner { return &Learner{work: NewWorkload(), keys: map[string]bool{}} }

// LearnerOf folds jobs (one value per key) in the order of their
// ModifyIndex, ties by key: the same jobs, given in any order, give the
// same Learner.
func LearnerOf(jobs ...*api.Job) *Learner {
	sorted := slices.Clone(jobs)
	slices.SortFunc(sorted, byIndex)
	l := NewLearner()
	for _, j := range sorted {
		l.Add(j)
	}
	return l
}

func byIndex(a, b *api.Job) int {
	if a.ModifyIndex != b.ModifyIndex {
		return cmp.Compare(a.ModifyIndex, b.ModifyIndex)
	}
	return strings.Compare(a.Key(), b.Key())
}

// Learn returns the Learnt of a set of jobs: LearnerOf(jobs...).Learnt().
func Learn(jobs ...*api.Job) *Learnt { return LearnerOf(jobs...).Learnt() }

// Last is the largest ModifyIndex folded.
func (l *Learner) Last() int64 { return l.last }

// Has reports whether a job with this key was folded.
func (l *Learner) Has(key string) bool { return l.keys[key] }

// Add folds a job whose key was not folded yet and whose ModifyIndex is
// at least that of every job folded (to fold a job again, or out of
// order, build a new Learner with LearnerOf, or keep an
// IncrementalLearner, which refolds only from the first change).
func (l *Learner) Add(job *api.Job) {
	l.keys[job.Key()] = true
	l.last = max(l.last, job.ModifyIndex)
	l.work.Observe(job)
	l.inUse = adopt(l.inUse, l.work.Typical())
}

// adopt is the drift rule: the learnt set t replaces the one in use once
// the two are RebuildDrift apart, or when one of them is empty.
func adopt(inUse, t []Typical) []Typical {
	if (len(t) == 0) != (len(inUse) == 0) || len(t) > 0 && Drift(t, inUse) >= RebuildDrift {
		return t
	}
	return inUse
}

// Learnt is the typical set in use, as a value.
func (l *Learner) Learnt() *Learnt {
	return newLearnt(l.last, len(l.work.jobs), l.work.total, slices.Clone(l.inUse))
}

// LearntWith is the Learnt the Learner would give after Add(job), job
// being a job it has not folded, without changing it: what a dry run
// (`job plan`) of a new job plans with, equal to what the worker plans
// with once the job is in the store.
func (l *Learner) LearntWith(job *api.Job) *Learnt {
	jobs, replicas, t := l.work.with(job)
	return newLearnt(max(l.last, job.ModifyIndex), jobs, replicas, slices.Clone(adopt(l.inUse, t)))
}

// with returns the jobs, replicas and typical set the workload would
// count once job is observed (its latest version; a stopped job
// forgotten), without changing w.
func (w *Workload) with(job *api.Job) (int, int, []Typical) {
	counts, total, jobs := make(map[Shape]int, len(w.counts)+1), w.total, len(w.jobs)
	for s, n := range w.counts {
		counts[s] = n
	}
	old, had := w.jobs[job.Key()]
	for _, r := range old {
		if counts[r.Shape] -= r.N; counts[r.Shape] == 0 {
			delete(counts, r.Shape)
		}
		total -= r.N
	}
	if had {
		jobs--
	}
	if !job.Stop {
		if rs := JobShapes(job); len(rs) > 0 {
			jobs++
			for _, r := range rs {
				counts[r.Shape] += r.N
				total += r.N
			}
		}
	}
	return jobs, total, typicalOf(counts, total, Coverage)
}

func newLearnt(index int64, jobs, replicas int, typical []Typical) *Learnt {
	return &Learnt{Version: TypicalVersion(typical), Index: index, Jobs: jobs, Replicas: replicas, Typical: typical}
}

// TypicalVersion is the version of a typical set: "w1-" and the first 16
// hex digits of a SHA-256 over its shapes and weights (the weights' exact
// bits) in order; "w1-empty" for no typical tasks.
func TypicalVersion(typical []Typical) string {
	if len(typical) == 0 {
		return "w1-empty"
	}
	h := sha256.New()
	var b [8]byte
	num := func(v uint64) {
		binary.BigEndian.PutUint64(b[:], v)
		h.Write(b[:])
	}
	for _, t := range typical {
		num(uint64(t.CPU))
		num(uint64(t.Milli))
		num(uint64(t.Count))
		num(uint64(len(t.Model)))
		h.Write([]byte(t.Model))
		num(math.Float64bits(t.Weight))
	}
	return "w1-" + hex.EncodeToString(h.Sum(nil))[:16]
}

// Served is a policy of this package as a long-running scheduler (the
// server's) runs it: the named policy built on a Learnt. It is a value
// with no state of its own: build one per evaluation from the Learnt of
// the store state the evaluation reads, and pass it in the scheduler's
// Request (scheduler.Request.Scorer).
//
//   - It implements scheduler.PlanScorer: every Plan gets a fresh
//     instance of the policy bound to its Cluster, so a plan depends only
//     on the Cluster, the Request and the Learnt, never on plans before
//     it (not even through a random source: random starts from seed 0 in
//     every plan).
//   - GPU work the policies model goes to the policy, its score divided
//     by 101 into [0, 1) so that affinities, spread targets and
//     anti-affinity weigh against it as they do against BestFit's; ties go
//     to the lowest node ID. The rest goes to scheduler.BestFit: jobs that
//     ask for spread, groups with more than one GPU task, MIG instances,
//     and all GPU work while fgd or gantry have no typical set (no job
//     with replicas in the store).
//   - Work without GPUs: fgd and gantry also rate it on nodes with GPUs,
//     by what taking the node's cpu does to its GPUs, on a scale that
//     keeps those nodes after every node without GPUs; elsewhere, and for
//     spread, the core's own rating stands (scheduler.FitCPU). On the
//     trace replay, gantry for GPU work alone, with the core packing
//     CPU-only work onto the same GPU nodes, allocated less GPU than
//     BestFit; with this it allocates more. Other policies leave work
//     without GPUs to the core.
//
// A Served of fgd or gantry remembers the policy instance it handed out
// for the last Cluster (the instance memoizes ratings of node states, a
// pure function of them and of the typical set): planning again on the
// same Cluster, as a server does evaluation after evaluation, keeps those
// ratings instead of rating every node again. What it hands out depends
// on the Learnt alone. Other policies (random draws from a source of its
// own) get a fresh instance every plan.
type Served struct {
	name   string
	needs  bool // the policy needs typical tasks
	learnt *Learnt

	mu    sync.Mutex
	lastC weak.Pointer[scheduler.Cluster]
	last  scheduler.GPUScorer
}

// GPUSampleSize is the scheduler's Config.GPUSampleSize a server uses
// with the named policy: fgd and gantry rate every feasible GPU node (-1),
// as their rating of fragmentation is what they are for, where the GPU
// index's few tightest nodes (0: scheduler.DefaultGPUSampleSize) are best
// fit already. Replayed through the server's configuration (seeds 42–51),
// gantry rating 16 sampled nodes fell behind best fit on the cpu250 list
// (85.06% against 85.55%); rating every node it is ahead on every seed of
// both lists, at about half the GPU placements per CPU-second on 10,000
// nodes (BenchmarkGPUPolicyPlace).
func GPUSampleSize(name string) int {
	if name == FGD || name == Gantry {
		return -1
	}
	return 0
}

// Serve returns the named policy (one of Names) built on l (nil: nothing
// learnt).
func Serve(name string, l *Learnt) (*Served, error) {
	if !slices.Contains(Names, name) {
		return nil, fmt.Errorf("unknown GPU policy %q (known: %s)", name, strings.Join(Names, ", "))
	}
	if l == nil {
		l = newLearnt(0, 0, 0, nil)
	}
	return &Served{name: name, needs: name == FGD || name == Gantry, learnt: l}, nil
}

// Name is the policy's name.
func (s *Served) Name() string { return s.name }

// Learnt is the workload the policy is built on.
func (s *Served) Learnt() *Learnt { return s.learnt }

// ForPlan implements scheduler.PlanScorer.
func (s *Served) ForPlan(c *scheduler.Cluster) scheduler.GPUScorer {
	if !s.needs {
		return s.build()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	wc := weak.Make(c)
	if s.last != nil && s.lastC == wc {
		return s.last
	}
	s.lastC, s.last = wc, s.build()
	return s.last
}

// build makes the policy instance for one Cluster.
func (s *Served) build() scheduler.GPUScorer {
	if s.needs && len(s.learnt.Typical) == 0 {
		return scheduler.BestFit{}
	}
	p, err := New(s.name, Env{Typical: s.learnt.Typical})
	if err != nil {
		return scheduler.BestFit{}
	}
	if s.needs {
		return servedCPU{served{p}}
	}
	return served{p}
}

// ScoreGPU implements scheduler.GPUScorer for a caller that does not ask
// ForPlan first: it rates like scheduler.BestFit.
func (s *Served) ScoreGPU(n *scheduler.NodeState, ask *scheduler.Ask, c *scheduler.Choice) (float64, bool) {
	return scheduler.BestFit{}.ScoreGPU(n, ask, c)
}

// served is a policy instance as Served hands it to the core: GPU work
// that the policy models goes to it, scores brought into [0, 1); the rest
// to scheduler.BestFit.
type served struct{ p Scorer }

func (s served) ScoreGPU(n *scheduler.NodeState, ask *scheduler.Ask, c *scheduler.Choice) (float64, bool) {
	if ask.Spread || len(ask.GPU) != 1 || ask.GPU[0].Form == gpu.FormMIG {
		return scheduler.BestFit{}.ScoreGPU(n, ask, c)
	}
	v, ok := s.p.ScoreGPU(n, ask, c)
	return v / (maxScore + 1), ok
}

// servedCPU also rates work without GPUs: on nodes with GPUs by the
// policy (fgd and gantry judge what taking the node's cpu does to its
// GPUs), mapped into (−1, 0) so that such nodes still come after those
// without GPUs; elsewhere, and for spread, as the core would
// (scheduler.FitCPU).
type servedCPU struct{ served }

func (s servedCPU) ScoreCPU(n *scheduler.NodeState, ask *scheduler.Ask) (float64, bool) {
	if ask.Spread || len(n.GPUs()) == 0 {
		return scheduler.FitCPU(n, ask), true
	}
	v, ok := s.p.ScoreCPU(n, ask)
	return math.Atan(v/50)/math.Pi - 0.5, ok
}

var (
	_ scheduler.PlanScorer = (*Served)(nil)
	_ scheduler.CPUScorer  = servedCPU{}
)
