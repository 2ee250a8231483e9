package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	mdns "github.com/miekg/dns"
)

// Each test names its job differently: ports are chosen from the job's
// name, so clusters running side by side on one engine do not reach for
// the same host ports.
//
// The networking tests drive real containers through Gantry's load
// balancer with clients that never retry: each request on its own
// connection, so not even Go's transport can send one twice. Only the
// proxy's own retries count.

// webSpec is a service of count replicas of the demo app behind the load
// balancer on lbPort, reporting version; extra lines go into the task's
// config (args, …).
func webSpec(t *testing.T, name string, count, lbPort int, version, update, extra string) string {
	t.Helper()
	if update == "" {
		update = "{max_parallel: 1, min_healthy_time: 1s, healthy_deadline: 1m, progress_deadline: 2m, auto_revert: true}"
	}
	return WriteSpec(t, name+"-"+version+".yaml", fmt.Sprintf(`name: %s
type: service
groups:
  - name: web
    count: %d
    restart: {attempts: 3, interval: 5m, delay: 1s, mode: fail}
    update: %s
    services: [{name: %s, port: http, lb: {port: %d, policy: round_robin}}]
    tasks:
      - name: server
        driver: docker
        config:
          image: gantry-demo:latest
          ports: [{name: http, to: 8080}]
          env: {DEMO_VERSION: %s}
%s        resources: {cpu: 100, memory: 32}
        checks:
          - {type: http, port: http, path: /healthz, interval: 1s, timeout: 1s, failures: 2}
`, name, count, update, name, lbPort, version, extra))
}

// load sends GET / at a constant rate, each request on a new connection,
// and records every outcome.
type load struct {
	t        *testing.T
	url      string
	client   *http.Client
	stop     chan struct{}
	wg       sync.WaitGroup
	ok       atomic.Int64
	failed   atomic.Int64
	inFlight atomic.Int64

	mu       sync.Mutex
	errs     []string
	versions []stamped // every answer's version, in order of arrival
}

type stamped struct {
	at      time.Time
	version string
}

func startLoad(t *testing.T, url string, perSecond int) *load {
	l := &load{t: t, url: url, stop: make(chan struct{}),
		client: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 15 * time.Second}}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		tick := time.NewTicker(time.Second / time.Duration(perSecond))
		defer tick.Stop()
		for {
			select {
			case <-l.stop:
				return
			case <-tick.C:
			}
			l.wg.Add(1)
			l.inFlight.Add(1)
			go func() {
				defer l.wg.Done()
				defer l.inFlight.Add(-1)
				l.one()
			}()
		}
	}()
	t.Cleanup(l.Stop)
	return l
}

func (l *load) one() {
	resp, err := l.client.Get(l.url)
	if err != nil {
		l.fail(err.Error())
		return
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		l.fail(fmt.Sprintf("status %d: %s %v", resp.StatusCode, bytes.TrimSpace(body), err))
		return
	}
	var a struct {
		Version string `json:"version"`
	}
	json.Unmarshal(body, &a)
	l.ok.Add(1)
	l.mu.Lock()
	l.versions = append(l.versions, stamped{time.Now(), a.Version})
	l.mu.Unlock()
}

func (l *load) fail(msg string) {
	l.failed.Add(1)
	l.mu.Lock()
	if len(l.errs) < 10 {
		l.errs = append(l.errs, time.Now().Format("15:04:05.000")+" "+msg)
	}
	l.mu.Unlock()
}

// Stop stops sending and waits for the requests in flight.
func (l *load) Stop() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
}

// report describes the outcome for failure messages and logs.
func (l *load) report() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return fmt.Sprintf("%d ok, %d failed; first failures: %s", l.ok.Load(), l.failed.Load(), strings.Join(l.errs, "; "))
}

// versionsSince counts answers by version after t.
func (l *load) versionsSince(t time.Time) map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]int{}
	for _, s := range l.versions {
		if !s.at.Before(t) {
			out[s.version]++
		}
	}
	return out
}

// floor samples, continuously, how many replicas of a job are healthy
// (allocations the server wants running, running and passing checks)
// and how many endpoints its service lists, and keeps the minimum of each.
type floor struct {
	c         *Cluster
	job       string
	stop      chan struct{}
	done      chan struct{}
	samples   atomic.Int64
	minAllocs atomic.Int64
	minEps    atomic.Int64
}

