package defrag

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"

	"pgregory.net/rapid"
)

func gpus(model string, n int) []GPU {
	out := make([]GPU, n)
	for i := range out {
		out[i] = GPU{Model: model, Free: Whole}
	}
	return out
}

func mustPlace(t interface {
	Helper()
	Fatal(...any)
}, s *State, it Item) int {
	t.Helper()
	id, err := s.Place(it)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestFindTable: small clusters where the right plan is known.
func TestFindTable(t *testing.T) {
	type placed struct {
		node  int
		gpus  []int
		milli int
		cpu   int
		model string
		pin   bool
	}
	// A chain: the task takes only a's T4; the 600 there fits nowhere free
	// (b has 400, c 300), but once b's movable 300 moves to c, b has 700.
	chainNodes := []Node{
		{Name: "a", CPU: 16000, Memory: 1000, GPUs: gpus("T4", 1)},
		{Name: "b", CPU: 16000, Memory: 1000, GPUs: gpus("V100", 1)},
		{Name: "c", CPU: 16000, Memory: 1000, GPUs: gpus("V100", 1)},
	}
	chainItems := []placed{{node: 0, gpus: []int{0}, milli: 600}, {node: 1, gpus: []int{0}, milli: 300}, {node: 1, gpus: []int{0}, milli: 300, pin: true},
		{node: 2, gpus: []int{0}, milli: 700, pin: true}}
	tests := []struct {
		name     string
		nodes    []Node
		items    []placed
		ask      Ask
		max      int
		wantOK   bool
		wantMove int // moves in the plan
		wantNode int
	}{
		{
			name:  "fits already: no move",
			nodes: []Node{{Name: "a", CPU: 8000, Memory: 1000, GPUs: gpus("T4", 1)}},
			ask:   Ask{CPU: 1000, Count: 1, Milli: 500}, max: 3, wantOK: true, wantMove: 0, wantNode: 0,
		},
		{
			name: "two half-full GPUs: one share moves, a whole GPU frees",
			nodes: []Node{
				{Name: "a", CPU: 16000, Memory: 1000, GPUs: gpus("T4", 1)},
				{Name: "b", CPU: 16000, Memory: 1000, GPUs: gpus("T4", 1)},
			},
			items: []placed{{node: 0, gpus: []int{0}, milli: 470, cpu: 2000}, {node: 1, gpus: []int{0}, milli: 470, cpu: 2000}},
			ask:   Ask{CPU: 4000, Count: 1, Milli: Whole}, max: 3, wantOK: true, wantMove: 1, wantNode: 0,
		},
		{
			name: "no budget: nothing",
			nodes: []Node{
				{Name: "a", CPU: 16000, Memory: 1000, GPUs: gpus("T4", 1)},
				{Name: "b", CPU: 16000, Memory: 1000, GPUs: gpus("T4", 1)},
			},
			items: []placed{{node: 0, gpus: []int{0}, milli: 470, cpu: 2000}, {node: 1, gpus: []int{0}, milli: 470, cpu: 2000}},
			ask:   Ask{CPU: 4000, Count: 1, Milli: Whole}, max: 0, wantOK: false,
		},
		{
			name: "pinned work never moves",
			nodes: []Node{
				{Name: "a", CPU: 16000, Memory: 1000, GPUs: gpus("T4", 1)},
				{Name: "b", CPU: 16000, Memory: 1000, GPUs: gpus("T4", 1)},
			},
			items: []placed{{node: 0, gpus: []int{0}, milli: 470, pin: true}, {node: 1, gpus: []int{0}, milli: 470, pin: true}},
			ask:   Ask{Count: 1, Milli: Whole}, max: 3, wantOK: false,
		},
		{
			name: "the model constraint holds for moved work",
			nodes: []Node{
				{Name: "a", CPU: 16000, Memory: 1000, GPUs: gpus("T4", 1)},
				{Name: "b", CPU: 16000, Memory: 1000, GPUs: gpus("V100", 1)},
			},
			items: []placed{{node: 0, gpus: []int{0}, milli: 470, model: "T4"}, {node: 1, gpus: []int{0}, milli: 470}},
			ask:   Ask{Count: 1, Milli: Whole}, max: 3, wantOK: true, wantMove: 1, wantNode: 1,
		},
		{
			name: "CPU short: the largest CPU holder leaves",
			nodes: []Node{
				{Name: "a", CPU: 10000, Memory: 1000, GPUs: gpus("T4", 2)},
				{Name: "b", CPU: 16000, Memory: 1000, GPUs: gpus("T4", 1)},
			},
			items: []placed{{node: 0, gpus: []int{0}, milli: 300, cpu: 8000}, {node: 1, gpus: []int{0}, milli: 600, cpu: 1000}},
			ask:   Ask{CPU: 6000, Count: 1, Milli: Whole}, max: 3, wantOK: true, wantMove: 1, wantNode: 0,
		},
		{
			name:  "a chain: one share leaves a GPU for a place of its own, another takes the room it left",
			nodes: chainNodes,
			items: chainItems,
			ask:   Ask{Count: 1, Milli: 700, Model: "T4"}, max: 3, wantOK: true, wantMove: 2, wantNode: 0,
		},
		{
			name:  "a chain counts both its moves against the budget",
			nodes: chainNodes,
			items: chainItems,
			ask:   Ask{Count: 1, Milli: 700, Model: "T4"}, max: 1, wantOK: false,
		},
		{
			name: "a two-GPU task moves whole to one node",
			nodes: []Node{
				{Name: "a", CPU: 16000, Memory: 1000, GPUs: gpus("T4", 2)},
				{Name: "b", CPU: 16000, Memory: 1000, GPUs: gpus("V100", 3)},
			},
			items: []placed{{node: 0, gpus: []int{0, 1}, milli: Whole}, {node: 1, gpus: []int{2}, milli: 200}},
			ask:   Ask{Count: 2, Milli: Whole, Model: "T4"}, max: 1, wantOK: true, wantMove: 1, wantNode: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewState(tt.nodes)
			for _, p := range tt.items {
				mustPlace(t, s, Item{Node: p.node, GPUs: p.gpus, Milli: p.milli, CPU: p.cpu, Model: p.model, Pinned: p.pin})
			}
			p, ok := Find(s, tt.ask, Options{MaxMoves: tt.max, Now: 1})
			if ok != tt.wantOK {
				t.Fatalf("Find = %v, want %v (plan %+v)", ok, tt.wantOK, p)
			}
			if !ok {
				return
			}
			if len(p.Moves) != tt.wantMove || p.Node != tt.wantNode {
				t.Fatalf("plan %+v: want %d moves and the task on node %d", p, tt.wantMove, tt.wantNode)
			}
			if err := s.Apply(p, tt.ask, 1, 0); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Place(Item{Node: p.Node, GPUs: p.GPUs, Milli: tt.ask.Milli, CPU: tt.ask.CPU, Memory: tt.ask.Memory, Model: tt.ask.Model}); err != nil {
				t.Fatalf("the task does not fit after the plan: %v", err)
			}
		})
	}
}

