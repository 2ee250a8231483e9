package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/internal/api"
)

// TestValidateAgainstTheCluster: `gantry job validate --cluster` checks a
// job against a real dev cluster's shape and reports every problem at
// once with its file line (exit 1 when the server would reject the job,
// 2 when the only problem is placement, 0 when valid, also as --json);
// `job run` of a job the cluster can never place is accepted and warns
// with the same words.
func TestValidateAgainstTheCluster(t *testing.T) {
	c := StartDev(t)
	lbPort := freePort(t)
	bad := WriteSpec(t, "bad.yaml", `name: train
type: service
groups:
  - name: workers
    count: 2
    update: {canary: 3}
    constraints:
      - {attribute: "${node.labels.zone}", operator: "=", value: "gpu"}
    tasks:
      - name: trainer
        driver: docker
        config: {image: gantry-demo:latest}
        resources:
          cpu: 640000
          memory: 256
          gpu: {mig: 3g.40gb}
`)
	r := c.Gantry("job", "validate", "--cluster", bad)
	if r.Code != 1 {
		t.Fatalf("validate of a bad job exited %d, want 1:\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	for _, want := range []string{
		"groups[0].update.canary: asks for 3 canaries but the group runs only 2 replicas; each canary stands in for an old replica, so set canary to at most 2 (" + bad + ":6)",
		`groups[0].constraints[0]: no node satisfies ${node.labels.zone} = "gpu"; no node sets ${node.labels.zone} (` + bad + ":8)",
		"groups[0].tasks[0].resources.cpu: asks 640000 millicores, but the largest node, ",
		"can hold", "even when empty; lower it or add a bigger node (" + bad + ":14)",
		"groups[0].tasks[0].resources.gpu: asks for GPUs, but no node has any (" + bad + ":16)",
		"(1 node)",
	} {
		if !strings.Contains(r.Stderr, want) {
			t.Errorf("validate output lacks %q:\n%s", want, r.Stderr)
		}
	}

	// --json: the same problems, classed, with file and line.
	r = c.Gantry("job", "validate", "--cluster", "--json", bad)
	var resp api.ValidateResponse
	if err := json.Unmarshal([]byte(r.Stdout), &resp); err != nil || r.Code != 1 {
		t.Fatalf("validate --json: exit %d, %v:\n%s%s", r.Code, err, r.Stdout, r.Stderr)
	}
	if resp.Valid || !resp.Cluster || resp.Nodes != 1 || len(resp.Errors) != 1 || len(resp.Placement) != 3 ||
		resp.Errors[0].Path != "groups[0].update.canary" || resp.Errors[0].Line != 6 || resp.Errors[0].File != bad {
		t.Fatalf("validate --json: %+v", resp)
	}

	// Only placement problems: exit 2, and the server accepts the job.
	huge := WriteSpec(t, "huge.yaml", `name: huge
type: batch
groups:
  - name: g
    tasks:
      - name: t
        driver: docker
        config: {image: gantry-demo:latest}
        resources: {cpu: 640000, memory: 64}
`)
	r = c.Gantry("job", "validate", huge)
	if r.Code != 2 || !strings.Contains(r.Stderr, "Cannot be placed: 1 problem on the cluster at") || !strings.Contains(r.Stderr, "asks 640000 millicores") {
		t.Fatalf("validate of an unplaceable job (the server answers, no --cluster): exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	msg := r.Stderr[strings.Index(r.Stderr, "groups[0].tasks[0].resources.cpu"):]
	msg = msg[:strings.IndexByte(msg, '\n')]
	r = c.Gantry("job", "run", huge)
	if r.Code != 2 || !strings.Contains(r.Stderr, msg) {
		t.Fatalf("job run of an unplaceable job: exit %d, want 2 with the warning %q:\n%s%s", r.Code, msg, r.Stdout, r.Stderr)
	}
	var jobs []*api.JobSummary
	if err := c.GetJSON("/v1/jobs", &jobs); err != nil || len(jobs) != 1 {
		t.Fatalf("the unplaceable job was not accepted: %v %v", jobs, err)
	}

	// A problem internal to the job: job run refuses it with the same
	// message, before anything changes.
	r = c.Gantry("job", "run", bad)
	if r.Code != 1 || !strings.Contains(r.Stderr, "groups[0].update.canary: asks for 3 canaries") || !strings.Contains(r.Stderr, bad+":6") {
		t.Fatalf("job run of a job with a canary beyond count: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}

	// A conflict only the server sees: another job holds the
	// load-balancer port. job run and job validate say it in the same
	// words, located in the file.
	lbJob := func(name string, count int) string {
		return WriteSpec(t, name+".yaml", fmt.Sprintf(`name: %s
groups:
  - name: web
    count: %d
    services: [{name: %s, port: http, lb: {port: %d}}]
    tasks:
      - name: server
        driver: docker
        config: {image: gantry-demo:latest, ports: [{name: http, to: 8080}]}
        resources: {cpu: 100, memory: 32}
`, name, count, name, lbPort))
	}
	if r := c.Gantry("job", "run", "-d", lbJob("holder", 0)); r.Code != 0 {
		t.Fatalf("job run holder: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	other := lbJob("other", 1)
	want := fmt.Sprintf("groups[0].services[0].lb.port: port %d is already the load-balancer port of service holder.default (job default/holder); load balancers serve one service per port, so choose another port or stop that job (%s:5)", lbPort, other)
	for _, args := range [][]string{{"job", "run", other}, {"job", "validate", other}} {
		if r := c.Gantry(args...); r.Code != 1 || !strings.Contains(r.Stderr, want) {
			t.Fatalf("%v with another job's load-balancer port: exit %d, want 1 with\n%s\n%s%s", args, r.Code, want, r.Stdout, r.Stderr)
		}
	}

	// A good job: exit 0.
	r = c.Gantry("job", "validate", "--cluster", specFile("web.yaml"))
	if r.Code != 0 || !strings.Contains(r.Stdout, "is valid; checked against the cluster at") {
		t.Fatalf("validate of a good job: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	r = c.Gantry("job", "validate", "--cluster", "--json", specFile("web.yaml"))
	resp = api.ValidateResponse{}
	if err := json.Unmarshal([]byte(r.Stdout), &resp); err != nil || r.Code != 0 || !resp.Valid || !resp.Cluster {
		t.Fatalf("validate --json of a good job: exit %d %v\n%s%s", r.Code, err, r.Stdout, r.Stderr)
	}

	// No server: --cluster is an error, without it the file alone.
	r = runGantry(t, "--address", "http://127.0.0.1:1", "job", "validate", "--cluster", huge)
	if r.Code != 1 || !strings.Contains(r.Stderr, "no Gantry server answers") {
		t.Fatalf("validate --cluster without a server: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	r = runGantry(t, "--address", "http://127.0.0.1:1", "job", "validate", huge)
	if r.Code != 0 || !strings.Contains(r.Stdout, "checked against the file alone (no server answered") {
		t.Fatalf("validate without a server: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
}
