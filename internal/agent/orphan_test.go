package agent_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/agent"
	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/driver"
	"github.com/gantryhq/gantry/internal/driver/null"
)

// orphanDriver is the null driver with one task left from an earlier run
// (allocation "old"), which records its removal.
type orphanDriver struct {
	*null.Driver
	destroyed atomic.Bool
}

func (d *orphanDriver) Recover(context.Context, string) ([]*driver.Handle, error) {
	return []*driver.Handle{{Driver: d.Name(), ID: "t-old", AllocID: "old", Task: "t", Running: true}}, nil
}

func (d *orphanDriver) Destroy(context.Context, *driver.Handle) error {
	d.destroyed.Store(true)
	return nil
}

func (d *orphanDriver) Stop(context.Context, *driver.Handle, time.Duration) error { return nil }

// TestOrphansRemovedOnlyOnAConsistentAnswer (issue 19): the agent removed
// every task of its earlier run that the first answer omitted, although
// that answer may come from a lagging view. It now waits for an answer
// that says it is consistent: a server here first answers inconsistently
// (the allocation missing), and the task survives that answer.
func TestOrphansRemovedOnlyOnAConsistentAnswer(t *testing.T) {
	d := &orphanDriver{Driver: null.New()}
	var mu sync.Mutex
	calls := 0
	destroyedEarly := false
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/nodes/register", func(w http.ResponseWriter, r *http.Request) {
		var n api.Node
		json.NewDecoder(r.Body).Decode(&n)
		json.NewEncoder(w).Encode(api.NodeRegisterResponse{NodeID: n.ID, HeartbeatTTL: api.Duration(60e9)})
	})
	mux.HandleFunc("GET /v1/nodes/{id}/allocations", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls++
		c := calls
		if c == 3 {
			// Two inconsistent answers were applied (the agent asks
			// again only after applying one).
			destroyedEarly = d.destroyed.Load()
		}
		mu.Unlock()
		json.NewEncoder(w).Encode(api.NodeAllocsResponse{Index: int64(c), IDs: []string{}, Consistent: c >= 3})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "{}") })
	hs := httptest.NewServer(mux)
	defer hs.Close()

	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := agent.New(agent.Config{Servers: []string{strings.TrimPrefix(hs.URL, "http://")}, DataDir: t.TempDir(), NodeName: "n1",
		HTTPAddr: "127.0.0.1:0", Drivers: []driver.Driver{d}, SampleInterval: -1}, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()

	eventually(t, "the orphan to be removed after a consistent answer", d.destroyed.Load)
	mu.Lock()
	defer mu.Unlock()
	if destroyedEarly {
		t.Fatal("the task of the earlier run was removed on an answer that was not consistent")
	}
}
