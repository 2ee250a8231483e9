package suite

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/gantryhq/gantry/internal/bench/report"
	"github.com/gantryhq/gantry/internal/loadgen"
)

func scale() Suite {
	return Suite{
		Name:  "scale",
		Short: "gantry loadtest: simulated nodes (real agents, null driver) run jobs through the real API until every allocation runs",
		Target: func(env *Env) string {
			if env.Address != "" {
				return env.Address
			}
			return "a fresh gantry server on loopback per round"
		},
		Run: runScale,
	}
}

func runScale(ctx context.Context, env *Env, rec *Recorder) error {
	nodes := pick(env.Params.ScaleNodes, 100, 1000, env.Quick)
	jobs := pick(env.Params.ScaleJobs, 10, 100, env.Quick)
	tasks := pick(env.Params.ScaleTasks, 50, 100, env.Quick)
	rounds := pick(env.Params.Rounds, 1, 4, env.Quick)
	var rate, running, srvCPU, srvRSS, loadCPU, loadRSS, etcd []float64
	var slowed []int
	var perNode, perAlloc, rssPerAlloc, goroutines []float64
	for r := range rounds {
		if err := ctx.Err(); err != nil {
			return err
		}
		res, cpu, rss, err := scaleRound(ctx, env, nodes, jobs, tasks)
		if err != nil {
			return fmt.Errorf("round %d: %w", r+1, err)
		}
		rate, running, loadCPU = append(rate, res.AllocsPerSec), append(running, res.RunningTime.Seconds()), append(loadCPU, res.LoadCPU)
		loadRSS = append(loadRSS, float64(res.LoadPeakRSS))
		perNode, perAlloc = append(perNode, res.NodeBytes/1024), append(perAlloc, res.AllocBytes/1024)
		rssPerAlloc, goroutines = append(rssPerAlloc, res.PeakRSSPerAlloc/1024), append(goroutines, float64(res.Goroutines))
		if cpu > 0 {
			srvCPU, srvRSS, etcd = append(srvCPU, cpu), append(srvRSS, rss), append(etcd, res.EtcdMiB)
		}
		slowed = append(slowed, res.SlowedSubmissions)
		env.logf("    round %d/%d: %d allocations on %d nodes running after %s (%.0f/s; %d submissions slowed by the server's 429)", r+1, rounds, res.Allocations, res.Nodes, res.RunningTime.Round(time.Millisecond), res.AllocsPerSec, res.SlowedSubmissions)
	}
	rec.Add(report.NewFigure("scale/allocations-per-s", "allocations/s", report.HigherIsBetter, rate))
	rec.Add(report.NewFigure("scale/all-running", "s", report.LowerIsBetter, running))
	rec.Add(report.NewFigure("scale/load-tool-cpu", "s", report.LowerIsBetter, loadCPU))
	rec.Add(report.NewFigure("scale/load-tool-peak-rss", "MiB", report.LowerIsBetter, loadRSS))
	rec.Add(report.NewFigure("scale/load-tool-peak-rss-per-alloc", "KiB", report.LowerIsBetter, rssPerAlloc))
	rec.Add(report.NewFigure("scale/load-tool-live-per-node", "KiB", report.LowerIsBetter, perNode))
	rec.Add(report.NewFigure("scale/load-tool-live-per-alloc", "KiB", report.LowerIsBetter, perAlloc))
	rec.Add(report.NewFigure("scale/load-tool-goroutines", "goroutines", report.LowerIsBetter, goroutines))
	if len(srvCPU) > 0 {
		rec.Add(report.NewFigure("scale/server-cpu", "s", report.LowerIsBetter, srvCPU))
		rec.Add(report.NewFigure("scale/server-peak-rss", "MiB", report.LowerIsBetter, srvRSS))
		rec.Add(report.NewFigure("scale/etcd-db", "MiB", report.LowerIsBetter, etcd))
	}
	rec.Note("submissions the overloaded server slowed down (429 with Retry-After), per round: %v", slowed)
	protocol := "the node stream, one per 16 nodes"
	if env.Params.ScaleLongPoll {
		protocol = "long-polls, a request per report and per heartbeat (--scale-long-poll)"
	}
	rec.Note("agent protocol: %s", protocol)
	rec.Note("%d simulated nodes, %d jobs × %d allocations, %d round(s); the load tool shares the machine's cores with the server; soft memory limits from SERVER_GOMEMLIMIT and LOAD_GOMEMLIMIT when set", nodes, jobs, tasks, rounds)
	return nil
}

