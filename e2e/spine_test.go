package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
)

// healthyHTTP reports whether every running allocation of the job answers
// 200 on its http port's /healthz.
func healthyHTTP(as []*api.Allocation) int {
	n := 0
	for _, a := range as {
		if a.DesiredStatus != api.AllocDesiredRun || a.ClientStatus != api.AllocRunning {
			continue
		}
		p, ok := a.Resources["server"].Port("http")
		if !ok {
			continue
		}
		resp, err := (&http.Client{Timeout: time.Second}).Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", p.Host))
		if err != nil {
			continue
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			n++
		}
	}
	return n
}

func sorted(xs []string) []string {
	out := append([]string(nil), xs...)
	sort.Strings(out)
	return out
}

// TestWebServiceLifecycle walks the spine end to end: three replicas
// become three healthy containers, a killed container is replaced, a
// kill -9 of the whole dev process changes nothing, and stopping the job
// removes every container.
func TestWebServiceLifecycle(t *testing.T) {
	c := StartDev(t)

	r := c.Gantry("job", "run", specFile("web.yaml"))
	if r.Code != 0 {
		t.Fatalf("job run exited %d:\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	// A service without an update block rolls under the default one:
	// job run follows its deployment to the end.
	if !strings.Contains(r.Stdout, "successful: every replica of version 0 is healthy") {
		t.Fatalf("job run did not report its deployment successful:\n%s", r.Stdout)
	}
	running := Containers(t, c.NodeID, false)
	if len(running) != 3 {
		t.Fatalf("want 3 running containers, got %d", len(running))
	}
	if n := healthyHTTP(c.Allocs("web")); n != 3 {
		t.Fatalf("want 3 replicas answering /healthz, got %d", n)
	}

	// docker kill one: a healthy container must run in its place within 10s.
	victim := running[0]
	if out, err := exec.Command("docker", "kill", victim).CombinedOutput(); err != nil {
		t.Fatalf("docker kill: %v %s", err, out)
	}
	killed := time.Now()
	c.Eventually(10*time.Second, "a healthy replacement for the killed container", func() bool {
		now := Containers(t, c.NodeID, false)
		if len(now) != 3 {
			return false
		}
		for _, id := range now {
			if id == victim {
				return false
			}
		}
		return healthyHTTP(c.Allocs("web")) == 3
	})
	t.Logf("replacement healthy %.1fs after docker kill", time.Since(killed).Seconds())
	// The restart policy restarts in place: same allocations, one restart.
	restarts := 0
	for _, a := range c.Allocs("web") {
		restarts += a.TaskStates["server"].Restarts
	}
	if restarts != 1 {
		t.Fatalf("want exactly 1 restart recorded, got %d", restarts)
	}

	// kill -9 of gantry dev, then a restart: the same three containers.
	before := sorted(Containers(t, c.NodeID, true))
	c.Kill9()
	c.Start()
	c.Eventually(20*time.Second, "the job to be healthy after the restart", func() bool {
		var s api.JobSummary
		if c.GetJSON("/v1/jobs/web", &s) != nil {
			return false
		}
		return s.Groups["web"].Healthy == 3
	})
	// Give a wrongly duplicating agent time to show itself.
	time.Sleep(3 * time.Second)
	after := sorted(Containers(t, c.NodeID, true))
	if strings.Join(before, ",") != strings.Join(after, ",") {
		t.Fatalf("containers changed across kill -9:\nbefore %v\nafter  %v", before, after)
	}
	if n := len(c.Allocs("web")); n != 3 {
		t.Fatalf("want 3 allocations after restart, got %d", n)
	}
	if n := healthyHTTP(c.Allocs("web")); n != 3 {
		t.Fatalf("want 3 replicas answering after restart, got %d", n)
	}

	// Stopping the job removes every container.
	r = c.Gantry("job", "stop", "web")
	if r.Code != 0 {
		t.Fatalf("job stop exited %d: %s%s", r.Code, r.Stdout, r.Stderr)
	}
	c.Eventually(20*time.Second, "every container to be removed", func() bool {
		return len(Containers(t, c.NodeID, true)) == 0
	})
	r = c.Gantry("job", "status", "web")
	if r.Code != 0 || !strings.Contains(r.Stdout, "dead") {
		t.Fatalf("job status after stop: %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
}

// TestSpecErrorsAllReported: a spec with five errors reports all five,
// each with its line, and nothing reaches the cluster.
func TestSpecErrorsAllReported(t *testing.T) {
	spec := WriteSpec(t, "bad.yaml", `name: web
type: service
priority: 101
groups:
  - name: web
    count: 2
    tasks:
      - name: server
        driver: podman
        config:
          image: gantry-demo:latest
        resources:
          cpu: 100
          memory: -5
        checks:
          - {type: http, port: nope, path: /healthz}
    colour: blue
`)
	r := runGantry(t, "job", "validate", spec)
	if r.Code != 1 {
		t.Fatalf("validate exited %d, want 1:\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	for _, want := range []string{"priority", "bad.yaml:3", "driver", "bad.yaml:9", "memory", "bad.yaml:14", "port", "bad.yaml:16", "colour", "bad.yaml:17"} {
		if !strings.Contains(r.Stderr, want) {
			t.Errorf("validate output lacks %q:\n%s", want, r.Stderr)
		}
	}
	if !strings.Contains(r.Stderr, "5 problem(s)") {
		t.Errorf("want 5 problems reported:\n%s", r.Stderr)
	}
	// job run refuses it the same way, with the cluster untouched.
	c := StartDev(t)
	r = c.Gantry("job", "run", spec)
	if r.Code != 1 || !strings.Contains(r.Stderr, "bad.yaml:14") {
		t.Fatalf("job run of a bad spec: exit %d\n%s", r.Code, r.Stderr)
	}
	var jobs []*api.JobSummary
	if err := c.GetJSON("/v1/jobs", &jobs); err != nil || len(jobs) != 0 {
		t.Fatalf("a rejected spec changed the cluster: %v %v", jobs, err)
	}
}

// TestExecDriverWithoutDocker: with the Docker socket unreachable, the
// node reports docker unavailable, docker work is refused with the reason
// (exit 2), and exec work still runs.
func TestExecDriverWithoutDocker(t *testing.T) {
	c := StartDev(t, "--docker-host", "unix:///nonexistent/docker.sock")
	var n api.Node
	if err := c.GetJSON("/v1/nodes/"+c.NodeID, &n); err != nil {
		t.Fatal(err)
	}
	if d := n.Drivers["docker"]; d.Healthy || !strings.Contains(d.Reason, "does not answer") {
		t.Fatalf("docker driver should be unavailable with a reason: %+v", d)
	}
	r := c.Gantry("job", "run", specFile("web.yaml"))
	if r.Code != 2 || !strings.Contains(r.Stdout, "driver docker unavailable") {
		t.Fatalf("docker job on a node without docker: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	r = c.Gantry("job", "run", specFile("exec-batch.yaml"))
	if r.Code != 0 {
		t.Fatalf("exec batch job exited %d:\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	as := c.Allocs("hello-exec")
	if len(as) != 1 || as[0].ClientStatus != api.AllocComplete {
		t.Fatalf("exec batch allocation: %+v", as)
	}
	r = c.Gantry("alloc", "logs", as[0].ID)
	if r.Code != 0 || !strings.Contains(r.Stdout, "step 3") {
		t.Fatalf("exec task logs: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
}

// TestBatchLogsAndExec runs the batch example, then reads logs and runs
// commands inside a running service task.
func TestBatchLogsAndExec(t *testing.T) {
	c := StartDev(t)
	r := c.Gantry("job", "run", specFile("batch.yaml"))
	if r.Code != 0 || !strings.Contains(r.Stdout, "finished: 2 allocation(s) complete") {
		t.Fatalf("batch job: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	as := c.Allocs("count")
	r = c.Gantry("alloc", "logs", "--stdout", "--tail", "1", as[0].ID)
	if r.Code != 0 || strings.Count(strings.TrimSpace(r.Stdout), "\n") != 0 || !strings.Contains(r.Stdout, "done") {
		t.Fatalf("tail 1 of stdout: exit %d %q %s", r.Code, r.Stdout, r.Stderr)
	}
	// Both streams by default, as docker logs (issue 15: the demo app
	// writes to stderr and alloc logs printed nothing).
	r = c.Gantry("alloc", "logs", as[0].ID)
	if r.Code != 0 || !strings.Contains(r.Stdout, "progress 5/5") || !strings.Contains(r.Stdout, "done") {
		t.Fatalf("both streams by default: exit %d %q %s", r.Code, r.Stdout, r.Stderr)
	}
	r = c.Gantry("alloc", "logs", "--stderr", as[0].ID[:8])
	if r.Code != 0 || !strings.Contains(r.Stdout, "progress 5/5") {
		t.Fatalf("stderr by short id: exit %d %q %s", r.Code, r.Stdout, r.Stderr)
	}

	r = c.Gantry("job", "run", specFile("web.yaml"))
	if r.Code != 0 {
		t.Fatalf("web job: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	web := c.Allocs("web")
	r = c.GantryStdin("hello through exec\n", "alloc", "exec", "-i", web[0].ID, "/demo-app", "cat")
	if r.Code != 0 || r.Stdout != "hello through exec\n" {
		t.Fatalf("exec -i cat: exit %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
	r = c.Gantry("alloc", "exec", web[0].ID, "/demo-app", "--no-such-flag")
	if r.Code != 2 || !strings.Contains(r.Stderr, "no-such-flag") {
		t.Fatalf("exec must pass the command's exit code and stderr through: exit %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
	r = c.Gantry("alloc", "exec", web[0].ID, "/nonexistent")
	if r.Code == 0 {
		t.Fatalf("exec of a missing program must fail: %q %q", r.Stdout, r.Stderr)
	}

	// The finished batch job kept its exited containers for the logs;
	// stopping the job removes them.
	countContainers := func() int {
		out, err := exec.Command("docker", "ps", "-aq", "--filter", "label=gantry.node="+c.NodeID, "--filter", "label=gantry.job=count").Output()
		if err != nil {
			t.Fatalf("docker ps: %v", err)
		}
		return len(strings.Fields(string(out)))
	}
	if n := countContainers(); n != 2 {
		t.Fatalf("the finished batch job should keep its 2 exited containers until stopped, found %d", n)
	}
	if r := c.Gantry("job", "stop", "count"); r.Code != 0 {
		t.Fatalf("job stop count: exit %d %s%s", r.Code, r.Stdout, r.Stderr)
	}
	c.Eventually(20*time.Second, "the stopped batch job's containers to be removed", func() bool { return countContainers() == 0 })
}

// TestBadAPIInput: bodies that are not JSON, far too large or carry
// unknown fields get a clear 4xx and change nothing.
func TestBadAPIInput(t *testing.T) {
	c := StartDev(t)
	post := func(body []byte) (int, api.Error) {
		resp, err := http.Post(c.Addr+"/v1/jobs", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e api.Error
		json.NewDecoder(resp.Body).Decode(&e)
		return resp.StatusCode, e
	}
	cases := []struct {
		body []byte
		code int
		want string
	}{
		{[]byte("{not json"), 400, "not valid JSON"},
		{[]byte(""), 400, "empty"},
		{bytes.Repeat([]byte(" "), 5<<20), 413, "larger than"},
		{[]byte(`{"name":"x","groups":[{"name":"g","tasks":[{"name":"t","driver":"docker","config":{"image":"i"},"resources":{"cpu":1,"memory":1}}]}],"extra":1}`), 400, "extra"},
		{[]byte(`{"name":"x","groups":[{"name":"g","tasks":[{"name":"t","driver":"docker","config":{"image":"i"},"resources":{"cpu":-1,"memory":99999999999}}]}]}`), 400, "cpu"},
	}
	for _, tc := range cases {
		code, e := post(tc.body)
		if code != tc.code || !strings.Contains(e.Error, tc.want) {
			t.Errorf("body %.40q: got %d %q, want %d containing %q", tc.body, code, e.Error, tc.code, tc.want)
		}
	}
	var jobs []*api.JobSummary
	if err := c.GetJSON("/v1/jobs", &jobs); err != nil || len(jobs) != 0 {
		t.Fatalf("bad input changed the cluster: %v %v", jobs, err)
	}
	// Unknown endpoints and IDs answer JSON errors, never stack traces.
	resp, err := http.Get(c.Addr + "/v1/allocations/zzzzzzzz")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 404 || !strings.Contains(string(b), "not found") {
		t.Fatalf("unknown allocation: %d %s", resp.StatusCode, b)
	}
}

// TestMissingImageAndBusyPort: an image that is not on the node, and a
// static host port another process holds, each fail with a reason that
// names the problem.
func TestMissingImageAndBusyPort(t *testing.T) {
	c := StartDev(t)
	spec := WriteSpec(t, "noimg.yaml", `name: noimg
groups:
  - name: web
    restart: {attempts: 0, mode: fail}
    tasks:
      - name: server
        driver: docker
        config: {image: "gantry-absent:9.9"}
        resources: {cpu: 100, memory: 32}
`)
	r := c.Gantry("job", "run", "--timeout", "60s", spec)
	if r.Code != 1 || !strings.Contains(r.Stdout, "cannot be pulled") {
		t.Fatalf("missing image: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	busy := l.Addr().(*net.TCPAddr).Port
	spec = WriteSpec(t, "busy.yaml", fmt.Sprintf(`name: busy
groups:
  - name: web
    restart: {attempts: 0, mode: fail}
    tasks:
      - name: server
        driver: docker
        config: {image: %s, ports: [{name: http, to: 8080, static: %d}]}
        resources: {cpu: 100, memory: 32}
`, DemoImage, busy))
	r = c.Gantry("job", "run", "--timeout", "60s", spec)
	if r.Code != 1 || !strings.Contains(r.Stdout, fmt.Sprint(busy)) {
		t.Fatalf("busy port: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
}
