package agent

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
)

// updaterRig runs an updater on a fake clock; each send is recorded as
// the sorted labels of its reports.
type updaterRig struct {
	t    *testing.T
	c    *fakeClock
	u    *updater
	sent chan []string
}

func newUpdaterRig(t *testing.T, label func(api.AllocUpdate) string) *updaterRig {
	r := &updaterRig{t: t, c: newFakeClock(), sent: make(chan []string, 10)}
	send := func(_ context.Context, ups []api.AllocUpdate) error {
		var ids []string
		for _, up := range ups {
			ids = append(ids, label(up))
		}
		slices.Sort(ids)
		r.sent <- ids
		return nil
	}
	r.u = newUpdater(send, slog.New(slog.NewTextHandler(io.Discard, nil)), r.c.clock())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.u.run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return r
}

// got says the next send is want; with cutShort, waits the updater began
// before it (and cut short) are let pass, else a wait fails the test.
func (r *updaterRig) got(what string, cutShort bool, want ...string) {
	r.t.Helper()
	for {
		select {
		case ids := <-r.sent:
			if !slices.Equal(ids, want) {
				r.t.Fatalf("%s: sent %v, want %v", what, ids, want)
			}
			return
		case d := <-r.c.delays:
			if !cutShort {
				r.t.Fatalf("%s: the updater waited %s on its clock, want %v sent at once", what, d, want)
			}
		case <-time.After(10 * time.Second):
			r.t.Fatalf("%s: nothing sent, want %v", what, want)
		}
	}
}

// waits says the updater's next step is a wait of want on its clock.
func (r *updaterRig) waits(what string, want time.Duration) {
	r.t.Helper()
	select {
	case d := <-r.c.delays:
		if d != want {
			r.t.Fatalf("%s: the updater waits %s, want %s", what, d, want)
		}
	case ids := <-r.sent:
		r.t.Fatalf("%s: sent %v at once, want a wait of %s first", what, ids, want)
	case <-time.After(10 * time.Second):
		r.t.Fatalf("%s: the updater neither sent nor waited", what)
	}
}

// fire moves the clock by d and ends the wait under way.
func (r *updaterRig) fire(d time.Duration) {
	r.c.now = r.c.now.Add(d)
	r.c.fire <- r.c.now
}

// TestUpdaterSendsAtOnceAfterQuiet: the first report after a quiet spell
// goes without waiting on the clock; reports within reportWindow of a
// send wait out the rest of the window and go together; once the window
// has passed, the next report goes at once again. The clock is a fake:
// nothing here sleeps.
func TestUpdaterSendsAtOnceAfterQuiet(t *testing.T) {
	r := newUpdaterRig(t, func(up api.AllocUpdate) string { return up.ID })
	u, c := r.u, r.c

	u.push(api.AllocUpdate{ID: "a"})
	r.got("the first report", false, "a")

	c.now = c.now.Add(10 * time.Millisecond)
	u.push(api.AllocUpdate{ID: "b"})
	r.waits("a report 10ms after a send", reportWindow-10*time.Millisecond)
	u.push(api.AllocUpdate{ID: "c"})
	u.push(api.AllocUpdate{ID: "b"}) // a newer b replaces the unsent one
	select {
	case ids := <-r.sent:
		t.Fatalf("sent %v before the window ended", ids)
	default:
	}
	r.fire(reportWindow)
	r.got("at the end of the window", false, "b", "c")

	c.now = c.now.Add(time.Second)
	u.push(api.AllocUpdate{ID: "d"})
	r.got("a report after a quiet second", false, "d")
}

// TestUpdaterSendsHealthChangesSoon: a report that changes only an
// allocation's health waits only until healthWindow after the last send,
// and cuts short a longer wait already begun; a report that repeats a
// health, has none, or comes with a change of status (a task without
// checks is healthy as it starts) waits out reportWindow. Fake clock.
func TestUpdaterSendsHealthChangesSoon(t *testing.T) {
	r := newUpdaterRig(t, func(up api.AllocUpdate) string { return up.ID + ":" + up.Health })
	u, c := r.u, r.c

	u.push(api.AllocUpdate{ID: "a", ClientStatus: api.AllocRunning})
	r.got("the first report", false, "a:")
	c.now = c.now.Add(20 * time.Millisecond)
	u.push(api.AllocUpdate{ID: "b", ClientStatus: api.AllocPending})
	r.waits("a report without health 20ms after a send", reportWindow-20*time.Millisecond)
	u.push(api.AllocUpdate{ID: "b", ClientStatus: api.AllocRunning, Health: api.HealthHealthy})
	select { // healthy as it starts (no checks): not hurried
	case ids := <-r.sent:
		t.Fatalf("sent %v before the window ended: a task healthy as it starts was hurried", ids)
	case d := <-c.delays:
		t.Fatalf("the updater waits again (%s) for a task healthy as it starts", d)
	case <-time.After(50 * time.Millisecond):
	}
	u.push(api.AllocUpdate{ID: "a", ClientStatus: api.AllocRunning, Health: api.HealthHealthy})
	r.got("a change of health 20ms after a send, past healthWindow", true, "a:healthy", "b:healthy")

	c.now = c.now.Add(2 * time.Millisecond)
	u.push(api.AllocUpdate{ID: "b", ClientStatus: api.AllocRunning, Health: api.HealthUnhealthy})
	r.waits("a change of health 2ms after a send", healthWindow-2*time.Millisecond)
	r.fire(healthWindow)
	r.got("at the end of the health window", false, "b:unhealthy")

	c.now = c.now.Add(1 * time.Millisecond)
	u.push(api.AllocUpdate{ID: "a", ClientStatus: api.AllocRunning, Health: api.HealthHealthy})
	r.waits("the same health again", reportWindow-1*time.Millisecond)
	r.fire(reportWindow)
	r.got("at the end of the window", false, "a:healthy")

	// The record of an allocation's health must not outlive it.
	c.now = c.now.Add(time.Second)
	u.push(api.AllocUpdate{ID: "a", ClientStatus: api.AllocComplete})
	r.got("the end", false, "a:")
	u.mu.Lock()
	_, kept := u.last["a"]
	u.mu.Unlock()
	if kept {
		t.Fatal("the health of an ended allocation is still kept")
	}
}
