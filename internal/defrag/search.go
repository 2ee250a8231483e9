package defrag

import (
	"cmp"
	"slices"
)

// Options bound a search.
type Options struct {
	MaxMoves int   // most moves the plan may make; 0 finds nothing
	Now      int64 // the caller's clock (the replay counts tasks)
	Window   int64 // an item moved at t may move again from t+Window
	MaxNodes int   // candidate nodes tried in full, fewest evictions first; 0 means 32
}

// candidate is a node the task could run on once evict have left it.
type candidate struct {
	node  int
	gpus  []int // the task's GPUs there
	evict []int // items to move away, in the order they are rehomed
	milli int   // milli-GPU the evictions move
}

func (c *candidate) cost() (int, int) { return len(c.evict), c.milli }

// Find proposes the fewest moves (at most o.MaxMoves) after which ask fits,
// or reports false. It leaves s as it found it. Equal plans are told apart
// by the milli-GPU they move, then by node and GPU index, so the same state
// and ask always give the same plan.
func Find(s *State, ask Ask, o Options) (Plan, bool) {
	if ask.Count <= 0 || ask.Milli <= 0 || ask.Milli > Whole || ask.share() && ask.Count != 1 {
		return Plan{}, false
	}
	for n := range s.Nodes {
		if gs, ok := s.Fit(n, ask); ok {
			return Plan{Node: n, GPUs: gs}, true
		}
	}
	if o.MaxMoves <= 0 {
		return Plan{}, false
	}
	if o.MaxNodes <= 0 {
		o.MaxNodes = 32
	}
	var cands []candidate
	sl := s.newSlots()
	sl.now, sl.window = o.Now, o.Window
	for n := range s.Nodes {
		if c, ok := s.evictions(n, ask, o, sl); ok && len(c.evict) <= o.MaxMoves {
			cands = append(cands, c)
		}
	}
	slices.SortFunc(cands, func(a, b candidate) int {
		an, am := a.cost()
		bn, bm := b.cost()
		return cmp.Or(cmp.Compare(an, bn), cmp.Compare(am, bm), cmp.Compare(a.node, b.node))
	})
	for i := range cands[:min(len(cands), o.MaxNodes)] {
		if p, ok := s.rehome(&cands[i], ask, o); ok {
			return p, true
		}
	}
	return Plan{}, false
}

// evictions finds the fewest movable items to take off node n for ask to
// fit there.
func (s *State) evictions(n int, ask Ask, o Options, sl *slots) (candidate, bool) {
	nd := &s.Nodes[n]
	c := candidate{node: n}
	// Only items that have somewhere else to go are worth choosing: a
	// place free now, or for a share, a place another share would leave
	// for a place of its own (a chain of two moves).
	movable := func(id int) bool {
		it := &s.Items[id]
		return s.Movable(id, o.Now, o.Window) && (sl.elsewhere(s, it, n) || sl.chain(s, it, n))
	}
	if ask.share() {
		best, bestItems, bestMilli, bestLeft := -1, []int(nil), 0, 0
		for g := range nd.GPUs {
			d := &nd.GPUs[g]
			if d.MIG || !s.matches(ask.Model, d.Model) {
				continue
			}
			items, freed, ok := s.liftShares(n, g, ask.Milli-d.Free, movable)
			if !ok {
				continue
			}
			left := d.Free + freed - ask.Milli
			if best < 0 || cmp.Or(cmp.Compare(len(items), len(bestItems)), cmp.Compare(freed, bestMilli), cmp.Compare(left, bestLeft)) < 0 {
				best, bestItems, bestMilli, bestLeft = g, items, freed, left
			}
		}
		if best < 0 {
			return c, false
		}
		c.gpus, c.evict, c.milli = []int{best}, bestItems, bestMilli
	} else {
		type option struct {
			g     int
			items []int
			milli int
		}
		var opts []option
		for g := range nd.GPUs {
			d := &nd.GPUs[g]
			if d.MIG || !s.matches(ask.Model, d.Model) {
				continue
			}
			items := s.On(n, g)
			if !all(items, movable) {
				continue
			}
			opts = append(opts, option{g: g, items: sorted(items), milli: Whole - d.Free})
		}
		if len(opts) < ask.Count {
			return c, false
		}
		slices.SortFunc(opts, func(a, b option) int {
			return cmp.Or(cmp.Compare(len(a.items), len(b.items)), cmp.Compare(a.milli, b.milli), cmp.Compare(a.g, b.g))
		})
		for _, op := range opts[:ask.Count] {
			c.gpus = append(c.gpus, op.g)
			for _, id := range op.items {
				if !slices.Contains(c.evict, id) {
					c.evict = append(c.evict, id)
					c.milli += s.Items[id].Milli * len(s.Items[id].GPUs)
				}
			}
		}
		slices.Sort(c.gpus)
	}
	// CPU or memory still short: move more work off the node, the
	// largest CPU holders first.
	cpu, mem := nd.CPU, nd.Memory
	for _, id := range c.evict {
		cpu += s.Items[id].CPU
		mem += s.Items[id].Memory
	}
	if cpu < ask.CPU || mem < ask.Memory {
		var more []int
		for _, id := range s.OnCPU(n) {
			if movable(id) {
				more = append(more, id)
			}
		}
		for g := range nd.GPUs {
			for _, id := range s.On(n, g) {
				if movable(id) && !slices.Contains(c.evict, id) && !slices.Contains(more, id) {
					more = append(more, id)
				}
			}
		}
		slices.SortFunc(more, func(a, b int) int {
			return cmp.Or(cmp.Compare(s.Items[b].CPU, s.Items[a].CPU), cmp.Compare(s.Items[b].Memory, s.Items[a].Memory), cmp.Compare(a, b))
		})
		for _, id := range more {
			if cpu >= ask.CPU && mem >= ask.Memory {
				break
			}
			c.evict = append(c.evict, id)
			c.milli += s.Items[id].Milli * len(s.Items[id].GPUs)
			cpu += s.Items[id].CPU
			mem += s.Items[id].Memory
		}
		if cpu < ask.CPU || mem < ask.Memory {
			return c, false
		}
	}
	return c, true
}

