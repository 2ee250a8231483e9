package lb

import (
	"math"
	"sync/atomic"
	"time"
)

// endpoint is one backend of a service: an allocation's published port.
// Its counters live as long as the endpoint stays in the catalog.
type endpoint struct {
	alloc, job, group string
	addr              string // host:port

	draining    atomic.Bool
	outstanding atomic.Int64
	ejectUntil  atomic.Int64 // unix nanoseconds; left out until then after a failure

	// Latency as a decaying average (p2c), in nanoseconds as float bits.
	ewma     atomic.Uint64
	ewmaTime atomic.Int64

	requests [6]atomic.Uint64 // by status class: [0] transport errors, [1..5] 1xx..5xx
	retries  atomic.Uint64
	latency  histogram
}

// ejectFor is how long an endpoint that refused or broke a connection is
// left out, unless every endpoint is.
const ejectFor = 3 * time.Second

func (e *endpoint) eject(now int64) { e.ejectUntil.Store(now + int64(ejectFor)) }

func (e *endpoint) ejected(now int64) bool { return e.ejectUntil.Load() > now }

// ewmaTau is how fast old latencies fade from the average.
const ewmaTau = 10 * time.Second

// observeLatency folds one round trip into the decaying average.
func (e *endpoint) observeLatency(now int64, d time.Duration) {
	rtt := float64(d)
	for {
		oldBits := e.ewma.Load()
		old := math.Float64frombits(oldBits)
		prev := e.ewmaTime.Load()
		next := rtt
		if prev != 0 && old != 0 {
			w := math.Exp(-float64(now-prev) / float64(ewmaTau))
			next = old*w + rtt*(1-w)
		}
		if e.ewma.CompareAndSwap(oldBits, math.Float64bits(next)) {
			e.ewmaTime.Store(now)
			return
		}
	}
}

// cost is what p2c compares: recent latency times load.
func (e *endpoint) cost() float64 {
	l := math.Float64frombits(e.ewma.Load())
	if l == 0 {
		l = 1 // nothing known yet: cheap, so it gets tried
	}
	return l * float64(e.outstanding.Load()+1)
}

// histogram counts request durations in fixed buckets, lock-free.
type histogram struct {
	counts [len(buckets) + 1]atomic.Uint64
	sumNs  atomic.Int64
}

// buckets are the histogram's upper bounds, in seconds.
var buckets = [...]float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

func (h *histogram) observe(d time.Duration) {
	s := d.Seconds()
	i := 0
	for i < len(buckets) && s > buckets[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sumNs.Add(int64(d))
}

// snapshot returns the cumulative bucket counts, the total count and the
// sum in seconds.
func (h *histogram) snapshot() (map[float64]uint64, uint64, float64) {
	cum := make(map[float64]uint64, len(buckets))
	var n uint64
	for i, b := range buckets {
		n += h.counts[i].Load()
		cum[b] = n
	}
	n += h.counts[len(buckets)].Load()
	return cum, n, float64(h.sumNs.Load()) / 1e9
}
