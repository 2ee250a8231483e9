package server

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gantryhq/gantry/internal/metrics"
	"github.com/gantryhq/gantry/internal/server/nodemon"
	"github.com/gantryhq/gantry/internal/server/overload"
)

// Backpressure: every server samples its own load once a second and
// keeps an overload level (internal/server/overload decides it). While it
// is overloaded it slows admission instead of collapsing: job
// submissions are answered 429 with a Retry-After, registering nodes are
// handed longer heartbeat TTLs, and the leader's node monitor keeps
// silent nodes ready for longer (nodemon.Spare). Heartbeats, allocation
// reports and reads are never refused: they are what relieves the load.

// DefaultOverloadRetryAfter is the Retry-After of a submission refused at
// overload level 1; it doubles per level above.
const DefaultOverloadRetryAfter = 5 * time.Second

// overloadSample is how often the overload level is decided anew.
const overloadSample = time.Second

// loadState is what the overload sampler keeps and the handlers read.
type loadState struct {
	decision atomic.Pointer[overload.Decision] // the last sample's; nil before the first
	since    time.Time                         // when the current overload began (sampler only)
	monitor  atomic.Pointer[nodemon.Monitor]   // the leader's node monitor; nil on a follower

	// Heartbeats' lease renewals: the longest that ended since the last
	// sample, and those under way (by a sequence number), so that
	// renewals that hang count too.
	hbMu       sync.Mutex
	hbLongest  time.Duration
	hbInFlight map[uint64]time.Time
	hbSeq      uint64
}

// overloadThresholds fills in Config.Overload: 0 takes the default,
// negative leaves the input out.
func overloadThresholds(c overload.Thresholds) overload.Thresholds {
	d := overload.Defaults
	if c.EvalBacklog == 0 {
		c.EvalBacklog = d.EvalBacklog
	}
	if c.ReportLag == 0 {
		c.ReportLag = d.ReportLag
	}
	if c.HeartbeatLag == 0 {
		c.HeartbeatLag = d.HeartbeatLag
	}
	return c
}

// overloadLevel is the level of the last sample.
func (s *Server) overloadLevel() overload.Level {
	if d := s.load.decision.Load(); d != nil {
		return d.Level
	}
	return overload.Normal
}

// timeHeartbeat records a heartbeat's lease renewal starting; the func it
// returns records its end.
func (s *Server) timeHeartbeat() (done func()) {
	l := &s.load
	start := time.Now()
	l.hbMu.Lock()
	if l.hbInFlight == nil {
		l.hbInFlight = map[uint64]time.Time{}
	}
	l.hbSeq++
	id := l.hbSeq
	l.hbInFlight[id] = start
	l.hbMu.Unlock()
	return func() {
		d := time.Since(start)
		l.hbMu.Lock()
		delete(l.hbInFlight, id)
		l.hbLongest = max(l.hbLongest, d)
		l.hbMu.Unlock()
	}
}

// heartbeatLag is the longest lease renewal that ended since the last
// call, or under way now, and starts the next sample.
func (s *Server) heartbeatLag() time.Duration {
	l := &s.load
	now := time.Now()
	l.hbMu.Lock()
	defer l.hbMu.Unlock()
	lag := l.hbLongest
	l.hbLongest = 0
	for _, start := range l.hbInFlight {
		lag = max(lag, now.Sub(start))
	}
	return lag
}

// overloadInputs measures the inputs of one sample (and starts the next
// heartbeat sample).
func (s *Server) overloadInputs() overload.Inputs {
	in := overload.Inputs{
		EvalBacklog:  s.store.ReadyEvals(s.now()),
		HeartbeatLag: s.heartbeatLag(),
	}
	if s.reports != nil {
		if oldest := s.reports.oldest(); !oldest.IsZero() {
			in.ReportLag = time.Since(oldest)
		}
	}
	return in
}

// runOverload decides the overload level once per tick until ctx ends,
// and logs when an overload starts, changes level and ends.
func (s *Server) runOverload(ctx context.Context, ticks <-chan time.Time) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticks:
		}
		s.sampleOverload()
	}
}

