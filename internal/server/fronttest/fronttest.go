// Package fronttest holds the test doubles that the tests of the server's
// components share: JSON, the request decoding and JSON answers of the
// server's front (unknown fields refused, as the server does), and Clock,
// a clock a test sets and moves. Only tests import it; it must never hold
// code the server runs.
package fronttest

import (
	"encoding/json"
	"net/http"
	"sync"
	"time"
)

// JSON decodes request bodies and writes answers as the server's front
// does; embed it in a component's fake Front.
type JSON struct{}

// DecodeBody decodes r's body into v, refusing unknown fields.
func (JSON) DecodeBody(_ http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// WriteJSON answers status with v as JSON.
func (JSON) WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// Clock is a clock a test sets; safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock is a Clock at t.
func NewClock(t time.Time) *Clock { return &Clock{now: t} }

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Add moves the clock by d.
func (c *Clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
