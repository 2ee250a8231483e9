package lb

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/discovery"
	"github.com/prometheus/client_golang/prometheus"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// deadAddr is an address that refuses connections.
func deadAddr(t *testing.T) string { return "127.0.0.1:" + strconv.Itoa(freePort(t)) }

// backend is a test HTTP server that says who it is.
func backend(t *testing.T, name string, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	if h == nil {
		h = func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) }
	}
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s
}

func hostPort(t *testing.T, addr string) (string, int) {
	t.Helper()
	addr = strings.TrimPrefix(addr, "http://")
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return h, n
}

// catalog builds a one-service catalog over the given endpoint addresses;
// each endpoint's alloc ID is its name.
func catalog(t *testing.T, port int, policy, protocol string, eps map[string]string) *discovery.Catalog {
	t.Helper()
	s := &api.ServiceInfo{Name: "web", Namespace: "default", LB: &api.ServiceLB{Port: port, Policy: policy, Protocol: protocol}}
	for name, addr := range eps {
		h, p := hostPort(t, addr)
		s.Endpoints = append(s.Endpoints, api.ServiceEndpoint{AllocID: name, Job: "web", Group: "web", Address: h, Port: p})
	}
	return discovery.FromWire(&api.ServiceCatalog{Hash: fmt.Sprint(time.Now().UnixNano()), Services: []*api.ServiceInfo{s}})
}

func newManager(t *testing.T, accessLog *slog.Logger) *Manager {
	m := NewManager(Config{Address: "127.0.0.1", AccessLog: accessLog})
	t.Cleanup(m.Close)
	return m
}

// client never retries: one connection per request.
var client = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestRoundRobinSpreadsEvenly(t *testing.T) {
	a, b, c := backend(t, "a", nil), backend(t, "b", nil), backend(t, "c", nil)
	m := newManager(t, nil)
	port := freePort(t)
	m.Update(catalog(t, port, api.LBRoundRobin, "", map[string]string{"a": a.URL, "b": b.URL, "c": c.URL}))
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	seen := map[string]int{}
	for i := 0; i < 30; i++ {
		code, body := get(t, url)
		if code != 200 {
			t.Fatalf("status %d: %s", code, body)
		}
		seen[body]++
	}
	if seen["a"] != 10 || seen["b"] != 10 || seen["c"] != 10 {
		t.Fatalf("round robin over 30 requests: %v", seen)
	}
}

func TestRefusedConnectionIsRetriedElsewhere(t *testing.T) {
	live := backend(t, "live", nil)
	m := newManager(t, nil)
	port := freePort(t)
	// Two of three endpoints refuse: every request still succeeds.
	m.Update(catalog(t, port, api.LBRoundRobin, "", map[string]string{"dead1": deadAddr(t), "dead2": deadAddr(t), "live": live.URL}))
	for i := 0; i < 20; i++ {
		// POST with a body: only a refused connection may be retried.
		resp, err := client.Post(fmt.Sprintf("http://127.0.0.1:%d/", port), "text/plain", strings.NewReader("payload"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "live" {
			t.Fatalf("request %d: %d %s", i, resp.StatusCode, b)
		}
	}
}

func TestBrokenConnectionRetriesIdempotentOnly(t *testing.T) {
	var hits atomic.Int64
	broken := backend(t, "", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		conn, _, _ := w.(http.Hijacker).Hijack()
		conn.Close() // dies before answering
	})
	live := backend(t, "live", nil)
	m := newManager(t, nil)
	port := freePort(t)
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	m.Update(catalog(t, port, api.LBRoundRobin, "", map[string]string{"broken": broken.URL, "live": live.URL}))
	for i := 0; i < 6; i++ {
		if code, body := get(t, url); code != 200 || body != "live" {
			t.Fatalf("GET %d: %d %s", i, code, body)
		}
	}
	if hits.Load() == 0 {
		t.Fatal("the broken endpoint was never tried")
	}
	// A POST that reached the broken endpoint is not sent again.
	m.Update(catalog(t, port, api.LBRoundRobin, "", map[string]string{"broken": broken.URL}))
	resp, err := client.Post(url, "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("POST to a broken endpoint: %d, want 502", resp.StatusCode)
	}
}

func TestNoEndpointIs503(t *testing.T) {
	m := newManager(t, nil)
	port := freePort(t)
	m.Update(catalog(t, port, "", "", nil))
	if code, _ := get(t, fmt.Sprintf("http://127.0.0.1:%d/", port)); code != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", code)
	}
}

