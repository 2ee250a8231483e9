package agent_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/agent"
	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/apiclient"
	"github.com/gantryhq/gantry/internal/driver"
	"github.com/gantryhq/gantry/internal/driver/null"
	"github.com/gantryhq/gantry/internal/metrics"
	"github.com/gantryhq/gantry/internal/server"
	"github.com/gantryhq/gantry/internal/state/statetest"
)

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// pathRecorder records the agent's requests to the servers.
type pathRecorder struct {
	mu    sync.Mutex
	paths map[string]int
	next  http.RoundTripper
}

func (p *pathRecorder) RoundTrip(r *http.Request) (*http.Response, error) {
	key := r.Method + " " + r.URL.Path
	if r.URL.Path == "/v1/nodes/stream" && (r.Body == nil || r.Body == http.NoBody) {
		key += " (probe)"
	}
	p.mu.Lock()
	p.paths[key]++
	p.mu.Unlock()
	return p.next.RoundTrip(r)
}

// count is how many requests matched method and path (a prefix and a
// suffix around the node ID).
func (p *pathRecorder) count(method, prefix, suffix string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for k, v := range p.paths {
		m, path, _ := strings.Cut(k, " ")
		if m == method && strings.HasPrefix(path, prefix) && strings.HasSuffix(path, suffix) && !strings.HasSuffix(path, " (probe)") {
			n += v
		}
	}
	return n
}

func waitUntil(t *testing.T, what string, fn func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if fn() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// runStreamAgent starts a server (behind front, when set), and an agent
// with the null driver and Stream on, submits a job of two replicas and
// waits until both run.
func runStreamAgent(t *testing.T, front func(http.Handler) http.Handler) *pathRecorder {
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	st := statetest.Open(t, "/stream-test/")
	ctx, cancel := context.WithCancel(context.Background())
	srv := server.New(server.Config{ID: "s1", HTTPAddr: "127.0.0.1:0", HeartbeatTTL: 3 * time.Second}, st, log)
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	addr := "http://" + srv.Addr()
	if front != nil {
		u, _ := url.Parse(addr)
		ts := httptest.NewServer(front(httputil.NewSingleHostReverseProxy(u)))
		t.Cleanup(ts.Close)
		addr = ts.URL
	}
	rec := &pathRecorder{paths: map[string]int{}, next: &http.Transport{}}
	a, err := agent.New(agent.Config{
		Servers: []string{addr}, DataDir: t.TempDir(), NodeName: "streamer", NoAPI: true,
		Drivers: []driver.Driver{null.New()}, SampleInterval: -1, AuditInterval: -1,
		Transport: rec, Metrics: metrics.NewBareRegistry(), Stream: true,
	}, log)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		srv.Wait()
	})

	c := apiclient.New(apiclient.Options{Servers: []string{addr}})
	waitUntil(t, "the node ready", func() bool {
		n, err := c.Node(ctx, a.NodeID())
		return err == nil && n.Status == api.NodeStatusReady
	})
	job := &api.Job{Name: "s", Namespace: api.DefaultNamespace, Type: api.JobService, Priority: 50,
		Groups: []*api.Group{{Name: "g", Count: 2, Tasks: []*api.Task{{Name: "t", Driver: api.DriverNull, Resources: api.Resources{CPU: 10, Memory: 10}}}}}}
	if _, err := c.RegisterJob(ctx, job); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "both replicas running", func() bool {
		allocs, err := c.JobAllocs(ctx, api.DefaultNamespace, "s", false)
		running := 0
		for _, al := range allocs {
			if al.ClientStatus == api.AllocRunning {
				running++
			}
		}
		return err == nil && running == 2
	})
	return rec
}

// TestAgentStream: with Stream on, the agent runs a job with its
// allocations, reports and heartbeats on the node stream, and never
// long-polls.
func TestAgentStream(t *testing.T) {
	rec := runStreamAgent(t, nil)
	waitUntil(t, "a heartbeat", func() bool { return rec.count("POST", "/v1/nodes/stream", "") > 0 })
	time.Sleep(2 * time.Second) // a heartbeat or two (TTL 3s)
	if n := rec.count("POST", "/v1/nodes/stream", ""); n != 1 {
		t.Errorf("%d streams opened, want 1 (%v)", n, rec.paths)
	}
	for _, ep := range []struct{ method, suffix string }{{"GET", "/allocations"}, {"POST", "/allocations"}, {"PUT", "/heartbeat"}} {
		if n := rec.count(ep.method, "/v1/nodes/", ep.suffix); n != 0 {
			t.Errorf("%d requests %s /v1/nodes/{id}%s beside the stream: %v", n, ep.method, ep.suffix, rec.paths)
		}
	}
}

// TestAgentStreamFallsBack: against servers that answer the stream 404
// (they predate it), the agent long-polls and runs the job all the same.
func TestAgentStreamFallsBack(t *testing.T) {
	rec := runStreamAgent(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/v1/nodes/stream" {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusNotFound)
				io.WriteString(w, `{"error":"no API endpoint POST /v1/nodes/stream: see the README for the /v1 endpoints"}`)
				return
			}
			next.ServeHTTP(w, r)
		})
	})
	if n := rec.count("GET", "/v1/nodes/", "/allocations"); n == 0 {
		t.Errorf("no long-poll after the stream was refused: %v", rec.paths)
	}
	if n := rec.count("POST", "/v1/nodes/stream", ""); n != 0 {
		t.Errorf("%d streams opened against a server without them", n)
	}
}
