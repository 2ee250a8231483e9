//go:build cgo && linux

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/gantryhq/gantry/internal/agent"
	"github.com/gantryhq/gantry/internal/driver"
	"github.com/gantryhq/gantry/internal/driver/null"
	"github.com/gantryhq/gantry/internal/gpu/nvml"
	"github.com/gantryhq/gantry/internal/gpu/nvml/nvmltest"
)

// promResult is the data of a Prometheus instant query.
type promResult struct {
	Status string `json:"status"`
	Error  string `json:"error"`
	Data   struct {
		ResultType string            `json:"resultType"`
		Result     []json.RawMessage `json:"result"`
	} `json:"data"`
}

func promQuery(t *testing.T, base, q string) (promResult, error) {
	t.Helper()
	var r promResult
	resp, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return r, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return r, err
	}
	if r.Status != "success" {
		return r, fmt.Errorf("query %q: %s", q, r.Error)
	}
	return r, nil
}

type ruleFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert string `json:"alert"`
			Expr  string `json:"expr"`
		} `json:"rules"`
	} `json:"groups"`
}

// threshold is the comparison an alert expression ends with: without it
// the expression is the signal the alert watches.
var threshold = regexp.MustCompile(`\s*(==|!=|>=|<=|>|<)\s*[0-9.e+-]+\s*$`)

