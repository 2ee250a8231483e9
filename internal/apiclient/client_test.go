package apiclient

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/internal/api"
)

// deadAddress is a loopback address where nothing listens (it did a
// moment ago).
func deadAddress(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// TestErrorClassification: every kind of failure becomes one sentence and
// a class: unreachable servers and 5xx/429 answers are retryable, every
// other 4xx and a cancelled request are not.
func TestErrorClassification(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/bad":
			w.WriteHeader(http.StatusBadRequest)
			json.NewEncoder(w).Encode(api.Error{Error: `count must be at least 1`, Field: "groups[0].count",
				Errors: []api.FieldError{{Path: "groups[0].count", Message: "must be at least 1"}}})
		case "/v1/missing":
			http.Error(w, `{"error":"job \"web\" not found in namespace \"default\""}`, http.StatusNotFound)
		case "/v1/gone":
			http.Error(w, `{"error":"index 3 is older than the history the store keeps: resume from 9 or later"}`, http.StatusGone)
		case "/v1/busy":
			http.Error(w, `{"error":"too many requests"}`, http.StatusTooManyRequests)
		case "/v1/unavailable":
			http.Error(w, `{"error":"no leader"}`, http.StatusServiceUnavailable)
		case "/v1/proxy":
			http.Error(w, "upstream died", http.StatusBadGateway) // not JSON: the status and body
		case "/v1/ok":
			w.Write([]byte(`{"server":"s1","index":7}`))
		case "/v1/garbled":
			w.Write([]byte(`{"server":`))
		}
	}))
	defer srv.Close()
	noLeader := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"error":"no leader"}`, http.StatusServiceUnavailable)
	}))
	defer noLeader.Close()
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name      string
		servers   []string
		ctx       context.Context
		path      string
		status    int
		retryable bool
		msg       string // the error's text contains it; "" for no error
	}{
		{"ok", []string{srv.URL}, nil, "/v1/ok", 0, false, ""},
		{"invalid input", []string{srv.URL}, nil, "/v1/bad", 400, false, "count must be at least 1"},
		{"not found", []string{srv.URL}, nil, "/v1/missing", 404, false, `job "web" not found`},
		{"history compacted", []string{srv.URL}, nil, "/v1/gone", 410, false, "resume from 9 or later"},
		{"too many requests", []string{srv.URL}, nil, "/v1/busy", 429, true, "too many requests"},
		{"server unavailable", []string{srv.URL}, nil, "/v1/unavailable", 503, true, "no leader"},
		{"a body that is not JSON", []string{srv.URL}, nil, "/v1/proxy", 502, true, "server answered 502 Bad Gateway: upstream died"},
		{"no server answers", []string{deadAddress(t), deadAddress(t)}, nil, "/v1/ok", 0, true, "no Gantry server answers at http://127.0.0.1:"},
		{"a dead server, then a live one", []string{deadAddress(t), srv.URL}, nil, "/v1/ok", 0, false, ""},
		{"a server without a leader, then one that reads", []string{noLeader.URL, srv.URL}, nil, "/v1/ok", 0, false, ""},
		{"no server can serve", []string{noLeader.URL, noLeader.URL}, nil, "/v1/ok", 503, true, "no leader"},
		{"an answer that is not JSON", []string{srv.URL}, nil, "/v1/garbled", 0, false, "is not valid JSON"},
		{"cancelled by the caller", []string{srv.URL}, cancelled, "/v1/ok", 0, false, "context canceled"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := New(Options{Servers: tc.servers})
			ctx := tc.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			var out api.StatusResponse
			err := c.Do(ctx, http.MethodGet, tc.path, nil, &out)
			if tc.msg == "" {
				if err != nil || out.Index != 7 {
					t.Fatalf("got %+v, %v; want index 7 and no error", out, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want one saying %q", tc.msg)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not say %q", err, tc.msg)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q is more than one line", err)
			}
			if got := StatusOf(err); got != tc.status {
				t.Errorf("StatusOf = %d, want %d", got, tc.status)
			}
			if got := Retryable(err); got != tc.retryable {
				t.Errorf("Retryable = %t, want %t", got, tc.retryable)
			}
			if got := IsNotFound(err); got != (tc.status == 404) {
				t.Errorf("IsNotFound = %t", got)
			}
		})
	}
}

// TestRejectionKeepsFieldErrors: the located problems of a rejected job
// survive decoding, for the CLI to place them in the file.
func TestRejectionKeepsFieldErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		json.NewEncoder(w).Encode(api.Error{Error: "job has 1 problem", Errors: []api.FieldError{{Path: "groups[0].count", Message: "must be at least 1"}}})
	}))
	defer srv.Close()
	_, err := New(Options{Servers: []string{srv.URL}}).RegisterJob(context.Background(), &api.Job{Name: "web"})
	var e *Error
	if !errors.As(err, &e) || len(e.Errors) != 1 || e.Errors[0].Path != "groups[0].count" {
		t.Fatalf("got %#v, want an *Error listing groups[0].count", err)
	}
}

// TestAddresses: addresses without a scheme get one, TLS makes http
// https, and the token travels with every request.
func TestAddresses(t *testing.T) {
	var token string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token = r.Header.Get("X-Gantry-Token")
		w.Write([]byte(`{}`))
	}))
	defer srv.Close()
	c := New(Options{Servers: []string{strings.TrimPrefix(srv.URL, "http://") + "/"}, Token: "s3cret"})
	if got := c.Address(); got != srv.URL {
		t.Errorf("Address = %q, want %q", got, srv.URL)
	}
	if _, err := c.Status(context.Background()); err != nil || token != "s3cret" {
		t.Errorf("status: %v, token %q", err, token)
	}
	tc := New(Options{Servers: []string{"http://a:7700", "b:7700"}, TLS: &tls.Config{}})
	if got := strings.Join(tc.Servers(), " "); got != "https://a:7700 https://b:7700" {
		t.Errorf("with TLS the servers are %s", got)
	}
}
