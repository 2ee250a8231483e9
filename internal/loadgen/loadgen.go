// Package loadgen owns the scale benchmark's load: many simulated nodes,
// each a real agent (the same code `gantry agent` runs) with the null
// driver, all in one process, and jobs submitted through the real API. It
// measures how long the servers take until every allocation reports
// running.
//
// It must never take a shortcut a real cluster would not: no writes to
// etcd, no calls into the server's packages; only the HTTP API and the
// agent protocol. What it may change is how the process holds its nodes:
// with Options.Stream the nodes of one connection share one node stream
// (a real node opens its own);
// their tasks are stepped by one loop per agent instead of a goroutine
// each (agent.Config.EventTasks), and one copy of each job version is
// kept for all of them (agent.Config.Jobs), though each node still
// fetches it. Like any client it honours an overloaded server's 429 and
// Retry-After on submission, waiting as long as it is asked (within the
// run's timeout), and reports how many submissions were slowed so.
//
// Given several servers (a cluster), the submitter, the progress reads
// and every simulated node fail over among them as the API client does,
// so that a run survives a server killed under it. A run ends with an
// exact-count check read back from the store (check.go): every job
// present, each of its slots held by exactly one running allocation.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gantryhq/gantry/internal/agent"
	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/apiclient"
	"github.com/gantryhq/gantry/internal/driver"
	"github.com/gantryhq/gantry/internal/driver/null"
	"github.com/gantryhq/gantry/internal/metrics"
)

// Options size the load.
type Options struct {
	Servers     []string // the servers' API addresses, e.g. http://127.0.0.1:7800, tried in turn
	Nodes       int
	Jobs        int
	Tasks       int // per job
	Concurrency int // jobs submitted at once
	DataDir     string
	NodeCPU     int // millicores per simulated node
	NodeMemory  int // MiB per simulated node
	TaskCPU     int
	TaskMemory  int
	Progress    io.Writer
	Timeout     time.Duration
	// Stream makes the simulated nodes speak the node stream, one stream
	// per connection carrying its nodesPerConn nodes, instead of a
	// long-poll, a report request and a heartbeat request per node
	// (agent.Config.Stream).
	Stream bool
}

// Result is what the run measured.
type Result struct {
	Nodes          int           `json:"nodes"`
	Allocations    int           `json:"allocations"`
	RegisterTime   time.Duration `json:"register_time"`
	SubmitTime     time.Duration `json:"submit_time"`    // until the last job was accepted
	PlacedTime     time.Duration `json:"placed_time"`    // until every allocation existed
	RunningTime    time.Duration `json:"running_time"`   // until every allocation reported running
	AllocsPerSec   float64       `json:"allocs_per_sec"` // allocations / RunningTime
	PeakAllocsPerS float64       `json:"peak_allocs_per_sec"`
	// LoadCPU is the CPU time the load itself (this process: the
	// simulated nodes and the submitter) used, in seconds: on one machine
	// it competes with the servers for the same cores.
	LoadCPU float64 `json:"load_cpu_seconds"`
	// LoadPeakRSS is the most memory this process held, in MiB.
	LoadPeakRSS int64 `json:"load_peak_rss_mib"`
	// NodeBytes is what one simulated node holds with no allocation:
	// the process's live heap and goroutine stacks (after a collection)
	// once every node is ready and before any job is submitted, divided
	// by the nodes.
	NodeBytes float64 `json:"load_bytes_per_node"`
	// AllocBytes is what one running allocation adds: the live heap and
	// stacks once every allocation runs, less those when the nodes were
	// ready, divided by the allocations.
	AllocBytes float64 `json:"load_bytes_per_alloc"`
	// PeakRSSPerAlloc is the peak RSS divided by the allocations, nodes
	// included: the figure to size a machine for a load.
	PeakRSSPerAlloc float64 `json:"load_peak_rss_bytes_per_alloc"`
	// Goroutines is how many goroutines the process had once every
	// allocation ran.
	Goroutines int `json:"load_goroutines"`
	// SlowedSubmissions is how many jobs a server refused at least once
	// with 429 (it was overloaded) before accepting them; Refusals counts
	// every such answer, and RefusedWait the time the submitters waited
	// them out, summed over the concurrent submitters.
	SlowedSubmissions int           `json:"slowed_submissions"`
	Refusals          int           `json:"submission_refusals"`
	RefusedWait       time.Duration `json:"refused_wait"`
	// Check is the exact-count check read back from the store once
	// every allocation ran (or the run timed out).
	Check *Check `json:"check,omitempty"`
}

