package server

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/reconcile"
	"github.com/gantryhq/gantry/internal/scheduler/schedtest"
	"github.com/gantryhq/gantry/internal/state"
)

// TestNodeDownWaitsForReplaceFalse (issue 19): the servers replaced every
// allocation of a down node at once, so a cut-off node's work could run
// twice. A group with disconnect.replace false is now left waiting for
// its node: its allocation is neither lost nor replaced, and both the
// allocation's and the evaluation's reason say why. A group with replace
// true (the default) is lost and replaced as before. When the node
// registers again the waiting allocation's reason is cleared.
func TestNodeDownWaitsForReplaceFalse(t *testing.T) {
	s := startTestServer(t, Config{HeartbeatTTL: 2 * time.Second})
	ctx := context.Background()
	n := schedtest.Node("n1")
	if err := s.store.RegisterNode(ctx, n, 2*time.Second, time.Now()); err != nil {
		t.Fatal(err)
	}
	no, yes := false, true
	mk := func(name string, replace *bool) *api.Job {
		return &api.Job{Name: name, Namespace: "default", Type: api.JobService, Priority: 50, Groups: []*api.Group{{Name: "g", Count: 1,
			Disconnect: &api.Disconnect{StopAfter: api.Duration(time.Second), Replace: replace},
			Tasks:      []*api.Task{{Name: "t", Driver: api.DriverExec, Config: api.TaskConfig{Command: "/bin/sleep"}, Resources: api.Resources{CPU: 100, Memory: 32}}}}}}
	}
	for _, j := range []*api.Job{mk("keep", &no), mk("move", &yes)} {
		if _, err := s.store.RegisterJob(ctx, j, s.newEval("default", j.Name, api.TriggerJobRegister), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	allocsOf := func(job string) []*api.Allocation {
		return s.store.Allocs(state.AllocFilter{Namespace: "default", Job: job})
	}
	waitFor(t, "both jobs placed on n1", func() bool { return len(allocsOf("keep")) == 1 && len(allocsOf("move")) == 1 })
	keep := allocsOf("keep")[0]

	// No heartbeats: the lease expires and the node monitor marks n1 down.
	waitFor(t, "the moved job's allocation marked lost", func() bool {
		for _, a := range allocsOf("move") {
			if a.ClientStatus == api.AllocLost {
				return true
			}
		}
		return false
	})
	waitFor(t, "the kept job's allocation to say it waits for its node", func() bool {
		a, ok := s.store.Alloc(keep.ID)
		return ok && strings.HasPrefix(a.DesiredReason, reconcile.WaitingPrefix)
	})
	a, _ := s.store.Alloc(keep.ID)
	if a.DesiredStatus != api.AllocDesiredRun || a.ClientStatus == api.AllocLost {
		t.Errorf("the waiting allocation is %s/%s; want it left to run, not lost", a.DesiredStatus, a.ClientStatus)
	}
	if !strings.Contains(a.DesiredReason, "disconnect.replace false") {
		t.Errorf("reason %q does not name the setting", a.DesiredReason)
	}
	if got := allocsOf("keep"); len(got) != 1 {
		t.Errorf("job keep has %d allocations; with replace false no replacement may be placed", len(got))
	}
	said := false
	for _, e := range s.store.Evals("default", "keep") {
		if e.TriggeredBy == api.TriggerNodeUpdate && strings.Contains(e.StatusDescription, "waiting for the node to come back") {
			said = true
		}
	}
	if !said {
		t.Errorf("no evaluation of job keep says it waits for the node: %+v", s.store.Evals("default", "keep"))
	}

	// The node comes back: its waiting allocation is evaluated again and
	// no longer says it waits.
	nb, _ := json.Marshal(n)
	status, body := post(t, "http://"+s.Addr()+"/v1/nodes/register", "", string(nb), nil)
	if status != 200 {
		t.Fatalf("register again: %d %s", status, body)
	}
	waitFor(t, "the waiting reason cleared once the node is back", func() bool {
		a, ok := s.store.Alloc(keep.ID)
		return ok && a.DesiredReason == "" && a.DesiredStatus == api.AllocDesiredRun
	})
	if got := allocsOf("keep"); len(got) != 1 {
		t.Errorf("job keep has %d allocations after its node came back, want its one", len(got))
	}
}
