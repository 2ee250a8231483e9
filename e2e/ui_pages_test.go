package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
)

// A task that writes to both streams, one that writes nothing, and a batch
// job that finishes.
const (
	mixedSpec = `name: mixed
type: service
groups:
  - name: main
    tasks:
      - name: talk
        driver: exec
        config: {command: /bin/sh, args: [-c, "i=0; while true; do echo out $i; echo err $i >&2; i=$((i+1)); sleep 0.3; done"]}
        resources: {cpu: 50, memory: 16}
`
	quietSpec = `name: quiet
type: service
groups:
  - name: main
    tasks:
      - name: sleep
        driver: exec
        config: {command: /bin/sleep, args: ["100000"]}
        resources: {cpu: 50, memory: 16}
`
	finishSpec = `name: finish
type: batch
groups:
  - name: step
    count: 2
    tasks:
      - name: step
        driver: exec
        config: {command: /bin/sh, args: [-c, "echo done"]}
        resources: {cpu: 50, memory: 16}
`
)

// TestWebUIPages drives the UI's list pages in headless Chromium against
// `gantry dev --lb` with real jobs: allocations, evaluations, deployments
// (promote and revert from the page), services with load-balancer
// figures, events (live, filtered, resumable), queues, audit findings
// (scan now) and topology; plus the fixes of issue 15 that the UI shows:
// a batch job's progress (defect 6), logs of both streams and of a task
// that writes nothing (defect 10), grouped evaluations (defect 7), and
// pages readable without JavaScript. Every page is opened, its key content
// asserted, Tab reaches its controls, and no page logs a console error.
func TestWebUIPages(t *testing.T) {
	b := StartBrowser(t)
	c := StartDev(t, "--sample-interval", "300ms", "--lb", "--lb-access-log=false")
	t.Logf("screenshots go to %s", b.shots)
	t.Cleanup(func() {
		for _, j := range []string{"mixed", "quiet", "finish", "late", "web"} {
			c.Gantry("job", "stop", j)
		}
	})
	run := func(name, spec string, want ...int) {
		t.Helper()
		r := c.Gantry("job", "run", "-d", WriteSpec(t, name+".yaml", spec))
		for _, w := range append(want, 0) {
			if r.Code == w {
				return
			}
		}
		t.Fatalf("job run %s: %d %s%s", name, r.Code, r.Stdout, r.Stderr)
	}
	if r := c.Gantry("queue", "apply", WriteSpec(t, "queues.yaml", uiQueues)); r.Code != 0 {
		t.Fatalf("queue apply: %d %s%s", r.Code, r.Stdout, r.Stderr)
	}
	lbPort := freePort(t)
	webSrc, err := os.ReadFile(specFile("web-lb.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	web := strings.Replace(string(webSrc), "port: 8000", fmt.Sprintf("port: %d", lbPort), 1)
	if !strings.Contains(web, fmt.Sprintf("port: %d", lbPort)) || !strings.Contains(web, "canary: 0 ") {
		t.Fatal("examples/web-lb.yaml changed: this test sets its lb port and canary count")
	}
	if r := c.Gantry("job", "run", WriteSpec(t, "web.yaml", web)); r.Code != 0 {
		t.Fatalf("job run web: %d %s%s", r.Code, r.Stdout, r.Stderr)
	}
	run("mixed", mixedSpec)
	run("quiet", quietSpec)
	run("finish", finishSpec)
	run("huge", hugeSpec, 2)
	// Version 1 of web starts one canary and waits for promotion.
	web1 := strings.Replace(strings.Replace(web, "canary: 0 ", "canary: 1 ", 1), "DEMO_VERSION: v1", "DEMO_VERSION: v2", 1)
	run("web1", web1)

	running := func(job string) *api.Allocation {
		var out *api.Allocation
		c.Eventually(60*time.Second, job+" running", func() bool {
			for _, a := range c.Allocs(job) {
				if a.ClientStatus == api.AllocRunning {
					out = a
				}
			}
			return out != nil
		})
		return out
	}
	mixed, quiet := running("mixed"), running("quiet")
	c.Eventually(60*time.Second, "the batch job finished", func() bool {
		n := 0
		for _, a := range c.Allocs("finish") {
			if a.ClientStatus == api.AllocComplete {
				n++
			}
		}
		return n == 2
	})
	var dep *api.Deployment
	c.Eventually(120*time.Second, "web version 1's canary waiting for promotion", func() bool {
		var d api.Deployment
		if c.GetJSON("/v1/jobs/web/deployment", &d) != nil || d.JobVersion != 1 || !d.RequiresPromotion() {
			return false
		}
		dep = &d
		return d.Groups["web"].HealthyCanaries == 1
	})
	// Each part runs as a subtest, with the browser and the cluster
	// reporting to it.
	sub := func(name string, f func(t *testing.T)) {
		t.Run(name, func(t *testing.T) {
			bt, ct := b.t, c.t
			b.t, c.t = t, t
			defer func() { b.t, c.t = bt, ct }()
			f(t)
		})
	}
	lbURL := fmt.Sprintf("http://127.0.0.1:%d/", lbPort)
	c.Eventually(60*time.Second, "the load balancer answering", func() bool {
		resp, err := http.Get(lbURL)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})

	sub("allocations filtered by job, node and status", func(t *testing.T) {
		b.Page(c.Addr+"/ui/allocations", "allocations")
		b.WaitJS("mixed, quiet and finish listed", `['mixed.main[0]','quiet.main[0]','finish.step[0]'].every(n => [...document.querySelectorAll('#allocs-list tr[data-alloc]')].some(r => r.innerText.includes(n)))`)
		b.Run("pick job mixed", chromeSelect("#f-job", "mixed"))
		b.WaitJS("only mixed", `(() => { const rows = [...document.querySelectorAll('#allocs-list tr[data-alloc]')]; return location.search.includes('job=mixed') && rows.length > 0 && rows.every(r => r.innerText.includes('mixed.main')); })()`)
		b.Page(c.Addr+"/ui/allocations?status=complete&node="+c.NodeID, "allocations")
		b.WaitJS("the two complete batch replicas", `document.querySelectorAll('#allocs-list tr[data-alloc-status=complete]').length >= 2 && document.querySelectorAll('#allocs-list tr[data-alloc-status=running]').length === 0`)
		b.Screenshot("allocations")
		b.TabThrough("allocations")
		b.NoConsoleErrors("allocations")
	})

	sub("evaluations grouped and filtered, with reasons", func(t *testing.T) {
		b.Page(c.Addr+"/ui/evaluations", "evaluations")
		b.WaitJS("a group per job and trigger", `!!document.querySelector('tr[data-eval-group="mixed/job-register/complete"]') && !!document.querySelector('tr[data-eval-group^="huge/"]')`)
		b.WaitText(`tr[data-eval-group^="huge/"]`, "nodes fit")
		b.Run("show each evaluation of huge", chromeSelect("#f-job", "huge"))
		b.WaitJS("filtered to huge", `location.search.includes('job=huge') && [...document.querySelectorAll('tr[data-eval-group]')].every(r => r.dataset.evalGroup.startsWith('huge/'))`)
		b.Run("each evaluation", chromeSelect("#f-group", "each"))
		b.WaitJS("one row per evaluation", `document.querySelectorAll('#evals-list tr[data-eval]').length >= 1 && !document.querySelector('tr[data-eval-group]')`)
		b.Page(c.Addr+"/ui/evaluations?trigger=job-register", "evaluations")
		b.WaitJS("only job-register", `(() => { const rows = [...document.querySelectorAll('tr[data-eval-group]')]; return rows.length >= 4 && rows.every(r => r.dataset.evalGroup.includes('/job-register/')); })()`)
		b.Screenshot("evaluations")
		b.TabThrough("evaluations")
		b.NoConsoleErrors("evaluations")
	})

	sub("deployments: promote and revert from the page", func(t *testing.T) {
		b.Page(c.Addr+"/ui/deployments", "deployments")
		sel := fmt.Sprintf(`article[data-deployment=%s]`, js(dep.ID))
		b.WaitText(sel, "waiting for promotion")
		b.WaitText(sel+` tr[data-deployment-group=web]`, "1/1 healthy")
		b.Screenshot("deployments")
		b.TabThrough("deployments")
		b.Click(sel + ` form[data-action=promote] button`)
		b.WaitText(sel+` form[data-action=promote] button`, "Confirm")
		b.Click(sel + ` form[data-action=promote] button`)
		b.TimeOut = 120 * time.Second
		b.WaitJS("the deployment successful, live", fmt.Sprintf(`(() => { const a = document.querySelector(%s); return !!a && a.dataset.deploymentStatus === 'successful'; })()`, js(sel)))
		b.TimeOut = 60 * time.Second
		b.WaitJS("a revert button to version 0", fmt.Sprintf(`!!document.querySelector(%s)`, js(sel+` form[data-action=revert][data-version="0"]`)))
		b.Click(sel + ` form[data-action=revert] button`)
		b.Click(sel + ` form[data-action=revert] button`)
		c.Eventually(60*time.Second, "web registered again as version 2", func() bool {
			var j api.JobSummary
			return c.GetJSON("/v1/jobs/web", &j) == nil && j.Job != nil && j.Job.Version == 2
		})
		b.WaitJS("version 2's deployment shown", `!!document.querySelector('article[data-deployment-job=web] h2') && [...document.querySelectorAll('article[data-deployment-job=web] h2')].some(h => h.innerText.includes('version 2'))`)
		b.NoConsoleErrors("deployments")
	})

	sub("services with endpoints and load-balancer figures", func(t *testing.T) {
		// Requests through the load balancer, to the endpoints of now.
		for i := 0; i < 12; i++ {
			if resp, err := http.Get(lbURL); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
		b.Page(c.Addr+"/ui/services", "services")
		b.WaitJS("web's healthy endpoints", `+(document.querySelector('article[data-service=web] [data-healthy-endpoints]')||{dataset:{}}).dataset.healthyEndpoints >= 3`)
		b.WaitJS("requests counted by the load balancer", `+(document.querySelector('article[data-service=web] [data-lb-requests]')||{dataset:{}}).dataset.lbRequests >= 12`)
		b.WaitText("article[data-service=web]", fmt.Sprintf("port %d", lbPort))
		b.Screenshot("services")
		b.TabThrough("services")
		b.NoConsoleErrors("services")
	})

	sub("events: filtered, live and resumable", func(t *testing.T) {
		b.Page(c.Addr+"/ui/events?topic=job&key=late", "events")
		b.WaitText("#events-list", "No events yet")
		if r := c.Gantry("job", "run", "-d", WriteSpec(t, "late.yaml", strings.Replace(quietSpec, "name: quiet", "name: late", 1))); r.Code != 0 {
			t.Fatalf("job run late: %d %s%s", r.Code, r.Stdout, r.Stderr)
		}
		b.WaitJS("late's registration, live", `[...document.querySelectorAll('#events-list tr[data-event-index]')].some(r => r.innerText.includes('JobRegistered') && r.innerText.includes('late'))`)
		if n := eval[int](b, `[...document.querySelectorAll('#events-list tr[data-event-index]')].filter(r => !r.innerText.includes('late') || !r.innerText.includes('job')).length`); n != 0 {
			t.Errorf("%d events of other topics or keys listed", n)
		}
		b.WaitJS("a resume link", `!!document.querySelector('a[data-resume]')`)
		b.Click("a[data-resume]")
		b.WaitJS("resumed after the last event", `location.search.includes('index=') && document.querySelectorAll('#events-list tr[data-event-index]').length === 0`)
		b.Page(c.Addr+"/ui/events?topic=deployment&topic=allocation", "events")
		b.WaitJS("deployment and allocation events", `document.querySelectorAll('#events-list tr[data-event-index]').length >= 5`)
		b.Screenshot("events")
		b.TabThrough("events")
		b.NoConsoleErrors("events")
	})

	sub("queues", func(t *testing.T) {
		b.Page(c.Addr+"/ui/queues", "queues")
		b.WaitJS("queues ml and research", `!!document.querySelector('#queues-list tr[data-queue=ml]') && !!document.querySelector('#queues-list tr[data-queue=research]')`)
		b.WaitText("#queues-waiting tr[data-waiting=huge]", "research")
		b.Screenshot("queues")
		b.TabThrough("queues")
		b.NoConsoleErrors("queues")
	})

	sub("audit findings and scan now", func(t *testing.T) {
		c.Eventually(60*time.Second, "the node's first audit", func() bool {
			return c.GetJSON("/v1/audit?node="+c.NodeID, &struct{}{}) == nil
		})
		b.Page(c.Addr+"/ui/audit", "audit")
		node := eval[string](b, `(document.querySelector('article[data-audit-node]')||{dataset:{}}).dataset.auditNode || ''`)
		if node == "" {
			t.Fatal("no node's audit shown")
		}
		before := eval[string](b, `document.querySelector('[data-audit-time]').dataset.auditTime`)
		time.Sleep(1100 * time.Millisecond) // the report's time has seconds
		b.Click("#audit-scan")
		b.WaitText("form[data-action=scan] .action-state", "audited")
		b.WaitJS("a newer audit shown", fmt.Sprintf(`document.querySelector('[data-audit-time]').dataset.auditTime !== %s`, js(before)))
		b.Screenshot("audit")
		b.TabThrough("audit")
		b.NoConsoleErrors("audit")
		r := c.Gantry("audit", "--now")
		if (r.Code != 0 && r.Code != 1) || !strings.Contains(r.Stdout, node) || strings.Contains(r.Stderr, "could be audited") {
			t.Errorf("gantry audit --now: %d %s%s", r.Code, r.Stdout, r.Stderr)
		}
	})

	sub("topology", func(t *testing.T) {
		b.Page(c.Addr+"/ui/topology", "topology")
		b.WaitJS("the node's box with mixed's share", fmt.Sprintf(`!!document.querySelector('svg.topo a.piece[data-alloc=%s]')`, js(mixed.ID)))
		b.WaitJS("a legend entry per job", `!!document.querySelector('[data-legend-job=mixed]') && !!document.querySelector('[data-legend-job=quiet]')`)
		b.Screenshot("topology")
		b.TabThrough("topology")
		b.NoConsoleErrors("topology")
	})

	// Issue 15, defect 10: the log pane shows stdout and stderr by
	// default, and a stream can be picked.
	sub("logs show both streams", func(t *testing.T) {
		b.Page(c.Addr+"/ui/allocations/"+mixed.ID, "alloc")
		b.WaitText("#log-output", "out 3")
		b.WaitText("#log-output", "err 3")
		b.WaitJS("stderr marked", `!!document.querySelector('#log-output .stderr')`)
		b.Run("pick stderr", chromeSelect("#log-stream", "stderr"))
		b.WaitJS("only stderr", `(() => { const t = document.getElementById('log-output').innerText; return t.includes('err ') && !t.includes('out '); })()`)
		b.Screenshot("allocation-logs")
		b.NoConsoleErrors("allocation logs")
	})

	// Issue 15, defect 10: a task that writes nothing is followed, and
	// the pane says so instead of "loading…" forever.
	sub("logs of a silent task", func(t *testing.T) {
		b.Page(c.Addr+"/ui/allocations/"+quiet.ID, "alloc")
		b.WaitText("#log-state", "no output yet")
		b.NoConsoleErrors("silent task")
	})

	// Issue 15, defect 6: a finished batch job shows its progress, not a
	// rollout "in progress".
	sub("a finished batch job has no rollout", func(t *testing.T) {
		b.Page(c.Addr+"/ui/jobs/finish", "job")
		b.WaitText("#job-progress", "2 of 2 replicas complete")
		if txt := eval[string](b, `document.getElementById('view').innerText`); strings.Contains(txt, "Rollout") || strings.Contains(txt, "in progress") {
			t.Errorf("the batch job's page shows a rollout:\n%s", txt)
		}
		b.NoConsoleErrors("batch job")
	})

	sub("relative times tick", func(t *testing.T) {
		b.Page(c.Addr+"/ui/allocations", "allocations")
		b.Pause() // no refresh: the text must change by itself
		defer b.Resume()
		first := eval[string](b, `document.querySelector('#allocs-list time[data-ago]').textContent`)
		b.WaitJS("the time ticked", fmt.Sprintf(`document.querySelector('#allocs-list time[data-ago]').textContent !== %s`, js(first)))
	})

	sub("pages readable without JavaScript", func(t *testing.T) {
		for page, want := range map[string]string{
			"/ui/allocations?job=mixed": mixed.ID,
			"/ui/evaluations":           `data-eval-group="huge/`,
			"/ui/deployments":           dep.ID,
			"/ui/services":              `data-service="web"`,
			"/ui/topology":              `data-topo-node=`,
			"/ui/queues":                `data-queue="ml"`,
			"/ui/audit":                 `data-audit-node=`,
			"/ui/events?topic=job":      `JobRegistered`,
			"/ui/jobs/finish":           `2 of 2 replicas complete`,
		} {
			resp, err := http.Get(c.Addr + page)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !strings.Contains(string(body), want) {
				t.Errorf("GET %s without a script: %d, lacks %q", page, resp.StatusCode, want)
			}
		}
	})
	b.NoConsoleErrors("the pages")

	if os.Getenv("GANTRY_UPDATE_SCREENSHOTS") == "1" {
		dst := filepath.Join(repoRoot, "docs", "screenshots")
		for _, name := range []string{"allocations", "evaluations", "deployments", "services", "events", "queues", "audit", "topology"} {
			if err := copyFile(filepath.Join(dst, name+".png"), filepath.Join(b.shots, name+".png")); err != nil {
				t.Error(err)
			}
		}
	}
}
