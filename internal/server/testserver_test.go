package server

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"testing"

	"github.com/gantryhq/gantry/internal/state/statetest"
)

// startTestServer starts a real server with cfg (ID and address filled
// in) over its own embedded etcd, and stops it when the test ends.
func startTestServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	return startTestServerWith(t, cfg, nil)
}

// startTestServerWith is startTestServer with before called on the
// server before it starts (to Mount handlers).
func startTestServerWith(t *testing.T, cfg Config, before func(*Server)) *Server {
	t.Helper()
	st := statetest.Open(t, "/test/")
	ctx, cancel := context.WithCancel(context.Background())
	cfg.ID, cfg.HTTPAddr = "s1", "127.0.0.1:0"
	s := New(cfg, st, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if before != nil {
		before(s)
	}
	if err := s.Start(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); s.Wait() })
	return s
}

// aclServer starts a server with ACLs on and no TLS (as behind a
// TLS-terminating proxy), over an embedded etcd.
func aclServer(t *testing.T) (*Server, string) {
	t.Helper()
	s := startTestServer(t, Config{ACL: true})
	return s, "http://" + s.Addr()
}

func get(t *testing.T, url, token string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("X-Gantry-Token", token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}
