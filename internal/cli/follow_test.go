package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/gantryhq/gantry/internal/api"
)

const batchSpec = `name: work
type: batch
groups:
  - name: g
    count: 2
    tasks:
      - name: t
        driver: exec
        config: {command: /bin/true}
        resources: {cpu: 100, memory: 32}
`

// fakeJob is the state of one batch job that two fake servers share:
// what `job run` reads after each event.
type fakeJob struct {
	mu          sync.Mutex
	status      []string // client status of each allocation
	allocReads  int
	consistent  bool // every allocation read asked for a consistent view
	eventsAsked []string
}

func (f *fakeJob) set(status ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status = status
}

// handle serves the job's reads; events, when not nil, serves the
// stream.
func (f *fakeJob) handle(events http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/v1/jobs":
			json.NewEncoder(w).Encode(api.RegisterResponse{EvalID: "e1e1e1e1e1", JobVersion: 0, Changed: true, Index: 10})
		case r.URL.Path == "/v1/jobs/work/evaluations":
			json.NewEncoder(w).Encode([]*api.Evaluation{{ID: "e1e1e1e1e1", Status: api.EvalComplete, Placed: 2}})
		case r.URL.Path == "/v1/evaluations/e1e1e1e1e1":
			json.NewEncoder(w).Encode(api.Evaluation{ID: "e1e1e1e1e1", Status: api.EvalComplete, Placed: 2})
		case r.URL.Path == "/v1/jobs/work/allocations":
			f.mu.Lock()
			f.allocReads++
			_, ok := r.URL.Query()["consistent"]
			f.consistent = f.allocReads == 1 && ok || f.consistent && ok
			var as []*api.Allocation
			for i, s := range f.status {
				as = append(as, &api.Allocation{ID: fmt.Sprintf("a%d0000000", i), Namespace: "default", Job: "work", Group: "g", Index: i,
					NodeName: "n1", DesiredStatus: api.AllocDesiredRun, ClientStatus: s})
			}
			f.mu.Unlock()
			json.NewEncoder(w).Encode(as)
		case r.URL.Path == "/v1/events" && events != nil:
			f.mu.Lock()
			f.eventsAsked = append(f.eventsAsked, r.URL.Query().Get("index")+" "+strings.Join(r.URL.Query()["key"], ","))
			f.mu.Unlock()
			events(w, r)
		default:
			http.NotFound(w, r)
		}
	}
}

func event(i int64) string {
	b, _ := json.Marshal(api.Event{Index: i, Topic: api.TopicAllocation, Type: "AllocationUpdated", Namespace: "default", Key: "a00000000"})
	return string(b) + "\n"
}

func runJob(t *testing.T, address string) (int, string) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "work.yaml")
	if err := os.WriteFile(file, []byte(batchSpec), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errw bytes.Buffer
	code := Main([]string{"--address", address, "job", "run", "--timeout", "30s", file}, &out, &errw)
	return code, out.String() + errw.String()
}

// TestJobRunFollowsEventsAcrossServers: job run reads the job again on
// each event, not on a timer; the first server's stream breaks and the
// server dies after index 12, and job run resumes on the second server
// (the next in --address) after the last index it saw and sees the job
// finish there.
func TestJobRunFollowsEventsAcrossServers(t *testing.T) {
	f := &fakeJob{}
	var a *httptest.Server
	a = httptest.NewServer(f.handle(func(w http.ResponseWriter, r *http.Request) {
		f.set(api.AllocRunning, api.AllocRunning)
		fmt.Fprint(w, event(11)+event(12))
		w.(http.Flusher).Flush()
		a.Listener.Close() // the server dies: no new connections,
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			conn.Close() // this one cut
		}
		a.CloseClientConnections() // and every other
	}))
	defer a.Close()
	b := httptest.NewServer(f.handle(func(w http.ResponseWriter, r *http.Request) {
		f.set(api.AllocComplete, api.AllocComplete)
		fmt.Fprint(w, event(12)+event(13))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	defer b.Close()

	code, out := runJob(t, a.URL+","+b.URL)
	if code != 0 || !strings.Contains(out, `==> Job "work" finished: 2 allocation(s) complete`) {
		t.Fatalf("job run exited %d:\n%s", code, out)
	}
	for _, want := range []string{`==> Job "work" registered as version 0`, "==> Evaluation e1e1e1e1: 2 placed, 0 stopped",
		"2/2 placed, 2 running, 0 healthy, 0 complete", "2/2 placed, 0 running, 0 healthy, 2 complete"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	// After index 12, the second server is asked from 11 (a revision's
	// events may have been cut; those of 12 already seen are skipped).
	if got := strings.Join(f.eventsAsked, "; "); got != "10 work; 11 work" {
		t.Errorf("events asked for %q, want after index 10 on the first server, then from 11 on the second", got)
	}
	// One read to start, one per new event at most: a timer would have
	// read more while the stream was being resumed.
	if f.allocReads > 4 || !f.consistent {
		t.Errorf("allocations read %d times (consistent %t), want at most 4, each consistent", f.allocReads, f.consistent)
	}
}

// TestJobRunPollsWithoutEventStream: a server without /v1/events (the
// stream unavailable) is followed by reading every 250 ms, as before.
func TestJobRunPollsWithoutEventStream(t *testing.T) {
	f := &fakeJob{}
	h := f.handle(nil)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/jobs/work/allocations" {
			f.mu.Lock()
			if f.allocReads >= 2 {
				f.status = []string{api.AllocComplete, api.AllocComplete}
			}
			f.mu.Unlock()
		}
		h(w, r)
	}))
	defer srv.Close()
	code, out := runJob(t, srv.URL)
	if code != 0 || !strings.Contains(out, `==> Job "work" finished: 2 allocation(s) complete`) {
		t.Fatalf("job run exited %d:\n%s", code, out)
	}
}
