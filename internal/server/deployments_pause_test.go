package server

import (
	"testing"
	"time"
)

// TestWatcherPause: 20 ms after a quick round, twice a slow round's time,
// never over a second.
func TestWatcherPause(t *testing.T) {
	for _, tc := range []struct{ took, want time.Duration }{
		{0, 20 * time.Millisecond},
		{5 * time.Millisecond, 20 * time.Millisecond},
		{10 * time.Millisecond, 20 * time.Millisecond},
		{40 * time.Millisecond, 80 * time.Millisecond},
		{400 * time.Millisecond, 800 * time.Millisecond},
		{3 * time.Second, time.Second},
	} {
		if got := watcherPause(tc.took); got != tc.want {
			t.Errorf("after a round of %s: pause %s, want %s", tc.took, got, tc.want)
		}
	}
}

// TestWatcherWait: a change after the pause has passed is looked at at
// once; one sooner waits out the rest of the pause.
func TestWatcherWait(t *testing.T) {
	for _, tc := range []struct{ took, quiet, want time.Duration }{
		{5 * time.Millisecond, 0, 20 * time.Millisecond},
		{5 * time.Millisecond, 15 * time.Millisecond, 5 * time.Millisecond},
		{5 * time.Millisecond, 20 * time.Millisecond, 0},
		{5 * time.Millisecond, time.Second, 0},
		{400 * time.Millisecond, 300 * time.Millisecond, 500 * time.Millisecond},
		{3 * time.Second, 2 * time.Second, 0},
	} {
		if got := watcherWait(tc.took, tc.quiet); got != tc.want {
			t.Errorf("round of %s, quiet %s since: wait %s, want %s", tc.took, tc.quiet, got, tc.want)
		}
	}
}
