package linearize

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/gantryhq/gantry/e2e/e2ebin"
	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/apiclient"
)

var gantryBin string

func TestMain(m *testing.M) { os.Exit(e2ebin.Main(m, &gantryBin)) }

// What the test does. Counts, not times, decide what is checked; the
// durations only bound how long the faults last.
const (
	clients     = 6
	jobs        = 6
	opsDuration = 24 * time.Second // clients run this long
	requestWait = 5 * time.Second  // a request without an answer by then is indeterminate
)

// killAt are the moments (from the clients' start) at which the leader is
// killed; each is started again on its data after downFor. At cutAt one
// of the two agents is cut off from every server until the servers have
// replaced its guard allocation on the other node.
var (
	killAt  = []time.Duration{5 * time.Second, 14 * time.Second}
	downFor = 3 * time.Second
	cutAt   = 7 * time.Second
)

// heartbeatTTL is the servers' --heartbeat-ttl; stopAfter the guard
// group's disconnect.stop_after.
const (
	heartbeatTTL = 10 * time.Second
	stopAfter    = 3 * time.Second
)

// syncBuffer is a log that a process writes while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) tail(n int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	lines := strings.Split(strings.TrimSpace(s.b.String()), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// proc is one gantry process, started again with the same arguments
// (and so on the same data) after a kill.
type proc struct {
	name string
	api  *apiclient.Client // a client of its API (a server's) that asks only it; nil for an agent
	bin  string            // the program; empty: the gantry binary
	args []string
	mu   sync.Mutex
	cmd  *exec.Cmd
	log  *syncBuffer
}

func (p *proc) start(t *testing.T) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.log = &syncBuffer{}
	bin := p.bin
	if bin == "" {
		bin = gantryBin
	}
	p.cmd = exec.Command(bin, p.args...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", p.name, err)
	}
}

func (p *proc) kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && p.cmd.ProcessState == nil {
		p.cmd.Process.Signal(syscall.SIGKILL)
		p.cmd.Wait()
	}
}

func (p *proc) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.ProcessState != nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-done
	}
}

func freePorts(t *testing.T, n int) []int { return e2ebin.FreePorts(t, n) }

// serverAPI is a typed client of the one server at addr: no failover to
// another server, so that each request goes where the test sends it.
func serverAPI(addr string) *apiclient.Client {
	return apiclient.New(apiclient.Options{Servers: []string{addr}})
}

// bounded is a context for one request: one without an answer by
// requestWait is given up on.
func bounded() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), requestWait)
}

func status(p *proc) (*api.StatusResponse, error) {
	ctx, cancel := bounded()
	defer cancel()
	st, err := p.api.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("status of %s: %w", p.name, err)
	}
	return st, nil
}

// leader returns the server that says it leads, or nil.
func leader(servers []*proc) *proc {
	for _, s := range servers {
		if st, err := status(s); err == nil && st.Leader {
			return s
		}
	}
	return nil
}

func eventually(t *testing.T, limit time.Duration, what string, cond func() bool, logs ...*proc) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			for _, p := range logs {
				t.Logf("%s's log ends:\n%s", p.name, p.log.tail(15))
			}
			t.Fatalf("%s: not within %s", what, limit)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// The model: one register per job key, read as its value and whether it
// is stopped. A register writes a new value and clears stop; a stop
// succeeds only on a job that exists.
type kvState struct {
	Exists  bool
	Value   string
	Stopped bool
}

type input struct {
	Job   string
	Op    string // register | stop | read
	Value string // register: the value written
}

type output struct {
	Unknown bool    // the request got no answer: it may or may not have taken effect
	Found   bool    // stop: the job existed; read: it exists
	State   kvState // read: what it returned
}

var model = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byJob := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range history {
			k := op.Input.(input).Job
			if _, ok := byJob[k]; !ok {
				keys = append(keys, k)
			}
			byJob[k] = append(byJob[k], op)
		}
		sort.Strings(keys)
		var out [][]porcupine.Operation
		for _, k := range keys {
			out = append(out, byJob[k])
		}
		return out
	},
	Init: func() any { return kvState{} },
	Step: func(st, in, out any) (bool, any) {
		s, i, o := st.(kvState), in.(input), out.(output)
		switch i.Op {
		case "register":
			return true, kvState{Exists: true, Value: i.Value}
		case "stop":
			if o.Unknown {
				if s.Exists {
					s.Stopped = true
				}
				return true, s
			}
			if o.Found != s.Exists {
				return false, s
			}
			if s.Exists {
				s.Stopped = true
			}
			return true, s
		default: // read
			if !o.Found {
				return !s.Exists, s
			}
			return o.State == s, s
		}
	},
	DescribeOperation: func(in, out any) string {
		i, o := in.(input), out.(output)
		res := "ok"
		switch {
		case o.Unknown:
			res = "unknown"
		case i.Op == "read" && !o.Found:
			res = "not found"
		case i.Op == "read":
			res = fmt.Sprintf("%s stopped=%v", o.State.Value, o.State.Stopped)
		case i.Op == "stop" && !o.Found:
			res = "not found"
		}
		return fmt.Sprintf("%s %s %s -> %s", i.Op, i.Job, i.Value, res)
	},
	DescribeState: func(st any) string { return fmt.Sprintf("%+v", st.(kvState)) },
}

