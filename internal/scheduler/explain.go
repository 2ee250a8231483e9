package scheduler

// explainMemo remembers, for one demand (a group's signature), why each
// node of a Cluster did not fit it, with the count of each reason, as of
// a point in the Cluster's log of changed nodes. A later failure of the
// same demand checks again only the nodes that changed since and those
// that fitted then: a replica that fits nowhere on a large cluster is
// explained at the cost of what changed, not of every node.
//
// The counts are those an ordered scan of every node would give, since
// a node's reason depends only on the node's state and the demand. The
// memo is used only when no node fits (then the order of the scan
// cannot matter); when a re-checked node fits, the ordered scan runs.
type explainMemo struct {
	r        []reason // per node: why it did not fit (0: it fitted, or the scorer decided)
	counts   []reasonCount
	at       int  // length of Cluster.changes when the memo was brought up to date
	complete bool // every node has been looked at
}

func (m *explainMemo) set(i int, r reason) {
	if r.code() == cScorer {
		r = 0 // the scorer's answer may change without the node changing
	}
	if old := m.r[i]; old != 0 {
		for k := range m.counts {
			if m.counts[k].r == old {
				m.counts[k].n--
				break
			}
		}
	}
	m.r[i] = r
	if r == 0 {
		return
	}
	for k := range m.counts {
		if m.counts[k].r == r {
			m.counts[k].n++
			return
		}
	}
	m.counts = append(m.counts, reasonCount{r, 1})
}

// maxMemos bounds the demands remembered per Cluster (4 bytes per node
// each); maxChanges, as a multiple of the nodes, bounds the log of
// changes (past it, every memo is dropped).
const (
	maxMemos   = 256
	maxChanges = 8
)

// memoFor returns the memo of the group's demand, or nil for a group
// whose fit depends on more than the node (distinct_hosts).
func (c *Cluster) memoFor(g *groupPlan) *explainMemo {
	if g.distinct {
		return nil
	}
	if g.sig == "" {
		g.sig = g.signature()
	}
	if m := c.memos[g.sig]; m != nil {
		return m
	}
	if len(c.memos) >= maxMemos || c.memos == nil {
		c.memos = map[string]*explainMemo{}
		c.changes = c.changes[:0]
	}
	m := &explainMemo{r: make([]reason, len(c.nodes))}
	c.memos[g.sig] = m
	return m
}

func (c *Cluster) noteChange(n *NodeState) {
	if len(c.changes) >= maxChanges*len(c.nodes)+1024 {
		c.memos = map[string]*explainMemo{}
		c.changes = c.changes[:0]
		return
	}
	c.changes = append(c.changes, int32(n.index))
}

// explainStopped reports whether the scan stopped before every node.
func (s *search) explainStopped(nodes int) bool { return s.rated < nodes }

// explainFromMemo explains a failure of g from its memo, checking again
// the nodes that changed since and those that fitted then. It reports
// false (and changes nothing that matters) when there is no complete
// memo or when a node fits: the ordered scan must then run.
func (p *planner) explainFromMemo(g *groupPlan, s *search) bool {
	if g.distinct || g.sig == "" && p.c.memos == nil {
		return false
	}
	m := p.c.memoFor(g)
	if !m.complete {
		return false
	}
	c := p.c
	c.stampGen++
	if c.stampGen == 0 || len(c.stamp) != len(c.nodes) {
		c.stamp = make([]uint32, len(c.nodes))
		c.stampGen = 1
	}
	s.found, s.fit = 0, 0
	p.explaining = true
	defer func() { p.explaining = false }()
	recheck := func(i int32) bool {
		if c.stamp[i] == c.stampGen {
			return true
		}
		c.stamp[i] = c.stampGen
		// check only: a scorer is never asked here (one that draws random
		// numbers would see extra calls)
		r := p.check(g, c.nodes[i])
		if r == 0 {
			return false // it fits: the ordered scan decides
		}
		m.set(int(i), r)
		return true
	}
	for _, i := range c.changes[m.at:] {
		if !recheck(i) {
			m.complete = false
			return false
		}
	}
	for i, r := range m.r {
		if r == 0 && !recheck(int32(i)) {
			m.complete = false
			return false
		}
	}
	m.at = len(c.changes)
	p.reasons = p.reasons[:0]
	for _, rc := range m.counts {
		if rc.n > 0 {
			p.reasons = append(p.reasons, rc)
		}
	}
	s.explained = true
	p.visited, p.fit = len(c.nodes), 0
	return true
}
