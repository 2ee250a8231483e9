package vspheremon

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/server/fronttest"
	"github.com/gantryhq/gantry/internal/state"
)

// store is the monitor's store in memory: connections, changes, nodes
// and their fenced writes, and the evaluations asked for.
type store struct {
	mu        sync.Mutex
	conns     map[string][]byte
	changes   []api.VSphereChange
	nodes     map[string]*api.Node
	evals     []string // node IDs whose jobs were evaluated
	notLeader bool     // every fenced write fails with state.ErrNotLeader
}

func newStore(nodes ...*api.Node) *store {
	s := &store{conns: map[string][]byte{}, nodes: map[string]*api.Node{}}
	for _, n := range nodes {
		s.nodes[n.ID] = n
	}
	return s
}

func (s *store) VSphereConnections(context.Context) (map[string][]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string][]byte{}
	for k, v := range s.conns {
		out[k] = v
	}
	return out, nil
}

func (s *store) CreateVSphereConnection(_ context.Context, name string, data []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.conns[name]; ok {
		return state.ErrConflict
	}
	s.conns[name] = data
	return nil
}

func (s *store) DeleteVSphereConnection(_ context.Context, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.conns[name]; !ok {
		return state.ErrNotFound
	}
	delete(s.conns, name)
	return nil
}

func (s *store) PutVSphereChanges(_ context.Context, cs []api.VSphereChange) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.changes = append(s.changes, cs...)
	return nil
}

func (s *store) Nodes() []*api.Node {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*api.Node
	for _, n := range s.nodes {
		c := *n
		out = append(out, &c)
	}
	return out
}

func (s *store) Node(id string) (*api.Node, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, ok := s.nodes[id]
	return n, ok
}

func (s *store) Job(string, string) (*api.Job, bool)        { return nil, false }
func (s *store) Allocs(state.AllocFilter) []*api.Allocation { return nil }

func (s *store) UpdateNode(_ context.Context, fence *state.Fence, id string, fn func(n *api.Node) error) (*api.Node, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.notLeader || fence == nil {
		return nil, state.ErrNotLeader
	}
	cur, ok := s.nodes[id]
	if !ok {
		return nil, state.ErrNotFound
	}
	c := *cur
	c.Attributes = map[string]string{}
	for k, v := range cur.Attributes {
		c.Attributes[k] = v
	}
	if err := fn(&c); err != nil {
		return nil, err
	}
	s.nodes[id] = &c
	return &c, nil
}

func (s *store) evalJobsOnNode(_ context.Context, fence *state.Fence, nodeID, _ string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if fence == nil {
		return state.ErrNotLeader
	}
	s.evals = append(s.evals, nodeID)
	return nil
}

// node reads a node as the store holds it now.
func (s *store) node(id string) api.Node {
	s.mu.Lock()
	defer s.mu.Unlock()
	return *s.nodes[id]
}

func (s *store) setDrain(id string, d *api.Drain) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := *s.nodes[id]
	c.Drain = d
	s.nodes[id] = &c
}

func (s *store) evaluated() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.evals...)
}

// front is the server's side of the handlers: this server leads unless
// follower is set, in which case every leader-only request is answered
// as forwarded.
type front struct {
	fronttest.JSON
	follower bool
}

func (f front) OnLeader(w http.ResponseWriter, _ *http.Request, what string) (bool, error) {
	if !f.follower {
		return false, nil
	}
	w.Header().Set("X-Forwarded-For-Test", what)
	w.WriteHeader(http.StatusTeapot)
	return true, nil
}

var testNow = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func newMonitor(st *store, f front) *Monitor {
	return New(Ports{Connections: st, View: st, Nodes: st, Front: f, EvalJobsOnNode: st.evalJobsOnNode,
		Latest:  func(string) (api.NodeSample, bool) { return api.NodeSample{}, false },
		Leading: func() bool { return !f.follower }, Now: func() time.Time { return testNow },
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}, Config{Interval: 200 * time.Millisecond})
}

// serve mounts the monitor's routes as the server does: an error is
// answered with its status, and field when it names one.
func serve(t *testing.T, m *Monitor) *httptest.Server {
	mux := http.NewServeMux()
	m.Routes(func(pattern string, h func(http.ResponseWriter, *http.Request) error) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			if err := h(w, r); err != nil {
				status := http.StatusInternalServerError
				body := api.Error{Error: err.Error()}
				if e, ok := err.(*Error); ok {
					status, body.Field = e.HTTPStatus(), e.APIField()
				}
				front{}.WriteJSON(w, status, body)
			}
		})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func call(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func waitFor(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
