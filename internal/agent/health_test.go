package agent

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/agent/tasklife"
	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/driver"
)

// TestCheckTrackerSpacing (issue 15): once a check has seen its task
// healthy, a check with failures: N is unhealthy only after N consecutive
// failed probes spaced by the interval; a failed probe does not bring the
// next one closer (it came after 0.5 s x failures, so a replica failed
// 0.7 s after it started).
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
		{"two failures needed", 2, []step{{true, api.HealthHealthy}, {false, ""}, {false, api.HealthUnhealthy}}},
		{"a success resets the count", 2, []step{{true, api.HealthHealthy}, {false, ""}, {true, api.HealthHealthy}, {false, ""}, {false, api.HealthUnhealthy}}},
		{"one failure is enough when asked", 1, []step{{true, api.HealthHealthy}, {false, api.HealthUnhealthy}, {true, api.HealthHealthy}}},
		{"three failures", 3, []step{{true, api.HealthHealthy}, {false, ""}, {false, ""}, {false, api.HealthUnhealthy}, {false, api.HealthUnhealthy}}},
	}
	const interval = 5 * time.Second
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tr := checkTracker{failures: c.failures, interval: interval}
			if f := tr.first(); f > interval || f <= 0 {
				t.Fatalf("first probe after %s", f)
			}
			for i, s := range c.steps {
				v, next := tr.observe(s.ok)
				if v != s.verdict {
					t.Errorf("probe %d (ok=%v): verdict %q, want %q", i, s.ok, v, s.verdict)
				}
				if next != interval {
					t.Errorf("probe %d (ok=%v): next probe after %s, want the interval %s", i, s.ok, next, interval)
				}
			}
		})
	}
}

// trackerRun plays a check against a task that answers from ready on
// (never when ready < 0), probes taking no time, and returns when the
// first verdict came, which it was, and how many probes it took.
func trackerRun(interval time.Duration, failures int, ready time.Duration) (at time.Duration, verdict string, probes int) {
	tr := checkTracker{failures: failures, interval: interval}
	now := tr.first()
	for probes = 1; probes < 10000; probes++ {
		v, next := tr.observe(ready >= 0 && now >= ready)
		if v != "" {
			return now, v, probes
		}
		now += next
	}
	return now, "", probes
}

// TestCheckTrackerStartup: until its task is first healthy a check probes
// early and ever less often (startupStep, doubling up to the interval), so
// a task that is ready is found healthy within about as long again as it
// took to boot, never later than one interval after; while those early
// probes fail, only those an interval apart count, so a task that never
// answers is unhealthy exactly when probes once per interval would find
// it so: at firstCounted, plus an interval per further failure.
func TestCheckTrackerStartup(t *testing.T) {
	for _, interval := range []time.Duration{50 * time.Millisecond, 200 * time.Millisecond, time.Second, 10 * time.Second, time.Minute} {
		for _, failures := range []int{1, 2, 3, 5} {
			at, v, probes := trackerRun(interval, failures, -1)
			want := min(interval, firstCounted) + time.Duration(failures-1)*interval
			if v != api.HealthUnhealthy || at != want {
				t.Errorf("interval %s, failures %d, never ready: %q after %s, want unhealthy after %s", interval, failures, v, at, want)
			}
			if limit := 12 + 2*failures; probes > limit {
				t.Errorf("interval %s, failures %d, never ready: %d probes, want at most %d", interval, failures, probes, limit)
			}
			for _, ready := range []time.Duration{0, time.Millisecond, 15 * time.Millisecond, 22 * time.Millisecond, 40 * time.Millisecond, 120 * time.Millisecond, 900 * time.Millisecond, 4 * time.Second} {
				at, v, _ := trackerRun(interval, failures, ready)
				unhealthyAt := min(interval, firstCounted) + time.Duration(failures-1)*interval
				if ready >= unhealthyAt {
					if v != api.HealthUnhealthy || at != unhealthyAt {
						t.Errorf("interval %s, failures %d, ready at %s: %q after %s, want unhealthy after %s", interval, failures, ready, v, at, unhealthyAt)
					}
					continue
				}
				if v != api.HealthHealthy {
					t.Errorf("interval %s, failures %d, ready at %s: %q, want healthy", interval, failures, ready, v)
					continue
				}
				if late := at - ready; late < 0 || late > max(ready, startupStep) || late > interval {
					t.Errorf("interval %s, failures %d, ready at %s: healthy after %s, %s late", interval, failures, ready, at, late)
				} else if ready < firstCounted && late > max(ready/2, startupStep) {
					t.Errorf("interval %s, failures %d, ready at %s: healthy after %s, %s late: more than half its boot time", interval, failures, ready, at, late)
				}
			}
		}
	}
}

