package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
)

// The cluster tests run servers and agents as separate hosts: containers
// of an image built FROM scratch from the static gantry binary, on a
// private Docker network of their own. Servers embed the etcd members of
// one cluster; agents use the null driver (pretend tasks) so many run
// cheaply, through the real agent code and protocol.

var (
	nodeImageOnce sync.Once
	nodeImage     string
	nodeImageErr  error
)

// buildNodeImage builds the gantry binary statically and wraps it in an
// image FROM scratch, once per test run.
func buildNodeImage(t testing.TB) string {
	t.Helper()
	nodeImageOnce.Do(func() {
		dir, err := os.MkdirTemp("", "gantry-node-image")
		if err != nil {
			nodeImageErr = err
			return
		}
		defer os.RemoveAll(dir)
		build := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(dir, "gantry"), "./cmd/gantry")
		build.Dir = repoRoot
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			nodeImageErr = fmt.Errorf("static build: %v\n%s", err, out)
			return
		}
		df := "FROM scratch\nCOPY gantry /gantry\nENTRYPOINT [\"/gantry\"]\n"
		if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644); err != nil {
			nodeImageErr = err
			return
		}
		nodeImage = "gantry-e2e-node:latest"
		cmd := exec.Command("docker", "build", "-q", "-t", nodeImage, dir)
		cmd.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			nodeImageErr = fmt.Errorf("docker build: %v\n%s", err, out)
		}
	})
	if nodeImageErr != nil {
		t.Fatal(nodeImageErr)
	}
	return nodeImage
}

// Fleet is a private network with server and agent containers.
type Fleet struct {
	t       testing.TB
	prefix  string
	net     string
	image   string
	servers []string // container names, also host names on the network
}

