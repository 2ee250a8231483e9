package scheduler

import (
	"fmt"
	"hash/fnv"
	"math"
	"strings"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/gpu"
)

// groupPlan is a validated, compiled group plus the state one Plan call
// keeps about it.
type groupPlan struct {
	group         *api.Group
	cpu, mem      int
	disk          int
	static        []int
	dynamic       int
	gpu           []GPUAsk
	gpuTask       []int // task index of each GPU ask
	constraints   []*matcher
	distinct      bool
	affinities    []weighted
	affinityTotal int
	spreads       []*spreadPlan
	spreadIdx     *spreadIndex // the first spread, indexed (prepare)
	apart         []apartPlan  // Config.ApartAttributes the nodes carry (services)
	gang          int
	demand        Resources

	ready       bool
	drivers     uint64
	slowDrivers bool     // a driver beyond the 64 the bitmask holds
	missing     int      // task whose driver no node reports, or -1
	statics     []reason // per node: 0 unknown, okStatic, or the constraint that failed
	onNode      []int32  // per node index: replicas of the group (borrowed from the Cluster)
	touched     []int32  // node indices whose onNode may be non-zero
	total       int      // replicas of the group the cluster holds now
	models      [][]uint64
	ask         Ask
	exhausted   bool   // a placement found no node: later ones cannot either
	sig         string // everything check reads of the group (signature)
}

// signature renders everything check reads of the group, but
// distinct_hosts: two groups with the same signature fit the same nodes
// for the same reasons.
func (g *groupPlan) signature() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d/%d/%d/%v/%d", g.cpu, g.mem, g.disk, g.static, g.dynamic)
	for _, t := range g.group.Tasks {
		b.WriteString("|d:" + t.Driver)
	}
	for _, m := range g.constraints {
		b.WriteString("|c:" + m.text)
	}
	for _, a := range g.gpu {
		fmt.Fprintf(&b, "|g:%d/%d/%d/%d/%s/%s/%d/%d/%v", a.Form, a.Count, a.Milli, a.Memory, a.Profile, a.Model, a.MemoryMin, a.CCMin, a.Enforce)
	}
	return b.String()
}

type weighted struct {
	m *matcher
	w int
}

type spreadPlan struct {
	text    string
	attr    attrRef
	targets map[string]int
	sum     int
	counts  map[string]int
	values  int // distinct values over schedulable nodes (even spread)
}

// reason is why a node was rejected: a code and an argument (a task,
// constraint, port or GPU ask with its stage).
type reason uint32

const okStatic reason = 1

const (
	cNotReady reason = iota + 1
	cDriver
	cConstraint
	cDistinct
	cCPU
	cMemory
	cDisk
	cPort
	cDynPorts
	cGPU
	cScorer
)

func mkReason(code reason, arg int) reason { return code<<16 | reason(arg&0xffff) }
func (r reason) code() reason              { return r >> 16 }
func (r reason) arg() int                  { return int(r & 0xffff) }

// Stages of GPU eligibility, in the order they are checked. A node's GPU
// reason is the furthest stage any of its GPUs reached.
const (
	sNoGPUs = iota
	sKind   // passthrough GPUs for VMs, the others for everything else
	sModel
	sMemMin
	sCC
	sHealth
	sMode
	sEnforce
	sProfile
	sCap
	sOK
)

type reasonCount struct {
	r reason
	n int
}

type logEntry struct {
	a     *api.Allocation
	g     *groupPlan
	added bool
}

// planner is the state of one Plan call.
type planner struct {
	e          *Engine
	c          *Cluster
	gpuScorer  GPUScorer // Request.Scorer or Config.GPUScorer, or what its ForPlan returned
	cpuScorer  CPUScorer // gpuScorer as a CPUScorer; nil: built-in fit
	job        *api.Job
	jobKey     string
	queue      string
	spread     bool
	seed       uint64
	selections uint64
	plan       *Plan
	apart      bool // replicas of a group prefer distinct nodes (rank.near)
	srch       search
	groups     []*groupPlan // prepared: their counts go back to the Cluster
	note       string       // why the last search failed beyond node reasons (spread)
	noteNodes  int
	placed     map[*api.Allocation]bool
	log        []logEntry

	choice  Choice // the node under test
	best    Choice // picks of the best node so far
	saved   [][]int
	scratch []gpu.Device
	reasons []reasonCount
	// explaining is set while every node is checked to explain a failure:
	// checks then find the precise reason instead of the quickest one.
	explaining bool
	visited    int
	fit        int
}