func sampleFloor(c *Cluster, job string) *floor {
	f := &floor{c: c, job: job, stop: make(chan struct{}), done: make(chan struct{})}
	f.minAllocs.Store(1 << 30)
	f.minEps.Store(1 << 30)
	go func() {
		defer close(f.done)
		for {
			select {
			case <-f.stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			var as []*api.Allocation
			var svc api.ServiceInfo
			if c.GetJSON("/v1/jobs/"+job+"/allocations", &as) != nil || c.GetJSON("/v1/services/"+job, &svc) != nil {
				continue
			}
			healthy := 0
			for _, a := range as {
				if a.DesiredStatus == api.AllocDesiredRun && a.ClientStatus == api.AllocRunning && a.Health == api.HealthHealthy {
					healthy++
				}
			}
			f.samples.Add(1)
			if int64(healthy) < f.minAllocs.Load() {
				f.minAllocs.Store(int64(healthy))
			}
			if n := int64(len(svc.Endpoints)); n < f.minEps.Load() {
				f.minEps.Store(n)
			}
		}
	}()
	return f
}

func (f *floor) Stop() (minAllocs, minEndpoints, samples int64) {
	close(f.stop)
	<-f.done
	return f.minAllocs.Load(), f.minEps.Load(), f.samples.Load()
}

func runJob(t *testing.T, c *Cluster, spec string, want int) Result {
	t.Helper()
	r := c.Gantry("job", "run", spec)
	if r.Code != want {
		t.Fatalf("job run %s: exit %d, want %d\n%s%s", spec, r.Code, want, r.Stdout, r.Stderr)
	}
	return r
}

// TestNetworkingRollingUpdateUnderLoad: three replicas are updated one at
// a time while 250 requests/s flow through the agent's load balancer; not
// one request fails, the healthy count never drops below
// count - max_parallel, and the new version answers at the end.
func TestNetworkingRollingUpdateUnderLoad(t *testing.T) {
	c := StartDev(t, "--lb", "--lb-access-log=false")
	port := freePort(t)
	runJob(t, c, webSpec(t, "roll", 3, port, "v1", "", ""), 0)
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)

	// HTTP/2 without TLS reaches the same replicas.
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	h2 := &http.Client{Transport: &http.Transport{Protocols: &protocols}, Timeout: 5 * time.Second}
	resp, err := h2.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != 200 {
		t.Fatalf("h2c through the load balancer: %s %d", resp.Proto, resp.StatusCode)
	}

	l := startLoad(t, url, 250)
	f := sampleFloor(c, "roll")
	time.Sleep(2 * time.Second)
	began := time.Now()
	r := runJob(t, c, webSpec(t, "roll", 3, port, "v2", "", ""), 0)
	if !strings.Contains(r.Stdout, "successful") {
		t.Fatalf("job run did not report the deployment's success:\n%s", r.Stdout)
	}
	finished := time.Now()
	time.Sleep(2 * time.Second)
	l.Stop()
	minAllocs, minEps, samples := f.Stop()
	total := l.ok.Load() + l.failed.Load()
	elapsed := time.Since(began) + 2*time.Second
	t.Logf("rolling update took %.1fs; load: %s; healthy floor: %d allocations, %d endpoints over %d samples",
		finished.Sub(began).Seconds(), l.report(), minAllocs, minEps, samples)
	if l.failed.Load() != 0 {
		t.Fatalf("requests failed during the rolling update: %s", l.report())
	}
	if rate := float64(total) / elapsed.Seconds(); rate < 200 {
		t.Fatalf("load was %.0f requests/s, want at least 200", rate)
	}
	if minAllocs < 2 || minEps < 2 || samples < 10 {
		t.Fatalf("healthy replicas dropped to %d (endpoints %d) over %d samples; floor is count - max_parallel = 2", minAllocs, minEps, samples)
	}
	seen := l.versionsSince(began)
	if seen["v1"] == 0 || seen["v2"] == 0 {
		t.Fatalf("answers during the update: %v, want both versions", seen)
	}
	if after := l.versionsSince(finished.Add(time.Second)); after["v1"] != 0 || after["v2"] == 0 {
		t.Fatalf("answers after the update: %v, want only v2", after)
	}
	var d api.Deployment
	if err := c.GetJSON("/v1/jobs/roll/deployment", &d); err != nil || d.Status != api.DeploymentSuccessful || d.JobVersion != 1 {
		t.Fatalf("deployment %+v, %v", d, err)
	}
}

