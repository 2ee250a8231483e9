// Package overload decides whether a server is overloaded, and how much,
// from what the server measured of its own work; and what an overloaded
// server hands out instead of collapsing: a Retry-After for submissions
// and longer heartbeat TTLs.
//
// The inputs are the ones that grow when a server takes in more than it
// gets through, each against a threshold:
//
//   - the evaluation backlog: evaluations ready to run that the broker
//     has not finished (pending and due; blocked and delayed ones wait
//     for something else and do not count). Submissions feed it; the
//     plan applier's and the scheduler's pace drain it, so a slow commit
//     shows here too.
//   - the report lag: how long the oldest allocation report still
//     waiting for its commit has waited. Agents give up on a report
//     after a minute and send it again, which only adds load.
//   - the heartbeat lag: the slowest lease renewal of the last sample.
//     A renewal that takes seconds means the store is behind, and the
//     leader's own session is an etcd lease renewed the same way.
//
// Pressure is the highest input/threshold ratio. Level 1 starts at 1,
// each further level at twice the pressure of the one before, up to
// MaxLevel; a level is left only once the pressure fell below ExitRatio
// of where it starts, so that a server at the threshold does not flap.
//
// Decide and the consequences (RetryAfter, HeartbeatTTL) are pure: no
// clock, no I/O. The server samples the inputs once a second and keeps
// the level (internal/server/overload.go).
package overload

import (
	"fmt"
	"math"
	"time"
)

// Level is how overloaded a server is: Normal, or 1 to MaxLevel.
type Level int

const (
	// Normal: no input is at its threshold.
	Normal Level = 0
	// MaxLevel is the highest level: pressure 4 and above.
	MaxLevel Level = 3
)

// ExitRatio is how far below where a level starts the pressure must
// fall before the server leaves it.
const ExitRatio = 0.75

// Inputs are what the server measured in one sample.
type Inputs struct {
	// EvalBacklog is the number of evaluations ready to run and not
	// finished (pending and due, the one being processed included).
	EvalBacklog int
	// ReportLag is how long the oldest allocation report that is still
	// waiting for its commit has waited (0: none waits).
	ReportLag time.Duration
	// HeartbeatLag is the longest a heartbeat's lease renewal took in
	// the sample (0: none was served).
	HeartbeatLag time.Duration
}

// Thresholds say where each input starts to mean overload. A threshold
// of zero or less leaves its input out.
type Thresholds struct {
	EvalBacklog  int
	ReportLag    time.Duration
	HeartbeatLag time.Duration
}

// Defaults are the thresholds a server uses unless configured.
var Defaults = Thresholds{EvalBacklog: 500, ReportLag: 15 * time.Second, HeartbeatLag: 2 * time.Second}

// Input names, as the metrics label them.
const (
	InputEvalBacklog  = "eval_backlog"
	InputReportLag    = "report_lag"
	InputHeartbeatLag = "heartbeat_lag"
)

// InputNames lists every input, in the order Decision.Pressures holds them.
var InputNames = []string{InputEvalBacklog, InputReportLag, InputHeartbeatLag}

// Decision is the level for one sample and why.
type Decision struct {
	Level Level
	// Pressure is the highest input/threshold ratio; Pressures holds
	// each input's, in the order of InputNames (0 for one left out).
	Pressure  float64
	Pressures [3]float64
	// Cause says which input pressed hardest, with its value and
	// threshold; empty when no input is above zero.
	Cause string
}

// Overloaded reports whether the decision is any level above Normal.
func (d Decision) Overloaded() bool { return d.Level > Normal }

// start is the pressure at which level l begins: 1, 2, 4, ...
func start(l Level) float64 { return math.Ldexp(1, int(l)-1) }

// levelOf is the level pressure p falls in, ignoring where it came from.
func levelOf(p float64) Level {
	l := Normal
	for l < MaxLevel && p >= start(l+1) {
		l++
	}
	return l
}

// Decide is the level for inputs in, given the level prev of the sample
// before: the level the pressure falls in, or a higher one up to prev
// while the pressure is still at ExitRatio of where that level starts.
func Decide(prev Level, in Inputs, th Thresholds) Decision {
	var d Decision
	ratio := func(v, t float64) float64 {
		if t <= 0 || v <= 0 {
			return 0
		}
		return v / t
	}
	d.Pressures = [3]float64{
		ratio(float64(in.EvalBacklog), float64(th.EvalBacklog)),
		ratio(in.ReportLag.Seconds(), th.ReportLag.Seconds()),
		ratio(in.HeartbeatLag.Seconds(), th.HeartbeatLag.Seconds()),
	}
	worst := -1
	for i, p := range d.Pressures {
		if p > d.Pressure {
			d.Pressure, worst = p, i
		}
	}
	switch worst {
	case 0:
		d.Cause = fmt.Sprintf("%d evaluations wait to be scheduled; threshold %d", in.EvalBacklog, th.EvalBacklog)
	case 1:
		d.Cause = fmt.Sprintf("allocation reports wait %s for their commit; threshold %s", in.ReportLag.Round(time.Millisecond), th.ReportLag)
	case 2:
		d.Cause = fmt.Sprintf("heartbeats take %s to renew their lease; threshold %s", in.HeartbeatLag.Round(time.Millisecond), th.HeartbeatLag)
	}
	d.Level = levelOf(d.Pressure)
	for l := min(prev, MaxLevel); l > d.Level; l-- {
		if d.Pressure >= ExitRatio*start(l) {
			d.Level = l
			break
		}
	}
	return d
}

// RetryAfter is how long a refused submission is asked to wait at level
// l: base at level 1, doubled per level above; 0 at Normal.
func RetryAfter(l Level, base time.Duration) time.Duration {
	if l <= Normal {
		return 0
	}
	return base << (min(l, MaxLevel) - 1)
}

// HeartbeatTTL is the TTL handed to a registering node at level l: ttl
// (already grown with the cluster's size) times 1+l, so that a node the
// server is too busy to hear from keeps its lease longer and beats less
// often.
func HeartbeatTTL(ttl time.Duration, l Level) time.Duration {
	if l <= Normal {
		return ttl
	}
	return ttl * time.Duration(1+min(l, MaxLevel))
}