// Plan places the request against the cluster and updates the cluster
// with the result: placed allocations are added, preempted and stopping
// ones removed. Use it to plan many requests against one evolving
// cluster; Schedule is Plan on a fresh Cluster. An invalid request
// returns an error matching ErrInvalid and leaves the cluster unchanged.
func (e *Engine) Plan(c *Cluster, req *Request) (plan *Plan, err error) {
	defer func() {
		if r := recover(); r != nil {
			plan, err = nil, fmt.Errorf("%w: %v", ErrInternal, r)
		}
	}()
	if req == nil || req.Job == nil {
		return nil, &ValidationError{Msg: "request without a job"}
	}
	job := req.Job
	groups, err := compileJob(job)
	if err != nil {
		return nil, fmt.Errorf("job %s: %w", job.Key(), err)
	}
	byName := make(map[string]*groupPlan, len(groups))
	for _, g := range groups {
		byName[g.group.Name] = g
	}
	var order []*groupPlan
	perGroup := map[*groupPlan][]Placement{}
	for i, pl := range req.Place {
		g := byName[pl.Group]
		if g == nil {
			return nil, fmt.Errorf("job %s: %w", job.Key(), verr(fmt.Sprintf("place[%d].group", i), "job has no group %q", pl.Group))
		}
		if perGroup[g] == nil {
			order = append(order, g)
		}
		perGroup[g] = append(perGroup[g], pl)
	}
	for _, id := range req.Stopping {
		if a := c.byAlloc[id]; a != nil {
			c.Remove(a)
		}
	}
	p := &planner{
		e: e, c: c, job: job, jobKey: job.Key(),
		queue:  c.queues.of(job.Namespace),
		spread: job.Placement == api.PlacementSpread || (job.Placement == "" && e.cfg.Algorithm == api.PlacementSpread),
		plan:   &Plan{Failed: map[string]*api.Explanation{}},
		placed: map[*api.Allocation]bool{},
		apart:  !e.cfg.PackReplicas && job.Type != api.JobBatch && job.Placement != api.PlacementBinpack,
	}
	p.gpuScorer = e.cfg.GPUScorer
	if req.Scorer != nil {
		p.gpuScorer = req.Scorer
	}
	if ps, ok := p.gpuScorer.(PlanScorer); ok {
		if p.gpuScorer = ps.ForPlan(c); p.gpuScorer == nil {
			p.gpuScorer = BestFit{}
		}
	}
	p.cpuScorer, _ = p.gpuScorer.(CPUScorer)
	h := fnv.New64a()
	fmt.Fprintf(h, "%s/%d", p.jobKey, job.Version)
	p.seed = h.Sum64()
	defer func() {
		for _, g := range p.groups {
			for _, i := range g.touched {
				g.onNode[i] = 0
			}
			c.returnCounts(g.onNode)
		}
	}()
	for _, g := range order {
		p.placeGroup(g, perGroup[g])
	}
	for _, ex := range p.plan.Failed {
		ex.SortReasons()
	}
	if len(p.plan.Failed) == 0 {
		p.plan.Failed = nil
	}
	return p.plan, nil
}

// prepare fills a group's per-call state on first use.
func (p *planner) prepare(g *groupPlan) {
	if g.ready {
		return
	}
	g.ready = true
	g.missing = -1
	for ti, t := range g.group.Tasks {
		bit, known := p.c.drivers[t.Driver]
		switch {
		case !known:
			if g.missing < 0 {
				g.missing = ti
			}
		case bit == 0:
			g.slowDrivers = true
		default:
			g.drivers |= bit
		}
	}
	if len(g.constraints) > 0 {
		g.statics = make([]reason, len(p.c.nodes))
	}
	g.onNode = p.c.borrowCounts()
	p.groups = append(p.groups, g)
	for _, sp := range g.spreads {
		sp.counts = map[string]int{}
		if sp.targets == nil {
			sp.values = p.c.attrIndex(sp.attr).values
		}
	}
	if len(g.spreads) > 0 {
		g.spreadIdx = newSpreadIndex(g.spreads[0], p.c.nodes, func(n *NodeState) bool { return p.static(g, n) == 0 })
	}
	if p.apart && len(g.affinities) == 0 && len(g.spreads) == 0 {
		// The group's own affinities or spread decide over the default.
		for _, ref := range p.e.apart {
			if x := p.c.attrIndex(ref); x.values > 1 {
				g.apart = append(g.apart, apartPlan{x, make([]int32, x.n)})
			}
		}
	}
	for _, a := range p.c.byJob[p.jobKey] {
		if a.Group == g.group.Name {
			if n := p.c.byID[a.NodeID]; n != nil {
				g.count(n, 1)
			}
		}
	}
	g.models = make([][]uint64, len(g.gpu))
	for k := range g.gpu {
		if g.gpu[k].Model != "" {
			g.models[k] = p.c.modelMask(g.gpu[k].Model)
		}
	}
	g.ask = Ask{Job: p.job, Group: g.group, CPU: g.cpu, Memory: g.mem, Disk: g.disk, GPU: g.gpu, Spread: p.spread}
}

// count records (sign 1) or forgets (sign −1) a replica of the group on n.
func (g *groupPlan) count(n *NodeState, sign int) {
	if g.onNode[n.index] == 0 {
		g.touched = append(g.touched, int32(n.index))
	}
	g.onNode[n.index] += int32(sign)
	g.total += sign
	for _, sp := range g.spreads {
		if v, ok := sp.attr.get(n.node); ok {
			sp.counts[v] += sign
		}
	}
	if g.spreadIdx != nil {
		g.spreadIdx.add(g.spreadIdx.bucketOf(g.spreads[0], n), sign)
	}
	for _, ap := range g.apart {
		if v := ap.x.ids[n.index]; v >= 0 {
			ap.counts[v] += int32(sign)
		}
	}
}

func (p *planner) mark() (log, placed, preempt int) {
	return len(p.log), len(p.plan.Placed), len(p.plan.Preempt)
}

// rollback undoes every change made since mark.
func (p *planner) rollback(log, placed, preempt int) {
	for i := len(p.log) - 1; i >= log; i-- {
		u := p.log[i]
		if u.added {
			n := p.c.byID[u.a.NodeID]
			p.c.Remove(u.a)
			delete(p.placed, u.a)
			u.g.count(n, -1)
		} else {
			p.c.Add(u.a)
		}
	}
	p.log = p.log[:log]
	p.plan.Placed = p.plan.Placed[:placed]
	p.plan.Preempt = p.plan.Preempt[:preempt]
}

