package vsphere

import (
	"time"

	"github.com/gantryhq/gantry/internal/api"
)

// DefaultHistory is how many samples are kept per entity: one hour of
// 20-second rounds.
const DefaultHistory = 180

// sample is a compact VSphereSample: 40 bytes (seconds since the epoch
// and eight float32), so an hour of history (180 samples) for 11,000
// entities is about 80 MB; see the README.
type sample struct {
	unix int64
	v    [8]float32
}

func pack(s api.VSphereSample) sample {
	return sample{unix: s.Time.Unix(), v: [8]float32{s.CPUUsage, s.CPUReady, s.MemUsage, s.BalloonMiB, s.SwappedMiB, s.DiskLatencyMs, s.NetKBps, s.DatastoreUsed}}
}

func (s sample) unpack() api.VSphereSample {
	return api.VSphereSample{Time: time.Unix(s.unix, 0).UTC(), CPUUsage: s.v[0], CPUReady: s.v[1], MemUsage: s.v[2],
		BalloonMiB: s.v[3], SwappedMiB: s.v[4], DiskLatencyMs: s.v[5], NetKBps: s.v[6], DatastoreUsed: s.v[7]}
}

// ring is a bounded history of one entity, oldest first.
type ring struct {
	buf   []sample
	start int
	n     int
}

func (r *ring) add(s sample, max int) {
	if r.buf == nil {
		r.buf = make([]sample, 0, max) // one allocation: 40 bytes a sample
	}
	if len(r.buf) < max {
		r.buf = append(r.buf, s)
		r.n = len(r.buf)
		return
	}
	r.buf[r.start] = s
	r.start = (r.start + 1) % len(r.buf)
}

func (r *ring) last() (sample, bool) {
	if r.n == 0 {
		return sample{}, false
	}
	return r.buf[(r.start+r.n-1)%len(r.buf)], true
}

func (r *ring) all() []api.VSphereSample {
	out := make([]api.VSphereSample, 0, r.n)
	for i := range r.n {
		out = append(out, r.buf[(r.start+i)%len(r.buf)].unpack())
	}
	return out
}

// History keeps the last Size samples of every entity (host, VM,
// datastore), by entity ID. Samples closer than Interval to the previous
// one of the same entity are dropped. It is not safe for concurrent use:
// the Collector guards it.
type History struct {
	Size     int
	Interval time.Duration
	rings    map[string]*ring
}

// NewHistory returns a history of size samples per entity (0: the
// default) keeping at most one per interval.
func NewHistory(size int, interval time.Duration) *History {
	if size <= 0 {
		size = DefaultHistory
	}
	return &History{Size: size, Interval: interval, rings: map[string]*ring{}}
}

// Add records a sample of entity id.
func (h *History) Add(id string, s api.VSphereSample) {
	r := h.rings[id]
	if r == nil {
		r = &ring{}
		h.rings[id] = r
	}
	if l, ok := r.last(); ok && h.Interval > 0 && s.Time.Unix()-l.unix < int64(h.Interval/time.Second) {
		return
	}
	r.add(pack(s), h.Size)
}

// Get returns an entity's samples, oldest first.
func (h *History) Get(id string) []api.VSphereSample {
	if r := h.rings[id]; r != nil {
		return r.all()
	}
	return nil
}

// Latest returns an entity's newest sample.
func (h *History) Latest(id string) (api.VSphereSample, bool) {
	if r := h.rings[id]; r != nil {
		if s, ok := r.last(); ok {
			return s.unpack(), true
		}
	}
	return api.VSphereSample{}, false
}

// Forget drops the histories of entities not in keep (those that left
// the inventory).
func (h *History) Forget(keep func(id string) bool) {
	for id := range h.rings {
		if !keep(id) {
			delete(h.rings, id)
		}
	}
}

// Entities is how many entities have a history.
func (h *History) Entities() int { return len(h.rings) }
