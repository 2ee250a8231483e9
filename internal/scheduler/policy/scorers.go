package policy

import (
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/gantryhq/gantry/internal/gpu"
	"github.com/gantryhq/gantry/internal/scheduler"
)

// Names of the policies, in the order of the study's figures, then Gantry's.
const (
	Random     = "random"
	DotProd    = "dotprod"
	Clustering = "clustering"
	Packing    = "packing"
	BestFit    = "bestfit"
	FGD        = "fgd"
	Gantry     = "gantry"
)

// Names lists every policy.
var Names = []string{Random, DotProd, Clustering, Packing, BestFit, FGD, Gantry}

// Published lists the six policies of the FGD study.
var Published = Names[:6]

// Label is the policy's name in the study's result files ("06-FGD");
// Gantry's own is "07-Gantry".
func Label(name string) string {
	switch name {
	case Random:
		return "01-Random"
	case DotProd:
		return "02-DotProd"
	case Clustering:
		return "03-GpuClustering"
	case Packing:
		return "04-GpuPacking"
	case BestFit:
		return "05-BestFit"
	case FGD:
		return "06-FGD"
	case Gantry:
		return "07-Gantry"
	}
	return name
}

// Env is what a policy may know besides the cluster's current state: the
// seed of its random source, the typical tasks of the original task list
// (never the tasks still to come) and the priority among nodes that ties
// are broken by.
type Env struct {
	Seed    uint64
	Typical []Typical
	// Rank orders nodes (by name) for ties: among nodes of equal integer
	// score the lowest rank wins, as the study's scheduler took the node
	// whose randomly prefixed name sorted first. Nodes it does not list
	// rank after those it does, by name.
	Rank map[string]int
}

// Scorer is a GPU placement policy: a scheduler.GPUScorer that also rates
// nodes for work without GPUs.
type Scorer interface {
	scheduler.GPUScorer
	scheduler.CPUScorer
}

// New returns a fresh instance of the named policy.
func New(name string, env Env) (Scorer, error) {
	b := newBase(env)
	switch name {
	case Random:
		return &random{b}, nil
	case DotProd:
		return &dotProd{b}, nil
	case Clustering:
		return &clustering{base: b}, nil
	case Packing:
		return &packing{b}, nil
	case BestFit:
		return &bestFit{b}, nil
	case FGD:
		if len(env.Typical) == 0 {
			return nil, fmt.Errorf("policy fgd needs the typical tasks of the workload")
		}
		return newFGD(b), nil
	case Gantry:
		if len(env.Typical) == 0 {
			return nil, fmt.Errorf("policy gantry needs the typical tasks of the workload")
		}
		return newGantry(b), nil
	}
	return nil, fmt.Errorf("unknown policy %q (known: %s)", name, strings.Join(Names, ", "))
}

// Scale constants of the study's scorers: the largest node it normalises
// by, in millicores and milli-GPU.
const (
	maxSpecCPU = 128000
	maxSpecGPU = 8000
	maxScore   = 100 // the scheduling framework's score range is 0..100
)

// base holds what every policy shares: its random source, the node
// ranks that break ties, buffers for the free milli of a node's GPUs.
type base struct {
	env   Env
	rng   *rand.Rand
	ranks []int // by node index, rank+1; 0: not looked up
	free  []int
	tmp   []int
}

func newBase(env Env) base {
	return base{env: env, rng: rand.New(rand.NewPCG(env.Seed, 0x9e3779b97f4a7c15))}
}

// tie turns an integer framework score into one the core compares: the
// score plus a fraction below one half that is larger the lower the
// node's rank, so that among nodes of equal integer score the one of
// lowest rank wins.
func (b *base) tie(n *scheduler.NodeState, score int64) float64 {
	i := n.Index()
	if i >= len(b.ranks) {
		b.ranks = slices.Grow(b.ranks, i+1-len(b.ranks))[:i+1]
	}
	r := b.ranks[i]
	if r == 0 {
		if v, ok := b.env.Rank[n.Node().Name]; ok {
			r = v + 1
		} else {
			r = len(b.env.Rank) + 1 + i
		}
		b.ranks[i] = r
	}
	return float64(score) + 0.5/float64(r+1)
}