func (p *planner) placeGroup(g *groupPlan, list []Placement) {
	p.prepare(g)
	if g.gang == 0 {
		for i, pl := range list {
			if g.exhausted || !p.placeOne(g, pl) {
				p.failed(g).Unplaced += len(list) - i
				return
			}
		}
		return
	}
	// A gang places at least gang.min replicas (counting those it already
	// has) in this plan, or nothing.
	lm, pm, xm := p.mark()
	existing := g.total
	placed := 0
	for _, pl := range list {
		if !p.placeOne(g, pl) {
			break
		}
		placed++
	}
	if existing+placed >= g.gang {
		if placed < len(list) {
			p.failed(g).Unplaced += len(list) - placed
		}
		return
	}
	nodes := map[string]bool{}
	for _, a := range p.plan.Placed[pm:] {
		nodes[a.NodeID] = true
	}
	p.rollback(lm, pm, xm)
	ex := p.failed(g)
	ex.Unplaced += len(list)
	ex.Reasons = append(ex.Reasons, api.ReasonCount{
		Reason: fmt.Sprintf("gang min %d not met: %d of %d replicas fit", g.gang, existing+placed, existing+len(list)),
		Nodes:  len(nodes),
	})
}

// failed returns the group's explanation, creating it with the reasons of
// the last node search.
func (p *planner) failed(g *groupPlan) *api.Explanation {
	name := g.group.Name
	if ex := p.plan.Failed[name]; ex != nil {
		return ex
	}
	ex := &api.Explanation{Group: name, NodesEvaluated: p.visited, NodesFit: p.fit}
	for _, rc := range p.reasons {
		ex.Reasons = append(ex.Reasons, api.ReasonCount{Reason: p.reasonText(g, rc.r), Nodes: rc.n})
	}
	if p.note != "" {
		ex.Reasons = append(ex.Reasons, api.ReasonCount{Reason: p.note, Nodes: p.noteNodes})
	}
	p.plan.Failed[name] = ex
	return ex
}

// placeOne places one replica, preempting if it must. It reports false
// when it cannot; p.reasons then says why.
func (p *planner) placeOne(g *groupPlan, pl Placement) bool {
	p.reasons = p.reasons[:0]
	p.visited, p.fit = 0, 0
	if err := p.c.queues.limitErr(p.queue, p.c.queues.usage[p.queue], g.demand); err != nil {
		p.visited = len(p.c.nodes)
		ex := p.failed(g)
		ex.Reasons = []api.ReasonCount{{Reason: err.Error(), Nodes: len(p.c.nodes)}}
		g.exhausted = true
		return false
	}
	n := p.selectNode(g)
	if n == nil {
		n = p.preempt(g)
		if n == nil {
			g.exhausted = true
			return false
		}
		if p.check(g, n) != 0 {
			panic("node chosen for preemption does not fit")
		}
		if _, ok := p.score(g, n); !ok {
			p.check(g, n) // the scorer said no: the core picks
		}
		p.keep()
	}
	p.commit(g, n, pl)
	return true
}

// selectNode finds the best node for one replica of g, or nil. A group
// with a spread looks bucket by bucket through its spread index (see
// spreadIndex). Otherwise work without GPUs looks at nodes through the
// free-cpu index until it has SampleSize feasible ones, and GPU work
// through the GPU index (nodes by free shape) until it has GPUSampleSize;
// with a negative sample size every node is scored. A search that found
// nothing looks at every node, which also counts the reasons.
func (p *planner) selectNode(g *groupPlan) *NodeState {
	limit := p.e.cfg.SampleSize
	if len(g.gpu) > 0 {
		limit = p.e.cfg.GPUSampleSize
	}
	if limit >= len(p.c.nodes) {
		limit = -1
	}
	p.selections++
	p.note, p.noteNodes = "", 0
	s := &p.srch
	p.find(g, limit, s)
	if s.best != nil {
		if p.e.cfg.MeasureRegret && limit > 0 && !s.explained {
			p.measure(g, s.rank)
		}
		return s.best
	}
	if s.explained {
		return nil
	}
	if g.spreadIdx != nil {
		p.note, p.noteNodes = g.spreadIdx.fullText(g.spreads[0])
	}
	p.explain(g, s)
	if s.best != nil {
		p.note, p.noteNodes = "", 0
	}
	return s.best
}

// rank orders the candidates of one placement. For services (unless
// they pack): a node holding fewer replicas of the group first, then one
// whose values of the apart attributes (zone, physical host) hold no more
// than their share of the group. Then the higher score.
type rank struct {
	near, over int
	s          float64
}

func (a rank) better(b rank) bool {
	if a.near != b.near {
		return a.near < b.near
	}
	if a.over != b.over {
		return a.over < b.over
	}
	return a.s > b.s
}

// apartFrom reports whether a keeps replicas further apart than b.
func (a rank) apartFrom(b rank) bool {
	return a.near < b.near || (a.near == b.near && a.over < b.over)
}

// search is the state of one node search.
type search struct {
	p         *planner
	g         *groupPlan
	limit     int // stop at this many fitting nodes (away from the group's replicas); <= 0: never
	found     int
	fit       int
	best      *NodeState
	rank      rank
	explained bool   // the search checked every node, counting reasons
	record    []rank // when measuring regret: every fitting node's rank
	recording bool
	last      reason // of the node rated last (0: it fits)
	rated     int    // nodes rated
	// deferred are nodes holding replicas of the group, passed over
	// unchecked while the search may still find a node holding none.
	deferred []*NodeState
}