// liftShares chooses the fewest movable shares on GPU g of node n that
// free at least need milli: the smallest single share that is enough, or
// else the largest shares first. It returns them and the milli they free.
func (s *State) liftShares(n, g, need int, movable func(int) bool) ([]int, int, bool) {
	if need <= 0 {
		return nil, 0, !s.Nodes[n].GPUs[g].Whole
	}
	items := s.On(n, g)
	if s.Nodes[n].GPUs[g].Whole {
		if len(items) == 1 && movable(items[0]) {
			return []int{items[0]}, Whole, true
		}
		return nil, 0, false
	}
	var ms []int
	for _, id := range items {
		if movable(id) {
			ms = append(ms, id)
		}
	}
	slices.SortFunc(ms, func(a, b int) int {
		return cmp.Or(cmp.Compare(s.Items[b].Milli, s.Items[a].Milli), cmp.Compare(a, b))
	})
	// The smallest single share that is enough (ms is largest first).
	for i := len(ms) - 1; i >= 0; i-- {
		if s.Items[ms[i]].Milli >= need {
			return []int{ms[i]}, s.Items[ms[i]].Milli, true
		}
	}
	freed := 0
	for i, id := range ms {
		freed += s.Items[id].Milli
		if freed >= need {
			return ms[:i+1], freed, true
		}
	}
	return nil, 0, false
}

// rehome finds each evicted item of c a destination on another node (best
// fit, largest items first; a share with none may take the place another
// share leaves for a destination of its own) and returns the plan, at
// most o.MaxMoves moves; it undoes every change before returning.
func (s *State) rehome(c *candidate, ask Ask, o Options) (Plan, bool) {
	type undo struct {
		id   int
		node int
		gpus []int
	}
	var log []undo
	restore := func() {
		for i := len(log) - 1; i >= 0; i-- {
			u := log[i]
			it := &s.Items[u.id]
			if it.Node >= 0 {
				s.give(it, u.id)
			}
			it.Node, it.GPUs = u.node, u.gpus
			s.take(it, u.id)
		}
	}
	defer restore()
	for _, id := range c.evict {
		it := &s.Items[id]
		log = append(log, undo{id, it.Node, it.GPUs})
		s.give(it, id)
		it.Node = -1
	}
	if s.check(c.node, c.gpus, ask.Milli, ask.CPU, ask.Memory, ask.Model) != nil {
		return Plan{}, false
	}
	order := slices.Clone(c.evict)
	slices.SortStableFunc(order, func(a, b int) int {
		ia, ib := &s.Items[a], &s.Items[b]
		return cmp.Or(cmp.Compare(ib.Milli*len(ib.GPUs), ia.Milli*len(ia.GPUs)), cmp.Compare(ib.CPU, ia.CPU))
	})
	var p Plan
	moved := map[int]bool{}
	for _, id := range c.evict {
		moved[id] = true
	}
	move := func(id, to int, gs []int) {
		it := &s.Items[id]
		var from undo
		for _, u := range log {
			if u.id == id {
				from = u
			}
		}
		p.Moves = append(p.Moves, Move{Item: id, From: from.node, FromGPUs: slices.Clone(from.gpus), To: to, ToGPUs: gs})
		it.Node, it.GPUs = to, gs
		s.take(it, id)
	}
	for _, id := range order {
		it := &s.Items[id]
		if to, gs, ok := s.destination(it, c.node, -1); ok {
			move(id, to, gs)
			continue
		}
		// A share may take the room another share leaves, when that one
		// has a place of its own (neither on the task's node nor back).
		y, to, gs, ok := s.chainMove(it, c.node, moved, o)
		if !ok {
			return Plan{}, false
		}
		yi := &s.Items[y]
		log = append(log, undo{y, yi.Node, yi.GPUs})
		room, roomGPUs := yi.Node, yi.GPUs
		s.give(yi, y)
		yi.Node = -1
		moved[y] = true
		move(y, to, gs)
		move(id, room, roomGPUs)
	}
	if len(p.Moves) > o.MaxMoves {
		return Plan{}, false
	}
	p.Node, p.GPUs = c.node, slices.Clone(c.gpus)
	return p, true
}

