package suite

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/bench/report"
	"github.com/gantryhq/gantry/internal/bench/stats"
)

// DemoImage is the workload of the startup and proxy suites
// (examples/demo-app, built by `make demo-image`).
const DemoImage = "gantry-demo:latest"

func startup() Suite {
	return Suite{
		Name:   "startup",
		Short:  "submit → running and submit → healthy per driver, beside starting the same workload directly",
		Target: clusterTarget,
		Run:    runStartup,
	}
}

func clusterTarget(env *Env) string {
	if env.Address != "" {
		return env.Address
	}
	return "gantry dev on loopback"
}

// workload is one driver's demo workload: the task for Gantry and, where
// one exists, the same program started directly.
type workload struct {
	driver string
	task   string // the task's YAML, indented for a group's tasks list
	// direct starts n copies outside Gantry and returns their health
	// URLs and a stop function; nil: no direct baseline.
	direct func(ctx context.Context, n int) (urls []string, stop func(), err error)
	limit  time.Duration // how long one round may take
}

func runStartup(ctx context.Context, env *Env, rec *Recorder) error {
	c, err := devCluster(ctx, env, "startup")
	if err != nil {
		return err
	}
	defer c.stop()
	nodes, err := c.readyNodes(ctx)
	if err != nil {
		return err
	}
	if len(nodes) == 0 {
		return fmt.Errorf("the cluster at %s has no ready node", c.addr)
	}
	replicas := pick(env.Params.Replicas, 3, 10, env.Quick)
	rounds := pick(env.Params.Rounds, 2, 5, env.Quick)
	var skipped, failed []string
	measured := 0
	drivers := env.Params.Drivers
	if len(drivers) == 0 {
		drivers = []string{"docker", "exec", "wasm", "qemu"}
	}
	for _, name := range drivers {
		if why := driverMissing(nodes, name); why != "" {
			rec.Note("%s: %s", name, why)
			skipped = append(skipped, name+": "+why)
			continue
		}
		w, why := demoWorkload(ctx, env, name)
		if why != "" {
			rec.Note("%s: %s", name, why)
			skipped = append(skipped, name+": "+why)
			continue
		}
		var running, healthy, direct []float64
		// One value per round (the median of its replicas) for each
		// figure, and the round's ratio of gantry to the direct start.
		var runR, okR, directR, ratioR []float64
		var roundErr error
		for r := 0; r < rounds && roundErr == nil; r++ {
			if w.direct != nil {
				d, err := directRound(ctx, w, replicas)
				if err != nil {
					roundErr = fmt.Errorf("%s started directly, round %d: %w", name, r+1, err)
					break
				}
				direct = append(direct, d...)
				directR = append(directR, median(d))
			}
			run, ok, err := gantryRound(ctx, c, nodes, w, replicas, fmt.Sprintf("bench-startup-%s-%d-%s", name, r+1, env.RunID))
			if err != nil {
				roundErr = fmt.Errorf("%s through gantry, round %d: %w", name, r+1, err)
				break
			}
			running, healthy = append(running, run...), append(healthy, ok...)
			runR, okR = append(runR, median(run)), append(okR, median(ok))
			if w.direct != nil {
				ratioR = append(ratioR, median(ok)/directR[len(directR)-1])
			}
			env.logf("    %s round %d/%d: %d replicas healthy", name, r+1, rounds, replicas)
		}
		if roundErr != nil {
			// The other drivers are still measured; the suite fails at
			// the end, naming this one.
			if ctx.Err() != nil {
				return roundErr
			}
			env.logf("    %s: %v", name, roundErr)
			failed = append(failed, roundErr.Error())
			continue
		}
		run := report.NewFigure("startup/"+name+"/running", "ms", report.LowerIsBetter, running)
		run.Chart = &report.Chart{ID: "startup/running", Kind: "cdf", Title: "submit → running (each replica)"}
		run.Rounds = runR
		rec.Add(run)
		ok := report.NewFigure("startup/"+name+"/healthy", "ms", report.LowerIsBetter, healthy)
		ok.Chart = &report.Chart{ID: "startup/healthy", Kind: "cdf", Title: "submit → healthy (each replica), beside starting it directly"}
		ok.Rounds = okR
		if w.direct != nil {
			ok.Baseline = "startup/" + name + "-direct/healthy"
		}
		rec.Add(ok)
		if w.direct != nil {
			d := report.NewFigure("startup/"+name+"-direct/healthy", "ms", report.LowerIsBetter, direct)
			d.Chart = ok.Chart
			d.Rounds = directR
			rec.Add(d)
			// The machine's own noise moves both starts; their ratio
			// within a round is what a change of Gantry moves.
			ratio := report.NewFigure("startup/"+name+"/healthy-vs-direct", "×", report.LowerIsBetter, ratioR)
			ratio.Rounds = ratioR
			rec.Add(ratio)
		} else {
			rec.Note("%s: no direct baseline (the driver's runtime has no stand-alone start to compare with here)", name)
		}
		measured++
	}
	if len(failed) > 0 {
		return fmt.Errorf("%s", strings.Join(failed, "; "))
	}
	if measured == 0 {
		return skipf("no driver could be measured: %s", strings.Join(skipped, "; "))
	}
	rec.Note("%d replicas per round, %d rounds, alternating direct and gantry; latencies from the submit (or the start of the direct launch) to each replica", replicas, rounds)
	return nil
}