// TestNetworkingKillBackendUnderLoad runs `gantry ingress` in front of the
// cluster and kills one backend container under load: at most the
// requests in flight at that moment may fail.
func TestNetworkingKillBackendUnderLoad(t *testing.T) {
	c := StartDev(t)
	port := freePort(t)
	runJob(t, c, webSpec(t, "kill", 3, port, "v1", "", ""), 0)

	var logs bytes.Buffer
	ing := exec.Command(gantryBin, "ingress", "--servers", strings.TrimPrefix(c.Addr, "http://"), "--address", "127.0.0.1", "--access-log=false")
	ing.Stdout, ing.Stderr = &logs, &logs
	ing.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := ing.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ing.Process.Signal(syscall.SIGTERM)
		ing.Wait()
		if t.Failed() {
			t.Logf("ingress log:\n%s", logs.String())
		}
	})
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	c.Eventually(15*time.Second, "the ingress to serve the service", func() bool {
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})

	l := startLoad(t, url, 250)
	time.Sleep(2 * time.Second)
	victim := Containers(t, c.NodeID, false)[0]
	inFlight := l.inFlight.Load()
	failedBefore := l.failed.Load()
	if out, err := exec.Command("docker", "kill", victim).CombinedOutput(); err != nil {
		t.Fatalf("docker kill: %v %s", err, out)
	}
	// Long enough for the health checks to notice and the task to restart.
	time.Sleep(8 * time.Second)
	l.Stop()
	failed := l.failed.Load() - failedBefore
	t.Logf("killed %s with %d requests in flight; load: %s", victim[:12], inFlight, l.report())
	if failedBefore != 0 {
		t.Fatalf("requests failed before the kill: %s", l.report())
	}
	if failed > inFlight {
		t.Fatalf("%d requests failed after the kill, more than the %d in flight when it happened: %s", failed, inFlight, l.report())
	}
	c.Eventually(30*time.Second, "three healthy endpoints again", func() bool {
		var s api.ServiceInfo
		return c.GetJSON("/v1/services/kill", &s) == nil && len(s.Endpoints) == 3
	})
}

// TestRollingUpdateAutoRevert: a version whose health checks fail is
// rolled back automatically, under load, without a failed request, and
// the healthy count never drops below count - max_parallel.
func TestRollingUpdateAutoRevert(t *testing.T) {
	c := StartDev(t, "--lb", "--lb-access-log=false")
	port := freePort(t)
	runJob(t, c, webSpec(t, "revert", 3, port, "v1", "", ""), 0)
	l := startLoad(t, fmt.Sprintf("http://127.0.0.1:%d/", port), 250)
	f := sampleFloor(c, "revert")
	time.Sleep(time.Second)

	r := runJob(t, c, webSpec(t, "revert", 3, port, "bad", "", "          args: [--unhealthy]\n"), 1)
	if !strings.Contains(r.Stdout, "failed its health checks") || !strings.Contains(r.Stdout, "Rolled back") {
		t.Fatalf("job run did not report the failure and the rollback:\n%s", r.Stdout)
	}
	// The rollback is version 2, the spec of version 0, deployed in turn.
	c.Eventually(60*time.Second, "the rollback to be deployed", func() bool {
		var d api.Deployment
		return c.GetJSON("/v1/jobs/revert/deployment", &d) == nil && d.JobVersion == 2 && d.Status == api.DeploymentSuccessful
	})
	settled := time.Now()
	time.Sleep(time.Second)
	l.Stop()
	minAllocs, minEps, samples := f.Stop()
	t.Logf("load: %s; healthy floor: %d allocations, %d endpoints over %d samples", l.report(), minAllocs, minEps, samples)
	if l.failed.Load() != 0 {
		t.Fatalf("requests failed while the bad version rolled out and back: %s", l.report())
	}
	if minAllocs < 2 || minEps < 2 {
		t.Fatalf("healthy replicas dropped to %d (endpoints %d); floor is count - max_parallel = 2", minAllocs, minEps)
	}
	if seen := l.versionsSince(time.Time{}); seen["bad"] != 0 {
		t.Fatalf("the unhealthy version got traffic: %v", seen)
	}
	if after := l.versionsSince(settled); after["v1"] == 0 || len(after) != 1 {
		t.Fatalf("answers after the rollback: %v, want only v1", after)
	}
	var failed api.Deployment
	if err := c.GetJSON("/v1/jobs/revert/deployment?version=1", &failed); err != nil || failed.Status != api.DeploymentFailed ||
		failed.RevertTo == nil || *failed.RevertTo != 0 || failed.RevertedAs == nil || *failed.RevertedAs != 2 {
		t.Fatalf("failed deployment: %+v, %v", failed, err)
	}
	var job api.JobSummary
	if err := c.GetJSON("/v1/jobs/revert", &job); err != nil || job.Job.Version != 2 || job.Groups["web"].Healthy != 3 {
		t.Fatalf("job after the rollback: %+v, %v", job, err)
	}
}