// chainMove finds, for a share it that has no place free on a node but
// not, a share y on another node's GPU whose leaving makes room for it
// there, and a destination for y on a third node: the tightest such room
// first. Items in moved (already part of the plan) are not taken.
func (s *State) chainMove(it *Item, not int, moved map[int]bool, o Options) (y, to int, gs []int, ok bool) {
	if len(it.GPUs) != 1 || it.Milli >= Whole {
		return 0, 0, nil, false
	}
	type option struct{ y, left int }
	var opts []option
	for m := range s.Nodes {
		nd := &s.Nodes[m]
		if m == not {
			continue
		}
		for g := range nd.GPUs {
			d := &nd.GPUs[g]
			if d.MIG || d.Whole || d.Users == 0 || !s.matches(it.Model, d.Model) {
				continue
			}
			for _, id := range s.On(m, g) {
				yi := &s.Items[id]
				if moved[id] || d.Free+yi.Milli < it.Milli || nd.CPU+yi.CPU < it.CPU || nd.Memory+yi.Memory < it.Memory || !s.Movable(id, o.Now, o.Window) {
					continue
				}
				opts = append(opts, option{id, d.Free + yi.Milli - it.Milli})
			}
		}
	}
	slices.SortFunc(opts, func(a, b option) int { return cmp.Or(cmp.Compare(a.left, b.left), cmp.Compare(a.y, b.y)) })
	for _, op := range opts {
		yi := &s.Items[op.y]
		if to, gs, ok := s.destination(yi, yi.Node, not); ok {
			return op.y, to, gs, true
		}
	}
	return 0, 0, nil, false
}

// destination is where an item goes when it leaves node not (and never to
// node also, -1 for none): for a share,
// the GPU with the least free milli that takes it; for whole GPUs, the
// node left with the fewest idle GPUs; ties to the lowest index.
func (s *State) destination(it *Item, not, also int) (int, []int, bool) {
	bestN, bestLeft := -1, 0
	var bestG []int
	for n := range s.Nodes {
		nd := &s.Nodes[n]
		if n == not || n == also || nd.CPU < it.CPU || nd.Memory < it.Memory {
			continue
		}
		if len(it.GPUs) == 0 {
			// Work without GPUs: the node left with the least free CPU.
			if left := nd.CPU - it.CPU; bestN < 0 || left < bestLeft {
				bestN, bestLeft, bestG = n, left, nil
			}
			continue
		}
		if it.Milli < Whole {
			for g := range nd.GPUs {
				d := &nd.GPUs[g]
				if d.MIG || d.Whole || d.Free < it.Milli || !s.matches(it.Model, d.Model) {
					continue
				}
				if left := d.Free - it.Milli; bestN < 0 || left < bestLeft {
					bestN, bestLeft, bestG = n, left, []int{g}
				}
			}
			continue
		}
		var idle []int
		for g := range nd.GPUs {
			if d := &nd.GPUs[g]; !d.MIG && d.Users == 0 && s.matches(it.Model, d.Model) {
				idle = append(idle, g)
			}
		}
		if left := len(idle) - len(it.GPUs); left >= 0 && (bestN < 0 || left < bestLeft) {
			bestN, bestLeft, bestG = n, left, idle[:len(it.GPUs)]
		}
	}
	return bestN, bestG, bestN >= 0
}

func all(ids []int, f func(int) bool) bool {
	for _, id := range ids {
		if !f(id) {
			return false
		}
	}
	return true
}

func sorted(ids []int) []int {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}

