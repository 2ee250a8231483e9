package linearize

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestDoClassifiesAnswers: what a client operation records, by what the
// server did: an answer is the operation's result, a stop or read of a
// missing job says not found, a refused connection was never sent (left
// out of the history), an invalid request fails the test, and anything
// that leaves the outcome open (a 5xx, a connection dropped mid-request,
// an answer that is not a job) is unknown, for porcupine to place at any
// later time. No cluster: each server is an httptest one.
func TestDoClassifiesAnswers(t *testing.T) {
	server := func(h http.HandlerFunc) string {
		s := httptest.NewServer(h)
		t.Cleanup(s.Close)
		return s.URL
	}
	answer := func(status int, body string) string {
		return server(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(status)
			w.Write([]byte(body))
		})
	}
	dropped := server(func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close() // the request arrived; no answer leaves
		}
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + l.Addr().String()
	l.Close()

	job := `{"job":{"name":"lin-0","stop":true,"groups":[{"name":"g","tasks":[{"name":"t","config":{"env":{"V":"c1-7"}}}]}]}}`
	reg := input{Job: "lin-0", Op: "register", Value: "c1-7"}
	stop := input{Job: "lin-0", Op: "stop"}
	read := input{Job: "lin-0", Op: "read"}
	for _, tc := range []struct {
		name    string
		addr    string
		in      input
		want    output
		dropped bool // errDropped
		invalid bool // another error: the test fails
	}{
		{"register acknowledged", answer(200, `{"eval_id":"e"}`), reg, output{Found: true}, false, false},
		{"stop acknowledged", answer(200, `{"eval_id":"e"}`), stop, output{Found: true}, false, false},
		{"stop of a missing job", answer(404, `{"error":"not found"}`), stop, output{}, false, false},
		{"read", answer(200, job), read, output{Found: true, State: kvState{Exists: true, Value: "c1-7", Stopped: true}}, false, false},
		{"read of a missing job", answer(404, `{"error":"not found"}`), read, output{}, false, false},
		{"read answered without a job", answer(200, `{}`), read, output{Unknown: true}, false, false},
		{"read answered with what is not JSON", answer(200, `{"job":`), read, output{Unknown: true}, false, false},
		{"register answered 404", answer(404, `{"error":"?"}`), reg, output{Unknown: true}, false, false},
		{"register without a leader", answer(503, `{"error":"no leader"}`), reg, output{Unknown: true}, false, false},
		{"stop failed inside the server", answer(500, `{"error":"etcd timed out"}`), stop, output{Unknown: true}, false, false},
		{"register dropped mid-request", dropped, reg, output{Unknown: true}, false, false},
		{"read dropped mid-request", dropped, read, output{Unknown: true}, false, false},
		{"register refused", refused, reg, output{}, true, false},
		{"invalid register", answer(400, `{"error":"count must be at least 1"}`), reg, output{}, false, true},
	} {
		got, err := do(serverAPI(tc.addr), tc.in)
		switch {
		case tc.dropped:
			if !errors.Is(err, errDropped) {
				t.Errorf("%s: %+v, %v; want errDropped", tc.name, got, err)
			}
		case tc.invalid:
			if err == nil || errors.Is(err, errDropped) {
				t.Errorf("%s: %+v, %v; want an error that fails the test", tc.name, got, err)
			}
		case err != nil || got != tc.want:
			t.Errorf("%s: %+v, %v; want %+v", tc.name, got, err, tc.want)
		}
	}
}
