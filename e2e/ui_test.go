package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/apiclient"
	"github.com/google/uuid"
)

const tickerSpec = `name: ticker
type: service
groups:
  - name: main
    tasks:
      - name: tick
        driver: exec
        config: {command: /bin/sh, args: [-c, "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.3; done"]}
        resources: {cpu: 100, memory: 32}
`

const hugeSpec = `name: huge
namespace: research
type: batch
groups:
  - name: solver
    count: 2
    tasks:
      - name: solve
        driver: exec
        config: {command: /bin/true}
        resources: {cpu: 900000, memory: 64}
`

const uiQueues = `- name: ml
  weight: 2
  guarantee: {cpu: 2000, memory: 8192, gpu: 2}
  namespaces: [ml]
- name: research
  weight: 1
  guarantee: {cpu: 1000, memory: 1024, gpu: 0}
  namespaces: [research]
`

func gpuJob(name, count, gpu string) string {
	return fmt.Sprintf(`name: %s
namespace: ml
type: service
groups:
  - name: worker
    count: %s
    tasks:
      - name: main
        driver: "null"
        resources:
          cpu: 500
          memory: 1024
          gpu: %s
`, name, count, gpu)
}

// gpuNode is the fake node of the UI tests: five A100s; two in MIG mode
// that the agent manages (one with an idle instance already made), one
// shared under MPS, one that fell off the bus, one plain.
func gpuNode() api.Node {
	n := api.Node{ID: uuid.NewString(), Name: "gpu-node-1", Labels: map[string]string{"zone": "a", "gpu": "a100"},
		Attributes: map[string]string{"gpu.status": "5 GPUs (fingerprint written by the test)", "os.name": "linux"},
		Resources:  api.NodeResources{CPU: 64000, Cores: 64, Memory: 512 * 1024, Disk: 1 << 20}, PortRange: api.DefaultPortRange}
	for i := 0; i < 5; i++ {
		n.GPUs = append(n.GPUs, A100(n.Name, i))
	}
	n.GPUs[0].MIGEnabled, n.GPUs[0].MIGManaged = true, true
	n.GPUs[0].MIGInstances = []api.MIGInstance{{UUID: "MIG-idle-0-6", Profile: "1g.5gb", Start: 6, Size: 1}}
	n.GPUs[1].MIGEnabled, n.GPUs[1].MIGManaged = true, true
	n.GPUs[2].SharingEnforced = true
	n.GPUs[3].Unhealthy, n.GPUs[3].HealthReason = true, "XID 79: GPU has fallen off the bus"
	return n
}

