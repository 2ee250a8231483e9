package e2e

import (
	"strings"
	"testing"
)

// TestQueuesLimitPlacement: a queue's limit holds back work beyond it, the
// plan says so (exit 2), and queue status shows the usage.
func TestQueuesLimitPlacement(t *testing.T) {
	c := StartDev(t)
	if r := c.Gantry("queue", "apply", specFile("queues.yaml")); r.Code != 0 {
		t.Fatalf("queue apply: %d %s%s", r.Code, r.Stdout, r.Stderr)
	}
	big := WriteSpec(t, "big.yaml", `name: big
groups:
  - name: web
    count: 20
    tasks:
      - name: server
        driver: docker
        config: {image: gantry-demo:latest, ports: [{name: http, to: 8080}]}
        resources: {cpu: 100, memory: 32}
`)
	r := c.Gantry("job", "plan", "-n", "research", big)
	if r.Code != 2 || !strings.Contains(r.Stdout, "5 replica(s) unplaced") || !strings.Contains(r.Stdout, "queue research cpu limit 1500") {
		t.Fatalf("plan beyond the queue limit: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	// Another namespace's queue has no limit: the same job plans fine there.
	if r := c.Gantry("job", "plan", "-n", "product", big); r.Code != 0 {
		t.Fatalf("plan in queue product: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if r := c.Gantry("job", "run", "-n", "research", specFile("web.yaml")); r.Code != 0 {
		t.Fatalf("run in research: %d %s%s", r.Code, r.Stdout, r.Stderr)
	}
	r = c.Gantry("queue", "status", "research")
	if r.Code != 0 || !strings.Contains(r.Stdout, "300/96/0") {
		t.Fatalf("queue status after placing 3×100 millicores: %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	// A namespace belongs to one queue only.
	dup := WriteSpec(t, "dup.yaml", "name: other\nweight: 1\nnamespaces: [research]\n")
	if r := c.Gantry("queue", "apply", dup); r.Code != 1 || !strings.Contains(r.Stderr, "already belongs to queue") {
		t.Fatalf("duplicate namespace: %d %s%s", r.Code, r.Stdout, r.Stderr)
	}
}
