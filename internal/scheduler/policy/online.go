package policy

import (
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

// Online is a policy of this package set up for a long-running scheduler
// (the server's): it learns the typical tasks from the jobs it is told
// about (a Workload) and rates GPU work with the named policy built on
// them.
//
//   - It implements scheduler.PlanScorer. Each Plan gets an instance bound
//     to its Cluster; the instance of the last Cluster is kept (weakly) and
//     reused while that Cluster and the typical set stay the same, so the
//     per-node caches of fgd and gantry last across the plans of a server's
//     working cluster. A Cluster rebuilt from a snapshot, or a changed
//     typical set, gets a fresh instance: caches are never shared between
//     Clusters, and the policy changes between plans, never during one.
//   - The typical set in use is replaced by the learnt one (and instances
//     rebuilt) only once the two are RebuildDrift apart (Drift), so that a
//     rebuild, which empties the per-node caches, follows a real change of
//     the workload and not every job. The set in use depends on the jobs
//     observed and their order (the same sequence, the same plans); Reset
//     starts from the learnt set of the jobs given.
//   - GPU work the policies model goes to the policy, its score divided
//     by 101 into [0, 1) so that affinities, spread targets and
//     anti-affinity weigh against it as they do against BestFit's; ties go
//     to the lowest node ID. The rest goes to scheduler.BestFit: jobs that
//     ask for spread, groups with more than one GPU task, MIG instances,
//     and all GPU work while fgd or gantry have no typical set yet (no job
//     observed).
//   - Work without GPUs: fgd and gantry also rate it on nodes with GPUs,
//     by what taking the node's cpu does to its GPUs, on a scale that
//     keeps those nodes after every node without GPUs; elsewhere, and for
//     spread, the core's own rating stands (scheduler.FitCPU). On the
//     trace replay, gantry for GPU work alone, with the core packing
//     CPU-only work onto the same GPU nodes, allocated less GPU than
//     BestFit; with this it allocates more. Other policies leave work
//     without GPUs to the core.
//
// Observe, Forget, Typical and ForPlan may be called from several
// goroutines.
type Online struct {
	name  string
	needs bool // the policy needs typical tasks

	mu      sync.Mutex
	work    *Workload
	dirty   bool      // work changed since typical was read
	typical []Typical // what instances are built with
	version uint64    // changes with typical
	last    struct {
		c       weak.Pointer[scheduler.Cluster]
		version uint64
		sc      scheduler.GPUScorer
	}
}

// RebuildDrift is how far (Drift) the learnt typical set must move from
// the one in use before Online replaces it: 5% of the replicas changing
// shape. On the trace replay (default and cpu250 lists, three seeds),
// gantry learning online with it allocated within half a point of gantry
// given the whole task list up front, with about 60 rebuilds over 10,000
// tasks (a 1% threshold: about the same allocation, five times the
// rebuilds).
const RebuildDrift = 0.05

// NewOnline returns an Online scorer for the named policy (one of Names)
// that has observed no job yet.
func NewOnline(name string) (*Online, error) {
	if !slices.Contains(Names, name) {
		return nil, fmt.Errorf("unknown GPU policy %q (known: %s)", name, strings.Join(Names, ", "))
	}
	return &Online{name: name, needs: name == FGD || name == Gantry, work: NewWorkload()}, nil
}

// Name is the policy's name.
func (o *Online) Name() string { return o.name }

// Observe counts submitted jobs (each as its latest version; a stopped
// job is forgotten). See Workload.Observe.
func (o *Online) Observe(jobs ...*api.Job) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, j := range jobs {
		if o.work.Observe(j) {
			o.dirty = true
		}
	}
}

// Forget stops counting the job with this key (namespace/name), for a job
// that was removed.
func (o *Online) Forget(key string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.work.Forget(key) {
		o.dirty = true
	}
}

// Reset forgets every job and counts these instead, and uses their
// typical set from the next plan on: what a new leader does with the jobs
// in the store.
func (o *Online) Reset(jobs ...*api.Job) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.work = NewWorkload()
	for _, j := range jobs {
		o.work.Observe(j)
	}
	o.typical, o.dirty = o.work.Typical(), false
	o.version++
}

// Typical returns the typical set the next plan uses.
func (o *Online) Typical() []Typical {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.refresh()
	return slices.Clone(o.typical)
}

// refresh adopts the learnt typical set if it drifted far enough from
// the one in use (or one of them is empty).
func (o *Online) refresh() {
	if !o.dirty {
		return
	}
	o.dirty = false
	t := o.work.Typical()
	if (len(t) == 0) != (len(o.typical) == 0) || len(t) > 0 && Drift(t, o.typical) >= RebuildDrift {
		o.typical = t
		o.version++
	}
}

// ForPlan implements scheduler.PlanScorer.
func (o *Online) ForPlan(c *scheduler.Cluster) scheduler.GPUScorer {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.refresh()
	wc := weak.Make(c)
	if o.last.sc != nil && o.last.c == wc && o.last.version == o.version {
		return o.last.sc
	}
	var sc scheduler.GPUScorer = scheduler.BestFit{}
	if !o.needs || len(o.typical) > 0 {
		if p, err := New(o.name, Env{Typical: o.typical}); err == nil {
			sc = served{p}
			if o.needs {
				sc = servedCPU{served{p}}
			}
		}
	}
	o.last.c, o.last.version, o.last.sc = wc, o.version, sc
	return sc
}

// ScoreGPU implements scheduler.GPUScorer for a caller that does not ask
// ForPlan first: it rates like scheduler.BestFit.
func (o *Online) ScoreGPU(n *scheduler.NodeState, ask *scheduler.Ask, c *scheduler.Choice) (float64, bool) {
	return scheduler.BestFit{}.ScoreGPU(n, ask, c)
}

// served is a policy instance as Online hands it to the core: GPU work
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
	_ scheduler.PlanScorer = (*Online)(nil)
	_ scheduler.CPUScorer  = servedCPU{}
)