// recorder keeps the history: every operation's invocation and completion
// on the monotonic clock.
type recorder struct {
	start time.Time
	mu    sync.Mutex
	ops   []porcupine.Operation
	// acked are the jobs some register was acknowledged for.
	acked map[string]bool
	unk   int
}

func (r *recorder) now() int64 { return int64(time.Since(r.start)) }

func (r *recorder) add(client int, in input, call int64, out output) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ret := r.now()
	if out.Unknown {
		// An operation without an answer may take effect at any point
		// after its invocation: it never returns.
		ret = math.MaxInt64
		r.unk++
	}
	if in.Op == "register" && !out.Unknown {
		r.acked[in.Job] = true
	}
	r.ops = append(r.ops, porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret})
}

// errDropped marks a request that never reached a server (connection
// refused): it took no effect and is left out of the history.
var errDropped = errors.New("no server took the request")

// linJob is the job a register writes: value is its one task's V.
func linJob(name, value string) *api.Job {
	return &api.Job{Name: name, Namespace: api.DefaultNamespace, Type: api.JobBatch, Priority: api.DefaultPriority,
		Groups: []*api.Group{{Name: "g", Count: 1, Tasks: []*api.Task{{Name: "t", Driver: api.DriverNull,
			Config: api.TaskConfig{Env: map[string]string{"V": value}}, Resources: api.Resources{CPU: 10, Memory: 10}}}}}}
}

// do sends one operation through c (a client of one server, see
// serverAPI) and says what came of it. It sends it once: the client
// retries nothing a server answered and, with one server, tries no
// other.
func do(c *apiclient.Client, in input) (output, error) {
	ctx, cancel := bounded()
	defer cancel()
	var sum *api.JobSummary
	var err error
	switch in.Op {
	case "register":
		_, err = c.RegisterJob(ctx, linJob(in.Job, in.Value))
	case "stop":
		_, err = c.StopJob(ctx, api.DefaultNamespace, in.Job)
	default:
		sum, err = c.Job(ctx, api.DefaultNamespace, in.Job, apiclient.Consistent)
	}
	switch {
	case err == nil && in.Op == "read":
		if sum.Job == nil {
			return output{Unknown: true}, nil
		}
		st := kvState{Exists: true, Stopped: sum.Job.Stop}
		if len(sum.Job.Groups) == 1 && len(sum.Job.Groups[0].Tasks) == 1 {
			st.Value = sum.Job.Groups[0].Tasks[0].Config.Env["V"]
		}
		return output{Found: true, State: st}, nil
	case err == nil:
		return output{Found: true}, nil
	case errors.Is(err, syscall.ECONNREFUSED):
		// No server took it: the client got no connection.
		return output{}, errDropped
	case apiclient.IsNotFound(err) && in.Op != "register":
		return output{}, nil
	case apiclient.StatusOf(err) == http.StatusBadRequest:
		return output{}, fmt.Errorf("%s %s: %w", in.Op, in.Job, err)
	}
	// No answer in time, a connection that broke off, an answer that
	// could not be read, or a server error (etcd without a leader, a
	// timeout inside the server): the operation may have taken effect or
	// not.
	return output{Unknown: true}, nil
}