// TestMonitoringKit validates deploy/prometheus with promtool, then runs
// Debian's Prometheus against a running Gantry (a dev cluster, plus an
// agent whose GPUs are go-nvml's mock DGX A100) with the kit's alert
// rules, and checks that every rule evaluates cleanly and watches series
// that exist, that the alerts for a node down, a GPU XID, a starved queue
// and a restart loop go off when those happen, and that every query of the
// Grafana dashboard returns data.
func TestMonitoringKit(t *testing.T) {
	promtool := requireUIDep(t, "prometheus", "promtool")
	prom := requireUIDep(t, "prometheus", "prometheus")
	rules := filepath.Join(repoRoot, "deploy", "prometheus", "alerts.yml")
	for _, args := range [][]string{
		{"check", "rules", rules},
		{"check", "config", filepath.Join(repoRoot, "deploy", "prometheus", "prometheus.yml")},
	} {
		if out, err := exec.Command(promtool, args...).CombinedOutput(); err != nil {
			t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}

	c := StartDev(t, "--sample-interval", "500ms")
	t.Cleanup(func() {
		for _, j := range []string{"crashy", "flaky", "ticker"} {
			c.Gantry("job", "stop", j)
		}
	})
	hostport := strings.TrimPrefix(c.Addr, "http://")
	// A simulated vCenter, so that the vsphere rules and panels have
	// series (TestVSphereAlerts makes those alerts go off).
	vsim, vca, vpw := startVCSim(t)
	if r := c.Gantry("vsphere", "add", "sim", "--url", vsim.URL, "--user", "gantry", "--password-file", vpw, "--vcenter-ca", vca); r.Code != 0 {
		t.Fatalf("vsphere add: %d %s%s", r.Code, r.Stdout, r.Stderr)
	}

	// An agent with eight mock A100s, the null driver and MIG managed.
	dgx := nvmltest.NewDGXA100()
	dgx.EnableMIG(1)
	ctx, cancel := context.WithCancel(context.Background())
	a, err := agent.New(agent.Config{
		Servers: []string{hostport}, DataDir: t.TempDir(), NodeName: "dgx-1", HTTPAddr: "127.0.0.1:0",
		Drivers: []driver.Driver{null.New()}, AuditInterval: -1,
		GPU:            agent.GPUConfig{Runtime: nvml.New(dgx.Server), ManageMIG: []string{"all"}},
		SampleInterval: 300 * time.Millisecond,
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	var dgxAddr string
	c.Eventually(30*time.Second, "the mock DGX to register", func() bool {
		var n struct {
			Status   string `json:"status"`
			HTTPAddr string `json:"http_addr"`
		}
		if c.GetJSON("/v1/nodes/"+a.NodeID(), &n) != nil || n.Status != "ready" {
			return false
		}
		dgxAddr = n.HTTPAddr
		return true
	})
	var devNode struct {
		HTTPAddr string `json:"http_addr"`
	}
	if err := c.GetJSON("/v1/nodes/"+c.NodeID, &devNode); err != nil {
		t.Fatal(err)
	}

	// Work for every panel and alert: GPU jobs on the DGX (whole, MIG,
	// share), a task that runs (its usage), a queue starved by work that
	// cannot be placed, a task that keeps crashing, one that fails and is
	// replaced, and a node that stops heartbeating.
	if r := c.Gantry("queue", "apply", WriteSpec(t, "queues.yaml", uiQueues)); r.Code != 0 {
		t.Fatalf("queue apply: %d %s%s", r.Code, r.Stdout, r.Stderr)
	}
	for name, spec := range map[string]string{
		"train":    gpuJob("train", "1", "{mig: 3g.20gb}"),
		"render":   gpuJob("render", "1", "{count: 1}"),
		"notebook": gpuJob("notebook", "1", "{share: {milli: 250, memory: 8192}}"),
		"huge":     hugeSpec,
		"ticker":   tickerSpec,
		"flaky": `name: flaky
type: service
groups:
  - name: g
    restart: {attempts: 0, interval: 30m, delay: 0s, mode: fail}
    tasks:
      - name: t
        driver: exec
        config: {command: /bin/sh, args: [-c, "sleep 1; exit 3"]}
        resources: {cpu: 50, memory: 16}
`,
		// crashy restarts once a second for the whole test: increase()
		// needs the counter to grow while Prometheus scrapes it, and a
		// burst of restarts that ends before Prometheus starts shows none.
		"crashy": `name: crashy
type: service
groups:
  - name: g
    restart: {attempts: 1000, interval: 30m, delay: 1s, mode: delay}
    tasks:
      - name: t
        driver: exec
        config: {command: /bin/sh, args: [-c, "echo crashing; exit 3"]}
        resources: {cpu: 50, memory: 16}
`,
	} {
		if r := c.Gantry("job", "run", "-d", WriteSpec(t, name+".yaml", spec)); r.Code != 0 && r.Code != 2 {
			t.Fatalf("job run %s: %d %s%s", name, r.Code, r.Stdout, r.Stderr)
		}
	}
	gone := StartFakeNode(t, c, gpuNode())
	gone.Stop() // its lease expires: the node goes down
	dgx.InjectXID(2, 79, -1)

	// Prometheus, scraping the server and both agents every second with
	// the kit's rules.
	dir := t.TempDir()
	promPort := freePort(t)
	cfg := fmt.Sprintf(`global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [%q]
scrape_configs:
  - job_name: gantry-servers
    static_configs: [{targets: [%q]}]
  - job_name: gantry-agents
    static_configs: [{targets: [%q, %q]}]
`, rules, hostport, devNode.HTTPAddr, dgxAddr)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	var plog strings.Builder
	p := exec.Command(prom, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", promPort), "--log.level=warn")
	p.Stdout, p.Stderr = &plog, &plog
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Process.Kill()
		p.Wait()
		if t.Failed() {
			t.Logf("prometheus log:\n%s", plog.String())
		}
	})
	base := fmt.Sprintf("http://127.0.0.1:%d", promPort)
	c.Eventually(60*time.Second, "prometheus to scrape the three targets", func() bool {
		r, err := promQuery(t, base, `sum(up{job=~"gantry-.*"})`)
		return err == nil && len(r.Data.Result) == 1 && strings.Contains(string(r.Data.Result[0]), `"3"`)
	})

	returnsData := func(what, q string) {
		t.Helper()
		var last error
		deadline := time.Now().Add(90 * time.Second)
		for time.Now().Before(deadline) {
			r, err := promQuery(t, base, q)
			if err == nil && len(r.Data.Result) > 0 {
				return
			}
			last = err
			time.Sleep(500 * time.Millisecond)
		}
		t.Errorf("%s: %q returned no data (%v)", what, q, last)
	}

	// Every alert rule watches series that exist.
	b, err := os.ReadFile(rules)
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	if err := yaml.Unmarshal(b, &rf); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			n++
			signal := threshold.ReplaceAllString(r.Expr, "")
			if signal == r.Expr {
				t.Errorf("alert %s: expression %q ends with no threshold to strip", r.Alert, r.Expr)
			}
			returnsData("alert "+r.Alert, signal)
		}
	}
	if n < 9 {
		t.Errorf("only %d alert rules", n)
	}
	// The conditions the test caused set their alerts off (pending or
	// firing, depending on their for:).
	for _, alert := range []string{"GantryNodeDown", "GantryGPUXIDError", "GantryGPUUnhealthy", "GantryQueueStarved", "GantryAllocationRestartLoop"} {
		returnsData("alert "+alert+" goes off", fmt.Sprintf(`ALERTS{alertname=%q}`, alert))
	}
	// Prometheus evaluates every rule without error.
	var rulesResp struct {
		Data struct {
			Groups []struct {
				Rules []struct {
					Name      string `json:"name"`
					Health    string `json:"health"`
					LastError string `json:"lastError"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	resp, err := http.Get(base + "/api/v1/rules")
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&rulesResp)
	resp.Body.Close()
	seen := 0
	for _, g := range rulesResp.Data.Groups {
		for _, r := range g.Rules {
			seen++
			if r.Health != "ok" {
				t.Errorf("rule %s: health %q: %s", r.Name, r.Health, r.LastError)
			}
		}
	}
	if seen != n {
		t.Errorf("prometheus loaded %d rules, the file has %d", seen, n)
	}

	// Every query of the Grafana dashboard returns data.
	db, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "grafana", "gantry-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(db, &dash); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	vars := strings.NewReplacer(`"$node"`, `".*"`, `"$hostname"`, `".*"`, "$__rate_interval", "1m")
	queries := 0
	for _, pn := range dash.Panels {
		if pn.Type == "row" {
			continue
		}
		if len(pn.Targets) == 0 {
			t.Errorf("panel %q has no query", pn.Title)
		}
		for _, tg := range pn.Targets {
			queries++
			if strings.Contains(vars.Replace(tg.Expr), "$") {
				t.Errorf("panel %q: unknown variable in %q", pn.Title, tg.Expr)
			}
			returnsData("panel "+pn.Title, vars.Replace(tg.Expr))
		}
	}
	t.Logf("%d alert rules and %d dashboard queries evaluated by %s", n, queries, prom)
}