// probePort is a script port whose health probes the test answers one by
// one.
type probePort struct {
	*scriptPort
	answers chan error // the answer to the next probe
}

func (p *probePort) probe(ctx context.Context, _ api.Check, _ *driver.Handle) error {
	select {
	case err := <-p.answers:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TestCheckWaitsOnItsClock: a health check waits out its grace period and
// its interval on the runner's clock, driven here by a fake one (the grace
// period is a minute; nothing sleeps). It probes nothing before the grace
// period ends, first probes after the short first delay and again soon
// while the task is starting; once healthy it probes once per interval;
// two failed probes (failures: 2) make it unhealthy and a success healthy, each verdict sent to the runner's loop; a stop during
// the grace period ends it without a probe.
func TestCheckWaitsOnItsClock(t *testing.T) {
	c := newFakeClock()
	p := &probePort{scriptPort: newScriptPort(), answers: make(chan error)}
	tr := scriptRunner(p, c, newFakeDriver())
	check := api.Check{Type: api.CheckHTTP, Path: "/health", Grace: api.Duration(time.Minute), Interval: api.Duration(5 * time.Second), Failures: 2}
	h := &driver.Handle{ID: "h1", Running: true}

	// waits says the check asked its clock to wait d; as the check sends a
	// verdict before it waits again, it also says no verdict is pending.
	waits := func(what string, d time.Duration) {
		t.Helper()
		select {
		case got := <-c.delays:
			if got != d {
				t.Fatalf("%s: the check waits %s, want %s", what, got, d)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the check never asked its clock to wait %s", what, d)
		}
	}
	verdict := func(what, want string) {
		t.Helper()
		select {
		case m := <-tr.msgs:
			if m.ev.Kind != tasklife.CheckVerdict || m.ev.Check != 0 || m.ev.Verdict != want {
				t.Fatalf("%s: the check sent %+v, want verdict %q of check 0", what, m.ev, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no verdict; want %q", what, want)
		}
	}
	fire := func(what string) {
		t.Helper()
		select {
		case c.fire <- c.now:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the check does not wait on its clock", what)
		}
	}
	answer := func(what string, err error) {
		t.Helper()
		fire(what)
		select {
		case p.answers <- err:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the check did not probe once its wait fired", what)
		}
	}
	ended := func(what string, done <-chan struct{}) {
		t.Helper()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the check still runs", what)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); tr.runCheck(ctx, 0, check, h) }()
	waits("at the start", time.Minute)
	select {
	case p.answers <- nil:
		t.Fatal("the check probed during its grace period")
	default:
	}
	fire("the grace period")
	waits("after the grace period", startupStep)
	answer("first probe, the task still starting", errors.New("connection refused"))
	waits("after a failed probe while starting", startupStep*3/2)
	answer("second probe", nil)
	verdict("a successful probe", api.HealthHealthy)
	waits("after the healthy verdict", 5*time.Second)
	answer("third probe", errors.New("connection refused"))
	waits("after one failed probe", 5*time.Second)
	answer("fourth probe", errors.New("connection refused"))
	verdict("two failed probes", api.HealthUnhealthy)
	waits("after the unhealthy verdict", 5*time.Second)
	answer("fifth probe", nil)
	verdict("a successful probe", api.HealthHealthy)
	waits("after the healthy verdict", 5*time.Second)
	cancel()
	ended("stopped between probes", done)

	ctx, cancel = context.WithCancel(context.Background())
	done = make(chan struct{})
	go func() { defer close(done); tr.runCheck(ctx, 0, check, h) }()
	waits("a second run, at the start", time.Minute)
	cancel()
	ended("stopped during the grace period", done)
}

// TestSinceStart: probes start every interval; a slow probe shortens the
// wait after it, one slower than the interval is followed at once.
func TestSinceStart(t *testing.T) {
	for _, tc := range []struct{ interval, took, want time.Duration }{
		{time.Second, 0, time.Second},
		{time.Second, 20 * time.Millisecond, 980 * time.Millisecond},
		{250 * time.Millisecond, 250 * time.Millisecond, 0},
		{250 * time.Millisecond, 2 * time.Second, 0},
	} {
		if got := sinceStart(tc.interval, tc.took); got != tc.want {
			t.Errorf("interval %s, probe took %s: wait %s, want %s", tc.interval, tc.took, got, tc.want)
		}
	}
}
