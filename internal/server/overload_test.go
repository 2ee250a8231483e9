package server

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/scheduler/schedtest"
	"github.com/gantryhq/gantry/internal/server/overload"
)

// TestOverloadBackpressure drives a real server into overload through
// its own measurements: with a heartbeat-lag threshold of 1 ns, every
// heartbeat a node sends overloads it, and no other input counts. While
// a node keeps beating: a job submission is answered 429 with a
// Retry-After and a sentence that says why, and nothing is registered;
// reads, heartbeats and allocation reports are served; a registering
// node is handed a longer TTL; the metrics say all of it; and the node
// monitor keeps a node whose lease lapsed ready. Once the beats stop the
// overload ends, submissions are accepted, and the silent node is marked
// down after the TTL of grace that follows an overload.
func TestOverloadBackpressure(t *testing.T) {
	const ttl = 4 * time.Second
	s := startTestServer(t, Config{HeartbeatTTL: ttl,
		Overload: overload.Thresholds{EvalBacklog: -1, ReportLag: -1, HeartbeatLag: time.Nanosecond}})
	base := "http://" + s.Addr()
	ctx := context.Background()
	send := func(method, path, body string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		return resp, string(data)
	}
	register := func(n *api.Node) time.Duration {
		t.Helper()
		nb, _ := json.Marshal(n)
		var out api.NodeRegisterResponse
		if status, body := post(t, base+"/v1/nodes/register", "", string(nb), &out); status != http.StatusOK {
			t.Fatalf("register %s: %d %s", n.Name, status, body)
		}
		return out.HeartbeatTTL.D()
	}

	// A node that never beats, its lease as short as the store allows.
	silent := schedtest.Node("silent")
	if err := s.store.RegisterNode(ctx, silent, 2*time.Second, s.now()); err != nil {
		t.Fatal(err)
	}
	beating := schedtest.Node("beating")
	if got := register(beating); got != ttl {
		t.Fatalf("before any overload a node was handed TTL %s, want the configured %s", got, ttl)
	}
	// The beating node keeps the server overloaded until stop.
	stop := make(chan struct{})
	var beats sync.WaitGroup
	var beatErr error
	beats.Add(1)
	go func() {
		defer beats.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			req, _ := http.NewRequest(http.MethodPut, base+"/v1/nodes/"+beating.ID+"/heartbeat", strings.NewReader(`{}`))
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					err = &httpError{msg: "heartbeat while overloaded: " + resp.Status}
				}
			}
			if err != nil {
				beatErr = err
				return
			}
		}
	}()
	stopBeating := sync.OnceFunc(func() { close(stop); beats.Wait() })
	defer stopBeating()
	waitFor(t, "the server overloaded", func() bool { return s.overloadLevel() > overload.Normal })

	job := `{"name":"web","namespace":"default","type":"service","priority":50,"groups":[{"name":"web","count":1,"tasks":[{"name":"t","driver":"exec","config":{"command":"/bin/sleep"},"resources":{"cpu":100,"memory":32}}]}]}`
	resp, body := send(http.MethodPost, "/v1/jobs", job)
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("a submission while overloaded: %s %s, want 429", resp.Status, body)
	}
	// Level 3 (a heartbeat takes a million times the threshold): the
	// default 5 s doubled twice.
	if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || secs != 20 {
		t.Errorf("Retry-After %q, want 20 (seconds)", resp.Header.Get("Retry-After"))
	}
	var e api.Error
	if err := json.Unmarshal([]byte(body), &e); err != nil || !strings.Contains(e.Error, "overloaded (heartbeats take") ||
		!strings.Contains(e.Error, "was not accepted, retry in 20s") {
		t.Errorf("429 body %s: want one sentence saying the server is overloaded, why, and when to retry", body)
	} else {
		t.Logf("429: %s", e.Error)
	}
	if _, ok := s.store.Job("default", "web"); ok {
		t.Error("the refused job was registered")
	}

	// Reads, reports and registrations are served.
	for _, path := range []string{"/v1/status", "/v1/jobs", "/v1/nodes", "/v1/nodes/" + beating.ID, "/v1/nodes/" + beating.ID + "/allocations?index=0"} {
		if resp, body := send(http.MethodGet, path, ""); resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s while overloaded: %s %s", path, resp.Status, body)
		}
	}
	if resp, body := send(http.MethodPost, "/v1/nodes/"+beating.ID+"/allocations", `{"updates":[]}`); resp.StatusCode != http.StatusOK {
		t.Errorf("an allocation report while overloaded: %s %s", resp.Status, body)
	}
	if got := register(schedtest.Node("late")); got <= ttl {
		t.Errorf("a node registering while overloaded was handed TTL %s, want more than %s", got, ttl)
	}

	// The node monitor finds the silent node's lease gone and keeps it.
	waitFor(t, "the node monitor keeping the silent node ready", func() bool {
		m := s.load.monitor.Load()
		return m != nil && m.Spared() == 1
	})
	if n, _ := s.store.Node(silent.ID); n.Status != api.NodeStatusReady || s.store.Alive(silent.ID) {
		t.Fatalf("silent node %s (lease alive: %v), want ready with its lease gone", n.Status, s.store.Alive(silent.ID))
	}

	resp, metrics := send(http.MethodGet, "/metrics", "")
	for _, want := range []string{"gantry_overload_level 3", "gantry_submissions_refused_total 1", `gantry_overload_pressure{input="heartbeat_lag"}`,
		"gantry_heartbeat_ttl_seconds 16", "gantry_overload_spared_nodes 1"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics does not say %q", want)
		}
	}

	stopBeating()
	if beatErr != nil {
		t.Errorf("heartbeats while overloaded: %v", beatErr)
	}
	waitFor(t, "the overload to end", func() bool { return s.overloadLevel() == overload.Normal })
	if resp, body := send(http.MethodPost, "/v1/jobs", job); resp.StatusCode != http.StatusOK {
		t.Errorf("a submission after the overload: %s %s", resp.Status, body)
	}
	waitFor(t, "the silent node marked down once the grace after the overload is over", func() bool {
		n, _ := s.store.Node(silent.ID)
		return n.Status == api.NodeStatusDown
	})
}