func (s *search) reset(p *planner, g *groupPlan, limit int) {
	*s = search{p: p, g: g, limit: limit, record: s.record[:0], recording: s.recording, deferred: s.deferred[:0]}
}

// consider checks and rates n; it reports true when the search has
// enough candidates.
func (s *search) consider(n *NodeState, explain bool) bool {
	p, g := s.p, s.g
	if p.apart && !explain && g.onNode[n.index] > 0 {
		s.deferred = append(s.deferred, n)
		return false
	}
	return s.rate(n, explain)
}

// undefer rates the deferred nodes when the search found no node that
// holds none of the group's replicas.
func (s *search) undefer() {
	if s.best == nil {
		for _, n := range s.deferred {
			s.rate(n, false)
		}
	}
	s.deferred = s.deferred[:0]
}

func (s *search) rate(n *NodeState, explain bool) bool {
	p, g := s.p, s.g
	r := p.check(g, n)
	s.last = r
	s.rated++
	if r == 0 {
		sc, ok := p.score(g, n)
		if ok {
			k := rank{s: sc}
			if p.apart {
				k.near = int(g.onNode[n.index])
				for _, ap := range g.apart {
					if ap.over(n.index, g.total) {
						k.over++
					}
				}
			}
			if s.recording {
				s.record = append(s.record, k)
			}
			s.fit++
			if k.near == 0 {
				s.found++
			}
			if s.best == nil || k.better(s.rank) {
				s.best, s.rank = n, k
				p.keep()
			}
			return s.limit > 0 && s.found >= s.limit
		}
		r = mkReason(cScorer, 0)
		s.last = r
	}
	if explain {
		p.countReason(r)
	}
	return false
}

// find runs the search for one replica of g into s.
func (p *planner) find(g *groupPlan, limit int, s *search) {
	s.reset(p, g, limit)
	nodes := p.c.nodes
	switch {
	case g.spreadIdx != nil:
		p.searchSpread(g, s)
	case limit > 0 && len(g.gpu) > 0:
		p.searchGPU(g, s)
		s.undefer()
	case limit > 0:
		p.searchFree(g, s)
		s.undefer()
	case len(g.gpu) > 0 && len(p.c.gpuNodes) < len(nodes):
		// Only nodes with GPUs can take GPU work; the full scan runs only
		// to explain a failure.
		for _, n := range p.c.gpuNodes {
			if s.consider(n, false) {
				break
			}
		}
		s.undefer()
		if s.best != nil {
			p.visited, p.fit = len(nodes), s.fit
		}
	default:
		p.explain(g, s)
	}
}

// explain looks at every node, counting the reasons of those that do not
// fit. After a search that found nothing, a demand explained before on
// this Cluster is explained from its memo: only the nodes that changed
// since (and those that fitted then) are checked again (see explainMemo).
func (p *planner) explain(g *groupPlan, s *search) {
	if !s.explained && p.explainFromMemo(g, s) {
		return
	}
	p.reasons = p.reasons[:0]
	s.found, s.fit, s.rated = 0, 0, 0
	s.best, s.rank = nil, rank{}
	p.explaining = true
	m := p.c.memoFor(g)
	for _, n := range p.c.nodes {
		stop := s.consider(n, true)
		if m != nil {
			m.set(n.index, s.last)
		}
		if stop {
			break
		}
	}
	if m != nil {
		m.at = len(p.c.changes)
		m.complete = !s.explainStopped(len(p.c.nodes))
	}
	p.explaining = false
	s.explained = true
	p.visited, p.fit = len(p.c.nodes), s.fit
}

// searchFree walks the free-cpu index: every capacity class offers its
// best-scoring feasible nodes, up to a share of the sample each. Binpack
// walks the nodes in use tightest first, then the empty nodes largest
// first; spread the empty nodes largest first, then the nodes in use
// emptiest first (see freeIndex).
func (p *planner) searchFree(g *groupPlan, s *search) {
	nodes := p.c.nodes
	x := p.c.index
	apart := p.apart
	lo := bucketOf(g.cpu)
	// spans of buckets, walked from the first to the second, inclusive
	spans := [2][2]int{{lo, emptyBase - 1}, {nBuckets - 1, emptyBase + lo}}
	if p.spread {
		spans = [2][2]int{{nBuckets - 1, emptyBase + lo}, {emptyBase - 1, lo}}
	}
	quota := max(2, (s.limit+len(x.order)-1)/len(x.order))
	for _, ci := range x.order {
		cl := x.classes[ci]
		if cl.size == 0 {
			continue
		}
		s.found = 0
	walk:
		for _, sp := range spans {
			up := sp[1] >= sp[0]
			for b := cl.next(sp[0], up); b >= 0 && (up && b <= sp[1] || !up && b >= sp[1]); b = cl.next(b+step(up), up) {
				l := cl.buckets[b]
				off := int(mix(p.seed, uint64(b), p.selections) % uint64(len(l)))
				for _, part := range [2][]int32{l[off:], l[:off]} {
					for _, i := range part {
						if apart && g.onNode[i] > 0 {
							s.deferred = append(s.deferred, nodes[i]) // see consider
							continue
						}
						if s.rate(nodes[i], false) || s.found >= quota {
							break walk
						}
					}
				}
			}
		}
	}
}

func step(up bool) int {
	if up {
		return 1
	}
	return -1
}

