package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
)

// eventKey identifies one event of the stream.
type eventKey struct {
	Index           int64
	Topic, Type, NS string
	Key             string
}

func keyOf(e api.Event) eventKey { return eventKey{e.Index, e.Topic, e.Type, e.Namespace, e.Key} }

// lockedLines collects lines written by another goroutine or process.
type lockedLines struct {
	mu    sync.Mutex
	lines []string
	part  string
}

func (l *lockedLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.part + string(p)
	parts := strings.Split(s, "\n")
	l.part = parts[len(parts)-1]
	l.lines = append(l.lines, parts[:len(parts)-1]...)
	return len(p), nil
}

func (l *lockedLines) events(t *testing.T) []api.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []api.Event
	for _, line := range l.lines {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var e api.Event
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("monitor printed a line that is not an event: %q", line)
		}
		out = append(out, e)
	}
	return out
}

// sseClient follows /v1/events as server-sent events, reconnecting with
// Last-Event-ID as a browser's EventSource does.
type sseClient struct {
	mu     sync.Mutex
	events []api.Event
	last   string
	conns  int
}

func (s *sseClient) run(ctx context.Context, url string) {
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		req.Header.Set("Accept", "text/event-stream")
		s.mu.Lock()
		if s.last != "" {
			req.Header.Set("Last-Event-ID", s.last)
		}
		s.mu.Unlock()
		resp, err := http.DefaultClient.Do(req)
		if err == nil && resp.StatusCode == http.StatusOK {
			s.mu.Lock()
			s.conns++
			s.mu.Unlock()
			sc := bufio.NewScanner(resp.Body)
			sc.Buffer(make([]byte, 1<<20), 16<<20)
			var id, data string
			for sc.Scan() {
				line := sc.Text()
				switch {
				case strings.HasPrefix(line, "id: "):
					id = strings.TrimPrefix(line, "id: ")
				case strings.HasPrefix(line, "data: "):
					data = strings.TrimPrefix(line, "data: ")
				case line == "" && data != "":
					var e api.Event
					if json.Unmarshal([]byte(data), &e) == nil {
						s.mu.Lock()
						s.events = append(s.events, e)
						s.last = id
						s.mu.Unlock()
					}
					id, data = "", ""
				}
			}
			resp.Body.Close()
		} else if err == nil {
			resp.Body.Close()
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (s *sseClient) snapshot() ([]api.Event, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]api.Event(nil), s.events...), s.conns
}

// readEvents reads /v1/events from index until an event satisfies stop.
func readEvents(t *testing.T, c *Cluster, query string, stop func(api.Event) bool) []api.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.Addr+"/v1/events?"+query, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/events?%s: %s", query, resp.Status)
	}
	var out []api.Event
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var e api.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
		if stop(e) {
			return out
		}
	}
	t.Fatalf("the event stream ended before the expected event: %v", sc.Err())
	return nil
}

func upTo(es []api.Event, index int64) []eventKey {
	var out []eventKey
	for _, e := range es {
		if e.Index <= index {
			out = append(out, keyOf(e))
		}
	}
	return out
}