// TestLinearizableUnderLeaderKills runs concurrent clients against three
// servers while the leader is killed with SIGKILL twice and restarted on
// its data and one of two agents is cut off from every server (through
// proxies the test cuts), then checks the history for linearizability,
// that every job whose registration was acknowledged is still there, that
// every live job ends with exactly one running allocation (none lost,
// none duplicated, counted on the agents themselves), and that the cut
// agent's guard allocation (disconnect.stop_after) never ran beside its
// replacement for longer than stop_after plus one heartbeat TTL.
func TestLinearizableUnderLeaderKills(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three servers and kills them (not in -short)")
	}
	dir := t.TempDir()
	ports := freePorts(t, 12)
	var servers []*proc
	var members, addrs []string
	for i := range 3 {
		members = append(members, fmt.Sprintf("s%d=http://127.0.0.1:%d", i+1, ports[3*i+2]))
	}
	for i := range 3 {
		apiAddr := fmt.Sprintf("127.0.0.1:%d", ports[3*i])
		s := &proc{name: fmt.Sprintf("server s%d", i+1), api: serverAPI("http://" + apiAddr), args: []string{"server", "--insecure",
			"--data-dir", filepath.Join(dir, fmt.Sprintf("s%d", i+1)), "--http-addr", apiAddr,
			"--etcd-name", fmt.Sprintf("s%d", i+1),
			"--etcd-client-url", fmt.Sprintf("http://127.0.0.1:%d", ports[3*i+1]),
			"--etcd-peer-url", fmt.Sprintf("http://127.0.0.1:%d", ports[3*i+2]),
			"--initial-cluster", strings.Join(members, ","), "--heartbeat-ttl", heartbeatTTL.String(), "--log-level", "warn"}}
		servers = append(servers, s)
		addrs = append(addrs, apiAddr)
	}
	// Agent a reaches the servers only through proxies the test can cut;
	// agent b reaches them directly.
	var proxies []*cutProxy
	var viaProxy []string
	for _, a := range addrs {
		p := newCutProxy(t, a)
		proxies = append(proxies, p)
		viaProxy = append(viaProxy, p.addr())
	}
	agentArgs := func(name string, servers []string, port int) []string {
		return []string{"agent", "--insecure", "--servers", strings.Join(servers, ","),
			"--drivers", "null", "--data-dir", filepath.Join(dir, name), "--agent-addr", fmt.Sprintf("127.0.0.1:%d", port),
			"--node-name", name, "--log-level", "warn"}
	}
	agentA := &proc{name: "agent lin-a", args: agentArgs("lin-a", viaProxy, ports[9])}
	agentB := &proc{name: "agent lin-b", args: agentArgs("lin-b", addrs, ports[10])}
	// The agents' own APIs say what runs on them.
	agentAAPI := apiclient.New(apiclient.Options{Servers: []string{fmt.Sprintf("http://127.0.0.1:%d", ports[9])}})
	agentBAPI := apiclient.New(apiclient.Options{Servers: []string{fmt.Sprintf("http://127.0.0.1:%d", ports[10])}})
	all := append([]*proc{agentA, agentB}, servers...)
	t.Cleanup(func() {
		for _, p := range all {
			p.stop()
		}
	})
	for _, s := range servers {
		s.start(t)
	}
	eventually(t, 90*time.Second, "a leader among the three servers", func() bool { return leader(servers) != nil }, servers...)

	// The guard job runs on agent a, the only node at first.
	agentA.start(t)
	eventually(t, 60*time.Second, "the guard job registered", func() bool {
		l := leader(servers)
		if l == nil {
			return false
		}
		ctx, cancel := bounded()
		defer cancel()
		_, err := l.api.RegisterJob(ctx, guardJob(stopAfter))
		return err == nil
	}, servers...)
	var guardOnA string
	eventually(t, 60*time.Second, "the guard allocation running on lin-a", func() bool {
		l := leader(servers)
		if l == nil {
			return false
		}
		as, err := jobAllocs(l.api, "guard")
		local, lerr := localAllocs(agentAAPI)
		if err != nil || lerr != nil {
			return false
		}
		for _, a := range as {
			if local[a.ID] {
				guardOnA = a.ID
				return true
			}
		}
		return false
	}, agentA)
	agentB.start(t)
	eventually(t, 60*time.Second, "two nodes ready", func() bool {
		l := leader(servers)
		if l == nil {
			return false
		}
		nodes, err := nodeList(l)
		if err != nil {
			return false
		}
		ready := 0
		for _, n := range nodes {
			if n.Status == api.NodeStatusReady {
				ready++
			}
		}
		return ready == 2
	}, agentB)

	// Every guard allocation the servers ever made, for the watch.
	var guardMu sync.Mutex
	guardIDs := map[string]bool{guardOnA: true}
	isGuard := func(id string) bool {
		guardMu.Lock()
		defer guardMu.Unlock()
		return guardIDs[id]
	}
	watch := &overlapWatch{}
	stopWatch := make(chan struct{})
	var watchWG sync.WaitGroup
	watchWG.Add(1)
	go func() { defer watchWG.Done(); watch.run(stopWatch, agentAAPI, agentBAPI, isGuard) }()
	defer func() { close(stopWatch); watchWG.Wait() }()
	go func() {
		for {
			select {
			case <-stopWatch:
				return
			case <-time.After(200 * time.Millisecond):
			}
			for _, s := range servers {
				if as, err := jobAllocs(s.api, "guard"); err == nil {
					guardMu.Lock()
					for _, a := range as {
						guardIDs[a.ID] = true
					}
					guardMu.Unlock()
					break
				}
			}
		}
	}()

	rec := &recorder{start: time.Now(), acked: map[string]bool{}}
	ctx, cancel := context.WithTimeout(context.Background(), opsDuration)
	defer cancel()
	failures := runClients(ctx, rec, servers)

	// The nemesis: cut agent a off at cutAt (until its guard runs on b,
	// below); kill the leader, start it again on its data.
	cutDone := make(chan struct{})
	go func() {
		defer close(cutDone)
		select {
		case <-ctx.Done():
		case <-time.After(time.Until(rec.start.Add(cutAt))):
		}
		for _, p := range proxies {
			p.setCut(true)
		}
	}()
	var kills []string
	for _, at := range killAt {
		select {
		case <-ctx.Done():
		case <-time.After(time.Until(rec.start.Add(at))):
		}
		var l *proc
		eventually(t, 60*time.Second, "a leader to kill", func() bool { l = leader(servers); return l != nil }, servers...)
		l.kill()
		kills = append(kills, l.name)
		time.Sleep(downFor)
		l.start(t)
	}
	if err := failures(); err != nil {
		t.Fatal(err)
	}
	<-cutDone

	// The faults healed: every server answers and one leads.
	for _, s := range servers {
		eventually(t, 90*time.Second, s.name+" to answer after the faults", func() bool { _, err := status(s); return err == nil }, s)
	}
	eventually(t, 90*time.Second, "a leader after the faults", func() bool { return leader(servers) != nil }, servers...)

	// The cut agent's guard is replaced on the other node, and only then
	// is the cut healed: the cut agent must not run it again.
	eventually(t, 120*time.Second, "the guard replaced on lin-b while lin-a is cut off", func() bool {
		local, err := localAllocs(agentBAPI)
		if err != nil {
			return false
		}
		for id := range local {
			if isGuard(id) {
				return true
			}
		}
		return false
	}, append([]*proc{agentA, agentB}, servers...)...)
	// The cut lasts past the bound, so that a cut agent that kept its
	// guard running would be seen running it beside the replacement.
	time.Sleep(stopAfter + heartbeatTTL + 2*time.Second)
	for _, p := range proxies {
		p.setCut(false)
	}
	eventually(t, 90*time.Second, "lin-a back after the cut", func() bool {
		l := leader(servers)
		if l == nil {
			return false
		}
		nodes, err := nodeList(l)
		if err != nil {
			return false
		}
		for _, n := range nodes {
			if n.Name == "lin-a" {
				return n.Status == api.NodeStatusReady
			}
		}
		return false
	}, agentA)

	// Final reads of every job through every server join the history:
	// an acknowledged job they do not find was lost.
	final := finalReads(t, rec, servers)
	for job := range rec.acked {
		for srv, out := range final[job] {
			if !out.Found {
				t.Errorf("job %s was acknowledged but %s does not find it after the faults: lost", job, srv)
			}
		}
	}

	// No allocation lost or duplicated: every live job ends with exactly
	// one allocation running, on the servers' books and on the agents;
	// a stopped one with none. The guard runs once, on lin-b.
	l := leader(servers)
	for j := range jobs {
		job := fmt.Sprintf("lin-%d", j)
		out := final[job][servers[0].name]
		want := 0
		if out.Found && !out.State.Stopped {
			want = 1
		}
		checkRunsOnce(t, l.api, job, want, agentAAPI, agentBAPI, agentA, agentB)
	}
	checkRunsOnce(t, l.api, "guard", 1, agentAAPI, agentBAPI, agentA, agentB)
	time.Sleep(2 * time.Second) // the watch sees a restarted guard on lin-a, if any
	watch.mu.Lock()
	lastOnCut, firstOnOther, samples := watch.lastOnCut, watch.firstOnOther, watch.samples
	watch.mu.Unlock()
	if both := lastOnCut.Sub(firstOnOther); !firstOnOther.IsZero() && both > stopAfter+heartbeatTTL {
		t.Errorf("the guard ran on both nodes for %s, past stop_after (%s) plus one heartbeat TTL (%s)", both.Round(time.Millisecond), stopAfter, heartbeatTTL)
	}
	if gap := firstOnOther.Sub(lastOnCut); gap >= 0 {
		t.Logf("guard: last seen on the cut node %s before its replacement first ran on the other (%d samples)", gap.Round(time.Millisecond), samples)
	} else {
		t.Logf("guard: ran on both nodes for %s (%d samples)", (-gap).Round(time.Millisecond), samples)
	}

	counts := map[string]int{}
	for _, op := range rec.ops {
		counts[op.Input.(input).Op]++
	}
	t.Logf("killed %s; %d operations recorded (%d register, %d stop, %d read), %d without an answer; %d jobs acknowledged",
		strings.Join(kills, " then "), len(rec.ops), counts["register"], counts["stop"], counts["read"], rec.unk, len(rec.acked))
	checkHistory(t, rec)
}