func docker(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command("docker", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// NewFleet starts n servers forming one etcd cluster.
func NewFleet(t testing.TB, n int) *Fleet {
	t.Helper()
	f := &Fleet{t: t, image: buildNodeImage(t), prefix: fmt.Sprintf("ge2e%d", time.Now().UnixNano()%1e8)}
	f.net = f.prefix + "-net"
	docker(t, "network", "create", f.net)
	t.Cleanup(f.cleanup)
	var members []string
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("%s-s%d", f.prefix, i)
		f.servers = append(f.servers, name)
		members = append(members, fmt.Sprintf("%s=http://%s:7703", name, name))
	}
	for _, name := range f.servers {
		docker(t, "run", "-d", "--name", name, "--hostname", name, "--network", f.net, f.image, "server",
			"--data-dir", "/data", "--http-addr", "0.0.0.0:7700", "--log-level", "debug",
			"--etcd-name", name,
			"--etcd-client-url", "http://"+name+":7702", "--etcd-listen-client-url", "http://0.0.0.0:7702",
			"--etcd-peer-url", "http://"+name+":7703", "--etcd-listen-peer-url", "http://0.0.0.0:7703",
			"--initial-cluster", strings.Join(members, ","),
			"--heartbeat-ttl", "5s", "--insecure")
	}
	f.eventually(90*time.Second, "a leader among the servers", func() bool { return f.Leader() != "" })
	return f
}

func (f *Fleet) cleanup() {
	out, _ := exec.Command("docker", "ps", "-aq", "--filter", "name="+f.prefix).Output()
	if f.t.Failed() {
		for _, id := range strings.Fields(string(out)) {
			logs, _ := exec.Command("docker", "logs", "--tail", "60", id).CombinedOutput()
			name, _ := exec.Command("docker", "inspect", "-f", "{{.Name}}", id).Output()
			f.t.Logf("--- %s:\n%s", strings.TrimSpace(string(name)), logs)
		}
	}
	if os.Getenv("GANTRY_E2E_KEEP") != "" {
		f.t.Logf("GANTRY_E2E_KEEP set: leaving containers %s-* and network %s", f.prefix, f.net)
		return
	}
	if ids := strings.Fields(string(out)); len(ids) > 0 {
		exec.Command("docker", append([]string{"rm", "-f"}, ids...)...).Run()
	}
	exec.Command("docker", "network", "rm", f.net).Run()
}

// AddAgent starts an agent with the null driver that knows every server.
func (f *Fleet) AddAgent(name string) string {
	f.t.Helper()
	full := f.prefix + "-" + name
	var servers []string
	for _, s := range f.servers {
		servers = append(servers, s+":7700")
	}
	docker(f.t, "run", "-d", "--name", full, "--hostname", full, "--network", f.net, f.image, "agent",
		"--servers", strings.Join(servers, ","), "--data-dir", "/data",
		"--agent-addr", "0.0.0.0:7701", "--node-name", full, "--node-address", full,
		"--drivers", "null", "--cpu", "100000", "--memory", "100000", "--insecure")
	return full
}

// IP is a container's address on the fleet's network.
func (f *Fleet) IP(container string) string {
	return docker(f.t, "inspect", "-f", "{{(index .NetworkSettings.Networks \""+f.net+"\").IPAddress}}", container)
}

// API is the base URL of a server's API.
func (f *Fleet) API(server string) string { return "http://" + f.IP(server) + ":7700" }

func (f *Fleet) get(base, path string, v any) error {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(base + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET %s%s: %s", base, path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// Leader names the server that currently leads, or "".
func (f *Fleet) Leader() string {
	for _, s := range f.servers {
		if !f.running(s) {
			continue
		}
		var st api.StatusResponse
		if f.get(f.API(s), "/v1/status", &st) == nil && st.Leader {
			return s
		}
	}
	return ""
}

func (f *Fleet) running(container string) bool {
	out, err := exec.Command("docker", "inspect", "-f", "{{.State.Running}}", container).Output()
	return err == nil && strings.TrimSpace(string(out)) == "true"
}

// Follower names a running server that does not lead.
func (f *Fleet) Follower() string {
	leader := f.Leader()
	for _, s := range f.servers {
		if s != leader && f.running(s) {
			return s
		}
	}
	return ""
}

func (f *Fleet) eventually(timeout time.Duration, what string, cond func() bool) {
	f.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			f.t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// readyNodes counts ready nodes as a server sees them.
func (f *Fleet) readyNodes(server string) int {
	var nodes []*api.Node
	if f.get(f.API(server), "/v1/nodes", &nodes) != nil {
		return -1
	}
	n := 0
	for _, x := range nodes {
		if x.Status == api.NodeStatusReady {
			n++
		}
	}
	return n
}

// running is what an agent itself runs: allocation → task handle.
func (f *Fleet) agentRunning(agent string) (map[string]string, error) {
	var las []struct {
		ID      string            `json:"id"`
		Running map[string]string `json:"running"`
	}
	if err := f.get("http://"+f.IP(agent)+":7701", "/v1/client/allocations", &las); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, la := range las {
		for _, h := range la.Running {
			out[la.ID] = h
		}
	}
	return out, nil
}

func nullJob(t testing.TB, name string, count int) string {
	return WriteSpec(t, name+".yaml", fmt.Sprintf(`name: %s
groups:
  - name: g
    count: %d
    tasks:
      - name: t
        driver: "null"
        resources: {cpu: 10, memory: 10}
`, name, count))
}

// checkJob asserts a job has exactly count live allocations, one per
// index, all running, and no allocation beyond those it needed.
func (f *Fleet) checkJob(server, job string, count int) []*api.Allocation {
	f.t.Helper()
	var as []*api.Allocation
	if err := f.get(f.API(server), "/v1/jobs/"+job+"/allocations", &as); err != nil {
		f.t.Fatal(err)
	}
	idx := map[int]string{}
	live := []*api.Allocation{}
	for _, a := range as {
		if a.DesiredStatus != api.AllocDesiredRun || a.ClientTerminal() {
			continue
		}
		if prev, dup := idx[a.Index]; dup {
			f.t.Fatalf("index %d of %s has two live allocations: %s and %s", a.Index, job, prev, a.ID)
		}
		idx[a.Index] = a.ID
		live = append(live, a)
	}
	if len(live) != count {
		f.t.Fatalf("%s: %d live allocations, want %d", job, len(live), count)
	}
	return live
}

func (f *Fleet) allRunning(server, job string, count int) bool {
	var as []*api.Allocation
	if f.get(f.API(server), "/v1/jobs/"+job+"/allocations", &as) != nil {
		return false
	}
	n := 0
	for _, a := range as {
		if a.DesiredStatus == api.AllocDesiredRun && a.ClientStatus == api.AllocRunning {
			n++
		}
	}
	return n == count
}

// events reads every event the store still holds, from the first index.
func (f *Fleet) events(server string, topics ...string) []api.Event {
	f.t.Helper()
	q := "index=1"
	for _, t := range topics {
		q += "&topic=" + t
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, f.API(server)+"/v1/events?"+q, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out []api.Event
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		if len(strings.TrimSpace(sc.Text())) == 0 {
			continue
		}
		var e api.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			f.t.Fatalf("bad event line %q: %v", sc.Text(), err)
		}
		out = append(out, e)
	}
	return out
}

// checkEvents asserts that no event appears twice, that the job's
// allocations were each created exactly once, and that every allocation
// changed state only as the lifecycle table allows.
func (f *Fleet) checkEvents(server, job string, want int) {
	f.t.Helper()
	seen := map[string]bool{}
	created := map[string]bool{}
	tc := newTransitionChecker()
	defer func() { f.t.Logf("lifecycle: %d allocation transitions checked against the table", tc.seen) }()
	for _, e := range f.events(server, api.TopicAllocation) {
		tc.observe(f.t, e)
		k := fmt.Sprintf("%d/%s/%s", e.Index, e.Topic, e.Key)
		if seen[k] {
			f.t.Fatalf("event %s delivered twice", k)
		}
		seen[k] = true
		if e.Type == "AllocationCreated" {
			var a api.Allocation
			json.Unmarshal(e.Payload, &a)
			if a.Job == job {
				if created[a.ID] {
					f.t.Fatalf("allocation %s created twice", a.ID)
				}
				created[a.ID] = true
			}
		}
	}
	if len(created) != want {
		f.t.Fatalf("%d allocations of %s created, want %d", len(created), job, want)
	}
}

func (f *Fleet) gantry(server string, args ...string) Result {
	f.t.Helper()
	return runGantry(f.t, append([]string{"--address", f.API(server)}, args...)...)
}

// TestClusterLeaderKilledDuringDeployment: kill -9 the leader while a
// 200-allocation deployment is being placed; a new leader finishes it,
// and nothing is lost or duplicated.
func TestClusterLeaderKilledDuringDeployment(t *testing.T) {
	f := NewFleet(t, 3)
	f.AddAgent("a1")
	f.AddAgent("a2")
	f.eventually(60*time.Second, "2 ready nodes", func() bool { return f.readyNodes(f.servers[0]) == 2 })
	leader := f.Leader()
	via := f.Follower()
	if r := f.gantry(via, "job", "run", "--detach", nullJob(t, "big", 200)); r.Code != 0 {
		t.Fatalf("job run: %d %s%s", r.Code, r.Stdout, r.Stderr)
	}
	docker(t, "kill", "-s", "KILL", leader)
	t.Logf("killed leader %s right after submitting", leader)
	f.eventually(60*time.Second, "a new leader", func() bool { l := f.Leader(); return l != "" && l != leader })
	f.eventually(90*time.Second, "200 running allocations", func() bool { return f.allRunning(via, "big", 200) })
	f.checkJob(via, "big", 200)
	f.checkEvents(via, "big", 200)
	// The agents run exactly those 200, once each.
	total := map[string]bool{}
	for _, a := range []string{f.prefix + "-a1", f.prefix + "-a2"} {
		run, err := f.agentRunning(a)
		if err != nil {
			t.Fatal(err)
		}
		for id := range run {
			if total[id] {
				t.Fatalf("allocation %s runs on two nodes", id)
			}
			total[id] = true
		}
	}
	if len(total) != 200 {
		t.Fatalf("agents run %d tasks, want 200", len(total))
	}
}

// TestClusterAgentPartition: an agent cut off the network has its
// allocations replaced within TTL + 10 s; reconnected, it stops them, so
// no duplicates remain.
func TestClusterAgentPartition(t *testing.T) {
	f := NewFleet(t, 3)
	a1 := f.AddAgent("a1")
	a2 := f.AddAgent("a2")
	srv := f.servers[0]
	f.eventually(60*time.Second, "2 ready nodes", func() bool { return f.readyNodes(srv) == 2 })
	if r := f.gantry(srv, "job", "run", "--detach", nullJob(t, "web", 10)); r.Code != 0 {
		t.Fatalf("job run: %d %s%s", r.Code, r.Stdout, r.Stderr)
	}
	f.eventually(60*time.Second, "10 running allocations", func() bool { return f.allRunning(srv, "web", 10) })
	onA1, err := f.agentRunning(a1)
	if err != nil {
		t.Fatal(err)
	}
	if len(onA1) == 0 {
		t.Fatal("a1 runs nothing; the test needs work on both agents")
	}
	docker(t, "network", "disconnect", f.net, a1)
	cut := time.Now()
	// TTL 5 s + 10 s.
	f.eventually(15*time.Second, "a1's allocations replaced on a2", func() bool {
		run, err := f.agentRunning(a2)
		return err == nil && len(run) == 10 && f.allRunning(srv, "web", 10)
	})
	t.Logf("replaced %.1fs after the cut", time.Since(cut).Seconds())
	docker(t, "network", "connect", f.net, a1)
	f.eventually(60*time.Second, "a1 back and running nothing of what was replaced", func() bool {
		run, err := f.agentRunning(a1)
		return err == nil && len(run) == 0 && f.readyNodes(srv) == 2
	})
	f.checkJob(srv, "web", 10)
	run2, _ := f.agentRunning(a2)
	if len(run2) != 10 {
		t.Fatalf("a2 runs %d tasks, want 10", len(run2))
	}
}

// TestClusterEtcdMemberLoss: with one of three servers (and its etcd
// member) killed, the cluster keeps accepting jobs; restarted, the member
// catches up.
func TestClusterEtcdMemberLoss(t *testing.T) {
	f := NewFleet(t, 3)
	f.AddAgent("a1")
	f.eventually(60*time.Second, "1 ready node", func() bool { return f.readyNodes(f.servers[0]) == 1 })
	victim := f.servers[2]
	docker(t, "kill", "-s", "KILL", victim)
	via := f.servers[0]
	f.eventually(60*time.Second, "a leader among the two left", func() bool { return f.Leader() != "" })
	for i := 0; i < 3; i++ {
		name := fmt.Sprintf("j%d", i)
		if r := f.gantry(via, "job", "run", "--detach", nullJob(t, name, 5)); r.Code != 0 {
			t.Fatalf("job run with a member down: %d %s%s", r.Code, r.Stdout, r.Stderr)
		}
	}
	f.eventually(60*time.Second, "the jobs running", func() bool {
		return f.allRunning(via, "j0", 5) && f.allRunning(via, "j1", 5) && f.allRunning(via, "j2", 5)
	})
	docker(t, "start", victim)
	f.eventually(90*time.Second, "the restarted member to catch up", func() bool {
		var jobs []*api.JobSummary
		if f.get(f.API(victim), "/v1/jobs", &jobs) != nil || len(jobs) != 3 {
			return false
		}
		return f.allRunning(victim, "j2", 5)
	})
	for _, j := range []string{"j0", "j1", "j2"} {
		f.checkJob(victim, j, 5)
	}
}

// TestClusterRestartAllServers: every server restarted at once; state is
// intact, agents reconnect, and nothing restarts that did not have to.
func TestClusterRestartAllServers(t *testing.T) {
	f := NewFleet(t, 3)
	a1 := f.AddAgent("a1")
	srv := f.servers[0]
	f.eventually(60*time.Second, "1 ready node", func() bool { return f.readyNodes(srv) == 1 })
	if r := f.gantry(srv, "job", "run", "--detach", nullJob(t, "web", 8)); r.Code != 0 {
		t.Fatalf("job run: %d %s%s", r.Code, r.Stdout, r.Stderr)
	}
	f.eventually(60*time.Second, "8 running allocations", func() bool { return f.allRunning(srv, "web", 8) })
	before := f.checkJob(srv, "web", 8)
	handles, err := f.agentRunning(a1)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, s := range f.servers {
		wg.Add(1)
		go func() { defer wg.Done(); docker(t, "restart", "-t", "2", s) }()
	}
	wg.Wait()
	f.eventually(90*time.Second, "a leader after the restart", func() bool { return f.Leader() != "" })
	f.eventually(60*time.Second, "the node ready again", func() bool { return f.readyNodes(srv) == 1 })
	// Let a wrongly restarting cluster show itself.
	time.Sleep(8 * time.Second)
	after := f.checkJob(srv, "web", 8)
	ids := func(as []*api.Allocation) string {
		var s []string
		for _, a := range as {
			s = append(s, a.ID)
		}
		sort.Strings(s)
		return strings.Join(s, ",")
	}
	if ids(before) != ids(after) {
		t.Fatalf("allocations changed across the restart:\nbefore %s\nafter  %s", ids(before), ids(after))
	}
	now, err := f.agentRunning(a1)
	if err != nil {
		t.Fatal(err)
	}
	for id, h := range handles {
		if now[id] != h {
			t.Fatalf("task of allocation %s restarted (handle %s → %s)", id, h, now[id])
		}
	}
}

// TestClusterDrain: draining a node moves its allocations elsewhere at
// most max_parallel at a time, and the node ends up running nothing.
func TestClusterDrain(t *testing.T) {
	f := NewFleet(t, 1)
	a1 := f.AddAgent("a1")
	srv := f.servers[0]
	f.eventually(60*time.Second, "1 ready node", func() bool { return f.readyNodes(srv) == 1 })
	spec := WriteSpec(t, "web.yaml", `name: web
groups:
  - name: g
    count: 6
    update: {max_parallel: 2, min_healthy_time: 0s}
    tasks:
      - name: t
        driver: "null"
        resources: {cpu: 10, memory: 10}
`)
	if r := f.gantry(srv, "job", "run", "--detach", spec); r.Code != 0 {
		t.Fatalf("job run: %d %s%s", r.Code, r.Stdout, r.Stderr)
	}
	f.eventually(60*time.Second, "6 running on a1", func() bool { return f.allRunning(srv, "web", 6) })
	a2 := f.AddAgent("a2")
	f.eventually(60*time.Second, "2 ready nodes", func() bool { return f.readyNodes(srv) == 2 })
	if r := f.gantry(srv, "node", "drain", a1, "--enable", "--deadline", "2m"); r.Code != 0 {
		t.Fatalf("drain: %d %s%s", r.Code, r.Stdout, r.Stderr)
	}
	low := 6
	f.eventually(90*time.Second, "every allocation on a2", func() bool {
		if run, err := f.agentRunning(a1); err == nil {
			if run2, err := f.agentRunning(a2); err == nil {
				low = min(low, len(run)+len(run2))
				return len(run) == 0 && len(run2) == 6
			}
		}
		return false
	})
	if low < 6-2 {
		t.Fatalf("%d allocations ran at one moment during the drain; max_parallel 2 allows no fewer than 4", low)
	}
	f.checkJob(srv, "web", 6)
}
