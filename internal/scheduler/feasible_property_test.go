package scheduler_test

import (
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/scheduler"
	"github.com/gantryhq/gantry/internal/validate"
)

// TestValidatorAgreesWithPlacement: on random clusters and groups, job
// validation finds a placement problem exactly when the scheduler cannot
// place every replica of the group on the cluster with nothing running
// (every node ready and eligible, its GPUs healthy: the cluster's shape).
func TestValidatorAgreesWithPlacement(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		var nodes, ideal []*api.Node
		for i := rapid.IntRange(0, 6).Draw(t, "nodes"); i > 0; i-- {
			n := drawNode(t, i)
			nodes = append(nodes, n)
			c := *n
			c.Status, c.Ineligible = api.NodeStatusReady, false
			c.GPUs = append([]api.GPUDevice(nil), n.GPUs...)
			for k := range c.GPUs {
				c.GPUs[k].Unhealthy = false
			}
			ideal = append(ideal, &c)
		}
		job := drawJob(t, 0)
		job.Groups = job.Groups[:1]
		if scheduler.Validate(job) != nil {
			return // the spec's rules reject it before validation
		}
		g := job.Groups[0]
		req := &scheduler.Request{Job: job}
		for i := 0; i < g.Count; i++ {
			req.Place = append(req.Place, scheduler.Placement{Group: g.Name, Index: i})
		}
		plan, err := scheduler.New(scheduler.Config{}).Schedule(&scheduler.Snapshot{Nodes: ideal}, req, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		problems := validate.Shape(job, &validate.Cluster{Nodes: nodes})
		if failed := len(plan.Failed) > 0; failed != (len(problems) > 0) {
			t.Fatalf("scheduler failed: %v (%v); validator: %v", failed, plan.Failed[g.Name], problems)
		}
	})
}