func driverMissing(nodes []*api.Node, name string) string {
	reason := "no node has the driver"
	for _, n := range nodes {
		d, ok := n.Drivers[name]
		if ok && d.Detected && d.Healthy {
			return ""
		}
		if ok && d.Reason != "" {
			reason = "not healthy on any node: " + d.Reason
		}
	}
	return reason
}

// demoWorkload returns the demo app as a task for driver, or why it
// cannot be had here.
func demoWorkload(ctx context.Context, env *Env, driver string) (*workload, string) {
	check := "        checks: [{type: http, port: http, path: /healthz, interval: 250ms, timeout: 250ms, failures: 600}]\n"
	switch driver {
	case "docker":
		if err := exec.CommandContext(ctx, "docker", "image", "inspect", DemoImage).Run(); err != nil {
			return nil, fmt.Sprintf("the demo image %s is missing: build it with make demo-image", DemoImage)
		}
		return &workload{driver: driver, limit: 3 * time.Minute,
			task:   "      - name: server\n        driver: docker\n        config: {image: " + DemoImage + ", ports: [{name: http, to: 8080}]}\n        resources: {cpu: 10, memory: 32}\n" + check,
			direct: dockerDirect}, ""
	case "exec":
		bin, err := demoBinary(ctx, env)
		if err != nil {
			return nil, err.Error()
		}
		return &workload{driver: driver, limit: 3 * time.Minute,
			task:   "      - name: server\n        driver: exec\n        config: {command: " + bin + ", ports: [{name: http}]}\n        resources: {cpu: 10, memory: 32}\n" + check,
			direct: processDirect(bin)}, ""
	case "wasm":
		mod := env.Params.WasmModule
		if mod == "" {
			mod = "/var/tmp/gantry-demo/demo-app.wasm"
		}
		if _, err := os.Stat(mod); err != nil {
			return nil, fmt.Sprintf("the demo module %s is missing: build it with make demo-image (or give --wasm-module)", mod)
		}
		return &workload{driver: driver, limit: 5 * time.Minute,
			task: "      - name: server\n        driver: wasm\n        config: {module: " + mod + ", ports: [{name: http}]}\n        resources: {cpu: 100, memory: 64}\n" + check}, ""
	case "qemu":
		dir := env.Params.VMGuest
		if dir == "" {
			return nil, "no test guest given: build one with scripts/build-vm-guest.sh and pass its folder as --vm-guest"
		}
		for _, f := range []string{"disk.qcow2", "vmlinuz", "initrd.img"} {
			if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
				return nil, fmt.Sprintf("--vm-guest %s lacks %s (scripts/build-vm-guest.sh makes it)", dir, f)
			}
		}
		return &workload{driver: driver, limit: 10 * time.Minute,
			task: fmt.Sprintf("      - name: server\n        driver: qemu\n        config: {image: %s, kernel: %s, initrd: %s, append: \"console=ttyS0 quiet panic=-1\", accelerator: auto, ports: [{name: http, to: 8080}]}\n        resources: {cpu: 100, memory: 256}\n",
				filepath.Join(dir, "disk.qcow2"), filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initrd.img")) + check}, ""
	}
	return nil, "unknown driver"
}

// demoBinary copies the demo app's static binary out of the demo image,
// so that the exec driver runs the very program the containers run.
func demoBinary(ctx context.Context, env *Env) (string, error) {
	path := filepath.Join(env.Dir, "demo-app")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	out, err := exec.CommandContext(ctx, "docker", "create", DemoImage).Output()
	if err != nil {
		return "", fmt.Errorf("the demo binary comes from the image %s, which is missing: build it with make demo-image", DemoImage)
	}
	id := strings.TrimSpace(string(out))
	defer exec.Command("docker", "rm", "-f", id).Run()
	if out, err := exec.CommandContext(ctx, "docker", "cp", id+":/demo-app", path).CombinedOutput(); err != nil {
		return "", fmt.Errorf("copy the demo binary out of %s: %s", DemoImage, strings.TrimSpace(string(out)))
	}
	// The exec driver runs tasks as the agent's user; the binary must be
	// readable and executable by it.
	if err := os.Chmod(path, 0o755); err != nil {
		return "", err
	}
	return path, nil
}

// gantryRound submits a job of n replicas and returns, per replica, the
// milliseconds from the submit until it reported running and until its
// /healthz answered 200. The job is stopped before it returns.
func gantryRound(ctx context.Context, c *cluster, nodes []*api.Node, w *workload, n int, name string) (running, healthy []float64, err error) {
	addr := map[string]string{}
	for _, nd := range nodes {
		addr[nd.ID] = nd.Address
	}
	spec := fmt.Sprintf("name: %s\ntype: service\ngroups:\n  - name: web\n    count: %d\n    tasks:\n%s", name, n, w.task)
	start := time.Now()
	if err := c.submit(ctx, name, spec); err != nil {
		return nil, nil, err
	}
	defer func() {
		// On an interrupt ctx is done already: the stop gets its own.
		cctx, cancel := cleanupContext()
		defer cancel()
		c.stopJobs(cctx)
	}()
	runAt, okAt := map[string]time.Duration{}, map[string]time.Duration{}
	var checked time.Duration
	for len(okAt) < n {
		if time.Since(start) > w.limit {
			return nil, nil, fmt.Errorf("%d of %d replicas healthy after %s", len(okAt), n, w.limit)
		}
		var allocs []*api.Allocation
		if err := c.get(ctx, "/v1/jobs/"+name+"/allocations", &allocs); err != nil {
			return nil, nil, err
		}
		now := time.Since(start)
		if len(allocs) < n && now-checked > 500*time.Millisecond {
			checked = now
			// Replicas the scheduler cannot place never come: say why
			// instead of waiting out the round.
			if why := blockedReason(ctx, c, name); why != "" {
				return nil, nil, fmt.Errorf("%d of %d replicas could be placed: %s", len(allocs), n, why)
			}
		}
		for _, a := range allocs {
			if a.ClientStatus == api.AllocFailed {
				return nil, nil, fmt.Errorf("allocation %s failed: %s", a.ID[:8], a.ClientReason)
			}
			if _, seen := runAt[a.ID]; !seen && a.ClientStatus == api.AllocRunning {
				runAt[a.ID] = now
			}
			if _, seen := okAt[a.ID]; seen || a.ClientStatus != api.AllocRunning {
				continue
			}
			res := a.Resources["server"]
			if res == nil {
				continue
			}
			if p, ok := res.Port("http"); ok && answers(fmt.Sprintf("http://%s:%d/healthz", hostOf(addr[a.NodeID]), p.Host)) {
				okAt[a.ID] = time.Since(start)
			}
		}
		if len(okAt) < n {
			if err := sleep(ctx, 10*time.Millisecond); err != nil {
				return nil, nil, err
			}
		}
	}
	for id, d := range okAt {
		healthy = append(healthy, ms(d))
		if r, ok := runAt[id]; ok {
			running = append(running, ms(r))
		}
	}
	return running, healthy, nil
}

func hostOf(a string) string {
	if a == "" {
		return "127.0.0.1"
	}
	return a
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// answers reports whether url answers 200 within a short timeout (while a
// container is created its port is bound already and a request hangs).
func answers(url string) bool {
	resp, err := shortClient.Get(url)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == 200
}

// directRound starts n copies directly and returns per copy the
// milliseconds from the start of the launch until it answered.
func directRound(ctx context.Context, w *workload, n int) ([]float64, error) {
	start := time.Now()
	urls, stop, err := w.direct(ctx, n)
	if stop != nil {
		defer stop()
	}
	if err != nil {
		return nil, err
	}
	var out []float64
	up := make([]bool, len(urls))
	for len(out) < len(urls) {
		if time.Since(start) > w.limit {
			return nil, fmt.Errorf("%d of %d copies answered after %s", len(out), len(urls), w.limit)
		}
		for i, u := range urls {
			if !up[i] && answers(u) {
				up[i] = true
				out = append(out, ms(time.Since(start)))
			}
		}
		if len(out) < len(urls) {
			if err := sleep(ctx, 10*time.Millisecond); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// dockerDirect is `docker run -d` of the demo image, n at once.
func dockerDirect(ctx context.Context, n int) ([]string, func(), error) {
	label := fmt.Sprintf("gantry-bench=%d", time.Now().UnixNano())
	stop := func() {
		out, _ := exec.Command("docker", "ps", "-aq", "--filter", "label="+label).Output()
		if ids := strings.Fields(string(out)); len(ids) > 0 {
			_ = exec.Command("docker", append([]string{"rm", "-f"}, ids...)...).Run()
		}
	}
	urls := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		p, err := freePort()
		if err != nil {
			return nil, stop, err
		}
		urls[i] = fmt.Sprintf("http://127.0.0.1:%d/healthz", p)
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := exec.CommandContext(ctx, "docker", "run", "-d", "--label", label, "-p", fmt.Sprintf("127.0.0.1:%d:8080", p), DemoImage).CombinedOutput()
			if err != nil {
				errs[i] = fmt.Errorf("docker run: %s", strings.TrimSpace(string(out)))
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, stop, err
		}
	}
	return urls, stop, nil
}

// processDirect starts the binary n times as plain processes.
func processDirect(bin string) func(ctx context.Context, n int) ([]string, func(), error) {
	return func(ctx context.Context, n int) ([]string, func(), error) {
		var procs []*exec.Cmd
		stop := func() {
			for _, p := range procs {
				_ = p.Process.Kill()
				_ = p.Wait()
			}
		}
		var urls []string
		for range n {
			p, err := freePort()
			if err != nil {
				return nil, stop, err
			}
			cmd := exec.Command(bin)
			cmd.Env = append(os.Environ(), fmt.Sprintf("GANTRY_PORT_HTTP=%d", p))
			if err := cmd.Start(); err != nil {
				return nil, stop, fmt.Errorf("start %s: %w", bin, err)
			}
			procs = append(procs, cmd)
			urls = append(urls, fmt.Sprintf("http://127.0.0.1:%d/healthz", p))
		}
		return urls, stop, nil
	}
}

// blockedReason says why a job's evaluation left replicas unplaced, or
// "" when none did.
func blockedReason(ctx context.Context, c *cluster, job string) string {
	var evals []*api.Evaluation
	if c.get(ctx, "/v1/jobs/"+job+"/evaluations", &evals) != nil {
		return ""
	}
	for _, e := range evals {
		if e.Status != api.EvalBlocked {
			continue
		}
		var why []string
		for _, ex := range e.FailedGroups {
			why = append(why, ex.String())
		}
		if len(why) == 0 {
			why = append(why, e.StatusDescription)
		}
		return strings.Join(why, "; ")
	}
	return ""
}

// median of values (0 for none).
func median(values []float64) float64 {
	if len(values) == 0 {
		return 0
	}
	return stats.Summarize(values).Median
}
