package apiclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
)

func eventLine(i int64, key string) string {
	b, _ := json.Marshal(api.Event{Index: i, Topic: api.TopicAllocation, Type: "AllocationUpdated", Namespace: "default", Key: key, Time: time.Unix(i, 0)})
	return string(b) + "\n"
}

// asked records the index each server was asked from.
type asked struct {
	mu   sync.Mutex
	list []string
}

func (a *asked) add(s string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.list = append(a.list, s)
	return len(a.list)
}

func (a *asked) String() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return strings.Join(a.list, " ")
}

var errEnough = errors.New("enough")

// TestFollowEventsResumesOnAnotherServer: the first server sends index 5
// and one of index 6's two events, then dies (its connection is cut and
// it accepts no more); the follower moves to the second server, asks
// again from index 5 and hands over the rest of 6, then 7 and 8: every
// event exactly once, in order.
func TestFollowEventsResumesOnAnotherServer(t *testing.T) {
	var first, second asked
	var a *httptest.Server
	a = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		first.add(r.URL.Query().Get("index"))
		w.Header().Set("Content-Type", "application/x-ndjson")
		fmt.Fprint(w, eventLine(5, "a")+eventLine(6, "b"))
		w.(http.Flusher).Flush()
		// The server dies: no new connections, this one cut.
		a.Listener.Close()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	defer a.Close()
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		second.add(r.URL.Query().Get("index") + "/" + strings.Join(r.URL.Query()["key"], ","))
		w.Header().Set("Content-Type", "application/x-ndjson")
		// Index 6 again (asked from 5), a keep-alive, then new events.
		fmt.Fprint(w, eventLine(6, "b")+eventLine(6, "c")+"\n"+eventLine(7, "d")+eventLine(8, "e"))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	defer b.Close()

	c := New(Options{Servers: []string{a.URL, b.URL}})
	var got []string
	var lost, resumed []int64
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := c.FollowEvents(ctx, Events{
		Topics: []string{api.TopicAllocation}, Keys: []string{"web"}, After: 4,
		Lost:    func(_ error, after int64) { lost = append(lost, after) },
		Resumed: func(after int64) { resumed = append(resumed, after) },
	}, func(e api.Event) error {
		got = append(got, fmt.Sprintf("%d%s", e.Index, e.Key))
		if e.Index == 8 {
			return errEnough
		}
		return nil
	})
	if !errors.Is(err, errEnough) {
		t.Fatalf("FollowEvents returned %v, want the callback's own error", err)
	}
	if g := strings.Join(got, " "); g != "5a 6b 6c 7d 8e" {
		t.Errorf("handed over %s, want 5a 6b 6c 7d 8e (each once, in order)", g)
	}
	if first.String() != "4" || second.String() != "5/web" {
		t.Errorf("first server asked from %q, second from %q; want 4, then 5 with key web", first.String(), second.String())
	}
	if fmt.Sprint(lost, resumed) != "[6] [6]" {
		t.Errorf("lost after %v, resumed after %v; want once each, after 6", lost, resumed)
	}
	if c.Address() != b.URL {
		t.Errorf("the client asks %s first now, want the server that answered, %s", c.Address(), b.URL)
	}
}

// TestFollowEventsStops: answers that retrying cannot fix end the
// follower with the server's sentence and status, after one request;
// a server that is unavailable for a while is asked again.
func TestFollowEventsStops(t *testing.T) {
	tests := []struct {
		name    string
		answers []int // status of each request; the last repeats
		status  int   // of the error FollowEvents returns; 0: none, it follows on
		asks    int   // requests made until it returns
	}{
		{"history compacted", []int{http.StatusGone}, 410, 1},
		{"no permission", []int{http.StatusForbidden}, 403, 1},
		{"no such endpoint (an older server)", []int{http.StatusNotFound}, 404, 1},
		{"unavailable, then a stream", []int{http.StatusServiceUnavailable, http.StatusOK}, 0, 2},
		{"too many requests, then a stream", []int{http.StatusTooManyRequests, http.StatusOK}, 0, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var reqs asked
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n := reqs.add(r.URL.Query().Get("index"))
				code := tc.answers[min(n, len(tc.answers))-1]
				if code != http.StatusOK {
					http.Error(w, fmt.Sprintf(`{"error":"refused with %d"}`, code), code)
					return
				}
				fmt.Fprint(w, eventLine(10, "x"))
			}))
			defer srv.Close()
			c := New(Options{Servers: []string{srv.URL}})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var got []int64
			err := c.FollowEvents(ctx, Events{After: 9}, func(e api.Event) error {
				got = append(got, e.Index)
				return errEnough
			})
			switch {
			case tc.status == 0 && !errors.Is(err, errEnough):
				t.Fatalf("returned %v, want to follow on until the event", err)
			case tc.status == 0 && fmt.Sprint(got) != "[10]":
				t.Fatalf("handed over %v, want [10]", got)
			case tc.status != 0 && StatusOf(err) != tc.status:
				t.Fatalf("returned %v (status %d), want status %d", err, StatusOf(err), tc.status)
			case tc.status != 0 && !strings.Contains(err.Error(), fmt.Sprintf("refused with %d", tc.status)):
				t.Fatalf("error %q lacks the server's sentence", err)
			}
			if n := len(strings.Fields(reqs.String())); n != tc.asks {
				t.Errorf("asked %d times, want %d", n, tc.asks)
			}
		})
	}
}

// TestFollowEventsFromNow: After 0 follows from the server's current
// index, asked first, so that a reconnect resumes from there.
func TestFollowEventsFromNow(t *testing.T) {
	var reqs asked
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/status" {
			w.Write([]byte(`{"index":41}`))
			return
		}
		reqs.add(r.URL.Query().Get("index"))
		fmt.Fprint(w, eventLine(42, "x"))
	}))
	defer srv.Close()
	c := New(Options{Servers: []string{srv.URL}})
	err := c.FollowEvents(context.Background(), Events{}, func(e api.Event) error { return errEnough })
	if !errors.Is(err, errEnough) || reqs.String() != "41" {
		t.Fatalf("returned %v after asking from %q; want the event, asked from 41", err, reqs.String())
	}
}
