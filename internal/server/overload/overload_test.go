package overload

import (
	"strings"
	"testing"
	"time"
)

// TestDecide: each input against its threshold, the highest pressure
// wins, levels double, inputs with no threshold are left out, and a
// level is left only below ExitRatio of where it starts.
func TestDecide(t *testing.T) {
	th := Thresholds{EvalBacklog: 100, ReportLag: 10 * time.Second, HeartbeatLag: 2 * time.Second}
	for _, tc := range []struct {
		name  string
		prev  Level
		in    Inputs
		th    Thresholds
		want  Level
		cause string // contained in Decision.Cause
	}{
		{"idle", Normal, Inputs{}, th, Normal, ""},
		{"below every threshold", Normal, Inputs{EvalBacklog: 99, ReportLag: 9 * time.Second, HeartbeatLag: time.Second}, th, Normal, "99 evaluations"},
		{"backlog at its threshold", Normal, Inputs{EvalBacklog: 100}, th, 1, "100 evaluations wait to be scheduled; threshold 100"},
		{"backlog twice its threshold", Normal, Inputs{EvalBacklog: 200}, th, 2, "evaluations"},
		{"backlog four times", Normal, Inputs{EvalBacklog: 400}, th, MaxLevel, "evaluations"},
		{"far past: capped", Normal, Inputs{EvalBacklog: 1_000_000}, th, MaxLevel, "evaluations"},
		{"reports lag", Normal, Inputs{ReportLag: 25 * time.Second}, th, 2, "allocation reports wait 25s for their commit; threshold 10s"},
		{"heartbeats lag", Normal, Inputs{HeartbeatLag: 2500 * time.Millisecond}, th, 1, "heartbeats take 2.5s to renew their lease; threshold 2s"},
		{"the hardest input names the cause", Normal, Inputs{EvalBacklog: 150, ReportLag: 45 * time.Second, HeartbeatLag: time.Second}, th, MaxLevel, "allocation reports"},
		{"an input without a threshold is left out", Normal, Inputs{EvalBacklog: 1_000_000, HeartbeatLag: 3 * time.Second},
			Thresholds{EvalBacklog: 0, HeartbeatLag: 2 * time.Second}, 1, "heartbeats"},
		{"every input off", Normal, Inputs{EvalBacklog: 1_000_000, ReportLag: time.Hour, HeartbeatLag: time.Hour},
			Thresholds{EvalBacklog: -1, ReportLag: -1, HeartbeatLag: 0}, Normal, ""},
		// Hysteresis: ExitRatio (0.75) of where the level starts.
		{"level 1 held at 0.8", 1, Inputs{EvalBacklog: 80}, th, 1, "evaluations"},
		{"level 1 held at exactly 0.75", 1, Inputs{EvalBacklog: 75}, th, 1, "evaluations"},
		{"level 1 left below 0.75", 1, Inputs{EvalBacklog: 74}, th, Normal, "evaluations"},
		{"level 2 held at 1.6", 2, Inputs{EvalBacklog: 160}, th, 2, "evaluations"},
		{"level 2 drops to 1 at 1.4", 2, Inputs{EvalBacklog: 140}, th, 1, "evaluations"},
		{"level 3 drops to 1 at 0.9", MaxLevel, Inputs{EvalBacklog: 90}, th, 1, "evaluations"},
		{"level 3 drops straight to normal", MaxLevel, Inputs{}, th, Normal, ""},
		{"rises at once past a held level", 1, Inputs{EvalBacklog: 450}, th, MaxLevel, "evaluations"},
		{"a previous level out of range", 9, Inputs{EvalBacklog: 350}, th, MaxLevel, "evaluations"},
	} {
		d := Decide(tc.prev, tc.in, tc.th)
		if d.Level != tc.want {
			t.Errorf("%s: level %d (pressure %.2f), want %d", tc.name, d.Level, d.Pressure, tc.want)
		}
		if d.Overloaded() != (tc.want > Normal) {
			t.Errorf("%s: Overloaded() %v at level %d", tc.name, d.Overloaded(), d.Level)
		}
		if tc.cause == "" && d.Cause != "" || !strings.Contains(d.Cause, tc.cause) {
			t.Errorf("%s: cause %q, want it to say %q", tc.name, d.Cause, tc.cause)
		}
	}
}

// TestDecidePressures: each input's own pressure is reported in the
// order of InputNames, for the metrics.
func TestDecidePressures(t *testing.T) {
	d := Decide(Normal, Inputs{EvalBacklog: 50, ReportLag: 15 * time.Second, HeartbeatLag: time.Second},
		Thresholds{EvalBacklog: 100, ReportLag: 10 * time.Second, HeartbeatLag: 0})
	if want := [3]float64{0.5, 1.5, 0}; d.Pressures != want || d.Pressure != 1.5 {
		t.Errorf("pressures %v (max %v), want %v (max 1.5)", d.Pressures, d.Pressure, want)
	}
	if len(InputNames) != len(d.Pressures) {
		t.Errorf("%d input names for %d pressures", len(InputNames), len(d.Pressures))
	}
}

// TestConsequences: what each level hands out.
func TestConsequences(t *testing.T) {
	const base, ttl = 5 * time.Second, time.Minute
	for _, tc := range []struct {
		level      Level
		retryAfter time.Duration
		ttl        time.Duration
	}{
		{Normal, 0, ttl},
		{1, 5 * time.Second, 2 * time.Minute},
		{2, 10 * time.Second, 3 * time.Minute},
		{3, 20 * time.Second, 4 * time.Minute},
		{7, 20 * time.Second, 4 * time.Minute}, // capped at MaxLevel
		{-1, 0, ttl},
	} {
		if got := RetryAfter(tc.level, base); got != tc.retryAfter {
			t.Errorf("level %d: Retry-After %s, want %s", tc.level, got, tc.retryAfter)
		}
		if got := HeartbeatTTL(ttl, tc.level); got != tc.ttl {
			t.Errorf("level %d: TTL %s, want %s", tc.level, got, tc.ttl)
		}
	}
}
