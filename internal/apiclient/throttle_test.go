package apiclient

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
)

// throttler is a real HTTP server that answers the first refusals
// requests 429 (with retryAfter as its Retry-After header, when set) and
// the rest 200, and keeps every body it was sent.
type throttler struct {
	refusals   int
	retryAfter string
	mu         sync.Mutex
	bodies     []string
}

func (th *throttler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	th.mu.Lock()
	th.bodies = append(th.bodies, string(b))
	n := len(th.bodies)
	th.mu.Unlock()
	if n <= th.refusals {
		if th.retryAfter != "" {
			w.Header().Set("Retry-After", th.retryAfter)
		}
		w.WriteHeader(http.StatusTooManyRequests)
		w.Write([]byte(`{"error":"server s1 is overloaded (900 evaluations wait to be scheduled; threshold 500) and refuses new submissions for now: the job was not accepted, retry in 3s"}`))
		return
	}
	w.Write([]byte(`{"eval_id":"e1","job_version":1}`))
}

func (th *throttler) requests() int {
	th.mu.Lock()
	defer th.mu.Unlock()
	return len(th.bodies)
}

// TestRetryAfterHonoured: a 429 that says when to come back is waited out
// (at least what the server asked, at most a tenth more) and the same
// request sent again, up to ThrottleRetries times and never past the
// caller's deadline; OnThrottle is told of each wait. A 429 without a
// Retry-After, or with retries turned off, comes back at once, and
// RetryAfter says what the server asked for.
func TestRetryAfterHonoured(t *testing.T) {
	for _, tc := range []struct {
		name       string
		th         *throttler
		retries    int
		deadline   time.Duration // 0: none
		requests   int
		waits      int
		wantErr    bool
		retryAfter time.Duration // of the error returned
	}{
		{"two refusals, then accepted", &throttler{refusals: 2, retryAfter: "3"}, 0, 0, 3, 2, false, 0},
		{"bounded: refused every time", &throttler{refusals: 100, retryAfter: "3"}, 2, 0, 3, 2, true, 3 * time.Second},
		{"the default bound", &throttler{refusals: 100, retryAfter: "1"}, 0, 0, DefaultThrottleRetries + 1, DefaultThrottleRetries, true, time.Second},
		{"no Retry-After: not retried", &throttler{refusals: 1}, 0, 0, 1, 0, true, 0},
		{"retries off", &throttler{refusals: 1, retryAfter: "3"}, -1, 0, 1, 0, true, 3 * time.Second},
		{"the caller cannot wait that long", &throttler{refusals: 1, retryAfter: "3"}, 0, time.Second, 1, 0, true, 3 * time.Second},
		{"an HTTP date", &throttler{refusals: 1, retryAfter: time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)}, 0, 0, 2, 1, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.th)
			defer srv.Close()
			var told []time.Duration
			c := New(Options{Servers: []string{srv.URL}, ThrottleRetries: tc.retries, OnThrottle: func(method, path string, wait time.Duration, answer *Error) {
				if method != http.MethodPost || path != "/v1/jobs" || answer.Status != http.StatusTooManyRequests {
					t.Errorf("told of %s %s answered %d", method, path, answer.Status)
				}
				told = append(told, wait)
			}})
			var slept []time.Duration
			c.sleep = func(_ context.Context, d time.Duration) error { slept = append(slept, d); return nil }
			ctx := context.Background()
			if tc.deadline > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.deadline)
				defer cancel()
			}
			resp, err := c.RegisterJob(ctx, &api.Job{Name: "web"})
			if (err != nil) != tc.wantErr {
				t.Fatalf("error %v, want one: %v", err, tc.wantErr)
			}
			if got := tc.th.requests(); got != tc.requests {
				t.Errorf("%d requests, want %d", got, tc.requests)
			}
			for _, b := range tc.th.bodies[1:] {
				if b != tc.th.bodies[0] {
					t.Errorf("a retry sent %q, the first request %q", b, tc.th.bodies[0])
				}
			}
			if len(slept) != tc.waits || len(told) != tc.waits {
				t.Fatalf("waited %v, told %v; want %d waits", slept, told, tc.waits)
			}
			for i, d := range slept {
				asked := parseRetryAfter(tc.th.retryAfter, time.Now())
				if asked > MaxRetryAfter {
					asked = MaxRetryAfter
				}
				if d != told[i] || d < asked || d > asked+asked/10 {
					t.Errorf("wait %d: slept %s, told %s; the server asked for %s (at most a tenth more)", i, d, told[i], asked)
				}
			}
			if !tc.wantErr {
				if resp.EvalID != "e1" {
					t.Errorf("answer %+v, want the accepted registration", resp)
				}
				return
			}
			if StatusOf(err) != http.StatusTooManyRequests || !Retryable(err) {
				t.Errorf("error %v: status %d, retryable %v; want a retryable 429", err, StatusOf(err), Retryable(err))
			}
			if got, ok := RetryAfter(err); got != tc.retryAfter || ok != (tc.retryAfter > 0) {
				t.Errorf("RetryAfter = %s, %v; want %s", got, ok, tc.retryAfter)
			}
		})
	}
}

// TestRetryAfterWaits: with the real clock, a request refused once with
// Retry-After: 1 is sent again and accepted, and a caller's context that
// ends during the wait ends it with the server's answer.
func TestRetryAfterWaits(t *testing.T) {
	th := &throttler{refusals: 1, retryAfter: "1"}
	srv := httptest.NewServer(th)
	defer srv.Close()
	c := New(Options{Servers: []string{srv.URL}})
	if _, err := c.RegisterJob(context.Background(), &api.Job{Name: "web"}); err != nil || th.requests() != 2 {
		t.Fatalf("error %v after %d requests; want accepted on the second", err, th.requests())
	}

	refusing := &throttler{refusals: 100, retryAfter: "30"}
	srv2 := httptest.NewServer(refusing)
	defer srv2.Close()
	ctx, cancel := context.WithCancel(context.Background())
	c2 := New(Options{Servers: []string{srv2.URL}, OnThrottle: func(string, string, time.Duration, *Error) { cancel() }})
	_, err := c2.RegisterJob(ctx, &api.Job{Name: "web"})
	if StatusOf(err) != http.StatusTooManyRequests || refusing.requests() != 1 {
		t.Errorf("cancelled while waiting: %v after %d requests; want the 429 after one", err, refusing.requests())
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 12, 6, 5, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		v    string
		want time.Duration
	}{
		{"", 0}, {"7", 7 * time.Second}, {" 20 ", 20 * time.Second}, {"-3", 0}, {"soon", 0},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
	} {
		if got := parseRetryAfter(tc.v, now); got != tc.want {
			t.Errorf("Retry-After %q: %s, want %s", tc.v, got, tc.want)
		}
	}
}