// mix is a small deterministic hash (splitmix64) of its inputs.
// portSalt varies where a replica's dynamic ports start with its node
// and with each replacement, so that a replacement of an allocation whose
// port something outside the cluster took does not ask for it again, and
// two clusters sharing a host do not start from the same port. It stays
// a function of the input: the same input still gives the same plan.
func portSalt(n *NodeState, pl Placement) uint64 {
	h := fnv.New64a()
	h.Write([]byte(n.node.ID))
	if pl.PreviousAlloc != nil {
		fmt.Fprintf(h, "/%d/%s", pl.PreviousAlloc.Reschedules+1, pl.PreviousAlloc.ID)
	}
	return h.Sum64()
}

func mix(a, b, c uint64) uint64 {
	x := a ^ b*0x9e3779b97f4a7c15 ^ c*0xbf58476d1ce4e5b9
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

func (p *planner) countReason(r reason) {
	for i := range p.reasons {
		if p.reasons[i].r == r {
			p.reasons[i].n++
			return
		}
	}
	p.reasons = append(p.reasons, reasonCount{r, 1})
}

// check returns 0 when one replica of g fits n now, else why not. For GPU
// work it leaves the eligible devices (and for several GPU tasks the
// picks) in p.choice.
func (p *planner) check(g *groupPlan, n *NodeState) reason {
	if r := p.static(g, n); r != 0 {
		return r
	}
	return p.dynamic(g, n)
}

// static checks what does not change as allocations come and go: status,
// drivers and constraints.
func (p *planner) static(g *groupPlan, n *NodeState) reason {
	if !n.schedulable {
		switch {
		case n.node.Status != api.NodeStatusReady:
			return mkReason(cNotReady, 0)
		case n.node.Ineligible:
			return mkReason(cNotReady, 1)
		}
		return mkReason(cNotReady, 2)
	}
	if g.missing >= 0 {
		return mkReason(cDriver, g.missing)
	}
	if n.drivers&g.drivers != g.drivers || g.slowDrivers {
		for ti, t := range g.group.Tasks {
			if d, ok := n.node.Drivers[t.Driver]; !ok || !d.Detected || !d.Healthy {
				return mkReason(cDriver, ti)
			}
		}
	}
	if g.statics != nil {
		s := g.statics[n.index]
		if s == 0 {
			s = okStatic
			for i, m := range g.constraints {
				if !m.match(n.node) {
					s = mkReason(cConstraint, i)
					break
				}
			}
			g.statics[n.index] = s
		}
		if s != okStatic {
			return s
		}
	}
	return 0
}

// dynamic checks the rest of check: distinct hosts, capacity, ports and
// GPUs.
func (p *planner) dynamic(g *groupPlan, n *NodeState) reason {
	if g.distinct && g.onNode[n.index] > 0 {
		return mkReason(cDistinct, 0)
	}
	// Arg 1: the node could not hold the replica even empty.
	switch {
	case g.cpu > n.capCPU:
		return mkReason(cCPU, 1)
	case n.cpu+g.cpu > n.capCPU:
		return mkReason(cCPU, 0)
	case g.mem > n.capMem:
		return mkReason(cMemory, 1)
	case n.mem+g.mem > n.capMem:
		return mkReason(cMemory, 0)
	case n.capDisk > 0 && g.disk > n.capDisk:
		return mkReason(cDisk, 1)
	case n.capDisk > 0 && n.disk+g.disk > n.capDisk:
		return mkReason(cDisk, 0)
	}
	if len(g.static) > 0 || g.dynamic > 0 {
		free := n.freeDynamicPorts()
		for i, port := range g.static {
			if n.portUsed(port) {
				return mkReason(cPort, i)
			}
			if port >= n.portMin && port <= n.portMax {
				free--
			}
		}
		if free < g.dynamic {
			return mkReason(cDynPorts, 0)
		}
	}
	if len(g.gpu) > 0 {
		return p.checkGPU(g, n)
	}
	return 0
}

func (p *planner) resetPicks(k int) {
	for len(p.choice.Eligible) < k {
		p.choice.Eligible = append(p.choice.Eligible, nil)
		p.choice.Picked = append(p.choice.Picked, nil)
		p.best.Picked = append(p.best.Picked, nil)
		p.saved = append(p.saved, nil)
	}
	p.choice.Eligible = p.choice.Eligible[:k]
	p.choice.Picked = p.choice.Picked[:k]
	for i := 0; i < k; i++ {
		p.choice.Picked[i] = p.choice.Picked[i][:0]
	}
}

func (g *groupPlan) mask(k int, n *NodeState) uint64 {
	if g.models[k] == nil {
		return math.MaxUint64
	}
	return g.models[k][n.index]
}

func (p *planner) checkGPU(g *groupPlan, n *NodeState) reason {
	if len(n.gpus) == 0 {
		return mkReason(cGPU, sNoGPUs)
	}
	p.resetPicks(len(g.gpu))
	if len(g.gpu) == 1 {
		a := &g.gpu[0]
		if !p.explaining {
			switch {
			case a.Form == gpu.FormWhole && n.gpuIdle < a.Count,
				a.Form == gpu.FormShare && n.gpuShareMax < a.Milli,
				a.Form == gpu.FormMIG && n.gpuMIG == 0:
				return mkReason(cGPU, sCap)
			}
		}
		el, st := eligible(n.gpus, g.mask(0, n), a, p.choice.Eligible[0][:0])
		p.choice.Eligible[0] = el
		if len(el) < a.Count {
			return mkReason(cGPU, min(st, sCap))
		}
		return 0
	}
	// Several GPU tasks: choose them one after the other on a copy of the
	// devices, so that they never collide.
	p.scratch = p.scratch[:0]
	for i := range n.gpus {
		p.scratch = append(p.scratch, n.gpus[i].Clone())
	}
	for k := range g.gpu {
		a := &g.gpu[k]
		el, st := eligible(p.scratch, g.mask(k, n), a, p.choice.Eligible[k][:0])
		p.choice.Eligible[k] = el
		if len(el) < a.Count {
			return mkReason(cGPU, k<<8|min(st, sCap))
		}
		picks := defaultPickOne(p.scratch, a, el, p.choice.Picked[k][:0])
		p.choice.Picked[k] = picks
		for _, i := range picks {
			takeGPU(&p.scratch[i], a)
		}
	}
	return 0
}

// takeGPU accounts ask a on device d (for the multi-task simulation and
// for building assignments).
func takeGPU(d *gpu.Device, a *GPUAsk) *api.AllocatedGPU {
	switch a.Form {
	case gpu.FormWhole:
		d.AddWhole(false)
		return &api.AllocatedGPU{Devices: []string{d.UUID}}
	case gpu.FormShare:
		mem := gpu.ShareMemory(a.Milli, a.Memory, d.Memory)
		d.AddShare(a.Milli, mem, false)
		return &api.AllocatedGPU{Share: &api.ShareAssignment{GPU: d.UUID, Milli: a.Milli, Memory: mem, Enforce: a.Enforce}}
	default:
		m := &api.MIGAssignment{GPU: d.UUID, Profile: a.Profile}
		if i := d.FreeInstance(a.Profile); i >= 0 {
			in := d.Instances[i]
			m.Start, m.Size, m.InstanceUUID = in.Start, in.Size, in.UUID
		} else {
			prof, _ := d.Profile(a.Profile)
			start, _ := d.BestStart(&prof)
			m.Start, m.Size, m.Create = start, prof.Size, true
		}
		d.AddMIG(m.Profile, m.Start, m.Size, m.InstanceUUID, false)
		return &api.AllocatedGPU{MIG: m}
	}
}

// eligible appends to out the devices that can serve a now, and returns
// the furthest stage any device reached.
func eligible(devs []gpu.Device, mask uint64, a *GPUAsk, out []int) ([]int, int) {
	best := sKind
	for i := range devs {
		d := &devs[i]
		st := sModel
		switch {
		case d.Passthrough != a.VM:
			st = sKind
		case i >= 64 || mask&(1<<i) == 0:
		case d.Memory < a.MemoryMin:
			st = sMemMin
		case a.CCMin > 0 && d.CC < a.CCMin:
			st = sCC
		case !d.Healthy:
			st = sHealth
		case d.MIGEnabled != (a.Form == gpu.FormMIG):
			st = sMode
		default:
			st = eligibleForm(d, a)
		}
		if st == sOK {
			out = append(out, i)
		}
		best = max(best, st)
	}
	return out, best
}

func eligibleForm(d *gpu.Device, a *GPUAsk) int {
	switch a.Form {
	case gpu.FormWhole:
		if d.Users > 0 {
			return sCap
		}
	case gpu.FormShare:
		if a.Enforce && !d.SharingEnforced {
			return sEnforce
		}
		if !d.CanShare(a.Milli, gpu.ShareMemory(a.Milli, a.Memory, d.Memory)) {
			return sCap
		}
	case gpu.FormMIG:
		if d.FreeInstance(a.Profile) >= 0 {
			return sOK
		}
		prof, ok := a.profile(d)
		if !ok {
			return sProfile
		}
		if !d.MIGManaged {
			return sCap
		}
		for _, s := range prof.Starts {
			if d.CanCreate(&prof, s) {
				return sOK
			}
		}
		return sCap
	}
	return sOK
}

// defaultPickOne is DefaultPick for one ask over a device slice.
func defaultPickOne(devs []gpu.Device, a *GPUAsk, el []int, out []int) []int {
	switch a.Form {
	case gpu.FormWhole:
		return gpu.PickConnected(devs, el, a.Count, out)
	case gpu.FormShare:
		best := -1
		for _, i := range el {
			if best < 0 || devs[i].FreeMilli < devs[best].FreeMilli ||
				(devs[i].FreeMilli == devs[best].FreeMilli && devs[i].FreeMemory < devs[best].FreeMemory) {
				best = i
			}
		}
		if best >= 0 {
			out = append(out, best)
		}
	case gpu.FormMIG:
		best, bestFree := -1, false
		for _, i := range el {
			free := devs[i].FreeInstance(a.Profile) >= 0
			switch {
			case best < 0, free && !bestFree:
				best, bestFree = i, free
			case free == bestFree && devs[i].Compute > devs[best].Compute:
				best = i
			}
		}
		if best >= 0 {
			out = append(out, best)
		}
	}
	return out
}

// validPicks reports whether picks are Count distinct eligible devices.
func validPicks(a *GPUAsk, el, picks []int) bool {
	if len(picks) != a.Count {
		return false
	}
	for i, x := range picks {
		if !in(el, x) || in(picks[:i], x) {
			return false
		}
	}
	return true
}

func in(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// score rates a node that passed check. For GPU work it asks the GPU
// scorer, which also picks devices.
func (p *planner) score(g *groupPlan, n *NodeState) (float64, bool) {
	var s float64
	if len(g.gpu) > 0 {
		multi := len(g.gpu) > 1
		if multi {
			for k := range g.gpu {
				p.saved[k] = append(p.saved[k][:0], p.choice.Picked[k]...)
			}
		}
		var ok bool
		s, ok = p.gpuScorer.ScoreGPU(n, &g.ask, &p.choice)
		if !ok || math.IsNaN(s) {
			return 0, false
		}
		for k := range g.gpu {
			if multi {
				p.choice.Picked[k] = append(p.choice.Picked[k][:0], p.saved[k]...)
			} else if len(p.choice.Picked[k]) > 0 && !validPicks(&g.gpu[k], p.choice.Eligible[k], p.choice.Picked[k]) {
				p.choice.Picked[k] = p.choice.Picked[k][:0] // the core picks, if this node wins
			}
		}
	} else if p.cpuScorer != nil {
		var fits bool
		if s, fits = p.cpuScorer.ScoreCPU(n, &g.ask); !fits || math.IsNaN(s) {
			return 0, false
		}
	} else {
		s = FitCPU(n, &g.ask)
	}
	terms := 0
	sum := s
	if len(g.affinities) > 0 {
		a := 0
		for _, w := range g.affinities {
			if w.m.match(n.node) {
				a += w.w
			}
		}
		sum += float64(a) / float64(g.affinityTotal)
		terms++
	}
	if len(g.spreads) > 1 {
		b := 0.0
		for _, sp := range g.spreads[1:] {
			b += sp.boost(n.node, g.total, g.group.Count)
		}
		sum += b / float64(len(g.spreads)-1)
		terms++
	}

	if terms == 0 {
		return s, true
	}
	return sum / float64(terms+1), true
}

// fitScore rates the node for cpu and mem in [0, 1]. It starts from
// Nomad's best-fit form 20 − (10^freeCPU + 10^freeMem) after placement,
// scaled to [0, 1]. Binpack prefers nodes already in use (tightest
// first) and opens an empty node only when none fits, the largest first,
// so that work lands on few nodes; spread prefers the emptiest node.
func fitScore(n *NodeState, cpu, mem int, spread bool) float64 {
	fc, fm := 0.0, 0.0
	if n.capCPU > 0 {
		fc = float64(n.capCPU-n.cpu-cpu) / float64(n.capCPU)
	}
	if n.capMem > 0 {
		fm = float64(n.capMem-n.mem-mem) / float64(n.capMem)
	}
	t := pow10(fc) + pow10(fm)
	fit := (20 - t) / 18
	switch {
	case spread:
		return 1 - fit
	case len(n.allocs) > 0:
		return (1 + fit) / 2
	}
	return (1 - fit) / 2
}

// pow10 is 10^x as exp(x·ln 10): within a few ULPs of math.Pow(10, x)
// for x in [-1, 1] and six times cheaper; fitScore calls it twice per
// node rated, where math.Pow was a sixth of a placement's time.
func pow10(x float64) float64 { return math.Exp(x * math.Ln10) }

// boost is a node's spread term in [-1, 1]: positive when its value of the
// attribute, with this replica, holds fewer replicas than its target (or
// than the mean, with no targets), negative when it would hold more.
func (sp *spreadPlan) boost(n *api.Node, total, count int) float64 {
	v, ok := sp.attr.get(n)
	if !ok {
		return -1
	}
	have := float64(sp.counts[v]) + 1 // with this replica
	var b float64
	if sp.targets != nil {
		pct := sp.targets[v]
		desired := float64(pct) / 100 * float64(max(count, total+1))
		if desired <= 0 {
			return -1
		}
		b = (desired - have) / desired
	} else {
		mean := float64(total+1) / float64(max(sp.values, 1))
		b = (mean - have) / mean
	}
	return math.Max(-1, math.Min(1, b))
}

// apartPlan counts a group's replicas per value of an apart attribute.
type apartPlan struct {
	x      *attrIndex
	counts []int32 // per value number
}

// over reports whether the node's value of an apart attribute holds more
// replicas of the group than an even share over the attribute's values
// would give at this step. Nodes without the attribute are never over.
func (ap apartPlan) over(node, total int) bool {
	v := ap.x.ids[node]
	return v >= 0 && int(ap.counts[v]) > total/max(ap.x.values, 1)
}

// keep copies the picks of the node under test as the best so far.
func (p *planner) keep() {
	for k := range p.choice.Picked {
		p.best.Picked[k] = append(p.best.Picked[k][:0], p.choice.Picked[k]...)
	}
}

// commit builds the allocation of one replica on n with the kept picks
// and adds it to the cluster.
func (p *planner) commit(g *groupPlan, n *NodeState, pl Placement) {
	job := p.job
	a := &api.Allocation{
		Namespace: job.Namespace, Job: job.Name, JobVersion: job.Version, JobSubmitTime: job.SubmitTime,
		Group: g.group.Name, Index: pl.Index, Priority: job.Priority,
		NodeID: n.node.ID, NodeName: n.node.Name,
		Resources: make(map[string]*api.AllocatedResources, len(g.group.Tasks)),
	}
	if pl.PreviousAlloc != nil {
		a.PreviousAlloc = pl.PreviousAlloc.ID
		a.Reschedules = pl.PreviousAlloc.Reschedules + 1
	}
	if len(g.gpu) > 0 {
		p.pickRest(g, n)
	}
	var taken []int
	next := -1
	type tmp struct {
		d *gpu.Device
		g *api.AllocatedGPU
	}
	var undo []tmp
	for ti, t := range g.group.Tasks {
		r := &api.AllocatedResources{CPU: t.Resources.CPU, Memory: api.TaskMemory(t), Disk: t.Resources.Disk}
		for _, ps := range t.Config.Ports {
			host := ps.Static
			if host == 0 {
				if next < 0 {
					next = int(mix(p.seed^portSalt(n, pl), uint64(pl.Index), uint64(len(g.group.Name))) % uint64(n.portMax-n.portMin+1))
				}
				host, next = p.dynamicPort(n, g, next, taken)
			}
			taken = append(taken, host)
			to := ps.To
			if to == 0 {
				to = host
			}
			r.Ports = append(r.Ports, api.AllocatedPort{Name: ps.Name, Host: host, To: to})
		}
		for k, gt := range g.gpuTask {
			if gt != ti {
				continue
			}
			ask := &g.gpu[k]
			for _, i := range p.best.Picked[k] {
				d := &n.gpus[i]
				got := takeGPU(d, ask)
				undo = append(undo, tmp{d, got})
				if r.GPU == nil {
					r.GPU = got
				} else {
					r.GPU.Devices = append(r.GPU.Devices, got.Devices...)
				}
			}
		}
		a.Resources[t.Name] = r
	}
	for i := len(undo) - 1; i >= 0; i-- {
		u := undo[i]
		switch {
		case u.g.Share != nil:
			u.d.RemoveShare(u.g.Share.Milli, u.g.Share.Memory)
		case u.g.MIG != nil:
			u.d.RemoveMIG(u.g.MIG.Start, u.g.MIG.Size, u.g.MIG.InstanceUUID)
		default:
			u.d.RemoveWhole()
		}
	}
	p.c.Add(a)
	p.placed[a] = true
	g.count(n, 1)
	p.log = append(p.log, logEntry{a: a, g: g, added: true})
	p.plan.Placed = append(p.plan.Placed, a)
}

// pickRest fills the kept picks the scorer left empty with DefaultPick on
// the winning node.
func (p *planner) pickRest(g *groupPlan, n *NodeState) {
	for k := range g.gpu {
		if len(p.best.Picked[k]) == 0 {
			if p.check(g, n) != 0 {
				panic("the chosen node no longer fits")
			}
			for k := range g.gpu {
				if len(p.best.Picked[k]) == 0 {
					p.best.Picked[k] = defaultPickOne(n.gpus, &g.gpu[k], p.choice.Eligible[k], p.best.Picked[k][:0])
				}
			}
			return
		}
	}
}

// dynamicPort returns a free host port of n's range, probing from next,
// and the position to probe from for the following port.
func (p *planner) dynamicPort(n *NodeState, g *groupPlan, next int, taken []int) (int, int) {
	span := n.portMax - n.portMin + 1
	for i := 0; i < span; i++ {
		c := n.portMin + (next+i)%span
		if !n.portUsed(c) && !in(taken, c) && !in(g.static, c) {
			return c, (next + i + 1) % span
		}
	}
	panic("no free dynamic port after check said there was one")
}

// reasonText renders a rejection reason for explanations.
func (p *planner) reasonText(g *groupPlan, r reason) string {
	switch r.code() {
	case cNotReady:
		switch r.arg() {
		case 0:
			return "node not ready"
		case 1:
			return "node ineligible"
		}
		return "node draining"
	case cDriver:
		return fmt.Sprintf("driver %s unavailable", g.group.Tasks[r.arg()].Driver)
	case cConstraint:
		return "constraint " + g.constraints[r.arg()].text
	case cDistinct:
		return "constraint distinct_hosts"
	case cCPU:
		if r.arg() == 1 {
			return fmt.Sprintf("node too small: needs %d millicores of cpu, more than the node has even when empty", g.cpu)
		}
		return "cpu exhausted"
	case cMemory:
		if r.arg() == 1 {
			return fmt.Sprintf("node too small: needs %d MiB of memory, more than the node has even when empty", g.mem)
		}
		return "memory exhausted"
	case cDisk:
		if r.arg() == 1 {
			return fmt.Sprintf("node too small: needs %d MiB of disk, more than the node has even when empty", g.disk)
		}
		return "disk exhausted"
	case cPort:
		return fmt.Sprintf("port %d in use", g.static[r.arg()])
	case cDynPorts:
		return "dynamic ports exhausted"
	case cGPU:
		return gpuReason(&g.gpu[r.arg()>>8], r.arg()&0xff)
	case cScorer:
		return "rejected by the GPU scorer"
	}
	return "unknown"
}

func gpuReason(a *GPUAsk, st int) string {
	switch st {
	case sNoGPUs:
		return "no GPUs"
	case sKind:
		if a.VM {
			return "no GPU bound to vfio-pci for passthrough to a VM"
		}
		return "GPUs bound to vfio-pci, for VMs only"
	case sModel:
		return "no GPU of model " + a.Model
	case sMemMin:
		return fmt.Sprintf("no GPU with %d MiB of memory", a.MemoryMin)
	case sCC:
		return fmt.Sprintf("no GPU of compute capability %d.%d", a.CCMin/100, a.CCMin%100)
	case sHealth:
		if a.VM {
			return "passthrough GPUs not ready (the node's gpu.passthrough attribute says why)"
		}
		return "GPUs unhealthy"
	case sMode:
		if a.Form == gpu.FormMIG {
			return "no GPU in MIG mode"
		}
		return "GPUs in MIG mode"
	case sEnforce:
		return "no GPU enforces shares"
	case sProfile:
		return "MIG profile " + a.Profile + " not offered"
	}
	switch a.Form {
	case gpu.FormWhole:
		return fmt.Sprintf("GPUs exhausted: %d idle needed", a.Count)
	case gpu.FormMIG:
		return "MIG profile " + a.Profile + ": no free slot"
	}
	if a.Memory > 0 {
		return fmt.Sprintf("GPU share: no GPU with %d milli and %d MiB free", a.Milli, a.Memory)
	}
	return fmt.Sprintf("GPU share: no GPU with %d milli free", a.Milli)
}
