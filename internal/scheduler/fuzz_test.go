package scheduler_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/scheduler"
	. "github.com/gantryhq/gantry/internal/scheduler/schedtest"
)

// FuzzValidate feeds arbitrary JSON jobs to Validate and, when it accepts
// one, schedules it on a small mixed cluster: Validate never panics, a
// job Validate accepts never makes Schedule fail or panic, a job it
// rejects makes Schedule return ErrInvalid, and whatever is placed fits.
func FuzzValidate(f *testing.F) {
	for _, seed := range []string{
		`{"name":"web","namespace":"default","priority":50,"groups":[{"name":"web","count":3,"tasks":[{"name":"s","driver":"docker","resources":{"cpu":250,"memory":128},"config":{"ports":[{"name":"http","to":8080}]}}]}]}`,
		`{"name":"t","priority":90,"groups":[{"name":"w","count":4,"gang":{"min":4},"tasks":[{"name":"s","driver":"exec","resources":{"cpu":100,"memory":10,"gpu":{"count":2,"model":"H100*","compute_capability_min":"8.0"}}}]}]}`,
		`{"name":"m","groups":[{"name":"g","count":1,"constraints":[{"attribute":"${node.labels.zone}","operator":"regexp","value":"^a"}],"tasks":[{"name":"s","driver":"docker","resources":{"gpu":{"mig":"3g.40gb"}}}]}]}`,
		`{"name":"s","placement":"spread","groups":[{"name":"g","count":2,"spread":[{"attribute":"${node.labels.zone}","targets":{"a":70,"b":30}}],"affinities":[{"attribute":"${node.attr.kernel}","operator":"version","value":">= 5.4, < 7","weight":-40}],"tasks":[{"name":"s","driver":"docker","resources":{"gpu":{"share":{"milli":300,"memory":2048,"enforce":true}}}}]}]}`,
		`{"name":"bad","groups":[{"name":"g","count":1,"constraints":[{"attribute":"${node.labels.zone}","operator":"regexp","value":"("}],"tasks":[{"name":"s"}]}]}`,
	} {
		f.Add([]byte(seed))
	}
	nodes := []*api.Node{
		Node("a", CPU(8000), Memory(16384), Label("zone", "a"), Attr("kernel", "6.1.0"), GPUs(2, "NVIDIA H100 80GB HBM3", 81559, MIGMode(true))),
		Node("b", CPU(8000), Memory(16384), Label("zone", "b"), GPUs(4, "Tesla T4", 15360, Enforced())),
		Node("c", CPU(4000), Memory(8192)),
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var job api.Job
		if json.Unmarshal(data, &job) != nil {
			return
		}
		verr := scheduler.Validate(&job)
		for _, g := range job.Groups {
			if g != nil && g.Count > 50 {
				return // keep each input cheap
			}
		}
		h := New(scheduler.Config{})
		h.AddNodes(nodes...)
		plan, err := h.Run(&job)
		if verr != nil {
			if !errors.Is(verr, scheduler.ErrInvalid) || !errors.Is(err, scheduler.ErrInvalid) {
				t.Fatalf("Validate: %v; Schedule: %v", verr, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("valid job failed to schedule: %v", err)
		}
		if err := h.Check(); err != nil {
			t.Fatalf("plan over-allocates: %v (%d placed)", err, len(plan.Placed))
		}
	})
}
