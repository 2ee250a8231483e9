package agent

import (
	"context"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
)

// TestDisconnectStops: which allocations a cut-off agent stops itself, as
// a function of the last accepted heartbeat, whether one failed since,
// the clock and each group's stop_after.
func TestDisconnectStops(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	train := disconnectWatch{ID: "train", StopAfter: 3 * time.Second}
	web := disconnectWatch{ID: "web"} // no stop_after: never stopped by the agent
	slow := disconnectWatch{ID: "slow", StopAfter: 5 * time.Minute}
	cases := []struct {
		name   string
		allocs []disconnectWatch
		c      contact
		now    time.Time
		want   []string
	}{
		{"connected, long quiet gap between heartbeats", []disconnectWatch{train}, contact{Last: t0}, t0.Add(time.Hour), nil},
		{"failing, not yet stop_after", []disconnectWatch{train}, contact{Last: t0, Failed: true}, t0.Add(2999 * time.Millisecond), nil},
		{"failing, exactly stop_after", []disconnectWatch{train}, contact{Last: t0, Failed: true}, t0.Add(3 * time.Second), []string{"train"}},
		{"failing, past stop_after", []disconnectWatch{train, web, slow}, contact{Last: t0, Failed: true}, t0.Add(10 * time.Second), []string{"train"}},
		{"each group by its own stop_after", []disconnectWatch{slow, train, web}, contact{Last: t0, Failed: true}, t0.Add(6 * time.Minute), []string{"slow", "train"}},
		{"already stopped", []disconnectWatch{{ID: "train", StopAfter: time.Second, Done: true}}, contact{Last: t0, Failed: true}, t0.Add(time.Minute), nil},
		{"never registered", []disconnectWatch{train}, contact{Failed: true}, t0.Add(time.Hour), nil},
		{"clock behind the last contact", []disconnectWatch{train}, contact{Last: t0, Failed: true}, t0.Add(-time.Minute), nil},
		{"nothing to watch", nil, contact{Last: t0, Failed: true}, t0.Add(time.Hour), nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := disconnectStops(c.allocs, c.c, c.now)
			var ids []string
			for _, s := range got {
				ids = append(ids, s.ID)
				if !strings.Contains(s.Reason, "disconnected") || !strings.Contains(s.Reason, "disconnect.stop_after") {
					t.Errorf("reason %q does not say the node was disconnected and which setting stopped it", s.Reason)
				}
			}
			if !reflect.DeepEqual(ids, c.want) {
				t.Fatalf("stops %v, want %v", ids, c.want)
			}
		})
	}
}

// TestDisconnectStopsNeverBeforeStopAfter is the decision's invariant,
// over a grid of inputs: an allocation is stopped only when an attempt
// failed and at least its stop_after passed since the last accepted one.
func TestDisconnectStopsNeverBeforeStopAfter(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, after := range []time.Duration{0, time.Millisecond, time.Second, 15 * time.Second, time.Hour} {
		for _, gap := range []time.Duration{-time.Second, 0, 500 * time.Millisecond, time.Second, 14 * time.Second, 15 * time.Second, 2 * time.Hour} {
			for _, failed := range []bool{false, true} {
				got := disconnectStops([]disconnectWatch{{ID: "a", StopAfter: after}}, contact{Last: t0, Failed: failed}, t0.Add(gap))
				want := failed && after > 0 && gap >= after
				if (len(got) == 1) != want {
					t.Errorf("stop_after %s, %s since the last contact, failed %v: stopped %v, want %v", after, gap, failed, len(got) == 1, want)
				}
			}
		}
	}
}