// TestEventStreamResumesAcrossRestart follows the event stream with
// `gantry monitor --json` and with a server-sent-events client while jobs
// are registered, the server is killed (kill -9) and started again, and
// more jobs are registered: both must hold exactly the events a fresh read
// from the same index returns, in the same order, none missing, none twice.
func TestEventStreamResumesAcrossRestart(t *testing.T) {
	c := StartDev(t)
	var st api.StatusResponse
	if err := c.GetJSON("/v1/status", &st); err != nil {
		t.Fatal(err)
	}
	from := st.Index
	query := fmt.Sprintf("topic=job&topic=evaluation&topic=allocation&index=%d", from)

	var out lockedLines
	var stderr strings.Builder
	mon := exec.Command(gantryBin, "--address", c.Addr, "monitor", "--json", "--index", strconv.FormatInt(from, 10),
		"--topic", "job,evaluation", "--topic", "allocation")
	mon.Stdout, mon.Stderr = &out, &stderr
	if err := mon.Start(); err != nil {
		t.Fatal(err)
	}
	monDone := make(chan error, 1)
	go func() { monDone <- mon.Wait() }()
	defer func() {
		mon.Process.Signal(syscall.SIGKILL)
	}()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var sse sseClient
	go sse.run(ctx, c.Addr+"/v1/events?"+query)

	job := func(name string) {
		t.Helper()
		spec := WriteSpec(t, name+".yaml", fmt.Sprintf("name: %s\ntype: batch\ngroups:\n  - name: g\n    count: 2\n    tasks:\n      - name: t\n        driver: exec\n        config: {command: /bin/true}\n        resources: {cpu: 50, memory: 16}\n", name))
		if r := c.Gantry("job", "run", "-d", spec); r.Code != 0 {
			t.Fatalf("job run %s: %d %s%s", name, r.Code, r.Stdout, r.Stderr)
		}
	}
	for i := 0; i < 3; i++ {
		job(fmt.Sprintf("before-%d", i))
	}
	c.Eventually(30*time.Second, "the followers to see the jobs before the restart", func() bool {
		es, _ := sse.snapshot()
		return len(upTo(out.events(t), 1<<62)) >= 6 && len(es) >= 6
	})

	c.Kill9()
	c.Start()
	for i := 0; i < 3; i++ {
		job(fmt.Sprintf("after-%d", i))
	}
	job("sentinel")

	ref := readEvents(t, c, query, func(e api.Event) bool { return e.Topic == api.TopicJob && e.Key == "sentinel" })
	last := ref[len(ref)-1].Index
	want := upTo(ref, last)
	c.Eventually(60*time.Second, "the followers to reach the last job", func() bool {
		es, _ := sse.snapshot()
		return len(upTo(out.events(t), last)) >= len(want) && len(upTo(es, last)) >= len(want)
	})
	sseEvents, conns := sse.snapshot()
	for name, got := range map[string][]eventKey{"gantry monitor": upTo(out.events(t), last), "server-sent events": upTo(sseEvents, last)} {
		if len(got) != len(want) {
			t.Errorf("%s: %d events up to index %d, a fresh read has %d", name, len(got), last, len(want))
		}
		seen := map[eventKey]bool{}
		for i, k := range got {
			if seen[k] {
				t.Errorf("%s: event %+v twice", name, k)
			}
			seen[k] = true
			if i < len(want) && k != want[i] {
				t.Errorf("%s: event %d is %+v, a fresh read has %+v", name, i, k, want[i])
				break
			}
		}
	}
	if conns < 2 {
		t.Errorf("the server-sent-events client connected %d times; the restart should have made it reconnect", conns)
	}
	var before, after int
	for _, k := range want {
		if k.Topic == api.TopicJob && strings.HasPrefix(k.Key, "before-") {
			before++
		}
		if k.Topic == api.TopicJob && strings.HasPrefix(k.Key, "after-") {
			after++
		}
	}
	if before < 3 || after < 3 {
		t.Errorf("events of jobs before the restart %d, after %d; want 3 each at least", before, after)
	}

	// monitor says on stderr that it lost the stream and resumed.
	if s := stderr.String(); !strings.Contains(s, "event stream lost") || !strings.Contains(s, "resumed after index") {
		t.Errorf("monitor's stderr does not report the reconnection:\n%s", s)
	}
	mon.Process.Signal(syscall.SIGINT)
	select {
	case err := <-monDone:
		if err != nil {
			t.Errorf("monitor exited with %v after SIGINT, want 0", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("monitor did not exit after SIGINT")
	}

	// A stream that cannot be followed is an error, said plainly.
	r := c.Gantry("monitor", "--index", "1", "--topic", "nonsense")
	if r.Code != 1 || !strings.Contains(r.Stderr, "unknown event topic") {
		t.Errorf("monitor with a bad topic: %d %s", r.Code, r.Stderr)
	}
}

// TestMetricsHistorySurvivesRestart: with --metrics-history-file the
// node's usage history is still there after the server restarts; the
// interval flag thins it.
func TestMetricsHistorySurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	c := StartDev(t, "--sample-interval", "200ms", "--metrics-history-file", dir+"/history.json", "--metrics-history-interval", "400ms")
	var h api.NodeMetricsResponse
	c.Eventually(30*time.Second, "four samples", func() bool {
		return c.GetJSON("/v1/nodes/"+c.NodeID+"/metrics", &h) == nil && len(h.Samples) >= 4
	})
	for i := 1; i < len(h.Samples); i++ {
		if d := h.Samples[i].Time.Sub(h.Samples[i-1].Time); d < 400*time.Millisecond {
			t.Errorf("samples %d and %d are %s apart; the interval is 400ms", i-1, i, d)
		}
	}
	c.Stop()
	before := h.Samples
	c.Start()
	if err := c.GetJSON("/v1/nodes/"+c.NodeID+"/metrics", &h); err != nil {
		t.Fatal(err)
	}
	if len(h.Samples) < len(before) || !h.Samples[0].Time.Equal(before[0].Time) {
		t.Errorf("after the restart the history has %d samples (%+v); before it had %d from %v", len(h.Samples), h.Samples, len(before), before[0].Time)
	}
}
