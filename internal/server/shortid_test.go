package server

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/internal/api"
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
