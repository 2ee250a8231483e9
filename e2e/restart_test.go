package e2e

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
)

// TestKill9DuringDeploymentBouncesNothing (issue 19): kill -9 of gantry dev
// during a deployment, then a restart the README's way (the same command),
// marked the node down before the restarted agent registered again, and
// every replica, the untouched job's included, was marked lost and
// replaced. A new leader now gives every node a full heartbeat TTL and the
// agent registers before it scans for its earlier tasks: no allocation is
// lost and the untouched job keeps its allocations. The rollout has 50
// replicas, as in the review that found it.
func TestKill9DuringDeploymentBouncesNothing(t *testing.T) {
	const rollout = 50
	c := StartDev(t)
	spec := func(name string, count int) string {
		return WriteSpec(t, name+".yaml", fmt.Sprintf(`name: %s
type: service
groups:
  - name: web
    count: %d
    tasks:
      - name: server
        driver: docker
        config:
          image: gantry-demo:latest
          ports: [{name: http, to: 8080}]
        resources: {cpu: 20, memory: 16}
        checks:
          - {type: http, port: http, path: /healthz, interval: 1s, timeout: 1s, failures: 2}
`, name, count))
	}
	if r := c.Gantry("job", "run", spec("steady", 3)); r.Code != 0 {
		t.Fatalf("job run steady: %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	ids := func(job string) []string {
		var out []string
		for _, a := range c.Allocs(job) {
			out = append(out, a.ID)
		}
		sort.Strings(out)
		return out
	}
	steady := ids("steady")

	if r := c.Gantry("job", "run", "-d", spec("rollout", rollout)); r.Code != 0 {
		t.Fatalf("job run rollout: %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	c.Eventually(30*time.Second, "the rollout's first replica to run", func() bool {
		for _, a := range c.Allocs("rollout") {
			if a.ClientStatus == api.AllocRunning {
				return true
			}
		}
		return false
	})
	c.Kill9()
	c.Start()

	healthy := func(job string, want int) func() bool {
		return func() bool {
			var s api.JobSummary
			return c.GetJSON("/v1/jobs/"+job, &s) == nil && s.Groups["web"] != nil && s.Groups["web"].Healthy == want
		}
	}
	c.Eventually(5*time.Minute, "the rollout to be healthy after the restart", healthy("rollout", rollout))
	c.Eventually(30*time.Second, "the steady job to be healthy after the restart", healthy("steady", 3))
	// A node wrongly marked down shows itself within a heartbeat TTL (5s)
	// of the takeover; wait past that.
	time.Sleep(8 * time.Second)

	for _, job := range []string{"steady", "rollout"} {
		for _, a := range c.Allocs(job) {
			if a.ClientStatus == api.AllocLost || strings.Contains(a.DesiredReason, "lost") {
				t.Errorf("%s allocation %s was marked lost across the restart: %s %s (%s)", job, api.ShortID(a.ID), a.DesiredStatus, a.ClientStatus, a.DesiredReason)
			}
		}
	}
	if after := ids("steady"); strings.Join(after, ",") != strings.Join(steady, ",") {
		t.Errorf("the untouched job's allocations changed across the restart:\nbefore %v\nafter  %v", steady, after)
	}
	if n := len(c.Allocs("rollout")); n != rollout {
		t.Errorf("the rollout has %d allocations after the restart, want its %d", n, rollout)
	}
	var nodes []*api.Node
	if err := c.GetJSON("/v1/nodes", &nodes); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if n.Status != api.NodeStatusReady {
			t.Errorf("node %s is %s (%s)", n.Name, n.Status, n.StatusReason)
		}
	}
}
