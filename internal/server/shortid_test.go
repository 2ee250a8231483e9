package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/scheduler/schedtest"
	"github.com/gantryhq/gantry/internal/state"
)

// TestEvalShortID (issue 15): `eval status` failed with the 8-character
// ID that `job run` printed. Every ID prefix of 4+ characters is accepted,
// as for allocations; shorter is refused saying so.
func TestEvalShortID(t *testing.T) {
	s := startTestServer(t, Config{})
	base := "http://" + s.Addr()
	job := `{"name":"short","type":"batch","groups":[{"name":"g","tasks":[{"name":"t","driver":"exec","config":{"command":"/bin/true"},"resources":{"cpu":10,"memory":10}}]}]}`
	var rr api.RegisterResponse
	if code, body := post(t, base+"/v1/jobs", "", job, &rr); code != http.StatusOK {
		t.Fatalf("register: %d %s", code, body)
	}
	get := func(id string) (int, *api.Evaluation) {
		resp, err := http.Get(base + "/v1/evaluations/" + id)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e api.Evaluation
		json.NewDecoder(resp.Body).Decode(&e)
		return resp.StatusCode, &e
	}
	// The evaluation reaches the server's view a moment after the
	// register answers; wait for the full ID before trying prefixes.
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if code, _ := get(rr.EvalID); code == http.StatusOK || time.Now().After(deadline) {
			break
		}
	}
	for _, id := range []string{rr.EvalID, api.ShortID(rr.EvalID), rr.EvalID[:4]} {
		if code, e := get(id); code != http.StatusOK || e.ID != rr.EvalID {
			t.Errorf("GET evaluation %q: %d %+v", id, code, e)
		}
	}
	if code, _ := get(rr.EvalID[:3]); code != http.StatusBadRequest {
		t.Errorf("a 3-character prefix answered %d, want 400", code)
	}
	if code, _ := get(strings.Repeat("f", 8)); code != http.StatusNotFound {
		t.Errorf("an unknown prefix answered %d, want 404", code)
	}
}

// TestPlanCountOnlyChangeKeeps (issue 15): job plan of a count-only change
// called the unchanged replicas IN-PLACE; they are kept.
func TestPlanCountOnlyChangeKeeps(t *testing.T) {
	s := startTestServer(t, Config{})
	base := "http://" + s.Addr()
	if err := s.store.RegisterNode(context.Background(), schedtest.Node("n1"), time.Minute, time.Now()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the node in the store", func() bool { return len(s.store.Nodes()) == 1 })
	spec := func(count int) string {
		return fmt.Sprintf(`{"name":"svc","groups":[{"name":"g","count":%d,"tasks":[{"name":"t","driver":"exec","config":{"command":"/bin/sleep","args":["1000"]},"resources":{"cpu":10,"memory":10}}]}]}`, count)
	}
	var rr api.RegisterResponse
	if code, body := post(t, base+"/v1/jobs", "", spec(2), &rr); code != http.StatusOK {
		t.Fatalf("register: %d %s", code, body)
	}
	waitFor(t, "two allocations placed", func() bool {
		return len(s.store.Allocs(state.AllocFilter{Namespace: "default", Job: "svc", Live: true})) == 2
	})
	var pr api.PlanResponse
	if code, body := post(t, base+"/v1/jobs/plan", "", spec(3), &pr); code != http.StatusOK {
		t.Fatalf("plan: %d %s", code, body)
	}
	if g := pr.Groups["g"]; g == nil || g.Place != 1 || g.Keep != 2 || g.InPlace != 0 || g.Stop != 0 {
		t.Fatalf("plan of count 2 -> 3: %+v", pr.Groups["g"])
	}
	// A change beyond the count (the command) still replaces them.
	changed := strings.Replace(spec(3), `"1000"`, `"2000"`, 1)
	pr = api.PlanResponse{}
	post(t, base+"/v1/jobs/plan", "", changed, &pr)
	if g := pr.Groups["g"]; g == nil || g.Keep == 2 {
		t.Fatalf("plan of a changed command kept the replicas: %+v", g)
	}
	// Under the default update block the first step fills the new slot
	// (no replica is healthy here, so none is replaced yet); the plan
	// says the two others are replaced later, not kept.
	if g := pr.Groups["g"]; g.Place != 1 || g.Later != 2 || g.Keep != 0 {
		t.Fatalf("plan of a changed command: %+v, want 1 placed and 2 replaced later", g)
	}
}
