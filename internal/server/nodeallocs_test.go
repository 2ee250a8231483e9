package server

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/scheduler/schedtest"
	"github.com/gantryhq/gantry/internal/state"
)

// TestFullNodeAllocsAnswerIsConsistent (issue 19): an agent removes the
// tasks of its earlier run that the servers' first answer omits, and that
// answer came from the server's in-memory view, which may lag etcd. A full
// answer now first brings the view up to etcd's current revision (a
// linearizable read) and says so; an allocation committed just before the
// request is in it.
func TestFullNodeAllocsAnswerIsConsistent(t *testing.T) {
	s := startTestServer(t, Config{})
	ctx := context.Background()
	n := schedtest.Node("n1")
	if err := s.store.RegisterNode(ctx, n, time.Minute, time.Now()); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		a := &api.Allocation{ID: "alloc-" + string(rune('a'+i)), Namespace: "default", Job: "j", Group: "g", NodeID: n.ID,
			DesiredStatus: api.AllocDesiredRun, ClientStatus: api.AllocRunning}
		rev, err := s.store.ApplyPlan(ctx, &state.PlanCommit{Place: []*api.Allocation{a}})
		if err != nil {
			t.Fatal(err)
		}
		// Ask at once, without waiting for the view.
		resp, err := http.Get("http://" + s.Addr() + "/v1/nodes/" + n.ID + "/allocations?index=0&wait=1s")
		if err != nil {
			t.Fatal(err)
		}
		var out api.NodeAllocsResponse
		err = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if !out.Consistent {
			t.Fatal("a full answer does not say that it is consistent")
		}
		if out.Index < rev {
			t.Fatalf("answer at index %d, older than the write at %d", out.Index, rev)
		}
		found := false
		for _, id := range out.IDs {
			found = found || id == a.ID
		}
		if !found {
			t.Fatalf("allocation %s, committed at %d, missing from the answer at %d", a.ID, rev, out.Index)
		}
	}
}
