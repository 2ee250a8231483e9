package scheduler

// RegretSample compares, for one placement chosen from a sample of the
// feasible nodes, the chosen node with the best node a scan of every
// node finds (Config.MeasureRegret).
type RegretSample struct {
	// Regret is the best node's score minus the chosen node's, and Range
	// the best score minus the worst, over the nodes that rank with the
	// best on replicas kept apart (so Regret/Range is in [0, 1]).
	Regret, Range float64
	// Apart is true when the best node keeps the group's replicas further
	// apart than the chosen one (fewer on the node, or a zone or host
	// below its share): the sample missed it.
	Apart bool
}

// Fraction is Regret as a share of the score range (1 when the sample
// missed a node that kept replicas apart; 0 when every node scores the
// same).
func (r RegretSample) Fraction() float64 {
	switch {
	case r.Apart:
		return 1
	case r.Range <= 0:
		return 0
	}
	return r.Regret / r.Range
}

// measure scans every candidate node the sampled search could have
// chosen from and records how the chosen rank compares with the best.
// It leaves the kept picks of the chosen node as they were.
func (p *planner) measure(g *groupPlan, chosen rank) {
	saved := make([][]int, len(p.best.Picked))
	for k := range p.best.Picked {
		saved[k] = append([]int(nil), p.best.Picked[k]...)
	}
	var s search
	s.recording = true
	p.find(g, -1, &s)
	for k := range saved {
		p.best.Picked[k] = append(p.best.Picked[k][:0], saved[k]...)
	}
	if s.best == nil {
		return
	}
	r := RegretSample{Apart: s.rank.apartFrom(chosen)}
	if !r.Apart {
		worst := s.rank.s
		for _, k := range s.record {
			if k.near == s.rank.near && k.over == s.rank.over && k.s < worst {
				worst = k.s
			}
		}
		r.Regret, r.Range = s.rank.s-chosen.s, s.rank.s-worst
		if r.Regret < 0 {
			r.Regret = 0 // ties broken elsewhere, or a scorer that changes its mind
		}
	}
	p.plan.Regret = append(p.plan.Regret, r)
}