// gpuLeft is the sum of the free milli of the node's GPUs.
func gpuLeft(free []int) int {
	t := 0
	for _, v := range free {
		t += v
	}
	return t
}

// bestFitGPU picks, for a share, the eligible GPU with the least free milli
// (the first on ties): the study's "best" GPU selection.
func bestFitGPU(devs []gpu.Device, el []int) int {
	best := -1
	for _, i := range el {
		if best < 0 || devs[i].FreeMilli < devs[best].FreeMilli {
			best = i
		}
	}
	return best
}

// pickBest records the study's default GPU choice: best fit for a share,
// and for whole GPUs the core's default (the lowest free indices on these
// nodes, as the study's exclusive allocation takes).
func pickBest(n *scheduler.NodeState, ask *scheduler.Ask, c *scheduler.Choice) {
	if len(ask.GPU) == 1 && ask.GPU[0].Form == gpu.FormShare {
		if i := bestFitGPU(n.GPUs(), c.Eligible[0]); i >= 0 {
			c.Pick(0, i)
		}
	}
}

// random: a random feasible node; on it a random GPU with room for a
// share.
type random struct{ base }

func (p *random) ScoreGPU(n *scheduler.NodeState, ask *scheduler.Ask, c *scheduler.Choice) (float64, bool) {
	if len(ask.GPU) == 1 && ask.GPU[0].Form == gpu.FormShare && len(c.Eligible[0]) > 0 {
		el := c.Eligible[0]
		c.Pick(0, el[p.rng.IntN(len(el))])
	}
	return p.rng.Float64(), true
}

func (p *random) ScoreCPU(*scheduler.NodeState, *scheduler.Ask) (float64, bool) {
	return p.rng.Float64(), true
}

// dotProd (Tetris): the node whose free (cpu, GPU) vector, scaled by the
// largest node, has the smallest dot product with the request's; best-fit
// GPU.
type dotProd struct{ base }

func (p *dotProd) score(n *scheduler.NodeState, ask *scheduler.Ask) int64 {
	cpuFree, _ := n.CPU()
	p.free, _ = NodeFree(n, p.free)
	s := ShapeOf(ask)
	dot := float64(cpuFree)/maxSpecCPU*float64(s.CPU)/maxSpecCPU +
		float64(gpuLeft(p.free))/maxSpecGPU*float64(s.GPUMilli())/maxSpecGPU
	return int64(maxScore * (1 - dot/2))
}

func (p *dotProd) ScoreGPU(n *scheduler.NodeState, ask *scheduler.Ask, c *scheduler.Choice) (float64, bool) {
	pickBest(n, ask, c)
	return p.tie(n, p.score(n, ask)), true
}

func (p *dotProd) ScoreCPU(n *scheduler.NodeState, ask *scheduler.Ask) (float64, bool) {
	return p.tie(n, p.score(n, ask)), true
}

// clustering (GPU clustering): nodes that already run only tasks of the
// same kind (shared GPU, 1-GPU, 2-GPU …) first, then nodes that run that
// kind among others, then idle nodes, then the rest; within a band the
// node with less free GPU first. Work without GPUs goes anywhere.
type clustering struct {
	base
	kinds []kindsAt // by node index
}

type kindsAt struct {
	gen  uint64 // NodeState.Gen + 1; 0: not computed
	mask uint32 // bit 0: shared-GPU tasks; bit k: k-GPU tasks
}

// kindBit is the bit of a task kind: 0 for a share, k for k whole GPUs.
func kindBit(form gpu.Form, count int) uint32 {
	if form == gpu.FormShare {
		return 1
	}
	return 1 << min(max(count, 1), 31)
}

func (p *clustering) kindsOf(n *scheduler.NodeState) uint32 {
	i := n.Index()
	if i >= len(p.kinds) {
		p.kinds = slices.Grow(p.kinds, i+1-len(p.kinds))[:i+1]
	}
	k := &p.kinds[i]
	if k.gen == n.Gen()+1 {
		return k.mask
	}
	var mask uint32
	for _, a := range n.Allocs() {
		for _, r := range a.Resources {
			switch {
			case r.GPU == nil:
			case r.GPU.Share != nil:
				mask |= kindBit(gpu.FormShare, 1)
			case len(r.GPU.Devices) > 0:
				mask |= kindBit(gpu.FormWhole, len(r.GPU.Devices))
			}
		}
	}
	*k = kindsAt{gen: n.Gen() + 1, mask: mask}
	return mask
}

