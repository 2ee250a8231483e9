package server

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/state/statetest"
)

// syncBuffer is a log sink safe for the server's goroutines.
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

// TestStalledBodiesTimeOut (issue 15): clients that send their headers and
// half of a large body, then stall, are answered 408 once the body read
// timeout passes and their connections are closed; the server keeps
// answering others meanwhile; each aborted request is logged exactly once,
// at Info, never as an error.
func TestStalledBodiesTimeOut(t *testing.T) {
	st := statetest.Open(t, "/test/")
	ctx, cancel := context.WithCancel(context.Background())
	var logs syncBuffer
	s := New(Config{ID: "s1", HTTPAddr: "127.0.0.1:0", BodyReadTimeout: time.Second},
		st, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err := s.Start(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); s.Wait() })

	const stalled = 8
	const length = 4 << 20
	var wg sync.WaitGroup
	statuses := make([]string, stalled)
	for i := range stalled {
		conn, err := net.Dial("tcp", s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{\"name\": \"", length)
		conn.Write(bytes.Repeat([]byte("a"), length/2))
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn.SetReadDeadline(time.Now().Add(60 * time.Second))
			line, _ := bufio.NewReader(conn).ReadString('\n')
			statuses[i] = strings.TrimSpace(line)
		}()
	}
	// The server still answers while they stall.
	resp, err := http.Get("http://" + s.Addr() + "/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status while bodies stall: %d", resp.StatusCode)
	}
	wg.Wait()
	for i, st := range statuses {
		if !strings.Contains(st, "408") {
			t.Errorf("stalled client %d got %q, want 408 Request Timeout", i, st)
		}
	}
	out := logs.String()
	if n := strings.Count(out, "request aborted while its body was read"); n != stalled {
		t.Errorf("%d aborted-request log lines for %d aborted requests:\n%s", n, stalled, out)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "level=ERROR") {
			t.Errorf("an aborted body was logged as an error: %s", line)
		}
		if strings.Contains(line, "request aborted") && !strings.Contains(line, "level=INFO") {
			t.Errorf("aborted request not at Info: %s", line)
		}
	}
}

// TestBodyBudget: readers take the budget chunk by chunk; when it is
// spent the next waits until one gives back, or its deadline passes.
func TestBodyBudget(t *testing.T) {
	b := newBodyBudget(2 * bodyChunk)
	ctx := context.Background()
	if err := b.acquire(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.acquire(ctx); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := b.acquire(short); err == nil {
		t.Fatal("a third chunk was granted beyond a budget of two")
	}
	done := make(chan error, 1)
	go func() { done <- b.acquire(ctx) }()
	b.release(1)
	if err := <-done; err != nil {
		t.Fatalf("a waiting reader was not given the chunk released: %v", err)
	}
}
