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