// slots answers, for one search, whether an item could go anywhere but a
// given node at the state the search began with: the searches of the
// candidates only take room elsewhere, so an item with no such place then
// has none later in the same search.
type slots struct {
	free  []slot // GPUs that take a share, most free milli first
	idle  []int  // per node: idle GPUs (any model)
	memo  map[shapeKey][2]int
	ready bool

	// For chains: shared GPUs with the room they would have if their
	// largest share with a place elsewhere left, most room first.
	now, window int64
	rooms       []room
	chainMemo   map[shapeKey][2]int
	chainReady  bool
}

type room struct{ node, gpu, room, lift int }

type slot struct{ node, gpu, free int }

type shapeKey struct {
	milli, gpus, cpu, mem int
	model                 string
}

func (s *State) newSlots() *slots {
	return &slots{memo: map[shapeKey][2]int{}, chainMemo: map[shapeKey][2]int{}}
}

// chain reports whether a share could go to some node but not by way of
// a chain: another share leaves a GPU there for a place of its own.
func (sl *slots) chain(s *State, it *Item, not int) bool {
	if len(it.GPUs) != 1 || it.Milli >= Whole {
		return false
	}
	if !sl.chainReady {
		sl.chainReady = true
		for m := range s.Nodes {
			for g, d := range s.Nodes[m].GPUs {
				if d.MIG || d.Whole || d.Users == 0 {
					continue
				}
				best := -1
				for _, id := range s.On(m, g) {
					y := &s.Items[id]
					if (best < 0 || y.Milli > s.Items[best].Milli) && s.Movable(id, sl.now, sl.window) && sl.elsewhere(s, y, m) {
						best = id
					}
				}
				if best >= 0 {
					sl.rooms = append(sl.rooms, room{m, g, d.Free + s.Items[best].Milli, best})
				}
			}
		}
		slices.SortStableFunc(sl.rooms, func(a, b room) int { return cmp.Compare(b.room, a.room) })
	}
	k := shapeKey{it.Milli, len(it.GPUs), it.CPU, it.Memory, it.Model}
	found, ok := sl.chainMemo[k]
	if !ok {
		found = [2]int{-1, -1}
		for _, r := range sl.rooms {
			if r.room < it.Milli {
				break
			}
			nd, y := &s.Nodes[r.node], &s.Items[r.lift]
			if nd.CPU+y.CPU < it.CPU || nd.Memory+y.Memory < it.Memory || !s.matches(it.Model, nd.GPUs[r.gpu].Model) {
				continue
			}
			if found[0] < 0 {
				found[0] = r.node
			} else if r.node != found[0] {
				found[1] = r.node
				break
			}
		}
		sl.chainMemo[k] = found
	}
	return found[0] >= 0 && found[0] != not || found[1] >= 0
}

func (sl *slots) build(s *State) {
	sl.ready = true
	sl.idle = make([]int, len(s.Nodes))
	for n := range s.Nodes {
		for g, d := range s.Nodes[n].GPUs {
			switch {
			case d.MIG || d.Whole || d.Free <= 0:
			case d.Users == 0:
				sl.idle[n]++
				fallthrough
			default:
				sl.free = append(sl.free, slot{n, g, d.Free})
			}
		}
	}
	slices.SortStableFunc(sl.free, func(a, b slot) int { return cmp.Compare(b.free, a.free) })
}

// elsewhere reports whether the item could be placed on some node but not
// as things stood when the search began.
func (sl *slots) elsewhere(s *State, it *Item, not int) bool {
	if !sl.ready {
		sl.build(s)
	}
	k := shapeKey{it.Milli, len(it.GPUs), it.CPU, it.Memory, it.Model}
	found, ok := sl.memo[k]
	if !ok {
		found = [2]int{-1, -1}
		add := func(n int) bool {
			if found[0] < 0 {
				found[0] = n
			} else if n != found[0] {
				found[1] = n
				return true
			}
			return false
		}
		fits := func(n int) bool { return s.Nodes[n].CPU >= it.CPU && s.Nodes[n].Memory >= it.Memory }
		if len(it.GPUs) == 0 {
			for n := range s.Nodes {
				if fits(n) && add(n) {
					break
				}
			}
		} else if it.Milli < Whole {
			for _, x := range sl.free {
				if x.free < it.Milli {
					break
				}
				if fits(x.node) && s.matches(it.Model, s.Nodes[x.node].GPUs[x.gpu].Model) && add(x.node) {
					break
				}
			}
		} else {
			for n, idle := range sl.idle {
				if idle >= len(it.GPUs) && fits(n) && add(n) {
					break
				}
			}
		}
		sl.memo[k] = found
	}
	return found[0] >= 0 && found[0] != not || found[1] >= 0
}
