package lb

import (
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/gantryhq/gantry/internal/api"
)

// pool is a service's endpoints and its policy. The endpoint list is
// replaced whole on every catalog change, so picking reads it lock-free.
type pool struct {
	policy atomic.Value // string
	eps    atomic.Pointer[[]*endpoint]
	rr     atomic.Uint64

	noEndpoint atomic.Uint64 // requests that found no endpoint
}

func newPool(policy string) *pool {
	p := &pool{}
	p.policy.Store(policy)
	empty := []*endpoint{}
	p.eps.Store(&empty)
	return p
}

func (p *pool) endpoints() []*endpoint { return *p.eps.Load() }

// usable reports whether e may get a new request: not draining, not tried
// already for this request.
func usable(e *endpoint, tried []*endpoint) bool {
	if e.draining.Load() {
		return false
	}
	for _, t := range tried {
		if t == e {
			return false
		}
	}
	return true
}

// pick chooses an endpoint for a new request, skipping those in tried.
// Ejected endpoints are chosen only when nothing else is usable. It
// returns nil when no endpoint is usable at all.
func (p *pool) pick(tried []*endpoint) *endpoint {
	eps := p.endpoints()
	n := len(eps)
	if n == 0 {
		return nil
	}
	now := time.Now().UnixNano()
	var e *endpoint
	switch p.policy.Load().(string) {
	case api.LBLeastOutstanding:
		e = p.leastOutstanding(eps, tried, now)
	case api.LBP2C:
		e = p.twoChoices(eps, tried, now)
	default:
		e = p.roundRobin(eps, tried, now)
	}
	if e != nil {
		return e
	}
	// Everything usable is ejected: better an endpoint that failed a
	// moment ago than none.
	start := int(p.rr.Add(1) % uint64(n))
	for i := 0; i < n; i++ {
		if c := eps[(start+i)%n]; usable(c, tried) {
			return c
		}
	}
	return nil
}

func (p *pool) roundRobin(eps, tried []*endpoint, now int64) *endpoint {
	n := len(eps)
	start := int(p.rr.Add(1) % uint64(n))
	for i := 0; i < n; i++ {
		if c := eps[(start+i)%n]; usable(c, tried) && !c.ejected(now) {
			return c
		}
	}
	return nil
}

func (p *pool) leastOutstanding(eps, tried []*endpoint, now int64) *endpoint {
	n := len(eps)
	start := int(p.rr.Add(1) % uint64(n)) // ties go round robin
	var best *endpoint
	var bestN int64
	for i := 0; i < n; i++ {
		c := eps[(start+i)%n]
		if !usable(c, tried) || c.ejected(now) {
			continue
		}
		if o := c.outstanding.Load(); best == nil || o < bestN {
			best, bestN = c, o
		}
	}
	return best
}

func (p *pool) twoChoices(eps, tried []*endpoint, now int64) *endpoint {
	n := len(eps)
	ok := func(c *endpoint) bool { return usable(c, tried) && !c.ejected(now) }
	if n == 1 {
		if ok(eps[0]) {
			return eps[0]
		}
		return nil
	}
	// Two distinct random draws; when one is unusable, fall back to the
	// usable endpoints in order from a random start.
	i := rand.IntN(n)
	j := rand.IntN(n - 1)
	if j >= i {
		j++
	}
	a, b := eps[i], eps[j]
	switch {
	case ok(a) && ok(b):
		if b.cost() < a.cost() {
			return b
		}
		return a
	case ok(a):
		return a
	case ok(b):
		return b
	}
	for k := 0; k < n; k++ {
		if c := eps[(i+k)%n]; ok(c) {
			return c
		}
	}
	return nil
}
