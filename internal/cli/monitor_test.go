package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/apiclient"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestMonitorResumesExactlyOnce: the first connection breaks in the
// middle of index 6 (one of its two events written); the monitor asks
// again from index 5 and prints the rest of 6, then 7, each event once.
func TestMonitorResumesExactlyOnce(t *testing.T) {
	ev := func(i int64, key string) string {
		b, _ := json.Marshal(api.Event{Index: i, Topic: api.TopicJob, Type: "JobRegistered", Namespace: "default", Key: key, Time: time.Unix(i, 0)})
		return string(b) + "\n"
	}
	var mu sync.Mutex
	var asked []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		asked = append(asked, r.URL.Query().Get("index"))
		n := len(asked)
		mu.Unlock()
		switch n {
		case 1:
			fmt.Fprint(w, ev(5, "a")+ev(6, "b")) // and the connection ends before 6's "c"
		case 2:
			fmt.Fprint(w, ev(6, "b")+ev(6, "c")+"\n"+ev(7, "d"))
		default:
			http.Error(w, `{"error":"index is older than the history the store keeps: resume from 9 or later"}`, http.StatusGone)
		}
	}))
	defer srv.Close()
	var out, errw syncBuffer
	g := &globals{address: srv.URL, out: &out, errw: &errw, json: true}
	m := &eventMonitor{g: g, c: g.client(), events: apiclient.Events{Topics: []string{"job"}, After: 4}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := m.run(ctx)
	var keys []string
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var e api.Event
		if json.Unmarshal([]byte(line), &e) != nil {
			t.Fatalf("not an event: %q", line)
		}
		keys = append(keys, fmt.Sprintf("%d%s", e.Index, e.Key))
	}
	if got := strings.Join(keys, " "); got != "5a 6b 6c 7d" {
		t.Errorf("printed %s, want 5a 6b 6c 7d", got)
	}
	mu.Lock()
	if strings.Join(asked[:2], ",") != "4,5" {
		t.Errorf("asked for indexes %v, want 4 then 5", asked)
	}
	mu.Unlock()
	if err == nil || !strings.Contains(err.Error(), "resume from 9") {
		t.Errorf("a compacted index must end the monitor with the server's message, got %v", err)
	}
	if !strings.Contains(errw.String(), "event stream lost") || !strings.Contains(errw.String(), "resumed after index") {
		t.Errorf("stderr: %q", errw.String())
	}
}

func TestFormatEvent(t *testing.T) {
	e := &api.Event{Index: 42, Topic: api.TopicAllocation, Type: "AllocationUpdated", Namespace: "default", Key: "0123456789abcdef",
		Time: time.Date(2026, 1, 1, 12, 0, 0, 0, time.Local), Payload: json.RawMessage(`{"job":"web","group":"web","index":1,"client_status":"running","node_name":"n1"}`)}
	s := formatEvent(e)
	for _, want := range []string{"12:00:00.000", "42", "allocation", "AllocationUpdated", "default/web.web[1]", "running on n1"} {
		if !strings.Contains(s, want) {
			t.Errorf("%q lacks %q", s, want)
		}
	}
}
