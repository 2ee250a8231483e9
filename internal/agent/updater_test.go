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

// TestUpdaterSendsAtOnceAfterQuiet: the first report after a quiet spell
// goes without waiting on the clock; reports within reportWindow of a
// send wait out the rest of the window and go together; once the window
// has passed, the next report goes at once again. The clock is a fake:
// nothing here sleeps.
func TestUpdaterSendsAtOnceAfterQuiet(t *testing.T) {
	c := newFakeClock()
	sent := make(chan []string, 10)
	send := func(_ context.Context, ups []api.AllocUpdate) error {
		var ids []string
		for _, up := range ups {
			ids = append(ids, up.ID)
		}
		slices.Sort(ids)
		sent <- ids
		return nil
	}
	u := newUpdater(send, slog.New(slog.NewTextHandler(io.Discard, nil)), c.clock())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); u.run(ctx) }()
	defer func() { cancel(); <-done }()

	got := func(what string, want ...string) {
		t.Helper()
		select {
		case ids := <-sent:
			if !slices.Equal(ids, want) {
				t.Fatalf("%s: sent %v, want %v", what, ids, want)
			}
		case d := <-c.delays:
			t.Fatalf("%s: the updater waited %s on its clock, want %v sent at once", what, d, want)
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: nothing sent, want %v", what, want)
		}
	}
	waits := func(what string, want time.Duration) {
		t.Helper()
		select {
		case d := <-c.delays:
			if d != want {
				t.Fatalf("%s: the updater waits %s, want %s", what, d, want)
			}
		case ids := <-sent:
			t.Fatalf("%s: sent %v at once, want a wait of %s first", what, ids, want)
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the updater neither sent nor waited", what)
		}
	}

	u.push(api.AllocUpdate{ID: "a"})
	got("the first report", "a")

	c.now = c.now.Add(10 * time.Millisecond)
	u.push(api.AllocUpdate{ID: "b"})
	waits("a report 10ms after a send", reportWindow-10*time.Millisecond)
	u.push(api.AllocUpdate{ID: "c"})
	u.push(api.AllocUpdate{ID: "b"}) // a newer b replaces the unsent one
	select {
	case ids := <-sent:
		t.Fatalf("sent %v before the window ended", ids)
	default:
	}
	c.now = c.now.Add(reportWindow)
	c.fire <- c.now
	got("at the end of the window", "b", "c")

	c.now = c.now.Add(time.Second)
	u.push(api.AllocUpdate{ID: "d"})
	got("a report after a quiet second", "d")
}

// TestUpdaterSendsHealthChangesSoon: a report that changes only an
// allocation's health waits only until healthWindow after the last send,
// and cuts short a longer wait already begun; a report that repeats a
// health, has none, or comes with a change of status (a task without
// checks is healthy as it starts) waits out reportWindow. Fake clock.
func TestUpdaterSendsHealthChangesSoon(t *testing.T) {
	c := newFakeClock()
	sent := make(chan []string, 10)
	send := func(_ context.Context, ups []api.AllocUpdate) error {
		var ids []string
		for _, up := range ups {
			ids = append(ids, up.ID+":"+up.Health)
		}
		slices.Sort(ids)
		sent <- ids
		return nil
	}
	u := newUpdater(send, slog.New(slog.NewTextHandler(io.Discard, nil)), c.clock())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); u.run(ctx) }()
	defer func() { cancel(); <-done }()
	got := func(what string, want ...string) {
		t.Helper()
		for {
			select {
			case ids := <-sent:
				if !slices.Equal(ids, want) {
					t.Fatalf("%s: sent %v, want %v", what, ids, want)
				}
				return
			case <-c.delays: // a wait cut short by the change of health
			case <-time.After(10 * time.Second):
				t.Fatalf("%s: nothing sent, want %v", what, want)
			}
		}
	}
	waits := func(what string, want time.Duration) {
		t.Helper()
		select {
		case d := <-c.delays:
			if d != want {
				t.Fatalf("%s: the updater waits %s, want %s", what, d, want)
			}
		case ids := <-sent:
			t.Fatalf("%s: sent %v at once, want a wait of %s first", what, ids, want)
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the updater neither sent nor waited", what)
		}
	}

	u.push(api.AllocUpdate{ID: "a", ClientStatus: api.AllocRunning})
	got("the first report", "a:")
	c.now = c.now.Add(20 * time.Millisecond)
	u.push(api.AllocUpdate{ID: "b", ClientStatus: api.AllocPending})
	waits("a report without health 20ms after a send", reportWindow-20*time.Millisecond)
	u.push(api.AllocUpdate{ID: "b", ClientStatus: api.AllocRunning, Health: api.HealthHealthy})
	select { // healthy as it starts (no checks): not hurried
	case ids := <-sent:
		t.Fatalf("sent %v before the window ended: a task healthy as it starts was hurried", ids)
	case d := <-c.delays:
		t.Fatalf("the updater waits again (%s) for a task healthy as it starts", d)
	case <-time.After(50 * time.Millisecond):
	}
	u.push(api.AllocUpdate{ID: "a", ClientStatus: api.AllocRunning, Health: api.HealthHealthy})
	got("a change of health 20ms after a send, past healthWindow", "a:healthy", "b:healthy")

	c.now = c.now.Add(2 * time.Millisecond)
	u.push(api.AllocUpdate{ID: "b", ClientStatus: api.AllocRunning, Health: api.HealthUnhealthy})
	waits("a change of health 2ms after a send", healthWindow-2*time.Millisecond)
	c.now = c.now.Add(healthWindow)
	c.fire <- c.now
	got("at the end of the health window", "b:unhealthy")

	c.now = c.now.Add(1 * time.Millisecond)
	u.push(api.AllocUpdate{ID: "a", ClientStatus: api.AllocRunning, Health: api.HealthHealthy})
	waits("the same health again", reportWindow-1*time.Millisecond)
	c.now = c.now.Add(reportWindow)
	c.fire <- c.now
	got("at the end of the window", "a:healthy")

	// An allocation that ended and comes back (a new one with its ID
	// cannot, but its health record must not outlive it).
	c.now = c.now.Add(time.Second)
	u.push(api.AllocUpdate{ID: "a", ClientStatus: api.AllocComplete})
	got("the end", "a:")
	u.mu.Lock()
	_, kept := u.last["a"]
	u.mu.Unlock()
	if kept {
		t.Fatal("the health of an ended allocation is still kept")
	}
}