func TestLeastOutstandingAvoidsBusyEndpoint(t *testing.T) {
	release := make(chan struct{})
	slow := backend(t, "", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			<-release
		}
		io.WriteString(w, "slow")
	})
	fast := backend(t, "fast", nil)
	m := newManager(t, nil)
	port := freePort(t)
	m.Update(catalog(t, port, api.LBLeastOutstanding, "", map[string]string{"slow": slow.URL, "fast": fast.URL}))
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	// Hold requests until one is stuck on the slow endpoint.
	var wg sync.WaitGroup
	defer func() { close(release); wg.Wait() }()
	for m.Outstanding("slow") == 0 {
		wg.Add(1)
		go func() { defer wg.Done(); get(t, url+"/hold") }()
		time.Sleep(20 * time.Millisecond)
	}
	for i := 0; i < 10; i++ {
		if _, body := get(t, url+"/"); body != "fast" {
			t.Fatalf("request %d went to %q while slow is busy", i, body)
		}
	}
}

func TestPowerOfTwoChoicesPrefersFastEndpoint(t *testing.T) {
	p := newPool(api.LBP2C)
	fast := &endpoint{alloc: "fast"}
	slow := &endpoint{alloc: "slow"}
	now := time.Now().UnixNano()
	fast.observeLatency(now, time.Millisecond)
	slow.observeLatency(now, 50*time.Millisecond)
	eps := []*endpoint{fast, slow}
	p.eps.Store(&eps)
	counts := map[string]int{}
	for i := 0; i < 1000; i++ {
		counts[p.pick(nil).alloc]++
	}
	// With two endpoints both are always drawn: the faster one wins.
	if counts["slow"] != 0 {
		t.Fatalf("p2c picks %v", counts)
	}
	// Load counts too: a fast endpoint with many requests in flight loses.
	fast.outstanding.Store(100)
	if got := p.pick(nil).alloc; got != "slow" {
		t.Fatalf("p2c picked %s with 100 requests in flight on fast", got)
	}
}

func TestPickSkipsDrainingAndEjected(t *testing.T) {
	for _, policy := range []string{api.LBRoundRobin, api.LBLeastOutstanding, api.LBP2C} {
		p := newPool(policy)
		a, b, c := &endpoint{alloc: "a"}, &endpoint{alloc: "b"}, &endpoint{alloc: "c"}
		a.draining.Store(true)
		b.eject(time.Now().UnixNano())
		eps := []*endpoint{a, b, c}
		p.eps.Store(&eps)
		for i := 0; i < 50; i++ {
			if got := p.pick(nil); got != c {
				t.Fatalf("%s picked %s, want c", policy, got.alloc)
			}
		}
		// When c was tried already, an ejected endpoint beats none; a
		// draining one never gets a request.
		if got := p.pick([]*endpoint{c}); got != b {
			t.Fatalf("%s picked %v, want the ejected b", policy, got)
		}
		if got := p.pick([]*endpoint{b, c}); got != nil {
			t.Fatalf("%s picked draining %s", policy, got.alloc)
		}
	}
}

func TestDrainWaitsForRequestsInFlight(t *testing.T) {
	started := make(chan struct{}, 1)
	slow := backend(t, "", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			started <- struct{}{}
			time.Sleep(700 * time.Millisecond)
		}
		io.WriteString(w, "old")
	})
	other := backend(t, "other", nil)
	m := newManager(t, nil)
	port := freePort(t)
	m.Update(catalog(t, port, api.LBRoundRobin, "", map[string]string{"old": slow.URL}))
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	done := make(chan string, 1)
	go func() {
		_, body := get(t, url+"/slow")
		done <- body
	}()
	<-started
	m.Update(catalog(t, port, api.LBRoundRobin, "", map[string]string{"old": slow.URL, "other": other.URL}))
	begin := time.Now()
	drained := make(chan int64, 1)
	m.Drain("old")
	go func() { drained <- m.WaitDrained(context.Background(), "old", 10*time.Second) }()
	// While draining, new requests go to the other endpoint only.
	for i := 0; i < 5; i++ {
		if _, body := get(t, url+"/"); body != "other" {
			t.Fatalf("request %d during the drain went to %q", i, body)
		}
	}
	if left := <-drained; left != 0 {
		t.Fatalf("WaitDrained gave up with %d in flight", left)
	}
	if body := <-done; body != "old" {
		t.Fatalf("slow request answered %q", body)
	}
	if time.Since(begin) > 5*time.Second {
		t.Fatal("WaitDrained did not return when the request finished")
	}
	// The drain mark survives a catalog update that still lists it.
	m.Update(catalog(t, port, api.LBRoundRobin, "", map[string]string{"old": slow.URL, "other": other.URL}))
	for i := 0; i < 4; i++ {
		if _, body := get(t, url+"/"); body != "other" {
			t.Fatalf("drained endpoint got a request after a catalog update")
		}
	}
	// An endpoint that left the catalog while a request was in flight is
	// still waited for.
	m.Update(catalog(t, port, api.LBRoundRobin, "", map[string]string{"old2": slow.URL}))
	go func() {
		_, body := get(t, url+"/slow")
		done <- body
	}()
	<-started
	inFlight := time.Now()
	m.Update(catalog(t, port, api.LBRoundRobin, "", map[string]string{"other": other.URL}))
	if left := m.WaitDrained(context.Background(), "old2", 10*time.Second); left != 0 {
		t.Fatalf("WaitDrained gave up with %d in flight", left)
	}
	if waited := time.Since(inFlight); waited < 500*time.Millisecond {
		t.Fatalf("WaitDrained returned after %s, before the request that left with its endpoint finished", waited)
	}
	select {
	case body := <-done:
		if body != "old" {
			t.Fatalf("slow request answered %q", body)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("slow request did not finish")
	}
	// And the grace period bounds the wait.
	if left := m.WaitDrained(context.Background(), "nobody", 50*time.Millisecond); left != 0 {
		t.Fatalf("unknown allocation: %d in flight", left)
	}
}

