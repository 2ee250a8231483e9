package agent

import (
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
)

// TestCheckTrackerSpacing (issue 15): a check with failures: 2 and a 5 s
// interval is unhealthy only after two consecutive failed probes spaced by
// the interval; a failed probe does not bring the next one closer (it came
// after 0.5 s x failures, so a replica failed 0.7 s after it started).
func TestCheckTrackerSpacing(t *testing.T) {
	type step struct {
		ok      bool
		verdict string
	}
	cases := []struct {
		name     string
		failures int
		steps    []step
	}{
		{"two failures needed", 2, []step{{false, ""}, {false, api.HealthUnhealthy}}},
		{"a success resets the count", 2, []step{{false, ""}, {true, api.HealthHealthy}, {false, ""}, {false, api.HealthUnhealthy}}},
		{"one failure is enough when asked", 1, []step{{false, api.HealthUnhealthy}, {true, api.HealthHealthy}}},
		{"three failures", 3, []step{{true, api.HealthHealthy}, {false, ""}, {false, ""}, {false, api.HealthUnhealthy}, {false, api.HealthUnhealthy}}},
	}
	const interval = 5 * time.Second
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tr := checkTracker{failures: c.failures, interval: interval}
			if f := tr.first(); f > interval || f <= 0 {
				t.Fatalf("first probe after %s", f)
			}
			elapsed := time.Duration(0)
			for i, s := range c.steps {
				v, next := tr.observe(s.ok)
				if v != s.verdict {
					t.Errorf("probe %d (ok=%v): verdict %q, want %q", i, s.ok, v, s.verdict)
				}
				if next != interval {
					t.Errorf("probe %d (ok=%v): next probe after %s, want the interval %s", i, s.ok, next, interval)
				}
				if v == api.HealthUnhealthy && i+1 == c.failures && elapsed < time.Duration(c.failures-1)*interval {
					t.Errorf("unhealthy %s after the first probe, before %d intervals", elapsed, c.failures-1)
				}
				elapsed += next
			}
		})
	}
}