// TestNetworkingCanaryPromoteAndRevert: a canary starts beside the old
// replicas and serves with them; promotion rolls the rest; `job revert`
// brings the old spec back as a new version.
func TestNetworkingCanaryPromoteAndRevert(t *testing.T) {
	c := StartDev(t, "--lb")
	port := freePort(t)
	canary := "{max_parallel: 1, min_healthy_time: 1s, canary: 1}"
	runJob(t, c, webSpec(t, "canary", 3, port, "v1", canary, ""), 0)
	r := runJob(t, c, webSpec(t, "canary", 3, port, "v2", canary, ""), 0)
	if !strings.Contains(r.Stdout, "gantry job promote canary") {
		t.Fatalf("job run did not say the canary waits for promotion:\n%s", r.Stdout)
	}
	var svc api.ServiceInfo
	if err := c.GetJSON("/v1/services/canary", &svc); err != nil || len(svc.Endpoints) != 4 {
		t.Fatalf("service with a canary: %+v, %v", svc.Endpoints, err)
	}
	versions := map[uint64]int{}
	for _, e := range svc.Endpoints {
		versions[e.JobVersion]++
	}
	if versions[0] != 3 || versions[1] != 1 {
		t.Fatalf("endpoints by version %v, want 3 old and 1 canary", versions)
	}
	if r := c.Gantry("job", "promote", "canary"); r.Code != 0 || !strings.Contains(r.Stdout, "successful") {
		t.Fatalf("job promote: %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if r := c.Gantry("job", "promote", "canary"); r.Code != 1 || !strings.Contains(r.Stderr, "no running deployment") {
		t.Fatalf("promote without a running deployment: %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	answers := map[string]int{}
	for i := 0; i < 6; i++ {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
		if err != nil {
			t.Fatal(err)
		}
		var a struct{ Version string }
		json.NewDecoder(resp.Body).Decode(&a)
		resp.Body.Close()
		answers[a.Version]++
	}
	if answers["v2"] != 6 {
		t.Fatalf("answers after promotion: %v", answers)
	}

	r = c.Gantry("job", "revert", "canary", "0")
	if r.Code != 0 || !strings.Contains(r.Stdout, "registered as version 2") || !strings.Contains(r.Stdout, "gantry job promote canary") {
		t.Fatalf("job revert: %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	// Promoted without following; `deployment status --watch` follows
	// the rollout through the event stream to its end.
	if r := c.Gantry("job", "promote", "-d", "canary"); r.Code != 0 {
		t.Fatalf("promote the revert: %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if r := c.Gantry("deployment", "status", "--watch", "canary"); r.Code != 0 || !strings.Contains(r.Stdout, "successful: every replica of version 2 is healthy") {
		t.Fatalf("deployment status --watch: %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if r := c.Gantry("deployment", "status", "canary"); r.Code != 0 || !strings.Contains(r.Stdout, "successful") || !strings.Contains(r.Stdout, "Version      2") {
		t.Fatalf("deployment status: %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if r := c.Gantry("job", "history", "canary"); r.Code != 0 || strings.Count(r.Stdout, "web×3") != 3 {
		t.Fatalf("job history: %d\n%s", r.Code, r.Stdout)
	}
}

// TestDNSServiceRecords asks the server's DNS with a real DNS client.
func TestDNSServiceRecords(t *testing.T) {
	dnsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	c := StartDev(t, "--dns-addr", dnsAddr)
	runJob(t, c, webSpec(t, "api", 2, freePort(t), "v1", "", ""), 0)

	ask := func(name string, qtype uint16) *mdns.Msg {
		t.Helper()
		m := new(mdns.Msg)
		m.SetQuestion(name, qtype)
		in, err := mdns.Exchange(m, dnsAddr)
		if err != nil {
			t.Fatalf("query %s: %v", name, err)
		}
		return in
	}
	a := ask("api.default.service.gantry.", mdns.TypeA)
	if a.Rcode != mdns.RcodeSuccess || len(a.Answer) != 1 || a.Answer[0].(*mdns.A).A.String() != "127.0.0.1" {
		t.Fatalf("A: %v", a)
	}
	var allocPorts []int
	for _, al := range c.Allocs("api") {
		if al.DesiredStatus == api.AllocDesiredRun && al.ClientStatus == api.AllocRunning {
			p, _ := al.Resources["server"].Port("http")
			allocPorts = append(allocPorts, p.Host)
		}
	}
	srv := ask("api.default.service.gantry.", mdns.TypeSRV)
	var srvPorts []int
	for _, rr := range srv.Answer {
		s := rr.(*mdns.SRV)
		srvPorts = append(srvPorts, int(s.Port))
		if t2 := ask(s.Target, mdns.TypeA); len(t2.Answer) != 1 {
			t.Fatalf("SRV target %s does not resolve: %v", s.Target, t2)
		}
	}
	sort.Ints(allocPorts)
	sort.Ints(srvPorts)
	if fmt.Sprint(allocPorts) != fmt.Sprint(srvPorts) || len(srvPorts) != 2 {
		t.Fatalf("SRV ports %v, allocation ports %v", srvPorts, allocPorts)
	}
	if r := ask("nope.default.service.gantry.", mdns.TypeA); r.Rcode != mdns.RcodeNameError {
		t.Fatalf("unknown service: rcode %s", mdns.RcodeToString[r.Rcode])
	}
	// The answers follow health: a stopped job's service is gone.
	if r := c.Gantry("job", "stop", "api"); r.Code != 0 {
		t.Fatalf("job stop: %d %s%s", r.Code, r.Stdout, r.Stderr)
	}
	if r := ask("api.default.service.gantry.", mdns.TypeSRV); r.Rcode != mdns.RcodeNameError || len(r.Answer) != 0 {
		t.Fatalf("SRV after stop: %v", r)
	}
}

// TestDrainOnStop: a slow request through the load balancer is in flight
// when its allocation is stopped; it completes, because the agent drains
// the endpoint before it sends SIGTERM — and the request outlives the
// kill timeout, so only the drain can save it.
func TestDrainOnStop(t *testing.T) {
	c := StartDev(t, "--lb", "--lb-drain-timeout", "30s")
	port := freePort(t)
	runJob(t, c, webSpec(t, "slow", 1, port, "v1", "", ""), 0)
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	alloc := c.Allocs("slow")[0]

	type result struct {
		code int
		err  error
		at   time.Time
	}
	done := make(chan result, 1)
	sent := time.Now()
	go func() {
		resp, err := (&http.Client{Timeout: time.Minute}).Get(url + "/slow?ms=7000")
		if err != nil {
			done <- result{err: err, at: time.Now()}
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		done <- result{code: resp.StatusCode, at: time.Now()}
	}()
	time.Sleep(time.Second)
	stopped := make(chan Result, 1)
	go func() { stopped <- c.Gantry("job", "stop", "slow") }()
	res := <-done
	if res.err != nil || res.code != http.StatusOK {
		t.Fatalf("slow request in flight during the stop: %d %v after %s", res.code, res.err, res.at.Sub(sent))
	}
	if r := <-stopped; r.Code != 0 {
		t.Fatalf("job stop: %d %s%s", r.Code, r.Stdout, r.Stderr)
	}
	// The task was told to stop only after the request finished.
	a, err := func() (*api.Allocation, error) {
		var a api.Allocation
		return &a, c.GetJSON("/v1/allocations/"+alloc.ID, &a)
	}()
	if err != nil {
		t.Fatal(err)
	}
	var killing time.Time
	for _, e := range a.TaskStates["server"].Events {
		if e.Type == api.TaskEventKilling {
			killing = e.Time
		}
	}
	if killing.IsZero() || killing.Before(res.at.Add(-200*time.Millisecond)) {
		t.Fatalf("SIGTERM at %s, the slow request finished at %s: the stop did not wait for it", killing.Format(time.StampMilli), res.at.Format(time.StampMilli))
	}
}
