package suite

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/bench/report"
	vegeta "github.com/tsenart/vegeta/v12/lib"
)

func proxy() Suite {
	return Suite{
		Name:   "proxy",
		Short:  "Gantry's load balancer against nginx in front of the same three demo replicas, alternating rounds",
		Target: func(*Env) string { return "gantry dev --lb on loopback (its own: the proxies must share the machine)" },
		Run:    runProxy,
	}
}

// proxyWorkers is the attack's concurrency: wrk's -c64 of the earlier
// script, so the figures stay comparable.
const proxyWorkers = 64

// latencyKeep bounds the latencies one round records for the report's
// distribution (every k-th request).
const latencyKeep = 2000

func runProxy(ctx context.Context, env *Env, rec *Recorder) error {
	ngx, err := exec.LookPath("nginx")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/nginx"); serr != nil {
			return skipf("nginx is not installed (apt-get install nginx): it is the reference the load balancer is measured against")
		}
		ngx = "/usr/sbin/nginx"
	}
	if err := exec.CommandContext(ctx, "docker", "image", "inspect", DemoImage).Run(); err != nil {
		return skipf("the demo image %s is missing: build it with make demo-image", DemoImage)
	}
	rounds := pick(env.Params.Rounds, 2, 5, env.Quick)
	dur := env.Params.Duration
	if dur == 0 {
		dur = 30 * time.Second
		if env.Quick {
			dur = 5 * time.Second
		}
	}
	penv := *env
	penv.Address = ""
	c, err := devCluster(ctx, &penv, "proxy", "--lb", "--lb-access-log=false")
	if err != nil {
		return err
	}
	defer c.stop()
	ports, err := env.ports(2, 40)
	if err != nil {
		return err
	}
	lbPort, ngxPort := ports[0], ports[1]
	spec := fmt.Sprintf(`name: bench-proxy-%[3]s
type: service
groups:
  - name: web
    count: 3
    services: [{name: bench-proxy-%[3]s, port: http, lb: {port: %[1]d, policy: round_robin}}]
    tasks:
      - name: server
        driver: docker
        config: {image: %[2]s, ports: [{name: http, to: 8080}]}
        resources: {cpu: 100, memory: 64}
        checks: [{type: http, port: http, path: /healthz, interval: 1s, timeout: 1s}]
`, lbPort, DemoImage, env.RunID)
	if err := c.submit(ctx, "bench-proxy-"+env.RunID, spec); err != nil {
		return err
	}
	var svc api.ServiceInfo
	deadline := time.Now().Add(3 * time.Minute)
	for len(svc.Endpoints) < 3 {
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of 3 demo replicas healthy after 3m", len(svc.Endpoints))
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
		_ = c.get(ctx, "/v1/services/bench-proxy-"+env.RunID, &svc)
	}
	var backends []string
	for _, e := range svc.Endpoints {
		backends = append(backends, fmt.Sprintf("        server %s:%d;", e.Address, e.Port))
	}
	stopNginx, err := startNginx(ctx, env, ngx, ngxPort, backends)
	if err != nil {
		return err
	}
	defer stopNginx()
	targets := map[string]string{
		"gantry": fmt.Sprintf("http://127.0.0.1:%d/", lbPort),
		"nginx":  fmt.Sprintf("http://127.0.0.1:%d/", ngxPort),
	}
	for name, url := range targets {
		if err := waitAnswers(ctx, url, 30*time.Second); err != nil {
			return fmt.Errorf("%s at %s: %w", name, url, err)
		}
		env.logf("    warming up %s for 2 s", name)
		if _, err := attack(ctx, url, 2*time.Second); err != nil {
			return err
		}
	}
	thr := map[string][]float64{}
	p99 := map[string][]float64{}
	lat := map[string][]float64{}
	latR := map[string][]float64{} // each round's median latency
	for r := range rounds {
		for _, name := range []string{"nginx", "gantry"} {
			m, err := attack(ctx, targets[name], dur)
			if err != nil {
				return err
			}
			thr[name] = append(thr[name], m.throughput)
			p99[name] = append(p99[name], m.p99)
			lat[name] = append(lat[name], m.latencies...)
			latR[name] = append(latR[name], m.p50)
			env.logf("    round %d/%d %-6s %8.0f req/s  p99 %6.2f ms  success %.1f%%", r+1, rounds, name, m.throughput, m.p99, 100*m.success)
		}
	}
	for _, name := range []string{"gantry", "nginx"} {
		t := report.NewFigure("proxy/"+name+"/throughput", "req/s", report.HigherIsBetter, thr[name])
		p := report.NewFigure("proxy/"+name+"/p99", "ms", report.LowerIsBetter, p99[name])
		l := report.NewFigure("proxy/"+name+"/latency", "ms", report.LowerIsBetter, lat[name])
		l.Chart = &report.Chart{ID: "proxy/latency", Kind: "cdf", Title: "request latency through the proxy (sampled)"}
		l.Rounds = latR[name]
		if name == "gantry" {
			t.Baseline, p.Baseline, l.Baseline = "proxy/nginx/throughput", "proxy/nginx/p99", "proxy/nginx/latency"
		}
		rec.Add(t)
		rec.Add(p)
		rec.Add(l)
	}
	// Per round, Gantry against nginx measured just before it: the
	// machine's noise moves both, the ratio is what a change of Gantry
	// moves.
	var thrRatio, p99Ratio []float64
	for i := range thr["gantry"] {
		thrRatio = append(thrRatio, thr["gantry"][i]/thr["nginx"][i])
		p99Ratio = append(p99Ratio, p99["gantry"][i]/p99["nginx"][i])
	}
	rec.Add(report.NewFigure("proxy/gantry/throughput-vs-nginx", "×", report.HigherIsBetter, thrRatio))
	rec.Add(report.NewFigure("proxy/gantry/p99-vs-nginx", "×", report.LowerIsBetter, p99Ratio))
	rec.Note("%d rounds of %s each, alternating nginx and gantry, %d concurrent keep-alive workers (vegeta), nginx with worker_processes %d, upstream keepalive 64, access log off; throughput and p99 are one sample per round", rounds, dur, proxyWorkers, runtime.NumCPU())
	return nil
}

