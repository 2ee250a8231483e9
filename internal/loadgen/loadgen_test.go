package loadgen

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/apiclient"
)

// TestSubmitHonoursRetryAfter: a server that refuses each job's first
// submission with 429 and Retry-After: 1 gets each job again after the
// wait, and the load tool counts the jobs it slowed, the refusals and
// the time waited; a 400 is not retried.
func TestSubmitHonoursRetryAfter(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var job api.Job
		json.NewDecoder(r.Body).Decode(&job)
		mu.Lock()
		seen[job.Name]++
		n := seen[job.Name]
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch {
		case job.Name == "load-0002":
			w.WriteHeader(http.StatusBadRequest)
			w.Write([]byte(`{"error":"invalid job"}`))
		case n == 1:
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			w.Write([]byte(`{"error":"server s1 is overloaded"}`))
		default:
			w.Write([]byte(`{"eval_id":"e1","job_version":1}`))
		}
	}))
	defer srv.Close()
	c := apiclient.New(apiclient.Options{Servers: []string{srv.URL}, ThrottleRetries: -1})
	o := Options{Tasks: 1, TaskCPU: 10, TaskMemory: 10}
	var thr throttled
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for j := range 3 {
		wg.Add(1)
		go func() { defer wg.Done(); errs[j] = submit(context.Background(), c, o, j, &thr) }()
	}
	wg.Wait()
	if errs[0] != nil || errs[1] != nil {
		t.Fatalf("submissions refused once each: %v, %v; want both accepted", errs[0], errs[1])
	}
	if errs[2] == nil || apiclient.StatusOf(errs[2]) != http.StatusBadRequest || seen["load-0002"] != 1 {
		t.Errorf("an invalid job: %v after %d tries; want the 400 at once", errs[2], seen["load-0002"])
	}
	if seen["load-0000"] != 2 || seen["load-0001"] != 2 {
		t.Errorf("requests per job %v, want 2 for each refused one", seen)
	}
	var res Result
	thr.fill(&res)
	if res.SlowedSubmissions != 2 || res.Refusals != 2 || res.RefusedWait < 2*time.Second || res.RefusedWait > 2*time.Second+200*time.Millisecond {
		t.Errorf("slowed %d, refusals %d, waited %s; want 2, 2 and the 1 s each the server asked (plus at most a tenth)",
			res.SlowedSubmissions, res.Refusals, res.RefusedWait)
	}
}