func TestWebSocketPassesThrough(t *testing.T) {
	echo := backend(t, "", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			c.Write(r.Context(), typ, append([]byte("echo:"), msg...))
		}
	})
	m := newManager(t, nil)
	port := freePort(t)
	m.Update(catalog(t, port, "", "", map[string]string{"echo": echo.URL}))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, fmt.Sprintf("ws://127.0.0.1:%d/ws", port), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	for i := 0; i < 3; i++ {
		msg := fmt.Sprintf("hello %d", i)
		if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		_, got, err := c.Read(ctx)
		if err != nil || string(got) != "echo:"+msg {
			t.Fatalf("read %q, %v", got, err)
		}
	}
	if n := m.Outstanding("echo"); n != 1 {
		t.Fatalf("an open WebSocket counts as %d in flight, want 1", n)
	}
	c.Close(websocket.StatusNormalClosure, "")
	deadline := time.Now().Add(3 * time.Second)
	for m.Outstanding("echo") != 0 {
		if time.Now().After(deadline) {
			t.Fatal("closed WebSocket still counted in flight")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestStreamingPassesThroughAsItComes(t *testing.T) {
	next := make(chan struct{})
	stream := backend(t, "", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		<-next // the second event waits until the client saw the first
		fmt.Fprint(w, "data: two\n\n")
	})
	m := newManager(t, nil)
	port := freePort(t)
	m.Update(catalog(t, port, "", "", map[string]string{"s": stream.URL}))
	resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/events", port))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rd := bufio.NewReader(resp.Body)
	line, err := rd.ReadString('\n')
	if err != nil || line != "data: one\n" {
		t.Fatalf("first event %q, %v", line, err)
	}
	close(next)
	rest, _ := io.ReadAll(rd)
	if !strings.Contains(string(rest), "data: two") {
		t.Fatalf("rest of the stream: %q", rest)
	}
}

func TestHTTP2ToClients(t *testing.T) {
	b := backend(t, "", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s via %s", r.Proto, r.Header.Get("X-Forwarded-Proto"))
	})
	m := newManager(t, nil)
	port := freePort(t)
	m.Update(catalog(t, port, "", "", map[string]string{"b": b.URL}))
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	h2 := &http.Client{Transport: &http.Transport{Protocols: &protocols}, Timeout: 5 * time.Second}
	resp, err := h2.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.ProtoMajor != 2 {
		t.Fatalf("client spoke %s, want HTTP/2", resp.Proto)
	}
	if string(body) != "HTTP/1.1 via http" {
		t.Fatalf("backend saw %q", body)
	}
}

func TestTCPProxy(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c) // echo until the client half-closes
			}()
		}
	}()
	m := newManager(t, nil)
	port := freePort(t)
	m.Update(catalog(t, port, "", api.LBProtocolTCP, map[string]string{"dead": deadAddr(t), "echo": "http://" + ln.Addr().String()}))
	for i := 0; i < 4; i++ {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "ping %d", i)
		c.(*net.TCPConn).CloseWrite()
		got, _ := io.ReadAll(c)
		c.Close()
		if string(got) != fmt.Sprintf("ping %d", i) {
			t.Fatalf("connection %d echoed %q", i, got)
		}
	}
}