// TestModelRejectsWhatIsNotLinearizable: the checker, given histories
// that a correct store could not produce, says so; and an answerless
// register may take effect late.
func TestModelRejectsWhatIsNotLinearizable(t *testing.T) {
	op := func(client int, in input, call, ret int64, out output) porcupine.Operation {
		return porcupine.Operation{ClientId: client, Input: in, Call: call, Return: ret, Output: out}
	}
	reg := func(v string) input { return input{Job: "j", Op: "register", Value: v} }
	read := input{Job: "j", Op: "read"}
	found := func(v string, stopped bool) output {
		return output{Found: true, State: kvState{Exists: true, Value: v, Stopped: stopped}}
	}
	for _, tc := range []struct {
		name string
		ops  []porcupine.Operation
		want bool
	}{
		{"a read after a register sees it", []porcupine.Operation{
			op(0, reg("a"), 0, 10, output{Found: true}), op(1, read, 20, 30, found("a", false))}, true},
		{"a stale read after an acknowledged register", []porcupine.Operation{
			op(0, reg("a"), 0, 10, output{Found: true}), op(0, reg("b"), 11, 12, output{Found: true}),
			op(1, read, 20, 30, found("a", false))}, false},
		{"a lost job", []porcupine.Operation{
			op(0, reg("a"), 0, 10, output{Found: true}), op(1, read, 20, 30, output{})}, false},
		{"a stop of a job that does not exist yet", []porcupine.Operation{
			op(0, input{Job: "j", Op: "stop"}, 0, 5, output{Found: true}), op(1, reg("a"), 10, 20, output{Found: true})}, false},
		{"an answerless register seen late", []porcupine.Operation{
			op(0, reg("a"), 0, math.MaxInt64, output{Unknown: true}), op(1, read, 20, 30, output{}),
			op(1, read, 40, 50, found("a", false))}, true},
		{"a value read back after it was overwritten", []porcupine.Operation{
			op(0, reg("a"), 0, 10, output{Found: true}), op(1, read, 20, 30, found("a", false)),
			op(0, reg("b"), 40, 50, output{Found: true}), op(1, read, 60, 70, found("b", false)),
			op(1, read, 80, 90, found("a", false))}, false},
	} {
		if got := porcupine.CheckOperations(model, tc.ops); got != tc.want {
			t.Errorf("%s: linearizable %v, want %v", tc.name, got, tc.want)
		}
	}
}