// checkSettle is how long the exact-count check waits for the store to
// settle when its first read is not exact.
const checkSettle = 30 * time.Second

// throttled counts the 429s the submitters waited out.
type throttled struct {
	slowed, refusals atomic.Int64
	wait             atomic.Int64 // nanoseconds
}

func (t *throttled) fill(res *Result) {
	res.SlowedSubmissions, res.Refusals, res.RefusedWait = int(t.slowed.Load()), int(t.refusals.Load()), time.Duration(t.wait.Load())
}

// liveBytes is the process's live heap and goroutine stacks, after a
// full collection.
func liveBytes() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc + m.StackInuse
}

// usage is the CPU time this process has used, in seconds, and the most
// memory it held, in MiB.
func usage() (cpu float64, peakMiB int64) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds(), ru.Maxrss / 1024
}

// nodesPerConn is how many simulated nodes share one connection to the
// servers. A real node has a connection of its own; sharing one among a
// few keeps the process's sockets in bounds while keeping each
// connection's streams few, as they are in a real fleet (the server's
// HTTP/2 write scheduler walks every open stream of a connection on each
// frame, so thousands of long-polls on one connection would measure that,
// not the cluster).
const nodesPerConn = 16

// h2c is an HTTP/2 transport without TLS, one per group of simulated
// nodes.
func h2c() *http.Transport {
	t := &http.Transport{MaxIdleConnsPerHost: 64}
	t.Protocols = new(http.Protocols)
	t.Protocols.SetUnencryptedHTTP2(true)
	return t
}

