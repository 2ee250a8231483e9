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

// stopRecorder is the null driver, recording which allocations' tasks
// were stopped.
type stopRecorder struct {
	*null.Driver
	mu      sync.Mutex
	stopped map[string]bool
}

func (d *stopRecorder) Stop(ctx context.Context, h *driver.Handle, grace time.Duration) error {
	d.mu.Lock()
	d.stopped[h.AllocID] = true
	d.mu.Unlock()
	return d.Driver.Stop(ctx, h, grace)
}

func (d *stopRecorder) wasStopped(id string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stopped[id]
}

// TestAgentStopsDisconnectedGroups (issue 19): a cut-off node ran its work
// forever while the servers replaced it elsewhere. An agent that reaches
// no server for a group's disconnect.stop_after now stops that group's
// allocations itself, leaves groups without stop_after running, and once
// a server answers again reports the stopped ones failed because the node
// was disconnected. The fake server here refuses every request (it drops
// the connection) while cut.
func TestAgentStopsDisconnectedGroups(t *testing.T) {
	d := &stopRecorder{Driver: null.New(), stopped: map[string]bool{}}
	var cut atomic.Bool
	var mu sync.Mutex
	reports := map[string]api.AllocUpdate{}
	job := &api.Job{Name: "j", Namespace: "default", Type: api.JobService, Groups: []*api.Group{
		{Name: "train", Count: 1, Disconnect: &api.Disconnect{StopAfter: api.Duration(time.Second)},
			Tasks: []*api.Task{{Name: "t", Driver: null.Name}}},
		{Name: "web", Count: 1, Tasks: []*api.Task{{Name: "t", Driver: null.Name}}},
	}}
	allocs := []*api.Allocation{
		{ID: "a-train", Namespace: "default", Job: "j", Group: "train", DesiredStatus: api.AllocDesiredRun, ClientStatus: api.AllocPending},
		{ID: "a-web", Namespace: "default", Job: "j", Group: "web", DesiredStatus: api.AllocDesiredRun, ClientStatus: api.AllocPending},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/nodes/register", func(w http.ResponseWriter, r *http.Request) {
		var n api.Node
		json.NewDecoder(r.Body).Decode(&n)
		json.NewEncoder(w).Encode(api.NodeRegisterResponse{NodeID: n.ID, HeartbeatTTL: api.Duration(1500 * time.Millisecond)})
	})
	mux.HandleFunc("GET /v1/nodes/{id}/allocations", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("index") != "0" {
			time.Sleep(200 * time.Millisecond) // nothing changes: a short blocking query
		}
		json.NewEncoder(w).Encode(api.NodeAllocsResponse{Index: 1, Allocs: allocs, IDs: []string{"a-train", "a-web"}, Consistent: true})
	})
	mux.HandleFunc("GET /v1/jobs/j/versions/0", func(w http.ResponseWriter, r *http.Request) { json.NewEncoder(w).Encode(job) })
	mux.HandleFunc("POST /v1/nodes/{id}/allocations", func(w http.ResponseWriter, r *http.Request) {
		var req api.AllocUpdateRequest
		json.NewDecoder(r.Body).Decode(&req)
		mu.Lock()
		for _, u := range req.Updates {
			reports[u.ID] = u
		}
		mu.Unlock()
		io.WriteString(w, "{}")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "{}") })
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if cut.Load() {
			panic(http.ErrAbortHandler) // the connection drops: no server answers
		}
		mux.ServeHTTP(w, r)
	}))
	defer hs.Close()
	report := func(id string) api.AllocUpdate {
		mu.Lock()
		defer mu.Unlock()
		return reports[id]
	}

	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := agent.New(agent.Config{Servers: []string{strings.TrimPrefix(hs.URL, "http://")}, DataDir: t.TempDir(), NodeName: "n1",
		HTTPAddr: "127.0.0.1:0", Drivers: []driver.Driver{d}, SampleInterval: -1, AuditInterval: -1}, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()

	eventually(t, "both allocations reported running", func() bool {
		return report("a-train").ClientStatus == api.AllocRunning && report("a-web").ClientStatus == api.AllocRunning
	})
	cut.Store(true)
	eventually(t, "the agent to stop the train allocation of the cut-off node", func() bool { return d.wasStopped("a-train") })
	if d.wasStopped("a-web") {
		t.Fatal("the web group has no disconnect.stop_after, yet the agent stopped it")
	}
	cut.Store(false)
	eventually(t, "the stopped allocation reported failed once a server answers", func() bool {
		return report("a-train").ClientStatus == api.AllocFailed
	})
	if r := report("a-train").ClientReason; !strings.Contains(r, "node was disconnected") || !strings.Contains(r, "disconnect.stop_after 1s") {
		t.Errorf("reason %q does not say the node was disconnected for the group's stop_after", r)
	}
	if got := report("a-web").ClientStatus; got != api.AllocRunning {
		t.Errorf("web allocation reported %s after the reconnect, want running", got)
	}
}
