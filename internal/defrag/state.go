package defrag

import (
	"errors"
	"fmt"
	"slices"

	"github.com/gantryhq/gantry/internal/gpu"
)

// Whole is the milli-GPU of a GPU held whole.
const Whole = 1000

// GPU is one device of a node.
type GPU struct {
	Model string
	Free  int  // free milli-GPU: 1000 when idle
	Users int  // items holding it
	Whole bool // held whole by one item
	MIG   bool // in MIG mode: takes neither shares nor whole items here
}

// Node is a node's free CPU (millicores) and memory (MiB) and its GPUs.
type Node struct {
	Name   string
	CPU    int
	Memory int
	GPUs   []GPU
}

// Item is a piece of placed work: one share of one GPU (Milli below 1000,
// one entry in GPUs), whole GPUs (Milli 1000, one entry per GPU), or work
// without GPUs (Milli 0, no GPUs).
type Item struct {
	Node   int   // index in State.Nodes; -1 once removed
	GPUs   []int // device indices on Node
	Milli  int   // per GPU
	CPU    int
	Memory int
	Model  string // allowed GPU models ("" any), as gpu.MatchModel reads them
	// Pinned items never move: MIG instances, gang members, work whose
	// owner does not allow migration.
	Pinned bool
	// Moved is when the item last moved; Ever reports whether it has.
	Moved int64
	Ever  bool
}

// Ask is the task to make room for.
type Ask struct {
	CPU    int
	Memory int
	Count  int    // GPUs: 1 for a share
	Milli  int    // per GPU: below 1000 for a share, 1000 for whole GPUs
	Model  string // allowed GPU models, "" any
}

func (a Ask) share() bool { return a.Milli < Whole }

// State is the model a plan is made against. Items are referred to by
// their index, which never changes (removed items keep their slot).
type State struct {
	Nodes []Node
	Items []Item
	byGPU [][][]int     // [node][gpu] → items on it
	cpu   map[int][]int // node → items without GPUs on it
	match map[[2]string]bool
}

// NewState builds a state of nodes with nothing placed. The nodes are
// copied.
func NewState(nodes []Node) *State {
	s := &State{cpu: map[int][]int{}, match: map[[2]string]bool{}}
	for _, n := range nodes {
		n.GPUs = slices.Clone(n.GPUs)
		s.Nodes = append(s.Nodes, n)
		s.byGPU = append(s.byGPU, make([][]int, len(n.GPUs)))
	}
	return s
}

// Errors of Place and Apply.
var (
	ErrOver    = errors.New("over-allocated")
	ErrIllegal = errors.New("breaks a placement rule")
)

func (s *State) matches(pattern, model string) bool {
	k := [2]string{pattern, model}
	v, ok := s.match[k]
	if !ok {
		v = gpu.MatchModel(pattern, model)
		s.match[k] = v
	}
	return v
}

// check reports why it cannot take shape (cpu, mem, milli, model) on
// GPUs gs of node n, or nil.
func (s *State) check(n int, gs []int, milli, cpu, mem int, model string) error {
	if n < 0 || n >= len(s.Nodes) {
		return fmt.Errorf("node %d: %w", n, ErrIllegal)
	}
	nd := &s.Nodes[n]
	if nd.CPU < cpu || nd.Memory < mem {
		return fmt.Errorf("node %s: %d CPU and %d MiB asked, %d and %d free: %w", nd.Name, cpu, mem, nd.CPU, nd.Memory, ErrOver)
	}
	if milli == 0 && len(gs) == 0 {
		return nil // work without GPUs
	}
	if milli < Whole && len(gs) != 1 || milli <= 0 || milli > Whole {
		return fmt.Errorf("node %s: %d GPUs of %d milli: %w", nd.Name, len(gs), milli, ErrIllegal)
	}
	for i, g := range gs {
		if g < 0 || g >= len(nd.GPUs) || slices.Contains(gs[:i], g) {
			return fmt.Errorf("node %s: GPU %d: %w", nd.Name, g, ErrIllegal)
		}
		d := &nd.GPUs[g]
		switch {
		case d.MIG:
			return fmt.Errorf("node %s GPU %d is in MIG mode: %w", nd.Name, g, ErrIllegal)
		case !s.matches(model, d.Model):
			return fmt.Errorf("node %s GPU %d is a %s, %q asked: %w", nd.Name, g, d.Model, model, ErrIllegal)
		case d.Whole || d.Free < milli || milli == Whole && d.Users > 0:
			return fmt.Errorf("node %s GPU %d: %d milli asked, %d free: %w", nd.Name, g, milli, d.Free, ErrOver)
		}
	}
	return nil
}