// Run starts the nodes, submits the jobs and waits until every
// allocation runs.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.Concurrency <= 0 {
		o.Concurrency = 4
	}
	if o.Timeout == 0 {
		o.Timeout = time.Hour
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	// The submitters wait out an overloaded server's 429s themselves
	// (submit), without a bound but the run's timeout, and count them.
	if len(o.Servers) == 0 {
		return nil, errors.New("load test: no server address given")
	}
	c := apiclient.New(apiclient.Options{Servers: o.Servers, Transport: h2c(), ThrottleRetries: -1})
	var thr throttled
	res := &Result{Nodes: o.Nodes, Allocations: o.Jobs * o.Tasks}
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))

	// 1. Nodes.
	start := time.Now()
	actx, stopAgents := context.WithCancel(context.Background())
	defer stopAgents()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	var failed atomic.Value
	var rt *http.Transport
	var stream *apiclient.NodeStream
	// The nodes' tasks are stepped by one loop per agent, not a goroutine
	// each (the null driver calls back on exit), and the nodes keep one
	// copy of each job version between them: both only change how the
	// process holds what every node fetched and runs.
	jobs := agent.NewJobShare()
	for i := 0; i < o.Nodes; i++ {
		if i%nodesPerConn == 0 {
			rt = h2c()
			if o.Stream {
				stream = apiclient.New(apiclient.Options{Servers: o.Servers, Transport: rt}).OpenNodeStream(actx, apiclient.NodeStreamOptions{})
			}
		}
		dir := filepath.Join(o.DataDir, fmt.Sprintf("node-%05d", i))
		a, err := agent.New(agent.Config{
			Servers: o.Servers, DataDir: dir,
			NodeName: fmt.Sprintf("sim-%05d", i), NodeAddress: "127.0.0.1", NoAPI: true,
			Labels:      map[string]string{"zone": fmt.Sprintf("z%d", i%4), "rack": fmt.Sprintf("r%d", i%40)},
			CPUOverride: o.NodeCPU, MemoryOverride: o.NodeMemory,
			Drivers: []driver.Driver{null.New()}, SampleInterval: -1, AuditInterval: -1, FingerprintInterval: -1,
			Transport: rt, KillTimeout: time.Second, Metrics: metrics.NewBareRegistry(),
			EventTasks: true, Jobs: jobs, Stream: o.Stream, NodeStream: stream,
			GPU: agent.GPUConfig{NoPassthrough: true},
		}, quiet)
		if err != nil {
			return nil, fmt.Errorf("simulated node %d: %w", i, err)
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			<-sem
			if err := a.Run(actx); err != nil && actx.Err() == nil {
				failed.Store(err)
			}
		}()
	}
	defer wg.Wait()
	defer stopAgents()
	if err := waitReady(ctx, c, o, start); err != nil {
		return nil, err
	}
	res.RegisterTime = time.Since(start)
	nodesLive := liveBytes()
	res.NodeBytes = float64(nodesLive) / float64(max(o.Nodes, 1))
	fmt.Fprintf(o.Progress, "%d nodes ready after %s (%.0f KiB live per node)\n", o.Nodes, res.RegisterTime.Round(time.Millisecond), res.NodeBytes/1024)

	// 2. Jobs.
	t0 := time.Now()
	queue := make(chan int)
	errs := make(chan error, o.Concurrency)
	var sub sync.WaitGroup
	for w := 0; w < o.Concurrency; w++ {
		sub.Add(1)
		go func() {
			defer sub.Done()
			for j := range queue {
				if err := submit(ctx, c, o, j, &thr); err != nil {
					select {
					case errs <- err:
					default:
					}
					return
				}
			}
		}()
	}
	go func() {
		defer close(queue)
		for j := 0; j < o.Jobs; j++ {
			select {
			case queue <- j:
			case <-ctx.Done():
				return
			}
		}
	}()
	submitted := make(chan struct{})
	go func() { sub.Wait(); close(submitted) }()

	// 3. Until every allocation runs.
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	lastRun, lastAt := 0, t0
	for {
		select {
		case err := <-errs:
			return nil, err
		case <-ctx.Done():
			err := fmt.Errorf("not every allocation runs after %s: %w", o.Timeout, ctx.Err())
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				// Say what the store holds: lost or duplicated work is
				// the likely reason.
				cctx, ccancel := context.WithTimeout(context.Background(), 2*time.Minute)
				defer ccancel()
				if chk, cerr := exactCheck(cctx, c, submittedJobs(o), 0); cerr == nil {
					err = fmt.Errorf("%w; the exact-count check: %s", err, chk)
				}
			}
			return nil, err
		case <-submitted:
			if res.SubmitTime == 0 {
				res.SubmitTime = time.Since(t0)
			}
			if n := thr.refusals.Load(); n > 0 {
				fmt.Fprintf(o.Progress, "  every job accepted after %s; the server slowed %d submissions down (%d refusals with 429)\n",
					res.SubmitTime.Round(time.Millisecond), thr.slowed.Load(), n)
			}
			submitted = nil
			continue
		case <-tick.C:
		}
		if v := failed.Load(); v != nil {
			return nil, fmt.Errorf("a simulated node stopped: %v", v)
		}
		placed, running, err := Progress(ctx, c)
		if err != nil {
			fmt.Fprintf(o.Progress, "  (status read failed: %v)\n", err)
			continue
		}
		now := time.Now()
		rate := float64(running-lastRun) / now.Sub(lastAt).Seconds()
		res.PeakAllocsPerS = max(res.PeakAllocsPerS, rate)
		lastRun, lastAt = running, now
		slowed := ""
		if n := thr.refusals.Load(); n > 0 && submitted != nil {
			slowed = fmt.Sprintf("  %d submissions slowed by 429", thr.slowed.Load())
		}
		fmt.Fprintf(o.Progress, "%7.1fs  placed %7d  running %7d  (%6.0f/s)%s\n", now.Sub(t0).Seconds(), placed, running, rate, slowed)
		if placed >= res.Allocations && res.PlacedTime == 0 {
			res.PlacedTime = now.Sub(t0)
		}
		if running >= res.Allocations {
			res.RunningTime = now.Sub(t0)
			res.AllocsPerSec = float64(res.Allocations) / res.RunningTime.Seconds()
			res.LoadCPU, res.LoadPeakRSS = usage()
			thr.fill(res)
			// Measured after the CPU time: the collection is not the load's.
			res.Goroutines = runtime.NumGoroutine()
			res.AllocBytes = (float64(liveBytes()) - float64(nodesLive)) / float64(max(res.Allocations, 1))
			res.PeakRSSPerAlloc = float64(res.LoadPeakRSS<<20) / float64(max(res.Allocations, 1))
			chk, err := exactCheck(ctx, c, submittedJobs(o), checkSettle)
			if err != nil {
				return nil, err
			}
			res.Check = chk
			fmt.Fprintf(o.Progress, "exact-count check %s\n", chk)
			return res, nil
		}
	}
}