// scaleRound runs `gantry loadtest` against env.Address or a fresh
// server it starts, and returns the load test's result with the server's
// CPU seconds and peak RSS in MiB (0 when the server is not its own).
// scaleResult is the load test's answer with the server's etcd size.
type scaleResult struct {
	loadgen.Result
	EtcdMiB float64
}

func scaleRound(ctx context.Context, env *Env, nodes, jobs, tasks int) (*scaleResult, float64, float64, error) {
	var srv *cluster
	addr := env.Address
	if addr == "" {
		p, err := env.ports(4, 10)
		if err != nil {
			return nil, 0, 0, err
		}
		dir := filepath.Join(env.Dir, "scale-server")
		srv = &cluster{env: env, addr: fmt.Sprintf("http://127.0.0.1:%d", p[0]), dataDir: dir}
		// A large run's etcd outgrows the 2 GiB default quota; a soft
		// memory limit for the server comes from SERVER_GOMEMLIMIT.
		srv.extraEnv = memLimitEnv("SERVER_GOMEMLIMIT")
		if err := srv.start([]string{"server", "--insecure", "--data-dir", dir, "--http-addr", fmt.Sprintf("127.0.0.1:%d", p[0]),
			"--etcd-client-url", fmt.Sprintf("http://127.0.0.1:%d", p[1]), "--etcd-peer-url", fmt.Sprintf("http://127.0.0.1:%d", p[2]),
			"--etcd-quota-bytes", strconv.Itoa(8 << 30), "--heartbeat-ttl", "60s", "--log-level", "warn"}); err != nil {
			return nil, 0, 0, err
		}
		defer srv.stop()
		if err := waitStatus(ctx, srv.addr, 60*time.Second); err != nil {
			return nil, 0, 0, fmt.Errorf("the server did not answer: %w; its log ends: %s", err, lastLines(srv.log.String(), 5))
		}
		addr = srv.addr
	}
	cpu0 := procCPU(srv)
	lc := &cluster{env: env, addr: addr, extraEnv: memLimitEnv("LOAD_GOMEMLIMIT")}
	// The simulated nodes' identities: in memory (/dev/shm) where there is
	// one, as many small files on a disk slow the run down.
	nodeDir := filepath.Join(env.Dir, "scale-nodes")
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "gantry-bench-nodes"); err == nil {
			nodeDir = d
		}
	}
	defer removeAll(nodeDir)
	out, err := lc.gantry(ctx, "loadtest", "--json", "--nodes", strconv.Itoa(nodes), "--jobs", strconv.Itoa(jobs), "--tasks", strconv.Itoa(tasks),
		"--data-dir", nodeDir, "--timeout", "30m", "--stream="+strconv.FormatBool(!env.Params.ScaleLongPoll))
	if err != nil {
		return nil, 0, 0, err
	}
	var res scaleResult
	if err := json.Unmarshal([]byte(out), &res.Result); err != nil {
		return nil, 0, 0, fmt.Errorf("read gantry loadtest's answer: %w", err)
	}
	var cpu, rss float64
	if srv != nil {
		cpu = procCPU(srv) - cpu0
		rss = procPeakRSS(srv)
		if st, err := os.Stat(filepath.Join(srv.dataDir, "etcd", "member", "snap", "db")); err == nil {
			res.EtcdMiB = float64(st.Size()) / (1 << 20)
		}
	}
	return &res, cpu, rss, nil
}

// waitStatus waits until base answers /v1/status.
func waitStatus(ctx context.Context, base string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		var st map[string]any
		err := getJSON(ctx, base, "", "/v1/status", &st)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

// procCPU is the CPU seconds a started process used so far (from
// /proc/<pid>/stat, in clock ticks of 100 per second, as on every Linux
// of this project's machines); 0 for none.
func procCPU(c *cluster) float64 {
	if c == nil || c.proc == nil || c.proc.Process == nil {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.proc.Process.Pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100
}

// procPeakRSS is a started process's peak resident memory in MiB.
func procPeakRSS(c *cluster) float64 {
	if c == nil || c.proc == nil || c.proc.Process == nil {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.proc.Process.Pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

// memLimitEnv passes the soft memory limit named by variable (a Go
// GOMEMLIMIT value such as 10GiB) to a process the suite starts.
func memLimitEnv(variable string) []string {
	if v := os.Getenv(variable); v != "" {
		return []string{"GOMEMLIMIT=" + v}
	}
	return nil
}