// checkRunsOnce waits until job has exactly want allocations running by
// the servers' books (desired run, client running) and the same number
// running on the two agents together, and says what it saw if that does
// not come within a minute.
func checkRunsOnce(t *testing.T, server *apiclient.Client, job string, want int, agentA, agentB *apiclient.Client, logs ...*proc) {
	t.Helper()
	var last string
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		as, err := jobAllocs(server, job)
		a, errA := localAllocs(agentA)
		b, errB := localAllocs(agentB)
		if err != nil || errA != nil || errB != nil {
			last = fmt.Sprint(err, errA, errB)
			continue
		}
		books, onNodes := 0, 0
		for _, al := range as {
			if al.DesiredStatus == api.AllocDesiredRun && al.ClientStatus == api.AllocRunning {
				books++
			}
			if a[al.ID] {
				onNodes++
			}
			if b[al.ID] {
				onNodes++
			}
		}
		if books == want && onNodes == want {
			return
		}
		last = fmt.Sprintf("%d running by the servers' books, %d on the agents", books, onNodes)
	}
	for _, p := range logs {
		t.Logf("%s's log ends:\n%s", p.name, p.log.tail(15))
	}
	t.Errorf("job %s: want exactly %d allocation(s) running, lost or duplicated otherwise; last seen: %s", job, want, last)
}

// nodeList lists the nodes through server p.
func nodeList(p *proc) ([]*api.Node, error) {
	ctx, cancel := bounded()
	defer cancel()
	nodes, err := p.api.Nodes(ctx)
	if err != nil {
		return nil, fmt.Errorf("nodes through %s: %w", p.name, err)
	}
	return nodes, nil
}