func waitReady(ctx context.Context, c *apiclient.Client, o Options, start time.Time) error {
	for {
		if nodes, err := c.Nodes(ctx); err == nil {
			ready := 0
			for _, n := range nodes {
				if n.Status == api.NodeStatusReady && strings.HasPrefix(n.Name, "sim-") {
					ready++
				}
			}
			if ready >= o.Nodes {
				return nil
			}
			fmt.Fprintf(o.Progress, "%7.1fs  %d/%d nodes ready\n", time.Since(start).Seconds(), ready, o.Nodes)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("nodes not ready: %w", ctx.Err())
		case <-time.After(2 * time.Second):
		}
	}
}

// submit registers job j. A 429 with a Retry-After (the server is
// overloaded) is waited out, plus up to a tenth more so that the
// submitters do not all come back at once, as often as the server asks;
// other retryable failures are tried again a few times.
func submit(ctx context.Context, c *apiclient.Client, o Options, j int, thr *throttled) error {
	job := &api.Job{
		Name: jobName(j), Namespace: api.DefaultNamespace, Type: api.JobService, Priority: 50,
		Groups: []*api.Group{{Name: "g", Count: o.Tasks, Tasks: []*api.Task{{
			Name: "t", Driver: api.DriverNull, Resources: api.Resources{CPU: o.TaskCPU, Memory: o.TaskMemory},
		}}}},
	}
	slowed, failures := false, 0
	for {
		_, err := c.RegisterJob(ctx, job)
		if err == nil {
			if slowed {
				thr.slowed.Add(1)
			}
			return nil
		}
		if wait, ok := apiclient.RetryAfter(err); ok && apiclient.StatusOf(err) == http.StatusTooManyRequests {
			slowed = true
			wait += time.Duration(rand.Int64N(int64(wait/10) + 1))
			thr.refusals.Add(1)
			thr.wait.Add(int64(wait))
			select {
			case <-ctx.Done():
				return fmt.Errorf("submit %s: still refused when the run ended (%w): %w", job.Name, ctx.Err(), err)
			case <-time.After(wait):
			}
			continue
		}
		// Invalid input or a refusal (any other 4xx) is not retried; an
		// unavailable server, or a 429 without a Retry-After, is, a few
		// times.
		if failures >= 5 || ctx.Err() != nil || !apiclient.Retryable(err) {
			return fmt.Errorf("submit %s: %w", job.Name, err)
		}
		failures++
		time.Sleep(time.Second)
	}
}

// submittedJobs lists the jobs a run submits, as the check expects them.
func submittedJobs(o Options) []wantJob {
	out := make([]wantJob, o.Jobs)
	for j := range out {
		out[j] = wantJob{Name: jobName(j), Group: "g", Count: o.Tasks}
	}
	return out
}

func jobName(j int) string { return fmt.Sprintf("load-%04d", j) }

// Progress reads how many allocations of the load's jobs (named load-*)
// exist and how many run, from the answering server's view.
func Progress(ctx context.Context, c *apiclient.Client) (placed, running int, err error) {
	list, err := c.Jobs(ctx, "")
	if err != nil {
		return 0, 0, err
	}
	for _, s := range list {
		if !strings.HasPrefix(s.Job.Name, "load-") {
			continue
		}
		for _, g := range s.Groups {
			placed += g.Pending + g.Running + g.Complete + g.Failed
			running += g.Running
		}
	}
	return placed, running, nil
}
