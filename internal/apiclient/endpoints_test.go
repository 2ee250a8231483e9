package apiclient

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"

	"github.com/gantryhq/gantry/internal/api"
)

// request is what a test server saw of one request.
type request struct {
	method, path string
	query        map[string][]string
}

// recordingServer answers every request with handle and records it.
func recordingServer(t *testing.T, handle func(w http.ResponseWriter, r *http.Request)) (*Client, *[]request) {
	t.Helper()
	var seen []request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = append(seen, request{r.Method, r.URL.Path, r.URL.Query()})
		handle(w, r)
	}))
	t.Cleanup(srv.Close)
	return New(Options{Servers: []string{srv.URL}}), &seen
}

// TestJobConsistent: Job asks for a quorum read only when told to, in
// the job's namespace, and decodes the summary.
func TestJobConsistent(t *testing.T) {
	c, seen := recordingServer(t, func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(api.JobSummary{Job: &api.Job{Name: "web", Namespace: "ml", Version: 3}, Status: "running"})
	})
	ctx := context.Background()
	sum, err := c.Job(ctx, "ml", "web", Consistent)
	if err != nil || sum.Job == nil || sum.Job.Version != 3 || sum.Status != "running" {
		t.Fatalf("consistent read: %+v, %v; want version 3, running", sum, err)
	}
	if _, err := c.Job(ctx, "", "web", false); err != nil {
		t.Fatal(err)
	}
	want := []request{
		{http.MethodGet, "/v1/jobs/web", map[string][]string{"namespace": {"ml"}, "consistent": {""}}},
		{http.MethodGet, "/v1/jobs/web", map[string][]string{}},
	}
	if !reflect.DeepEqual(*seen, want) {
		t.Fatalf("requests %+v, want %+v", *seen, want)
	}
}

// TestStopJob: StopJob sends DELETE for the job in its namespace and
// decodes the evaluation; a job the server does not know is a 404 that
// IsNotFound recognises.
func TestStopJob(t *testing.T) {
	c, seen := recordingServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/jobs/gone" {
			http.Error(w, `{"error":"job \"gone\" not found in namespace \"default\""}`, http.StatusNotFound)
			return
		}
		json.NewEncoder(w).Encode(api.StopResponse{EvalID: "e-1", Index: 42})
	})
	ctx := context.Background()
	resp, err := c.StopJob(ctx, "ml", "web")
	if err != nil || resp.EvalID != "e-1" || resp.Index != 42 {
		t.Fatalf("stop: %+v, %v; want evaluation e-1 at index 42", resp, err)
	}
	if _, err := c.StopJob(ctx, "", "gone"); !IsNotFound(err) {
		t.Fatalf("stop of a missing job: %v, want a 404", err)
	}
	want := []request{
		{http.MethodDelete, "/v1/jobs/web", map[string][]string{"namespace": {"ml"}}},
		{http.MethodDelete, "/v1/jobs/gone", map[string][]string{}},
	}
	if !reflect.DeepEqual(*seen, want) {
		t.Fatalf("requests %+v, want %+v", *seen, want)
	}
}

// TestAgentAllocs: AgentAllocs reads an agent's own list of the
// allocations running on it.
func TestAgentAllocs(t *testing.T) {
	c, seen := recordingServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`[{"id":"a1","running":{"t":"c1"}},{"id":"a2","running":{"t":"c2","u":"c3"}}]`))
	})
	got, err := c.AgentAllocs(context.Background())
	want := []api.LocalAlloc{{ID: "a1", Running: map[string]string{"t": "c1"}}, {ID: "a2", Running: map[string]string{"t": "c2", "u": "c3"}}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, %v; want %+v", got, err, want)
	}
	if w := []request{{http.MethodGet, "/v1/client/allocations", map[string][]string{}}}; !reflect.DeepEqual(*seen, w) {
		t.Fatalf("requests %+v, want %+v", *seen, w)
	}
}