func (s *State) take(it *Item, id int) {
	nd := &s.Nodes[it.Node]
	nd.CPU -= it.CPU
	nd.Memory -= it.Memory
	if len(it.GPUs) == 0 {
		s.cpu[it.Node] = insert(s.cpu[it.Node], id)
	}
	for _, g := range it.GPUs {
		d := &nd.GPUs[g]
		d.Users++
		if !d.MIG {
			d.Free -= it.Milli
			d.Whole = it.Milli == Whole
		}
		s.byGPU[it.Node][g] = insert(s.byGPU[it.Node][g], id)
	}
}

func (s *State) give(it *Item, id int) {
	nd := &s.Nodes[it.Node]
	nd.CPU += it.CPU
	nd.Memory += it.Memory
	if len(it.GPUs) == 0 {
		if l := remove(s.cpu[it.Node], id); l == nil {
			delete(s.cpu, it.Node)
		} else {
			s.cpu[it.Node] = l
		}
	}
	for _, g := range it.GPUs {
		d := &nd.GPUs[g]
		d.Users--
		if !d.MIG {
			d.Free += it.Milli
			d.Whole = false
		}
		s.byGPU[it.Node][g] = remove(s.byGPU[it.Node][g], id)
	}
}

// Place adds an item where it says (it.Node, it.GPUs) and returns its
// index; it refuses, changing nothing, when that breaks a rule. Work on a
// GPU in MIG mode (an instance) is placed as a pinned item of one GPU: it
// takes the node's CPU and memory and counts as a user of the GPU, whose
// slices this package does not model.
func (s *State) Place(it Item) (int, error) {
	if s.onMIG(&it) {
		if !it.Pinned || len(it.GPUs) != 1 {
			return -1, fmt.Errorf("work on a MIG GPU must be one pinned item: %w", ErrIllegal)
		}
		if nd := &s.Nodes[it.Node]; nd.CPU < it.CPU || nd.Memory < it.Memory {
			return -1, fmt.Errorf("node %s: %d CPU and %d MiB asked, %d and %d free: %w", nd.Name, it.CPU, it.Memory, nd.CPU, nd.Memory, ErrOver)
		}
	} else if err := s.check(it.Node, it.GPUs, it.Milli, it.CPU, it.Memory, it.Model); err != nil {
		return -1, err
	}
	it.GPUs = slices.Clone(it.GPUs)
	id := len(s.Items)
	s.Items = append(s.Items, it)
	s.take(&s.Items[id], id)
	return id, nil
}

// onMIG reports whether an item names a MIG GPU of a known node.
func (s *State) onMIG(it *Item) bool {
	if it.Node < 0 || it.Node >= len(s.Nodes) {
		return false
	}
	for _, g := range it.GPUs {
		if g >= 0 && g < len(s.Nodes[it.Node].GPUs) && s.Nodes[it.Node].GPUs[g].MIG {
			return true
		}
	}
	return false
}

// OnCPU returns the items without GPUs on node n. Read only.
func (s *State) OnCPU(n int) []int { return s.cpu[n] }

// On returns the items on GPU g of node n. Read only.
func (s *State) On(n, g int) []int { return s.byGPU[n][g] }

// Movable reports whether item id may move at time now with the window.
func (s *State) Movable(id int, now, window int64) bool {
	it := &s.Items[id]
	return it.Node >= 0 && !it.Pinned && (!it.Ever || now-it.Moved >= window)
}

// Move is one item stopped on node From and placed on GPUs To.GPUs of
// node To.
type Move struct {
	Item     int
	From, To int
	FromGPUs []int
	ToGPUs   []int
}

// Plan is what Find proposes: the moves in order, then the task on GPUs
// GPUs of node Node.
type Plan struct {
	Moves []Move
	Node  int
	GPUs  []int
}

// Apply carries out the plan's moves at time now (each item's Moved
// becomes now) and checks that the task then fits where the plan says,
// without placing it (the caller places it with Place). It checks every
// step first on a copy and changes nothing when one breaks a rule.
func (s *State) Apply(p Plan, ask Ask, now int64, window int64) error {
	if err := s.clone().apply(p, ask, now, window); err != nil {
		return err
	}
	return s.apply(p, ask, now, window)
}

