package policy

import (
	"slices"

	"github.com/gantryhq/gantry/internal/gpu"
	"github.com/gantryhq/gantry/internal/scheduler"
)

// nodeFrag caches each node's fragmentation and model class, keyed by
// NodeState.Gen.
type nodeFrag struct {
	m     *FragModel
	nodes []fragAt // by node index
	free  []int
}

type fragAt struct {
	gen   uint64 // Gen + 1; 0: not computed
	class int
	frag  float64
}

func (f *nodeFrag) at(n *scheduler.NodeState) *fragAt {
	i := n.Index()
	if i >= len(f.nodes) {
		f.nodes = slices.Grow(f.nodes, i+1-len(f.nodes))[:i+1]
	}
	e := &f.nodes[i]
	if e.gen != n.Gen()+1 {
		var model string
		f.free, model = NodeFree(n, f.free)
		cpu, _ := n.CPU()
		e.class = f.m.Class(model)
		e.frag = f.m.Frag(e.class, cpu, f.free)
		e.gen = n.Gen() + 1
	}
	return e
}

// shapeMemo caches a policy's integer score and device pick per node and
// task shape, keyed by NodeState.Gen: nodes that did not change since the
// same shape was last scored are not scored again.
type shapeMemo struct {
	ids     map[Shape]int
	tab     [][]memoAt // [shape][node index]
	lastAsk *scheduler.Ask
	lastID  int
	last    Shape
}

type memoAt struct {
	gen   uint64 // Gen + 1; 0: not computed
	score int64
	pick  int
}

func (m *shapeMemo) at(n *scheduler.NodeState, ask *scheduler.Ask) (*memoAt, Shape) {
	if m.ids == nil {
		m.ids = map[Shape]int{}
	}
	s := ShapeOf(ask)
	if ask != m.lastAsk || s != m.last {
		id, ok := m.ids[s]
		if !ok {
			id = len(m.tab)
			m.ids[s] = id
			m.tab = append(m.tab, nil)
		}
		m.lastAsk, m.lastID, m.last = ask, id, s
	}
	row := m.tab[m.lastID]
	i := n.Index()
	if i >= len(row) {
		row = slices.Grow(row, i+1-len(row))[:i+1]
		m.tab[m.lastID] = row
	}
	return &row[i], s
}

// fgd (fragmentation gradient descent): the node, and for a share the
// GPU, where placing the task makes the node's fragmentation against the
// typical tasks grow least. Its score is the study's: the framework score
// 100·sigmoid((F_before − F_after)/1000), truncated to an integer; GPU
// ties go to the lowest index.
type fgd struct {
	base
	frag nodeFrag
	memo shapeMemo
}

func newFGD(b base) *fgd {
	return &fgd{base: b, frag: nodeFrag{m: NewFragModel(b.env.Typical)}}
}

func fgdScore(before, after float64) int64 {
	return int64(sigmoid((before-after)/1000) * maxScore)
}

// score computes the node's integer score for shape s and the GPU a share
// takes (-1 otherwise).
func (p *fgd) score(n *scheduler.NodeState, s Shape, share bool) (int64, int) {
	e := p.frag.at(n)
	cpu, _ := n.CPU()
	cpu -= s.CPU
	p.free, _ = NodeFree(n, p.free)
	if share {
		best, pick := int64(-1), -1
		devs := n.GPUs()
		for i := range devs {
			d := &devs[i]
			if !d.Healthy || d.MIGEnabled || d.FreeMilli < s.Milli {
				continue
			}
			p.tmp = append(p.tmp[:0], p.free...)
			p.tmp[i] -= s.Milli
			if sc := fgdScore(e.frag, p.frag.m.Frag(e.class, cpu, p.tmp)); sc > best {
				best, pick = sc, i
			}
		}
		return max(best, 0), pick
	}
	p.tmp = append(p.tmp[:0], p.free...)
	take := s.Count
	for i := range p.tmp {
		if take > 0 && p.tmp[i] == 1000 {
			p.tmp[i] = 0
			take--
		}
	}
	return fgdScore(e.frag, p.frag.m.Frag(e.class, cpu, p.tmp)), -1
}

func (p *fgd) cached(n *scheduler.NodeState, ask *scheduler.Ask, share bool) (int64, int) {
	m, s := p.memo.at(n, ask)
	if m.gen != n.Gen()+1 {
		m.score, m.pick = p.score(n, s, share)
		m.gen = n.Gen() + 1
	}
	return m.score, m.pick
}

func (p *fgd) ScoreGPU(n *scheduler.NodeState, ask *scheduler.Ask, c *scheduler.Choice) (float64, bool) {
	share := ask.GPU[0].Form == gpu.FormShare
	score, pick := p.cached(n, ask, share)
	if share && pick >= 0 {
		c.Pick(0, pick)
	}
	return p.tie(n, score), true
}

func (p *fgd) ScoreCPU(n *scheduler.NodeState, ask *scheduler.Ask) (float64, bool) {
	score, _ := p.cached(n, ask, false)
	return p.tie(n, score), true
}
