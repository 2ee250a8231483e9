package isolation

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/server/fronttest"
)

// store is the service's store in memory: the policy, the reports and
// the nodes, with a revision that grows on every write.
type store struct {
	mu      sync.Mutex
	rev     int64
	policy  []byte
	reports map[string][]byte
	nodes   map[string]*api.Node
	puts    int // PutNodeAudit calls
}

func newStore(nodes ...*api.Node) *store {
	s := &store{rev: 1, reports: map[string][]byte{}, nodes: map[string]*api.Node{}}
	for _, n := range nodes {
		s.nodes[n.ID] = n
	}
	return s
}

func (s *store) AdmissionPolicy(context.Context) ([]byte, int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.policy, s.rev, nil
}

func (s *store) PutAdmissionPolicy(_ context.Context, data []byte) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rev++
	s.policy = data
	return s.rev, nil
}

func (s *store) DeleteAdmissionPolicy(context.Context) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rev++
	s.policy = nil
	return s.rev, nil
}

func (s *store) NodeAudit(_ context.Context, id string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reports[id], nil
}

func (s *store) NodeAudits(context.Context) ([]string, [][]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	var out [][]byte
	for id, r := range s.reports {
		ids = append(ids, id)
		out = append(out, r)
	}
	return ids, out, nil
}

func (s *store) PutNodeAudit(_ context.Context, id string, data []byte) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rev++
	s.puts++
	s.reports[id] = data
	return s.rev, nil
}

func (s *store) Node(id string) (*api.Node, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, ok := s.nodes[id]
	return n, ok
}

func (s *store) Nodes() []*api.Node {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*api.Node
	for _, n := range s.nodes {
		out = append(out, n)
	}
	return out
}

func (s *store) findNode(key string) (*api.Node, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.nodes {
		if n.ID == key || n.Name == key {
			return n, nil
		}
	}
	return nil, notFound("node %q not found", key)
}

func (s *store) putCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.puts
}

// agents reaches agents over plain HTTP.
type agents struct{}

func (agents) Base(n *api.Node) string                      { return "http://" + n.HTTPAddr }
func (agents) Do(req *http.Request) (*http.Response, error) { return http.DefaultClient.Do(req) }

// front is the server's side of the handlers.
type front struct{ fronttest.JSON }

type clock = fronttest.Clock

func newService(st *store, c *clock) *Service {
	return New(Ports{Policies: st, Reports: st, Nodes: st, Agents: agents{}, Front: front{}, FindNode: st.findNode,
		Now: c.Now, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
}

// serve mounts the service's routes as the server does: an error is
// answered with its status, field and field errors.
func serve(t *testing.T, s *Service) *httptest.Server {
	mux := http.NewServeMux()
	s.Routes(func(pattern string, h func(http.ResponseWriter, *http.Request) error) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			if err := h(w, r); err != nil {
				status := http.StatusInternalServerError
				body := api.Error{Error: err.Error()}
				if e, ok := err.(*Error); ok {
					status, body.Field, body.Errors = e.HTTPStatus(), e.APIField(), e.APIErrors()
				}
				front{}.WriteJSON(w, status, body)
			}
		})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// call sends a request and decodes a 200's body into out (when not nil);
// it returns the status and the body.
func call(t *testing.T, method, url, body string, out any) (int, string) {
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
	if resp.StatusCode == http.StatusOK && out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, url, err, b)
		}
	}
	return resp.StatusCode, string(b)
}