// TestApplyRejectsWhole: a plan that breaks a rule changes nothing.
func TestApplyRejectsWhole(t *testing.T) {
	s := NewState([]Node{
		{Name: "a", CPU: 8000, Memory: 1000, GPUs: gpus("T4", 1)},
		{Name: "b", CPU: 8000, Memory: 1000, GPUs: append(gpus("T4", 1), GPU{Model: "A100", Free: Whole, MIG: true})},
	})
	a := mustPlace(t, s, Item{Node: 0, GPUs: []int{0}, Milli: 600})
	mustPlace(t, s, Item{Node: 1, GPUs: []int{0}, Milli: 600})
	before := s.clone()
	for name, p := range map[string]Plan{
		"over a GPU":     {Moves: []Move{{Item: a, From: 0, FromGPUs: []int{0}, To: 1, ToGPUs: []int{0}}}, Node: 0, GPUs: []int{0}},
		"onto MIG":       {Moves: []Move{{Item: a, From: 0, FromGPUs: []int{0}, To: 1, ToGPUs: []int{1}}}, Node: 0, GPUs: []int{0}},
		"same node":      {Moves: []Move{{Item: a, From: 0, FromGPUs: []int{0}, To: 0, ToGPUs: []int{0}}}, Node: 0, GPUs: []int{0}},
		"task still out": {Node: 0, GPUs: []int{0}},
	} {
		err := s.Apply(p, Ask{Count: 1, Milli: Whole}, 1, 0)
		if !errors.Is(err, ErrOver) && !errors.Is(err, ErrIllegal) {
			t.Errorf("%s: Apply = %v, want ErrOver or ErrIllegal", name, err)
		}
		if !reflect.DeepEqual(s, before) {
			t.Fatalf("%s: a rejected plan changed the state", name)
		}
	}
}