func TestAccessLogAndMetrics(t *testing.T) {
	b := backend(t, "ok", nil)
	var buf syncBuffer
	m := newManager(t, slog.New(slog.NewJSONHandler(&buf, nil)))
	port := freePort(t)
	m.Update(catalog(t, port, "", "", map[string]string{"b": b.URL, "dead": deadAddr(t)}))
	for i := 0; i < 4; i++ {
		if code, _ := get(t, fmt.Sprintf("http://127.0.0.1:%d/x", port)); code != 200 {
			t.Fatalf("status %d", code)
		}
	}
	var line map[string]any
	if err := json.Unmarshal(bytes.SplitN(buf.Bytes(), []byte("\n"), 2)[0], &line); err != nil {
		t.Fatalf("access log %q: %v", buf.String(), err)
	}
	for _, k := range []string{"service", "method", "path", "status", "duration_ms", "upstream", "alloc", "attempts"} {
		if _, ok := line[k]; !ok {
			t.Fatalf("access log line lacks %s: %v", k, line)
		}
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, mt := range mf.Metric {
			labels := map[string]string{}
			for _, l := range mt.Label {
				labels[l.GetName()] = l.GetValue()
			}
			switch mf.GetName() {
			case "gantry_lb_requests_total":
				got[mf.GetName()+"/"+labels["alloc"]+"/"+labels["code"]] = mt.Counter.GetValue()
			case "gantry_lb_retries_total":
				got[mf.GetName()+"/"+labels["alloc"]] = mt.Counter.GetValue()
			case "gantry_lb_request_duration_seconds":
				got[mf.GetName()+"/"+labels["alloc"]] = float64(mt.Histogram.GetSampleCount())
			}
		}
	}
	if got["gantry_lb_requests_total/b/2xx"] != 4 || got["gantry_lb_request_duration_seconds/b"] != 4 {
		t.Fatalf("metrics: %v", got)
	}
	if got["gantry_lb_retries_total/dead"] < 1 {
		t.Fatalf("refused connections not counted as retries: %v", got)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]byte(nil), s.b.Bytes()...)
}

func (s *syncBuffer) String() string { return string(s.Bytes()) }

func TestListenersFollowTheCatalog(t *testing.T) {
	b := backend(t, "b", nil)
	m := newManager(t, nil)
	p1, p2 := freePort(t), freePort(t)
	m.Update(catalog(t, p1, "", "", map[string]string{"b": b.URL}))
	if got := m.Addr("default", "web"); got != fmt.Sprintf("127.0.0.1:%d", p1) {
		t.Fatalf("served at %q", got)
	}
	// The service moves to another port: the old listener closes.
	m.Update(catalog(t, p2, "", "", map[string]string{"b": b.URL}))
	if code, _ := get(t, fmt.Sprintf("http://127.0.0.1:%d/", p2)); code != 200 {
		t.Fatalf("new port: %d", code)
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", p1))
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("old port still accepts")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Gone from the catalog: nothing served.
	m.Update(discovery.FromWire(&api.ServiceCatalog{Hash: "empty"}))
	if got := m.Addr("default", "web"); got != "" {
		t.Fatalf("still served at %s", got)
	}
}

// TestDrainAfterServiceLeftTheCatalog: the whole service disappears (its
// job stopped) while a request is in flight; the listener closes
// gracefully and a drain still waits for the request.
func TestDrainAfterServiceLeftTheCatalog(t *testing.T) {
	started := make(chan struct{}, 1)
	slow := backend(t, "", func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		time.Sleep(600 * time.Millisecond)
		io.WriteString(w, "done")
	})
	m := newManager(t, nil)
	port := freePort(t)
	m.Update(catalog(t, port, "", "", map[string]string{"a": slow.URL}))
	done := make(chan string, 1)
	go func() {
		_, body := get(t, fmt.Sprintf("http://127.0.0.1:%d/", port))
		done <- body
	}()
	<-started
	inFlight := time.Now()
	m.Update(discovery.FromWire(&api.ServiceCatalog{Hash: "empty"}))
	if left := m.WaitDrained(context.Background(), "a", 10*time.Second); left != 0 {
		t.Fatalf("WaitDrained gave up with %d in flight", left)
	}
	if waited := time.Since(inFlight); waited < 400*time.Millisecond {
		t.Fatalf("WaitDrained returned after %s, before the request finished", waited)
	}
	if body := <-done; body != "done" {
		t.Fatalf("request cut: %q", body)
	}
}