func (p *clustering) ScoreGPU(n *scheduler.NodeState, ask *scheduler.Ask, c *scheduler.Choice) (float64, bool) {
	pickBest(n, ask, c)
	a := &ask.GPU[0]
	p.free, _ = NodeFree(n, p.free)
	s := int64(maxScore / 4 * (maxSpecGPU - gpuLeft(p.free)) / maxSpecGPU)
	mask := p.kindsOf(n)
	switch bit := kindBit(a.Form, a.Count); {
	case mask&bit != 0 && bits.OnesCount32(mask) == 1:
		s += maxScore * 3 / 4
	case mask&bit != 0:
		s += maxScore * 2 / 4
	case mask == 0:
		s += maxScore / 4
	}
	return p.tie(n, s), true
}

func (p *clustering) ScoreCPU(n *scheduler.NodeState, _ *scheduler.Ask) (float64, bool) {
	return p.tie(n, 0), true
}

// packing (GPU packing): GPUs already shared first (the fuller the
// better), then free GPUs on nodes already in use (the fewer the better),
// then idle nodes (the smaller the better); best-fit GPU. Work without
// GPUs goes anywhere.
type packing struct{ base }

func (p *packing) ScoreGPU(n *scheduler.NodeState, ask *scheduler.Ask, c *scheduler.Choice) (float64, bool) {
	pickBest(n, ask, c)
	p.free, _ = NodeFree(n, p.free)
	s := ShapeOf(ask)
	fully := 0
	for _, v := range p.free {
		if v == 1000 {
			fully++
		}
	}
	if fully == len(p.free) {
		return p.tie(n, int64(max(maxScore/3-fully, fully))), true
	}
	// GPUs the task would use: the least free ones that have room.
	p.tmp = append(p.tmp[:0], p.free...)
	slices.Sort(p.tmp)
	need, fullyUsed, ratio := s.Count, 0, 0
	for _, v := range p.tmp {
		if need == 0 {
			break
		}
		if s.Milli <= v {
			need--
			if v == 1000 {
				fullyUsed++
			}
			ratio += v * 100 / 1000
		}
	}
	if need != 0 {
		return p.tie(n, 0), true
	}
	if fullyUsed > 0 {
		return p.tie(n, int64(max(maxScore/2-fullyUsed, maxScore/3))), true
	}
	return p.tie(n, int64(max(maxScore-ratio/10, maxScore/2))), true
}

func (p *packing) ScoreCPU(n *scheduler.NodeState, _ *scheduler.Ask) (float64, bool) {
	return p.tie(n, 0), true
}

// bestFit: the node left with the least free CPU (scaled by 128 cores)
// and GPU (scaled by 8 GPUs), weighted half and half; best-fit GPU.
type bestFit struct{ base }

func (p *bestFit) score(n *scheduler.NodeState, ask *scheduler.Ask) int64 {
	cpuFree, _ := n.CPU()
	p.free, _ = NodeFree(n, p.free)
	s := ShapeOf(ask)
	left := float64(cpuFree-s.CPU)/maxSpecCPU*0.5 + float64(gpuLeft(p.free)-s.GPUMilli())/maxSpecGPU*0.5
	return int64((1 - left) * maxScore)
}

func (p *bestFit) ScoreGPU(n *scheduler.NodeState, ask *scheduler.Ask, c *scheduler.Choice) (float64, bool) {
	pickBest(n, ask, c)
	return p.tie(n, p.score(n, ask)), true
}

func (p *bestFit) ScoreCPU(n *scheduler.NodeState, ask *scheduler.Ask) (float64, bool) {
	return p.tie(n, p.score(n, ask)), true
}

func sigmoid(x float64) float64 { return 1 / (1 + math.Exp(-x)) }