// TestDisconnectLoopOnItsClock: the agent's disconnect check looks every
// disconnectCheck by the agent's clock and measures the cut by the same
// clock, driven here by a fake one: an attempt failed after the last
// accepted heartbeat, and the group's stop_after is 3 s; at 2.999 s
// nothing is stopped, at 3 s the allocation is. Nothing sleeps.
func TestDisconnectLoopOnItsClock(t *testing.T) {
	c := newFakeClock()
	var log syncBuffer
	a, err := New(Config{Servers: []string{"127.0.0.1:1"}, DataDir: t.TempDir()}, slog.New(slog.NewTextHandler(&log, nil)))
	if err != nil {
		t.Fatal(err)
	}
	a.clock = c.clock()
	al := &api.Allocation{ID: "alloc-train-0123", Namespace: "default", Job: "j", Group: "train",
		DesiredStatus: api.AllocDesiredRun, ClientStatus: api.AllocRunning}
	r := newAllocRunner(a, al, nil) // no tasks yet: a stop only marks it
	r.jobType, r.group = api.JobService, &api.Group{Name: "train", Disconnect: &api.Disconnect{StopAfter: api.Duration(3 * time.Second)}}
	a.runners[al.ID] = r
	last := c.now
	a.noteContact(true, last)
	a.noteContact(false, last.Add(time.Second))

	// round lets one check run at now and returns once it asked its clock
	// for the next: the round's decision and log are done by then.
	round := func(now time.Time) {
		t.Helper()
		c.now = now
		select {
		case c.fire <- now:
		case <-time.After(10 * time.Second):
			t.Fatal("the disconnect check does not wait on the agent's clock")
		}
		wantCheckWait(t, c, "the disconnect check never asked the agent's clock to wait again")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.disconnectLoop(ctx) }()
	defer func() { cancel(); <-done }()
	wantCheckWait(t, c, "the disconnect check never asked the agent's clock to wait")

	const stopLine = "stopping an allocation: the node cannot reach any server"
	round(last.Add(2999 * time.Millisecond))
	if strings.Contains(log.String(), stopLine) {
		t.Fatalf("stopped before stop_after passed by the agent's clock:\n%s", log.String())
	}
	round(last.Add(3 * time.Second))
	if !strings.Contains(log.String(), stopLine) {
		t.Fatalf("not stopped once stop_after passed by the agent's clock:\n%s", log.String())
	}
	eventually(t, "the allocation marked stopped because the node was disconnected", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.disconnected && r.stopping
	})
}

// TestDisconnectLoopSleepsWhileConnected: while the servers answer, the
// disconnect check asks its clock for nothing (it waits for a failed
// attempt, not for a timer: 10,000 simulated nodes waking twice a second
// each were a tenth of the load tool's CPU); a failed attempt starts the
// checks, and once a server answers again they stop.
func TestDisconnectLoopSleepsWhileConnected(t *testing.T) {
	c := newFakeClock()
	a, err := New(Config{Servers: []string{"127.0.0.1:1"}, DataDir: t.TempDir()}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	a.clock = c.clock()
	a.noteContact(true, c.now)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.disconnectLoop(ctx) }()
	defer func() { cancel(); <-done }()
	quiet := func(when string) {
		t.Helper()
		select {
		case d := <-c.delays:
			t.Fatalf("%s: the disconnect check asked its clock to wait %s", when, d)
		case <-time.After(200 * time.Millisecond):
		}
	}
	quiet("connected")
	a.noteContact(false, c.now.Add(time.Second))
	for i := 0; i < 2; i++ { // a check, and the next one asked for
		wantCheckWait(t, c, "a failed attempt did not start the disconnect checks")
		c.fire <- c.now
	}
	<-c.delays
	a.noteContact(true, c.now.Add(2*time.Second))
	c.fire <- c.now
	quiet("connected again")
}

// wantCheckWait waits until the disconnect check asks its clock for the
// next check, and fails with missing when it does not within 10 s.
func wantCheckWait(t *testing.T, c *fakeClock, missing string) {
	t.Helper()
	select {
	case d := <-c.delays:
		if d != disconnectCheck {
			t.Fatalf("the disconnect check waits %s, want %s", d, disconnectCheck)
		}
	case <-time.After(10 * time.Second):
		t.Fatal(missing)
	}
}
