package server

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/jobspec"
	"github.com/gantryhq/gantry/internal/scheduler/schedtest"
	"github.com/gantryhq/gantry/internal/state"
)

// TestRevertRollsUnderItsOwnDeployment (issue 15): `job revert` to a
// version without an update block replaced every replica at once, and the
// job's newest deployment stayed the previous version's, so `job status`
// showed it as the latest. The revert registers the old spec with the
// default update block (versions stored before it existed lack it), and
// the reverted-to version gets a deployment of its own that rolls one
// replica at a time.
func TestRevertRollsUnderItsOwnDeployment(t *testing.T) {
	s := startTestServer(t, Config{})
	base := "http://" + s.Addr()
	ctx := context.Background()
	if err := s.store.RegisterNode(ctx, schedtest.Node("n1"), time.Minute, time.Now()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the node in the store", func() bool { return len(s.store.Nodes()) == 1 })
	spec := func(arg string) string {
		return `{"name":"svc","groups":[{"name":"g","count":2,"tasks":[{"name":"t","driver":"exec","config":{"command":"/bin/sleep","args":["` + arg + `"]},"resources":{"cpu":10,"memory":10}}]}]}`
	}

	// Version 0 as stored before service groups had a default update
	// block.
	v0, err := jobspec.Parse("v0", []byte(spec("1000")))
	if err != nil {
		t.Fatal(err)
	}
	v0.Groups[0].Update = nil
	if _, err := s.store.RegisterJob(ctx, v0, s.newEval("default", "svc", api.TriggerJobRegister), s.now()); err != nil {
		t.Fatal(err)
	}
	live := func(version uint64) int {
		n := 0
		for _, a := range s.store.Allocs(state.AllocFilter{Namespace: "default", Job: "svc", Live: true}) {
			if a.DesiredStatus == api.AllocDesiredRun && a.JobVersion == version {
				n++
			}
		}
		return n
	}
	waitFor(t, "two replicas of version 0", func() bool { return live(0) == 2 })

	// Version 1 through the API: it gets the default update block.
	var rr api.RegisterResponse
	if code, body := post(t, base+"/v1/jobs", "", spec("2000"), &rr); code != http.StatusOK || rr.JobVersion != 1 {
		t.Fatalf("register version 1: %d %s", code, body)
	}
	waitFor(t, "version 1's deployment", func() bool {
		ds := s.store.Deployments("default", "svc")
		return len(ds) > 0 && ds[0].JobVersion == 1
	})

	if code, body := post(t, base+"/v1/jobs/svc/revert", "", `{"version":0}`, &rr); code != http.StatusOK || rr.JobVersion != 2 {
		t.Fatalf("revert to version 0: %d %s", code, body)
	}
	v2, err := s.store.JobVersion(ctx, "default", "svc", 2)
	if err != nil {
		t.Fatal(err)
	}
	if u := v2.Groups[0].Update; u == nil || *u != api.DefaultUpdateStrategy() {
		t.Fatalf("version 2 (the spec of version 0) has update %+v, want the default %+v", u, api.DefaultUpdateStrategy())
	}
	if old, _ := s.store.JobVersion(ctx, "default", "svc", 0); old.Groups[0].Update != nil {
		t.Fatalf("the revert changed the stored version 0: %+v", old.Groups[0].Update)
	}

	// The newest deployment is version 2's, as `job status` shows it.
	waitFor(t, "version 2's deployment as the newest", func() bool {
		resp, err := http.Get(base + "/v1/jobs/svc/deployment")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var d api.Deployment
		return resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&d) == nil && d.JobVersion == 2
	})
	// Nothing is healthy here (no agent runs the replicas), so the
	// rollout holds at its first step (the deployment is written with
	// that step's plan): never every replica at once.
	if n := live(2); n >= 2 {
		t.Fatalf("%d replicas of version 2 at once; the default update block rolls one at a time", n)
	}
}