func (s *State) apply(p Plan, ask Ask, now, window int64) error {
	for i, m := range p.Moves {
		if m.Item < 0 || m.Item >= len(s.Items) {
			return fmt.Errorf("move %d: no item %d: %w", i, m.Item, ErrIllegal)
		}
		it := &s.Items[m.Item]
		switch {
		case !s.Movable(m.Item, now, window):
			return fmt.Errorf("move %d: item %d may not move now: %w", i, m.Item, ErrIllegal)
		case it.Node != m.From || !slices.Equal(it.GPUs, m.FromGPUs):
			return fmt.Errorf("move %d: item %d is not on node %d GPUs %v: %w", i, m.Item, m.From, m.FromGPUs, ErrIllegal)
		case m.To == m.From:
			return fmt.Errorf("move %d: item %d stays on node %d: %w", i, m.Item, m.From, ErrIllegal)
		case len(m.ToGPUs) != len(it.GPUs):
			return fmt.Errorf("move %d: item %d holds %d GPUs, %d given: %w", i, m.Item, len(it.GPUs), len(m.ToGPUs), ErrIllegal)
		}
		s.give(it, m.Item)
		if err := s.check(m.To, m.ToGPUs, it.Milli, it.CPU, it.Memory, it.Model); err != nil {
			return fmt.Errorf("move %d (item %d): %w", i, m.Item, err)
		}
		it.Node, it.GPUs = m.To, slices.Clone(m.ToGPUs)
		it.Moved, it.Ever = now, true
		s.take(it, m.Item)
	}
	if len(p.GPUs) != ask.Count {
		return fmt.Errorf("the task asks %d GPUs, the plan gives %d: %w", ask.Count, len(p.GPUs), ErrIllegal)
	}
	if err := s.check(p.Node, p.GPUs, ask.Milli, ask.CPU, ask.Memory, ask.Model); err != nil {
		return fmt.Errorf("the task after the moves: %w", err)
	}
	return nil
}

func (s *State) clone() *State {
	c := &State{Items: slices.Clone(s.Items), byGPU: make([][][]int, len(s.byGPU)), cpu: make(map[int][]int, len(s.cpu)), match: s.match}
	for k, v := range s.cpu {
		c.cpu[k] = slices.Clone(v)
	}
	c.Nodes = make([]Node, len(s.Nodes))
	for i, n := range s.Nodes {
		n.GPUs = slices.Clone(n.GPUs)
		c.Nodes[i] = n
	}
	for n, gs := range s.byGPU {
		c.byGPU[n] = make([][]int, len(gs))
		for g, l := range gs {
			c.byGPU[n][g] = slices.Clone(l)
		}
	}
	return c
}

// Fit returns the GPUs of node n the ask would take now without moving
// anything (best fit: the fullest GPUs that take it), or false.
func (s *State) Fit(n int, ask Ask) ([]int, bool) {
	nd := &s.Nodes[n]
	if nd.CPU < ask.CPU || nd.Memory < ask.Memory {
		return nil, false
	}
	var out []int
	if ask.share() {
		best := -1
		for g := range nd.GPUs {
			d := &nd.GPUs[g]
			if d.MIG || d.Whole || d.Free < ask.Milli || !s.matches(ask.Model, d.Model) {
				continue
			}
			if best < 0 || d.Free < nd.GPUs[best].Free {
				best = g
			}
		}
		if best < 0 {
			return nil, false
		}
		return []int{best}, true
	}
	for g := range nd.GPUs {
		d := &nd.GPUs[g]
		if !d.MIG && d.Users == 0 && s.matches(ask.Model, d.Model) {
			out = append(out, g)
			if len(out) == ask.Count {
				return out, true
			}
		}
	}
	return nil, false
}

// Remove takes an item off its node.
func (s *State) Remove(id int) {
	if it := &s.Items[id]; it.Node >= 0 {
		s.give(it, id)
		it.Node = -1
	}
}

// insert adds id to a sorted list (lists stay sorted, so taking an item
// off and putting it back leaves them as they were).
func insert(l []int, id int) []int {
	i, _ := slices.BinarySearch(l, id)
	return slices.Insert(l, i, id)
}

// remove takes id out of a sorted list; an emptied list becomes nil.
func remove(l []int, id int) []int {
	if i, ok := slices.BinarySearch(l, id); ok {
		l = slices.Delete(l, i, i+1)
	}
	if len(l) == 0 {
		return nil
	}
	return l
}