type attackResult struct {
	throughput, p50, p99, success float64
	latencies                     []float64 // ms, a sample of the requests
}

// attack sends GETs to url from proxyWorkers workers as fast as they are
// answered for d.
func attack(ctx context.Context, url string, d time.Duration) (*attackResult, error) {
	a := vegeta.NewAttacker(vegeta.Workers(proxyWorkers), vegeta.MaxWorkers(proxyWorkers), vegeta.Connections(proxyWorkers), vegeta.KeepAlive(true), vegeta.Timeout(10*time.Second))
	tr := vegeta.NewStaticTargeter(vegeta.Target{Method: "GET", URL: url})
	stop := context.AfterFunc(ctx, func() { a.Stop() })
	defer stop()
	var m vegeta.Metrics
	var all []float64
	for res := range a.Attack(tr, vegeta.Rate{Freq: 0}, d, "bench") {
		m.Add(res)
		all = append(all, float64(res.Latency.Microseconds())/1000)
	}
	m.Close()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if m.Requests == 0 {
		return nil, fmt.Errorf("no request to %s completed", url)
	}
	if m.Success < 0.99 {
		return nil, fmt.Errorf("only %.1f%% of the requests to %s succeeded (%s)", 100*m.Success, url, strings.Join(m.Errors, "; "))
	}
	step := max(1, len(all)/latencyKeep)
	var kept []float64
	for i := 0; i < len(all); i += step {
		kept = append(kept, all[i])
	}
	return &attackResult{throughput: m.Throughput, p50: float64(m.Latencies.P50.Microseconds()) / 1000, p99: float64(m.Latencies.P99.Microseconds()) / 1000, success: m.Success, latencies: kept}, nil
}

func waitAnswers(ctx context.Context, url string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for !answersAt(url) {
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer after %s", limit)
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

func answersAt(url string) bool {
	resp, err := httpClient.Get(url)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == 200
}

// startNginx runs nginx in the foreground as a reverse proxy to backends
// on port, with its files under the scratch dir.
func startNginx(ctx context.Context, env *Env, bin string, port int, backends []string) (func(), error) {
	dir := filepath.Join(env.Dir, "nginx")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	conf := fmt.Sprintf(`worker_processes %d;
daemon off;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path %[2]s/body;
    proxy_temp_path %[2]s/proxy;
    fastcgi_temp_path %[2]s/fastcgi;
    uwsgi_temp_path %[2]s/uwsgi;
    scgi_temp_path %[2]s/scgi;
    upstream demo {
%[3]s
        keepalive 64;
    }
    server {
        listen 127.0.0.1:%[4]d;
        location / {
            proxy_pass http://demo;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
`, runtime.NumCPU(), dir, strings.Join(backends, "\n"), port)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-c", path, "-e", filepath.Join(dir, "error.log"))
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start nginx: %w", err)
	}
	return func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}, nil
}