// genState builds a random cluster with random work on it; caps are the
// nodes' capacities.
func genState(t *rapid.T) (*State, []Node) {
	models := []string{"T4", "V100", "A100"}
	var nodes []Node
	for i := range rapid.IntRange(2, 5).Draw(t, "nodes") {
		n := Node{Name: fmt.Sprintf("n%d", i), CPU: rapid.IntRange(2, 32).Draw(t, "cpu") * 1000, Memory: rapid.IntRange(1, 64).Draw(t, "mem") * 1024}
		model := rapid.SampledFrom(models).Draw(t, "model")
		for range rapid.IntRange(1, 4).Draw(t, "gpus") {
			n.GPUs = append(n.GPUs, GPU{Model: model, Free: Whole, MIG: model == "A100" && rapid.Bool().Draw(t, "mig")})
		}
		nodes = append(nodes, n)
	}
	s := NewState(nodes)
	for range rapid.IntRange(5, 40).Draw(t, "items") {
		n := rapid.IntRange(0, len(nodes)-1).Draw(t, "on")
		it := Item{Node: n, CPU: rapid.IntRange(0, 8).Draw(t, "icpu") * 1000, Memory: rapid.IntRange(0, 8).Draw(t, "imem") * 1024,
			Pinned: rapid.IntRange(0, 9).Draw(t, "pin") == 0, Model: rapid.SampledFrom([]string{"", "", "T4", "V100|A100"}).Draw(t, "imodel")}
		if k := rapid.IntRange(0, 2).Draw(t, "moved"); k > 0 {
			it.Ever, it.Moved = true, int64(k*5)
		}
		ng := len(nodes[n].GPUs)
		switch kind := rapid.IntRange(0, 3).Draw(t, "kind"); {
		case ng == 0 || kind == 0:
			it.Milli = 0
		case kind == 1 && ng > 1:
			it.Milli = Whole
			it.GPUs = rapid.SliceOfNDistinct(rapid.IntRange(0, ng-1), 2, 2, rapid.ID[int]).Draw(t, "g2")
		case kind == 2:
			it.Milli = Whole
			it.GPUs = []int{rapid.IntRange(0, ng-1).Draw(t, "g")}
		default:
			it.Milli = rapid.SampledFrom([]int{50, 160, 230, 320, 470, 650, 810}).Draw(t, "milli")
			it.GPUs = []int{rapid.IntRange(0, ng-1).Draw(t, "g")}
		}
		if len(it.GPUs) == 1 && nodes[n].GPUs[it.GPUs[0]].MIG {
			it.Pinned, it.Milli = true, Whole // a MIG instance
		}
		_, _ = s.Place(it) // refused placements change nothing
	}
	return s, nodes
}

func genAsk(t *rapid.T) Ask {
	a := Ask{CPU: rapid.IntRange(0, 12).Draw(t, "acpu") * 1000, Memory: rapid.IntRange(0, 8).Draw(t, "amem") * 1024,
		Model: rapid.SampledFrom([]string{"", "", "T4", "V100"}).Draw(t, "amodel")}
	if rapid.Bool().Draw(t, "whole") {
		a.Count, a.Milli = rapid.SampledFrom([]int{1, 1, 2, 4}).Draw(t, "count"), Whole
	} else {
		a.Count, a.Milli = 1, rapid.SampledFrom([]int{160, 320, 470, 650, 810}).Draw(t, "amilli")
	}
	return a
}