// sampleOverload decides the level from one sample and logs a change.
func (s *Server) sampleOverload() {
	prev := s.overloadLevel()
	d := overload.Decide(prev, s.overloadInputs(), s.cfg.Overload)
	s.load.decision.Store(&d)
	switch {
	case d.Level == prev:
	case prev == overload.Normal:
		s.load.since = time.Now()
		s.log.Warn("overloaded: refusing job submissions with 429 and handing out longer heartbeat TTLs until the load falls",
			"level", int(d.Level), "cause", d.Cause, "retry_after", overload.RetryAfter(d.Level, s.cfg.OverloadRetryAfter),
			"heartbeat_ttl", s.registrationTTL(false))
	case d.Level == overload.Normal:
		s.log.Info("no longer overloaded: accepting job submissions again", "lasted", time.Since(s.load.since).Round(time.Second))
	default:
		s.log.Warn("overload level changed", "from", int(prev), "to", int(d.Level), "cause", d.Cause,
			"retry_after", overload.RetryAfter(d.Level, s.cfg.OverloadRetryAfter))
	}
}

// refuseIfOverloaded is the answer to a job submission while the server
// is overloaded: 429 with a Retry-After and the cause; nil otherwise.
func (s *Server) refuseIfOverloaded(what string) error {
	d := s.load.decision.Load()
	if d == nil || !d.Overloaded() {
		return nil
	}
	after := overload.RetryAfter(d.Level, s.cfg.OverloadRetryAfter)
	s.met.refused.Inc()
	return &httpError{status: http.StatusTooManyRequests, retryAfter: int(math.Ceil(after.Seconds())),
		msg: fmt.Sprintf("server %s is overloaded (%s) and refuses new submissions for now: %s was not accepted, retry in %s", s.cfg.ID, d.Cause, what, after)}
}

// registrationTTL is the heartbeat TTL handed to a registering node: the
// one for the cluster's size (heartbeatTTL), grown while the server is
// overloaded.
func (s *Server) registrationTTL(joining bool) time.Duration {
	return overload.HeartbeatTTL(s.heartbeatTTL(joining), s.overloadLevel())
}

// loadCollector publishes, at each scrape, the overload level, each
// input's pressure, the heartbeat TTL a node registering now is handed,
// and the nodes the node monitor keeps ready for the overload.
type loadCollector struct {
	s                            *Server
	level, pressure, ttl, spared *prometheus.Desc
}

func newLoadCollector(s *Server) *loadCollector {
	return &loadCollector{
		s: s,
		level: prometheus.NewDesc(metrics.OverloadLevel,
			"How overloaded this server is: 0 normal; 1 to 3 while it refuses job submissions with 429 and hands out longer heartbeat TTLs (each level at twice the pressure of the one before).", nil, nil),
		pressure: prometheus.NewDesc(metrics.OverloadPressure,
			"Each overload input measured against its threshold (1: at the threshold): eval_backlog (evaluations ready to run), report_lag (the oldest allocation report waiting for its commit), heartbeat_lag (the slowest lease renewal of the last second).", []string{"input"}, nil),
		ttl: prometheus.NewDesc(metrics.HeartbeatTTL,
			"The heartbeat TTL this server hands a node registering now: --heartbeat-ttl grown with the cluster's size and, while overloaded, by 1 + the overload level.", nil, nil),
		spared: prometheus.NewDesc(metrics.OverloadSparedNodes,
			"Ready nodes whose heartbeat lease is gone that the leader's node monitor keeps ready because the server is, or was within a TTL, overloaded (0 on the other servers).", nil, nil),
	}
}

func (c *loadCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.level
	ch <- c.pressure
	ch <- c.ttl
	ch <- c.spared
}

func (c *loadCollector) Collect(ch chan<- prometheus.Metric) {
	var d overload.Decision
	if p := c.s.load.decision.Load(); p != nil {
		d = *p
	}
	ch <- prometheus.MustNewConstMetric(c.level, prometheus.GaugeValue, float64(d.Level))
	for i, name := range overload.InputNames {
		ch <- prometheus.MustNewConstMetric(c.pressure, prometheus.GaugeValue, d.Pressures[i], name)
	}
	ch <- prometheus.MustNewConstMetric(c.ttl, prometheus.GaugeValue, c.s.registrationTTL(false).Seconds())
	spared := 0
	if m := c.s.load.monitor.Load(); m != nil {
		spared = m.Spared()
	}
	ch <- prometheus.MustNewConstMetric(c.spared, prometheus.GaugeValue, float64(spared))
}
