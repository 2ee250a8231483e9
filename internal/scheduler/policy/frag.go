package policy

import (
	"cmp"
	"slices"

	"github.com/gantryhq/gantry/internal/gpu"
	"github.com/gantryhq/gantry/internal/scheduler"
)

// Shape is a task's demand as the fragmentation model sees it: CPU in
// millicores, Count GPUs of Milli thousandths each (Milli 0 and Count 0
// for work without GPUs) and the GPU model constraint as written ("" for
// any, "V100M16|V100M32" for either).
type Shape struct {
	CPU   int
	Milli int
	Count int
	Model string
}

// GPUMilli is the shape's total GPU demand in thousandths of a GPU.
func (s Shape) GPUMilli() int { return s.Milli * s.Count }

func (s Shape) less(o Shape) int {
	return cmp.Or(cmp.Compare(s.CPU, o.CPU), cmp.Compare(s.Milli, o.Milli),
		cmp.Compare(s.Count, o.Count), cmp.Compare(s.Model, o.Model))
}

// ShapeOf reads the shape of a replica from the scheduler's Ask. Only the
// first GPU ask counts (trace tasks have one task and at most one GPU
// request).
func ShapeOf(ask *scheduler.Ask) Shape {
	s := Shape{CPU: ask.CPU}
	if len(ask.GPU) > 0 {
		a := &ask.GPU[0]
		s.Milli, s.Count, s.Model = a.Milli, a.Count, a.Model
	}
	return s
}

// Typical is one of the most common task shapes, with its share of the
// typical set (the weights of a set sum to 1).
type Typical struct {
	Shape
	Weight float64
}

// TypicalTasks returns the most common shapes among tasks, most frequent
// first (equal counts: the larger shape by CPU, milli, count, model
// first), taken until they cover at least coverage (0.95 in the study) of
// the tasks, with their weights renormalised to sum to 1.
func TypicalTasks(tasks []Shape, coverage float64) []Typical {
	counts := map[Shape]int{}
	for _, s := range tasks {
		counts[s]++
	}
	return typicalOf(counts, len(tasks), coverage)
}

// typicalOf is TypicalTasks over counts of total tasks.
func typicalOf(counts map[Shape]int, total int, coverage float64) []Typical {
	t, _ := typicalCut(counts, total, coverage)
	return t
}

// typicalCut is typicalOf, and the count of the most frequent shape it
// left out (0: none left out).
func typicalCut(counts map[Shape]int, total int, coverage float64) ([]Typical, int) {
	out := make([]Typical, 0, len(counts))
	for s, n := range counts {
		out = append(out, Typical{Shape: s, Weight: float64(n)})
	}
	slices.SortFunc(out, func(a, b Typical) int {
		if a.Weight != b.Weight {
			return cmp.Compare(b.Weight, a.Weight)
		}
		return b.Shape.less(a.Shape)
	})
	cum, k := 0.0, 0
	for k < len(out) && cum < coverage*float64(total) {
		cum += out[k].Weight
		k++
	}
	next := 0
	if k < len(out) {
		next = int(out[k].Weight)
	}
	out = out[:k]
	for i := range out {
		out[i].Weight /= cum
	}
	return out, next
}

// FragModel measures GPU fragmentation against a set of typical tasks, as
// the FGD study defines it. For each typical task of weight w and a node:
// when the task fits the node now, the free milli of each GPU too small
// for one of its GPUs counts as fragment (× w); when it does not fit (too
// few GPUs with room, too little CPU, a GPU model it does not accept, or
// it asks for no GPU at all), every idle milli of the node counts (× w).
// A node's fragmentation is the sum over the typical tasks.
type FragModel struct {
	typ    []fragTask
	models map[string]int // GPU model → class
}

type fragTask struct {
	Typical
	access []bool // by model class: the task accepts the model
}

// NewFragModel builds the model for a typical set.
func NewFragModel(typical []Typical) *FragModel {
	m := &FragModel{models: map[string]int{}}
	for _, t := range typical {
		m.typ = append(m.typ, fragTask{Typical: t})
	}
	return m
}

// Typical returns the typical set the model measures against.
func (m *FragModel) Typical() []Typical {
	out := make([]Typical, len(m.typ))
	for i := range m.typ {
		out[i] = m.typ[i].Typical
	}
	return out
}

// Class returns the dense class number of a GPU model, registering it.
func (m *FragModel) Class(model string) int {
	if c, ok := m.models[model]; ok {
		return c
	}
	c := len(m.models)
	m.models[model] = c
	for i := range m.typ {
		t := &m.typ[i]
		t.access = append(t.access, t.Count > 0 && gpu.MatchModel(t.Model, model))
	}
	return c
}

// Frag is the fragmentation, in milli-GPU, of a node of model class class
// with cpuFree millicores free and free[i] milli free on GPU i.
func (m *FragModel) Frag(class, cpuFree int, free []int) float64 {
	idle := 0
	for _, v := range free {
		idle += v
	}
	if idle == 0 {
		return 0
	}
	fi := float64(idle)
	f := 0.0
	for i := range m.typ {
		t := &m.typ[i]
		if !t.access[class] || cpuFree < t.CPU {
			f += t.Weight * fi
			continue
		}
		n, small := 0, 0
		for _, v := range free {
			if v >= t.Milli {
				n++
			} else {
				small += v
			}
		}
		if n >= t.Count {
			f += t.Weight * float64(small)
		} else {
			f += t.Weight * fi
		}
	}
	return f
}

// NodeFree fills buf with the free milli of each of the node's GPUs, in
// device order (0 for a GPU that is unhealthy or in MIG mode, which
// neither shares nor goes whole), and returns it with the node's model
// (of its first GPU).
func NodeFree(n *scheduler.NodeState, buf []int) ([]int, string) {
	buf = buf[:0]
	devs := n.GPUs()
	model := ""
	for i := range devs {
		d := &devs[i]
		if i == 0 {
			model = d.Model
		}
		free := 0
		if d.Healthy && !d.MIGEnabled {
			free = max(d.FreeMilli, 0)
		}
		buf = append(buf, free)
	}
	return buf, model
}
