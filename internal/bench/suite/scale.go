package suite

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gantryhq/gantry/internal/apiclient"
	"github.com/gantryhq/gantry/internal/bench/report"
	"github.com/gantryhq/gantry/internal/loadgen"
)

func scale() Suite {
	return Suite{
		Name:  "scale",
		Short: "gantry loadtest: simulated nodes (real agents, null driver) run jobs through the real API until every allocation runs",
		Target: func(env *Env) string {
			switch n := max(env.Params.ScaleServers, 1); {
			case env.Address != "":
				return env.Address
			case n > 1:
				return fmt.Sprintf("%d fresh gantry servers on loopback per round, one etcd cluster of their embedded members", n)
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
	servers := max(env.Params.ScaleServers, 1)
	killAt, err := scalePlan(servers, env.Params.ScaleKillLeaderAt, jobs*tasks, env.Address != "")
	if err != nil {
		return err
	}
	var rate, running, placed, placedRate, srvCPU, srvRSS, srvCPUPer1000, srvRSSPerAlloc, loadCPU, loadRSS, etcd []float64
	var slowed []int
	var perNode, perAlloc, rssPerAlloc, goroutines []float64
	perCPU, perRSS := make([][]float64, servers), make([][]float64, servers)
	var nextPlaced, nextRunning []float64
	var checks, kills, leaders []string
	for r := range rounds {
		if err := ctx.Err(); err != nil {
			return err
		}
		res, err := scaleRound(ctx, env, scaleSize{nodes: nodes, jobs: jobs, tasks: tasks, servers: servers, killAt: killAt})
		if err != nil {
			return fmt.Errorf("round %d: %w", r+1, err)
		}
		rate, running, loadCPU = append(rate, res.AllocsPerSec), append(running, res.RunningTime.Seconds()), append(loadCPU, res.LoadCPU)
		loadRSS = append(loadRSS, float64(res.LoadPeakRSS))
		if res.PlacedTime > 0 {
			placed = append(placed, res.PlacedTime.Seconds())
			placedRate = append(placedRate, float64(res.Allocations)/res.PlacedTime.Seconds())
		}
		perNode, perAlloc = append(perNode, res.NodeBytes/1024), append(perAlloc, res.AllocBytes/1024)
		rssPerAlloc, goroutines = append(rssPerAlloc, res.PeakRSSPerAlloc/1024), append(goroutines, float64(res.Goroutines))
		if len(res.ServerCPU) > 0 {
			var cpu, rss float64
			for i := range res.ServerCPU {
				cpu, rss = cpu+res.ServerCPU[i], rss+res.ServerRSS[i]
				perCPU[i], perRSS[i] = append(perCPU[i], res.ServerCPU[i]), append(perRSS[i], res.ServerRSS[i])
			}
			srvCPU, srvRSS, etcd = append(srvCPU, cpu), append(srvRSS, rss), append(etcd, res.EtcdMiB)
			if res.Allocations > 0 {
				srvCPUPer1000 = append(srvCPUPer1000, cpu/float64(res.Allocations)*1000)
				srvRSSPerAlloc = append(srvRSSPerAlloc, rss*1024/float64(res.Allocations))
			}
			leaders = append(leaders, fmt.Sprintf("s%d", res.Leader+1))
		}
		slowed = append(slowed, res.SlowedSubmissions)
		checks = append(checks, fmt.Sprintf("round %d: %s", r+1, res.Check))
		env.logf("    round %d/%d: %d allocations on %d nodes running after %s (%.0f/s; %d submissions slowed by the server's 429)", r+1, rounds, res.Allocations, res.Nodes, res.RunningTime.Round(time.Millisecond), res.AllocsPerSec, res.SlowedSubmissions)
		env.logf("    round %d/%d: exact-count check %s", r+1, rounds, res.Check)
		if k := res.Kill; k != nil {
			if k.NextPlacement > 0 {
				nextPlaced = append(nextPlaced, ms(k.NextPlacement))
			}
			if k.NextRunning > 0 {
				nextRunning = append(nextRunning, ms(k.NextRunning))
			}
			kills = append(kills, fmt.Sprintf("round %d: %s", r+1, k))
			env.logf("    round %d/%d: %s", r+1, rounds, k)
		}
	}
	rec.Add(report.NewFigure("scale/allocations-per-s", "allocations/s", report.HigherIsBetter, rate))
	rec.Add(report.NewFigure("scale/all-running", "s", report.LowerIsBetter, running))
	if len(placed) > 0 {
		rec.Add(report.NewFigure("scale/placed-per-s", "allocations/s", report.HigherIsBetter, placedRate))
		rec.Add(report.NewFigure("scale/all-placed", "s", report.LowerIsBetter, placed))
	}
	rec.Add(report.NewFigure("scale/load-tool-cpu", "s", report.LowerIsBetter, loadCPU))
	rec.Add(report.NewFigure("scale/load-tool-peak-rss", "MiB", report.LowerIsBetter, loadRSS))
	rec.Add(report.NewFigure("scale/load-tool-peak-rss-per-alloc", "KiB", report.LowerIsBetter, rssPerAlloc))
	rec.Add(report.NewFigure("scale/load-tool-live-per-node", "KiB", report.LowerIsBetter, perNode))
	rec.Add(report.NewFigure("scale/load-tool-live-per-alloc", "KiB", report.LowerIsBetter, perAlloc))
	rec.Add(report.NewFigure("scale/load-tool-goroutines", "goroutines", report.LowerIsBetter, goroutines))
	if len(srvCPU) > 0 {
		rec.Add(report.NewFigure("scale/server-cpu", "s", report.LowerIsBetter, srvCPU))
		rec.Add(report.NewFigure("scale/server-peak-rss", "MiB", report.LowerIsBetter, srvRSS))
		rec.Add(report.NewFigure("scale/server-cpu-per-1000-allocs", "s", report.LowerIsBetter, srvCPUPer1000))
		rec.Add(report.NewFigure("scale/server-peak-rss-per-alloc", "KiB", report.LowerIsBetter, srvRSSPerAlloc))
		rec.Add(report.NewFigure("scale/etcd-db", "MiB", report.LowerIsBetter, etcd))
		if servers > 1 {
			for i := range servers {
				rec.Add(report.NewFigure(fmt.Sprintf("scale/server-s%d-cpu", i+1), "s", report.LowerIsBetter, perCPU[i]))
				rec.Add(report.NewFigure(fmt.Sprintf("scale/server-s%d-peak-rss", i+1), "MiB", report.LowerIsBetter, perRSS[i]))
			}
			rec.Note("%d servers, one etcd cluster of their embedded members: server-cpu and server-peak-rss are sums over the servers (a killed server's up to its kill), server-sN-* each one's; etcd-db is the largest member's database; every client (the load tool and each simulated node) asks s1 first and the next only when one does not answer, so s1 serves the API while the leader schedules; the leader at the start, per round: %s", servers, strings.Join(leaders, ", "))
		}
	}
	if len(nextPlaced) > 0 {
		rec.Add(report.NewFigure("scale/failover-next-placement", "ms", report.LowerIsBetter, nextPlaced))
	}
	if len(nextRunning) > 0 {
		rec.Add(report.NewFigure("scale/failover-next-running", "ms", report.LowerIsBetter, nextRunning))
	}
	if killAt > 0 {
		rec.Note("kill -9 of the leader once %d allocations were placed; failover-next-placement is the time from the kill until the surviving servers' view shows more allocations placed (the new leader's scheduler at work), failover-next-running until it shows more running (agents' status writes accepted by the survivors), polled every 50 ms: %s", killAt, strings.Join(kills, "; "))
	}
	rec.Note("exact-count check against the store (a consistent read per job: every job present, each slot held by one running allocation): %s", strings.Join(checks, "; "))
	rec.Note("submissions the overloaded server slowed down (429 with Retry-After), per round: %v", slowed)
	protocol := "the node stream, one per 16 nodes"
	if env.Params.ScaleLongPoll {
		protocol = "long-polls, a request per report and per heartbeat (--scale-long-poll)"
	}
	rec.Note("agent protocol: %s", protocol)
	rec.Note("%d simulated nodes, %d jobs × %d allocations, %d round(s); the load tool shares the machine's cores with the server(s); soft memory limits from SERVER_GOMEMLIMIT and LOAD_GOMEMLIMIT, collector targets from SERVER_GOGC and LOAD_GOGC, when set", nodes, jobs, tasks, rounds)
	return nil
}

// scalePlan checks the cluster shape a scale run asks for and returns
// after how many placed allocations the leader is killed (0: never).
// killAt below 1 is a fraction of the total, 1 or more a count.
func scalePlan(servers int, killAt float64, total int, external bool) (int, error) {
	switch {
	case servers < 1 || servers > 1 && (servers%2 == 0 || servers > 7):
		return 0, fmt.Errorf("--scale-servers %d: give 1, or an odd number of servers from 3 to 7 (one etcd cluster of their members)", servers)
	case servers > 1 && external:
		return 0, fmt.Errorf("--scale-servers %d starts its own servers: it cannot measure the cluster given by --address", servers)
	case killAt == 0:
		return 0, nil
	case killAt < 0:
		return 0, fmt.Errorf("--scale-kill-leader-at %g: give a fraction of the allocations (0.5) or a count (50000)", killAt)
	case servers < 3:
		return 0, fmt.Errorf("--scale-kill-leader-at needs --scale-servers 3 or more: the run must go on without the leader")
	case killAt < 1:
		return max(int(math.Ceil(killAt*float64(total))), 1), nil
	case killAt != math.Trunc(killAt) || int(killAt) > total:
		return 0, fmt.Errorf("--scale-kill-leader-at %g: a count must be whole and at most the %d allocations submitted", killAt, total)
	}
	return int(killAt), nil
}

// scaleSize is one round's load and cluster.
type scaleSize struct {
	nodes, jobs, tasks int
	servers            int
	killAt             int // kill -9 the leader once this many allocations are placed (0: never)
}

// scaleResult is the load test's answer with what the suite measured of
// the servers it started: CPU seconds and peak RSS in MiB per server
// (none for a cluster given by --address), the largest etcd database,
// which server led at the start (an index) and the leader's kill.
type scaleResult struct {
	loadgen.Result
	EtcdMiB              float64
	ServerCPU, ServerRSS []float64
	Leader               int
	Kill                 *leaderKill
}

// scaleRound runs `gantry loadtest` against env.Address or the fresh
// servers it starts, killing their leader on the way when size says.
func scaleRound(ctx context.Context, env *Env, size scaleSize) (*scaleResult, error) {
	var res scaleResult
	var servers []*cluster
	addr := env.Address
	if addr == "" {
		var err error
		servers, res.Leader, err = startScaleServers(ctx, env, size.servers)
		defer func() {
			for _, s := range servers {
				if s.proc != nil && s.proc.Process != nil {
					s.stop()
				}
			}
		}()
		if err != nil {
			return nil, err
		}
		addr = strings.Join(addresses(servers), ",")
	}
	cpu0 := make([]float64, len(servers))
	for i, s := range servers {
		cpu0[i] = procCPU(s)
	}
	lc := &cluster{env: env, addr: addr, extraEnv: append(memLimitEnv("LOAD_GOMEMLIMIT"), pprofEnv("LOAD_PPROF_ADDR")...)}
	// The simulated nodes' identities: in memory (/dev/shm) where there is
	// one, as many small files on a disk slow the run down.
	nodeDir := filepath.Join(env.Dir, "scale-nodes")
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "gantry-bench-nodes"); err == nil {
			nodeDir = d
		}
	}
	defer removeAll(nodeDir)
	lctx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	finished := make(chan struct{})
	var out string
	var loadErr error
	go func() {
		defer close(finished)
		out, loadErr = lc.gantry(lctx, "loadtest", "--json", "--nodes", strconv.Itoa(size.nodes), "--jobs", strconv.Itoa(size.jobs),
			"--tasks", strconv.Itoa(size.tasks), "--data-dir", nodeDir, "--timeout", "30m",
			"--stream="+strconv.FormatBool(!env.Params.ScaleLongPoll))
	}()
	var kill *leaderKill
	if size.killAt > 0 {
		var err error
		kill, err = killLeader(ctx, env, servers, size.killAt, size.jobs*size.tasks, finished)
		if err != nil {
			stopLoad()
			<-finished
			return nil, err
		}
	}
	<-finished
	if err := json.Unmarshal([]byte(out), &res.Result); err != nil {
		if loadErr != nil {
			return nil, loadErr
		}
		return nil, fmt.Errorf("read gantry loadtest's answer: %w", err)
	}
	switch {
	case res.Check == nil:
		return nil, fmt.Errorf("gantry loadtest gave no exact-count check (is %s older than this suite?)", env.Bin)
	case !res.Check.Pass:
		return nil, fmt.Errorf("the exact-count check against the store failed: %s", res.Check)
	case loadErr != nil:
		return nil, loadErr
	}
	res.Kill = kill
	for i, s := range servers {
		cpu, rss := procCPU(s), procPeakRSS(s)
		if kill != nil && kill.Server == i {
			cpu, rss = kill.cpu, kill.rss
		}
		res.ServerCPU, res.ServerRSS = append(res.ServerCPU, cpu-cpu0[i]), append(res.ServerRSS, rss)
		if st, err := os.Stat(filepath.Join(s.dataDir, "etcd", "member", "snap", "db")); err == nil {
			res.EtcdMiB = max(res.EtcdMiB, float64(st.Size())/(1<<20))
		}
	}
	return &res, nil
}

// startScaleServers starts n servers on loopback (n > 1: one etcd
// cluster of their embedded members), waits until one leads and returns
// its index. What it started is returned even with an error, for the
// caller to stop.
func startScaleServers(ctx context.Context, env *Env, n int) ([]*cluster, int, error) {
	p, err := env.ports(3*n, 10)
	if err != nil {
		return nil, 0, err
	}
	var members []string
	for i := range n {
		members = append(members, fmt.Sprintf("s%d=http://127.0.0.1:%d", i+1, p[3*i+2]))
	}
	servers := make([]*cluster, 0, n)
	for i := range n {
		dir := filepath.Join(env.Dir, "scale-server")
		if n > 1 {
			dir = filepath.Join(env.Dir, fmt.Sprintf("scale-s%d", i+1))
		}
		// A large run's etcd outgrows the 2 GiB default quota; a soft
		// memory limit for the servers comes from SERVER_GOMEMLIMIT.
		s := &cluster{env: env, addr: fmt.Sprintf("http://127.0.0.1:%d", p[3*i]), dataDir: dir, extraEnv: memLimitEnv("SERVER_GOMEMLIMIT")}
		if i == 0 {
			s.extraEnv = append(s.extraEnv, pprofEnv("SERVER_PPROF_ADDR")...)
		}
		args := []string{"server", "--insecure", "--data-dir", dir, "--http-addr", fmt.Sprintf("127.0.0.1:%d", p[3*i]),
			"--etcd-client-url", fmt.Sprintf("http://127.0.0.1:%d", p[3*i+1]), "--etcd-peer-url", fmt.Sprintf("http://127.0.0.1:%d", p[3*i+2]),
			"--etcd-quota-bytes", strconv.Itoa(8 << 30), "--heartbeat-ttl", "60s", "--log-level", "warn"}
		if n > 1 {
			args = append(args, "--etcd-name", fmt.Sprintf("s%d", i+1), "--initial-cluster", strings.Join(members, ","))
		}
		servers = append(servers, s)
		if err := s.start(args); err != nil {
			return servers, 0, err
		}
	}
	for i, s := range servers {
		if err := waitStatus(ctx, s.addr, 90*time.Second); err != nil {
			return servers, 0, fmt.Errorf("server s%d did not answer: %w; its log ends: %s", i+1, err, lastLines(s.log.String(), 5))
		}
	}
	leader, err := waitLeader(ctx, servers, -1, 90*time.Second)
	if err != nil {
		return servers, 0, err
	}
	if n > 1 {
		env.logf("    started %d servers on %s; s%d leads", n, strings.Join(addresses(servers), ", "), leader+1)
	}
	return servers, leader, nil
}

func addresses(servers []*cluster) []string {
	out := make([]string, len(servers))
	for i, s := range servers {
		out[i] = s.addr
	}
	return out
}

// leaderKill is what a scale round measured of its leader's kill.
type leaderKill struct {
	Server int // index of the server killed
	Placed int // allocations placed when it was killed
	// NextPlacement and NextRunning are the times from the kill until
	// the survivors' view showed more allocations placed, and more
	// running (0: not seen: none was left to place or to start, or the
	// run ended first).
	NextPlacement, NextRunning time.Duration
	// The killed server's CPU seconds and peak RSS (MiB) just before.
	cpu, rss float64
}

func (k *leaderKill) String() string {
	seen := func(d time.Duration) string {
		if d == 0 {
			return "not seen"
		}
		return fmt.Sprintf("after %.0f ms", ms(d))
	}
	return fmt.Sprintf("killed the leader s%d (kill -9) with %d allocations placed; more placed %s, more running %s",
		k.Server+1, k.Placed, seen(k.NextPlacement), seen(k.NextRunning))
}

// killLeader waits until at allocations of the load are placed, kills
// the leader with SIGKILL, and then watches the surviving servers' view
// until it shows more allocations placed and more running than at its
// first read after the kill: the failover as a client sees it. It
// returns nil without a kill when the load test finished first.
func killLeader(ctx context.Context, env *Env, servers []*cluster, at, total int, finished <-chan struct{}) (*leaderKill, error) {
	c := apiclient.New(apiclient.Options{Servers: addresses(servers)})
	placed := 0
	for placed < at {
		p, _, err := loadgen.Progress(ctx, c)
		if err == nil {
			placed = p
			if placed >= at {
				break
			}
		}
		select {
		case <-finished:
			return nil, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	leader, err := waitLeader(ctx, servers, -1, time.Minute)
	if err != nil {
		return nil, fmt.Errorf("find the leader to kill: %w", err)
	}
	s := servers[leader]
	k := &leaderKill{Server: leader, Placed: placed, cpu: procCPU(s), rss: procPeakRSS(s)}
	if err := s.proc.Process.Signal(syscall.SIGKILL); err != nil {
		return nil, fmt.Errorf("kill -9 the leader s%d: %w", leader+1, err)
	}
	killed := time.Now()
	_ = s.proc.Wait()
	env.logf("    killed the leader s%d (kill -9) with %d of %d allocations placed", leader+1, placed, total)
	var rest []*cluster
	for i, s := range servers {
		if i != leader {
			rest = append(rest, s)
		}
	}
	c = apiclient.New(apiclient.Options{Servers: addresses(rest)})
	basePlaced, baseRunning := -1, -1
	deadline := killed.Add(5 * time.Minute)
	for {
		p, r, err := loadgen.Progress(ctx, c)
		if err == nil {
			now := time.Since(killed)
			switch {
			case basePlaced < 0:
				basePlaced, baseRunning = p, r
			default:
				if k.NextPlacement == 0 && p > basePlaced {
					k.NextPlacement = now
				}
				if k.NextRunning == 0 && r > baseRunning {
					k.NextRunning = now
				}
			}
			placedDone := k.NextPlacement > 0 || basePlaced >= total
			runningDone := k.NextRunning > 0 || baseRunning >= total
			if placedDone && runningDone {
				return k, nil
			}
		}
		if time.Now().After(deadline) {
			return k, nil
		}
		select {
		case <-finished:
			return k, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
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

// memLimitEnv passes Go's memory settings for a process the suite
// starts, from the variables named for it: variable (SERVER_GOMEMLIMIT,
// LOAD_GOMEMLIMIT: a soft memory limit such as 10GiB) and the same with
// GOGC for GOMEMLIMIT (SERVER_GOGC, LOAD_GOGC: the collector's target,
// 100 by default; higher trades memory, up to the limit, for less time
// collecting garbage).
func memLimitEnv(variable string) []string {
	var out []string
	if v := os.Getenv(variable); v != "" {
		out = append(out, "GOMEMLIMIT="+v)
	}
	if v := os.Getenv(strings.Replace(variable, "GOMEMLIMIT", "GOGC", 1)); v != "" {
		out = append(out, "GOGC="+v)
	}
	return out
}

// pprofEnv serves a process's Go profiles on the address in variable
// (SERVER_PPROF_ADDR, LOAD_PPROF_ADDR) when it is set: the profile of a
// scale run, from a server or the load tool, each on its own address.
func pprofEnv(variable string) []string {
	if v := os.Getenv(variable); v != "" {
		return []string{"GANTRY_PPROF_ADDR=" + v}
	}
	return nil
}
