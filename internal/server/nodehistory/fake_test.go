package nodehistory

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/acl"
	"github.com/gantryhq/gantry/internal/api"
)

// statusErr is an error with the status the server would answer.
type statusErr struct {
	status int
	msg    string
}

func (e *statusErr) Error() string { return e.msg }

// cluster is what the history reads, in memory: nodes, allocations, and
// the namespaces the caller may read.
type cluster struct {
	mu       sync.Mutex
	nodes    map[string]*api.Node
	allocs   map[string]*api.Allocation
	readable map[string]bool
}

func newCluster(nodes ...string) *cluster {
	c := &cluster{nodes: map[string]*api.Node{}, allocs: map[string]*api.Allocation{}, readable: map[string]bool{}}
	for _, id := range nodes {
		c.nodes[id] = &api.Node{ID: id, Name: "name-" + id}
	}
	return c
}

func (c *cluster) Node(id string) (*api.Node, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok := c.nodes[id]
	return n, ok
}

func (c *cluster) Nodes() []*api.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*api.Node
	for _, n := range c.nodes {
		out = append(out, n)
	}
	return out
}

func (c *cluster) remove(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.nodes, id)
}

func (c *cluster) findNode(key string) (*api.Node, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.nodes {
		if n.ID == key || n.Name == key {
			return n, nil
		}
	}
	return nil, &statusErr{http.StatusNotFound, fmt.Sprintf("node %q not found", key)}
}

func (c *cluster) findAlloc(id string) (*api.Allocation, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if a, ok := c.allocs[id]; ok {
		return a, nil
	}
	return nil, &statusErr{http.StatusNotFound, fmt.Sprintf("allocation %q not found", id)}
}

func (c *cluster) allow(_ *http.Request, ns string, cap acl.Capability) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cap != acl.Read || !c.readable[ns] {
		return &statusErr{http.StatusForbidden, fmt.Sprintf("permission denied: %s in namespace %s", cap, ns)}
	}
	return nil
}

type front struct{}

func (front) WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

var t0 = time.Unix(1000, 0).UTC()

func newHistory(c *cluster, cfg Config) *History {
	return New(Ports{Nodes: c, Front: front{}, FindNode: c.findNode, FindAlloc: c.findAlloc, Allow: c.allow,
		Now: func() time.Time { return t0 }, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}, cfg)
}

// serve mounts the history's routes as the server does: an error is
// answered with its status.
func serve(t *testing.T, h *History) *httptest.Server {
	mux := http.NewServeMux()
	h.Routes(func(pattern string, fn func(http.ResponseWriter, *http.Request) error) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			if err := fn(w, r); err != nil {
				status := http.StatusInternalServerError
				if e, ok := err.(*statusErr); ok {
					status = e.status
				}
				front{}.WriteJSON(w, status, api.Error{Error: err.Error()})
			}
		})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func getJSON(t *testing.T, url string, out any) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK && out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s: %v in %s", url, err, b)
		}
	}
	return resp.StatusCode, string(b)
}