// audit recomputes every node from its capacity and the items on it, and
// returns the first rule broken: the independent check of the invariants.
func audit(s *State, caps []Node, initialMIG map[int]bool) error {
	for n, c := range caps {
		cpu, mem := 0, 0
		milli := make([]int, len(c.GPUs))
		users := make([]int, len(c.GPUs))
		whole := make([]int, len(c.GPUs))
		for id, it := range s.Items {
			if it.Node != n {
				continue
			}
			cpu += it.CPU
			mem += it.Memory
			for _, g := range it.GPUs {
				users[g]++
				d := c.GPUs[g]
				switch {
				case d.MIG && !(it.Pinned && initialMIG[id]):
					return fmt.Errorf("item %d on MIG GPU %d of %s", id, g, c.Name)
				case !d.MIG && !s.matches(it.Model, d.Model):
					return fmt.Errorf("item %d (%q) on a %s", id, it.Model, d.Model)
				case !d.MIG:
					milli[g] += it.Milli
					if it.Milli == Whole {
						whole[g]++
					}
				}
			}
		}
		if cpu > c.CPU || mem > c.Memory {
			return fmt.Errorf("node %s: %d CPU and %d MiB given, capacity %d and %d", c.Name, cpu, mem, c.CPU, c.Memory)
		}
		for g := range c.GPUs {
			if milli[g] > Whole || whole[g] > 0 && users[g] > 1 {
				return fmt.Errorf("node %s GPU %d: %d milli, %d users, %d whole", c.Name, g, milli[g], users[g], whole[g])
			}
			if d := s.Nodes[n].GPUs[g]; !d.MIG && (d.Free != Whole-milli[g] || d.Users != users[g]) {
				return fmt.Errorf("node %s GPU %d: the state says %d free and %d users, the items %d and %d", c.Name, g, d.Free, d.Users, Whole-milli[g], users[g])
			}
		}
	}
	return nil
}

// TestFindProperties: on random clusters, every plan Find returns keeps
// the invariants and, applied, places the task it was made for.
func TestFindProperties(t *testing.T) {
	withMoves := 0
	rapid.Check(t, func(t *rapid.T) {
		s, caps := genState(t)
		initialMIG := map[int]bool{}
		for id, it := range s.Items {
			initialMIG[id] = s.onMIG(&it)
		}
		if err := audit(s, caps, initialMIG); err != nil {
			t.Fatalf("generator: %v", err)
		}
		ask := genAsk(t)
		o := Options{MaxMoves: rapid.IntRange(0, 4).Draw(t, "max"), Now: 10, Window: int64(rapid.IntRange(0, 10).Draw(t, "window")), MaxNodes: rapid.IntRange(0, 3).Draw(t, "breadth")}
		p, ok := checkFind(t, s, caps, initialMIG, ask, o)
		if ok && len(p.Moves) > 0 {
			withMoves++
		}
	})
	t.Logf("%d plans with moves", withMoves)
}

// checkFind runs Find and checks its plan: the state untouched, the same
// plan twice, no moves when the task fits, and, applied, the invariants
// kept and the task placed.
func checkFind(t *rapid.T, s *State, caps []Node, initialMIG map[int]bool, ask Ask, o Options) (Plan, bool) {
	before := s.clone()
	p, ok := Find(s, ask, o)
	if !reflect.DeepEqual(s, before) {
		t.Fatal("Find changed the state")
	}
	if p2, ok2 := Find(s, ask, o); ok2 != ok || !reflect.DeepEqual(p, p2) {
		t.Fatalf("Find is not deterministic: %+v then %+v", p, p2)
	}
	_, fits := firstFit(s, ask)
	if fits && (!ok || len(p.Moves) > 0) {
		t.Fatalf("the task fits as things are, yet the plan is %v %+v", ok, p)
	}
	if !ok {
		return p, false
	}
	if len(p.Moves) > o.MaxMoves && len(p.Moves) > 0 {
		t.Fatalf("%d moves, at most %d allowed", len(p.Moves), o.MaxMoves)
	}
	seen := map[int]bool{}
	for _, m := range p.Moves {
		it := s.Items[m.Item]
		switch {
		case seen[m.Item]:
			t.Fatalf("item %d moves twice in one plan", m.Item)
		case it.Pinned:
			t.Fatalf("pinned item %d moves", m.Item)
		case it.Ever && o.Now-it.Moved < o.Window:
			t.Fatalf("item %d moved at %d moves again at %d (window %d)", m.Item, it.Moved, o.Now, o.Window)
		case m.From == m.To:
			t.Fatalf("item %d stays on node %d", m.Item, m.From)
		case len(m.ToGPUs) != len(it.GPUs):
			t.Fatalf("item %d holds %d GPUs, moves to %d: a gang split", m.Item, len(it.GPUs), len(m.ToGPUs))
		}
		seen[m.Item] = true
	}
	if err := s.Apply(p, ask, o.Now, o.Window); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if err := audit(s, caps, initialMIG); err != nil {
		t.Fatalf("after the moves: %v", err)
	}
	if _, err := s.Place(Item{Node: p.Node, GPUs: p.GPUs, Milli: ask.Milli, CPU: ask.CPU, Memory: ask.Memory, Model: ask.Model}); err != nil {
		t.Fatalf("the task does not fit where the plan says: %v", err)
	}
	if err := audit(s, caps, initialMIG); err != nil {
		t.Fatalf("after placing the task: %v", err)
	}
	return p, ok
}