// TestWebUI drives the web UI in headless Chromium against `gantry dev`
// with real jobs (docker, exec) and a fake GPU node: every page loads and
// shows what the API holds, the GPU map draws every MIG instance at its
// slices and every share, a job appears without a reload, an
// allocation's logs arrive live, and Tab reaches every control of every
// page. Screenshots are saved (see screenshotDir); with
// GANTRY_UPDATE_SCREENSHOTS=1 they are copied into docs/screenshots/.
func TestWebUI(t *testing.T) {
	b := StartBrowser(t)
	c := StartDev(t, "--sample-interval", "300ms")
	t.Logf("screenshots go to %s", b.shots)
	// Exec tasks outlive their agent: stop the jobs that run them before
	// the cluster goes.
	t.Cleanup(func() {
		for _, j := range []string{"ticker", "late", "web"} {
			c.Gantry("job", "stop", j)
		}
	})

	if r := c.Gantry("queue", "apply", WriteSpec(t, "queues.yaml", uiQueues)); r.Code != 0 {
		t.Fatalf("queue apply: %d %s%s", r.Code, r.Stdout, r.Stderr)
	}
	fake := StartFakeNode(t, c, gpuNode())

	run := func(spec string, want ...int) {
		t.Helper()
		r := c.Gantry("job", "run", "-d", spec)
		for _, w := range append(want, 0) {
			if r.Code == w {
				return
			}
		}
		t.Fatalf("job run %s: %d %s%s", spec, r.Code, r.Stdout, r.Stderr)
	}
	web, err := os.ReadFile(specFile("web.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if r := c.Gantry("job", "run", specFile("web.yaml")); r.Code != 0 {
		t.Fatalf("job run web: %d %s%s", r.Code, r.Stdout, r.Stderr)
	}
	run(WriteSpec(t, "ticker.yaml", tickerSpec))
	run(WriteSpec(t, "huge.yaml", hugeSpec), 2)
	run(WriteSpec(t, "train.yaml", gpuJob("train", "1", "{mig: 3g.20gb}")))
	run(WriteSpec(t, "infer.yaml", gpuJob("infer", "2", "{mig: 1g.10gb}")))
	run(WriteSpec(t, "notebook.yaml", gpuJob("notebook", "2", "{share: {milli: 250, memory: 8192}}")))
	run(WriteSpec(t, "render.yaml", gpuJob("render", "1", "{count: 1}")))
	// A second version of web: two replicas with a new environment.
	web2 := strings.Replace(string(web), "count: 3", "count: 2", 1)
	web2 = strings.Replace(web2, "image: gantry-demo:latest", "image: gantry-demo:latest\n          env: {GREETING: hello}", 1)
	if r := c.Gantry("job", "run", WriteSpec(t, "web2.yaml", web2)); r.Code != 0 {
		t.Fatalf("job run web v1: %d %s%s", r.Code, r.Stdout, r.Stderr)
	}

	var gpuAllocs []*api.Allocation
	c.Eventually(60*time.Second, "every GPU allocation running on the fake node", func() bool {
		var all []*api.Allocation
		if c.GetJSON("/v1/allocations?node="+fake.Node.ID, &all) != nil {
			return false
		}
		gpuAllocs = gpuAllocs[:0]
		for _, a := range all {
			if a.ClientStatus == api.AllocRunning {
				gpuAllocs = append(gpuAllocs, a)
			}
		}
		return len(gpuAllocs) == 6
	})
	var ticker *api.Allocation
	c.Eventually(30*time.Second, "the ticker running", func() bool {
		for _, a := range c.Allocs("ticker") {
			if a.ClientStatus == api.AllocRunning {
				ticker = a
			}
		}
		return ticker != nil
	})
	var hist api.NodeMetricsResponse
	c.Eventually(30*time.Second, "usage history of both nodes", func() bool {
		var h2 api.NodeMetricsResponse
		return c.GetJSON("/v1/nodes/"+c.NodeID+"/metrics", &hist) == nil && len(hist.Samples) >= 3 &&
			c.GetJSON("/v1/nodes/"+fake.Node.ID+"/metrics", &h2) == nil && len(h2.Samples) >= 3
	})

	// Overview.
	b.Page(c.Addr+"/ui/", "overview")
	b.WaitText("#ov-cards", "Nodes")
	b.WaitJS("two nodes", `document.querySelector('[data-count=nodes]').innerText.trim() === '2'`)
	b.WaitJS("running allocations counted", `+(document.querySelector('[data-alloc-count=running]')||{innerText:'0'}).innerText >= 8`)
	b.WaitJS("queue ml", `!!document.querySelector('tr[data-queue=ml]')`)
	b.WaitText("tr[data-queue=research]", "starved")
	b.WaitJS("recent events", `document.querySelectorAll('#ov-events tr[data-event-index]').length >= 10`)
	b.Screenshot("overview")
	b.TabThrough("overview")

	// Jobs, and a job registered while the list is open appears without a
	// reload.
	b.Click(`a[data-nav=jobs]`)
	b.WaitPage("jobs")
	for _, name := range []string{"web", "ticker", "huge", "train", "infer", "notebook", "render"} {
		b.WaitJS("job "+name, fmt.Sprintf(`!!document.querySelector('tr[data-job=%s]')`, js(name)))
	}
	b.WaitText("tr[data-job=huge]", "pending")
	b.Eval(`window.__sameDocument = 'yes'`)
	run(WriteSpec(t, "late.yaml", strings.Replace(tickerSpec, "name: ticker", "name: late", 1)))
	b.WaitJS("job late, live", `!!document.querySelector('tr[data-job=late]')`)
	if same := eval[string](b, `window.__sameDocument || ''`); same != "yes" {
		t.Error("the page reloaded to show the new job; it should have been updated in place")
	}
	b.Screenshot("jobs")
	b.TabThrough("jobs")

	// A job with two versions: groups, allocations, versions and the diff.
	b.Click(`tr[data-job=web] a`)
	b.WaitPage("job")
	b.WaitText("#job-allocs", "running")
	b.WaitJS("two running replicas of version 1", `document.querySelectorAll('#job-allocs tr[data-alloc-status=running]').length === 2`)
	b.WaitJS("versions 0 and 1", `!!document.querySelector('tr[data-version="0"]') && !!document.querySelector('tr[data-version="1"]')`)
	b.WaitJS("the diff", `!!document.querySelector('table[data-diff="0..1"] tr[data-diff-path="groups[0].count"]')`)
	if d := b.Text(`tr[data-diff-path="groups[0].count"]`); !strings.Contains(d, "3") || !strings.Contains(d, "2") {
		t.Errorf("count diff row %q", d)
	}
	b.WaitJS("the env diff", `!!document.querySelector('tr[data-diff-path="groups[0].tasks[0].config.env.GREETING"]')`)
	b.WaitText("#job-rollout", "2 of 2 replicas on version 1")
	b.Screenshot("job")
	b.TabThrough("job")

	// Placement failures with their explanation.
	b.Page(c.Addr+"/ui/jobs/huge?namespace=research", "job")
	b.WaitText("#job-failures", "nodes fit")
	b.WaitText("#job-failures", "solver")
	if txt := b.Text("#job-failures"); !regexp.MustCompile(`0/\d+ nodes fit`).MatchString(txt) || !strings.Contains(txt, "cpu") {
		t.Errorf("placement failure does not explain itself: %q", txt)
	}
	b.Screenshot("job-placement-failure")
	b.TabThrough("job (placement failure)")

	// Click through to an allocation and watch its log lines arrive.
	b.Page(c.Addr+"/ui/jobs/ticker", "job")
	b.Click(fmt.Sprintf(`a[href="/ui/allocations/%s"]`, ticker.ID))
	b.WaitPage("alloc")
	b.WaitText("#view h1", "ticker.main[0]")
	b.WaitText("#alloc-summary", ticker.ID)
	b.WaitText("#log-output", "tick 2")
	n0 := maxTick(b.Text("#log-output"))
	b.WaitText("#log-output", fmt.Sprintf("tick %d", n0+3))
	b.WaitJS("the allocation's usage chart", `!!document.querySelector('svg[data-chart=alloc-mem] path')`)
	b.Screenshot("allocation")
	b.TabThrough("allocation")

	// Nodes, and the GPU map of the fake node.
	b.Page(c.Addr+"/ui/nodes", "nodes")
	b.WaitJS("both nodes", `document.querySelectorAll('tr[data-node]').length === 2`)
	b.WaitText("tr[data-node=gpu-node-1]", "1 unhealthy")
	b.Screenshot("nodes")
	b.TabThrough("nodes")

	b.Click(`tr[data-node=gpu-node-1] a`)
	b.WaitPage("node")
	b.WaitJS("five GPUs drawn", `document.querySelectorAll('svg.gpu').length === 5`)
	checkGPUMap(t, b, fake.Node, gpuAllocs)
	b.WaitJS("GPU charts", `!!document.querySelector('svg[data-chart=node-gpu-util] path') && !!document.querySelector('svg[data-chart=node-gpu-mem] path')`)
	b.WaitText("#node-details", "zone")
	b.Screenshot("node-gpu-map")
	b.TabThrough("node (GPU map)")

	b.Page(c.Addr+"/ui/nodes/"+c.NodeID, "node")
	b.WaitJS("CPU and memory charts", `!!document.querySelector('svg[data-chart=node-cpu] path') && !!document.querySelector('svg[data-chart=node-mem] path')`)
	b.WaitText("#node-details", "docker")
	b.WaitText("#node-allocs", "ticker.main[0]")
	b.Screenshot("node")
	b.TabThrough("node")

	b.NoConsoleErrors("the pages")

	if os.Getenv("GANTRY_UPDATE_SCREENSHOTS") == "1" {
		dst := filepath.Join(repoRoot, "docs", "screenshots")
		os.MkdirAll(dst, 0o755)
		for _, name := range []string{"overview", "jobs", "job", "job-placement-failure", "allocation", "nodes", "node-gpu-map", "node"} {
			if err := copyFile(filepath.Join(dst, name+".png"), filepath.Join(b.shots, name+".png")); err != nil {
				t.Error(err)
			}
		}
	}
}

var tickRE = regexp.MustCompile(`tick (\d+)`)

func maxTick(s string) int {
	n := -1
	for _, m := range tickRE.FindAllStringSubmatch(s, -1) {
		if v, _ := strconv.Atoi(m[1]); v > n {
			n = v
		}
	}
	return n
}

// checkGPUMap checks that the map draws, on each GPU, exactly the pieces
// the allocations hold (MIG instances at their start and size, shares with
// their thousandths, whole GPUs), labelled with the job, plus the idle
// instance nobody holds, and marks the unhealthy GPU.
func checkGPUMap(t *testing.T, b *Browser, n api.Node, allocs []*api.Allocation) {
	t.Helper()
	want := map[string]int{}
	heldStarts := map[string]bool{}
	for _, a := range allocs {
		for _, r := range a.Resources {
			g := r.GPU
			if g == nil {
				t.Fatalf("allocation %s holds no GPU", a.Name())
			}
			var sel, gpu string
			switch {
			case g.MIG != nil:
				gpu = g.MIG.GPU
				sel = fmt.Sprintf(`a.piece[data-kind=mig][data-start="%d"][data-size="%d"][data-profile=%s][data-job=%s][data-alloc=%s]`, g.MIG.Start, g.MIG.Size, js(g.MIG.Profile), js(a.Job), js(a.ID))
				heldStarts[fmt.Sprintf("%s/%d", gpu, g.MIG.Start)] = true
				want[gpu]++
			case g.Share != nil:
				gpu = g.Share.GPU
				sel = fmt.Sprintf(`a.piece[data-kind=share][data-milli="%d"][data-memory="%d"][data-job=%s][data-alloc=%s]`, g.Share.Milli, g.Share.Memory, js(a.Job), js(a.ID))
				want[gpu] += 2 // a compute piece and a memory piece
			default:
				gpu = g.Devices[0]
				sel = fmt.Sprintf(`a.piece[data-kind=whole][data-job=%s][data-alloc=%s]`, js(a.Job), js(a.ID))
				want[gpu]++
			}
			if gpu == n.GPUs[3].UUID {
				t.Errorf("allocation %s was placed on the unhealthy GPU", a.Name())
			}
			b.WaitJS(a.Name()+" on the map", fmt.Sprintf(`(() => { const e = document.querySelector('svg.gpu[data-gpu-uuid=%s] %s'); return !!e && e.textContent.includes(%s); })()`, js(gpu), sel, js(a.Job)))
		}
	}
	for _, m := range n.GPUs[0].MIGInstances {
		if !heldStarts[fmt.Sprintf("%s/%d", n.GPUs[0].UUID, m.Start)] {
			b.WaitJS("the idle instance", fmt.Sprintf(`!!document.querySelector('svg.gpu[data-gpu-uuid=%s] g.piece[data-kind=free-instance][data-start="%d"][data-size="%d"]')`, js(n.GPUs[0].UUID), m.Start, m.Size))
			want[n.GPUs[0].UUID]++
		}
	}
	for _, g := range n.GPUs {
		if got := eval[int](b, fmt.Sprintf(`document.querySelectorAll('svg.gpu[data-gpu-uuid=%s] .piece').length`, js(g.UUID))); got != want[g.UUID] {
			t.Errorf("GPU %d: %d pieces drawn, want %d", g.Index, got, want[g.UUID])
		}
	}
	b.WaitJS("the unhealthy GPU marked", fmt.Sprintf(`(() => { const e = document.querySelector('svg.gpu[data-gpu-uuid=%s]'); return !!e && e.getAttribute('data-unhealthy') === 'true' && e.textContent.includes('UNHEALTHY'); })()`, js(n.GPUs[3].UUID)))
}

// TestWebUIWithACLs: with ACLs on, the UI shows nothing but the sign-in
// form until it is given a token; with one it shows the cluster, and Tab
// reaches the form's controls.
func TestWebUIWithACLs(t *testing.T) {
	b := StartBrowser(t)
	srv := StartServer(t, "--acl")
	r := srv.Gantry("acl", "bootstrap")
	secret := regexp.MustCompile(`Secret\s+(gnt_[0-9a-f]+)`).FindStringSubmatch(r.Stdout)
	if r.Code != 0 || secret == nil {
		t.Fatalf("acl bootstrap: %d %s%s", r.Code, r.Stdout, r.Stderr)
	}
	if r := srv.Gantry("--token", secret[1], "job", "run", "-d", WriteSpec(t, "secret.yaml", strings.Replace(tickerSpec, "name: ticker", "name: classified", 1))); r.Code != 0 && r.Code != 2 {
		t.Fatalf("job run: %d %s%s", r.Code, r.Stdout, r.Stderr)
	}
	b.Run("open the UI", chromeNavigate(srv.Addr+"/ui/jobs"))
	b.WaitJS("the sign-in form", `!document.getElementById('login').hidden`)
	b.WaitText("#login-why", "ACLs on")
	view := eval[string](b, `document.getElementById('view').innerHTML + document.title`)
	if strings.Contains(view, "classified") || strings.TrimSpace(strings.TrimSuffix(view, "Gantry")) != "" {
		t.Errorf("the UI shows data without a token: %q", view)
	}
	if body := httpGetStatus(t, srv.Addr+"/ui/fragments/jobs", ""); body != 401 {
		t.Errorf("a fragment without a token answered %d, want 401", body)
	}
	if p := b.Screenshot("login"); os.Getenv("GANTRY_UPDATE_SCREENSHOTS") == "1" {
		if err := copyFile(filepath.Join(repoRoot, "docs", "screenshots", "login.png"), p); err != nil {
			t.Error(err)
		}
	}
	b.TabThrough("sign-in")

	b.Run("sign in with a wrong token", chromeType("#login-token", "gnt_wrong"), chromeSubmit("#login-form"))
	b.WaitText("#login-why", "unknown")
	b.Run("sign in", chromeType("#login-token", secret[1]), chromeSubmit("#login-form"))
	b.WaitPage("jobs")
	b.WaitJS("the job, with the token", `!!document.querySelector('tr[data-job=classified]')`)
	if stored := eval[string](b, `sessionStorage.getItem('gantry-token') || ''`); stored != secret[1] {
		t.Errorf("token kept in session storage: %q", stored)
	}
	if cookies := eval[string](b, `document.cookie`); cookies != "" {
		t.Errorf("the UI set cookies: %q", cookies)
	}
	b.Click(`a[data-nav=overview]`)
	b.WaitPage("overview")
	b.WaitText("#ov-cards", "Jobs")
	b.Click("#sign-out")
	b.WaitJS("signed out", `!document.getElementById('login').hidden && document.getElementById('view').innerHTML === ''`)
}

// ServerProc is a `gantry server` process without agents.
type ServerProc struct {
	*Cluster
}

// StartServer starts `gantry server --insecure` on free ports with extra
// flags and waits until it leads.
func StartServer(t *testing.T, extra ...string) *ServerProc {
	t.Helper()
	port := freePort(t)
	c := &Cluster{t: t, DataDir: t.TempDir(), Addr: fmt.Sprintf("http://127.0.0.1:%d", port)}
	c.api = apiclient.New(apiclient.Options{Servers: []string{c.Addr}})
	c.args = append([]string{"server", "--insecure",
		"--data-dir", c.DataDir,
		"--http-addr", fmt.Sprintf("127.0.0.1:%d", port),
		"--etcd-client-url", fmt.Sprintf("http://127.0.0.1:%d", freePort(t)),
		"--etcd-peer-url", fmt.Sprintf("http://127.0.0.1:%d", freePort(t)),
	}, extra...)
	if err := c.launch(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Cleanup)
	c.Eventually(30*time.Second, "the server to lead", func() bool {
		var st api.StatusResponse
		return c.GetJSON("/v1/status", &st) == nil && st.Leader
	})
	return &ServerProc{c}
}

// httpGetStatus is the status code of a GET with an optional token.
func httpGetStatus(t *testing.T, url, token string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("X-Gantry-Token", token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