// TestFindMakesRoom: with one share of at most 500 milli on every GPU,
// nothing pinned and CPU to spare, a whole GPU can always be freed by
// moving one share onto another GPU of another node: Find must find such
// a plan (one move), and it must keep the invariants.
func TestFindMakesRoom(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		var nodes []Node
		for i := range rapid.IntRange(2, 6).Draw(t, "nodes") {
			nodes = append(nodes, Node{Name: fmt.Sprintf("n%d", i), CPU: 64000, Memory: 65536, GPUs: gpus("T4", rapid.IntRange(1, 4).Draw(t, "gpus"))})
		}
		s := NewState(nodes)
		for n, nd := range nodes {
			for g := range nd.GPUs {
				m := rapid.IntRange(1, 10).Draw(t, "milli") * 50
				mustPlace(t, s, Item{Node: n, GPUs: []int{g}, Milli: m, CPU: 1000, Memory: 1024})
			}
		}
		ask := Ask{CPU: 4000, Memory: 4096, Count: 1, Milli: Whole}
		p, ok := checkFind(t, s, nodes, map[int]bool{}, ask, Options{MaxMoves: rapid.IntRange(1, 4).Draw(t, "max"), Now: 1})
		if !ok || len(p.Moves) != 1 {
			t.Fatalf("want a plan of one move, got %v %+v", ok, p)
		}
	})
}

// firstFit is a deliberately plain reference for "fits without moves".
func firstFit(s *State, ask Ask) (int, bool) {
	for n, nd := range s.Nodes {
		if nd.CPU < ask.CPU || nd.Memory < ask.Memory {
			continue
		}
		ok := 0
		for _, d := range nd.GPUs {
			if d.MIG || !s.matches(ask.Model, d.Model) {
				continue
			}
			if ask.Milli == Whole && d.Users == 0 || ask.Milli < Whole && !d.Whole && d.Free >= ask.Milli {
				ok++
			}
		}
		if ok >= ask.Count {
			return n, true
		}
	}
	return -1, false
}

// TestWindowCounts: an item moved at t moves again only from t+Window.
func TestWindowCounts(t *testing.T) {
	s := NewState([]Node{
		{Name: "a", CPU: 8000, Memory: 1000, GPUs: gpus("T4", 1)},
		{Name: "b", CPU: 8000, Memory: 1000, GPUs: gpus("T4", 1)},
	})
	mustPlace(t, s, Item{Node: 0, GPUs: []int{0}, Milli: 400})
	mustPlace(t, s, Item{Node: 1, GPUs: []int{0}, Milli: 400})
	ask := Ask{Count: 1, Milli: Whole}
	p, ok := Find(s, ask, Options{MaxMoves: 1, Now: 5, Window: 10})
	if !ok || len(p.Moves) != 1 {
		t.Fatalf("want one move, got %v %+v", ok, p)
	}
	if err := s.Apply(p, ask, 5, 10); err != nil {
		t.Fatal(err)
	}
	moved := p.Moves[0].Item
	// Put it back by hand so the same situation arises again.
	s.Remove(moved)
	back := s.Items[moved]
	back.Node, back.GPUs = p.Moves[0].From, p.Moves[0].FromGPUs
	id := mustPlace(t, s, back)
	for _, now := range []int64{6, 14} {
		if p, ok := Find(s, ask, Options{MaxMoves: 1, Now: now, Window: 10}); ok && slices.ContainsFunc(p.Moves, func(m Move) bool { return m.Item == id }) {
			t.Fatalf("at %d the item moved at 5 moves again (window 10): %+v", now, p)
		}
	}
	if p, ok := Find(s, ask, Options{MaxMoves: 1, Now: 15, Window: 10}); !ok || len(p.Moves) != 1 {
		t.Fatalf("at 15 the window has passed; want one move, got %v %+v", ok, p)
	}
}
