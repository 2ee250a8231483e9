package disconnect

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gantryhq/gantry/e2e/e2ebin"
	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/apiclient"
)

var gantryBin string

func TestMain(m *testing.M) { os.Exit(e2ebin.Main(m, &gantryBin)) }

// logBuffer is a process's output, written by it while the test reads.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// proc is one gantry process; start again runs it on the same data.
type proc struct {
	name string
	args []string
	cmd  *exec.Cmd
	log  *logBuffer
}

func (p *proc) start(t *testing.T) {
	t.Helper()
	p.log = &logBuffer{}
	p.cmd = exec.Command(gantryBin, p.args...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", p.name, err)
	}
}

func (p *proc) signal(sig syscall.Signal) {
	if p.cmd != nil && p.cmd.ProcessState == nil {
		p.cmd.Process.Signal(sig)
		done := make(chan struct{})
		go func() { p.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			p.cmd.Process.Signal(syscall.SIGKILL)
			<-done
		}
	}
}

func freePorts(t *testing.T, n int) []int { return e2ebin.FreePorts(t, n) }

// bounded is a context for one request, given up on after 5 s.
func bounded() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 5*time.Second)
}

func eventually(t *testing.T, limit time.Duration, what string, cond func() bool, procs ...*proc) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			for _, p := range procs {
				t.Logf("%s's log:\n%s", p.name, p.log.String())
			}
			t.Fatalf("%s: not within %s", what, limit)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestAgentStopsWorkWhenCutOff (issue 19): a node cut off from the servers
// ran its work forever while the servers replaced it elsewhere. Here the
// only server is killed with SIGKILL; the agent, unable to reach any
// server, stops the allocation of the group with disconnect.stop_after 3s
// itself (its log says so) and leaves the group without stop_after
// running. Once the server runs again on its data, the agent reports the
// stopped allocation failed because the node was disconnected.
func TestAgentStopsWorkWhenCutOff(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server and an agent and kills the server (not in -short)")
	}
	dir := t.TempDir()
	ports := freePorts(t, 4)
	apiAddr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	c := apiclient.New(apiclient.Options{Servers: []string{"http://" + apiAddr}})
	server := &proc{name: "server", args: []string{"server", "--insecure", "--data-dir", filepath.Join(dir, "server"), "--http-addr", apiAddr,
		"--etcd-client-url", fmt.Sprintf("http://127.0.0.1:%d", ports[1]), "--etcd-peer-url", fmt.Sprintf("http://127.0.0.1:%d", ports[2]),
		"--heartbeat-ttl", "30s", "--log-level", "warn"}}
	agent := &proc{name: "agent", args: []string{"agent", "--insecure", "--servers", apiAddr, "--drivers", "null",
		"--data-dir", filepath.Join(dir, "agent"), "--agent-addr", fmt.Sprintf("127.0.0.1:%d", ports[3]),
		"--node-name", "cut-node", "--log-level", "info"}}
	t.Cleanup(func() { agent.signal(syscall.SIGTERM); server.signal(syscall.SIGTERM) })
	server.start(t)
	eventually(t, 60*time.Second, "the server to lead", func() bool {
		ctx, cancel := bounded()
		defer cancel()
		st, err := c.Status(ctx)
		return err == nil && st.Leader
	}, server)
	agent.start(t)

	tasks := func() []*api.Task {
		return []*api.Task{{Name: "t", Driver: api.DriverNull, Resources: api.Resources{CPU: 10, Memory: 10}}}
	}
	job := &api.Job{Name: "cut", Namespace: api.DefaultNamespace, Type: api.JobService, Priority: api.DefaultPriority, Groups: []*api.Group{
		{Name: "train", Count: 1, Disconnect: &api.Disconnect{StopAfter: api.Duration(3 * time.Second)}, Tasks: tasks()},
		{Name: "web", Count: 1, Tasks: tasks()}}}
	ctx, cancel := bounded()
	_, err := c.RegisterJob(ctx, job)
	cancel()
	if err != nil {
		t.Fatalf("register the job: %v", err)
	}
	byGroup := func() map[string]*api.Allocation {
		ctx, cancel := bounded()
		defer cancel()
		allocs, err := c.JobAllocs(ctx, api.DefaultNamespace, "cut", false)
		if err != nil {
			return nil
		}
		m := map[string]*api.Allocation{}
		for _, a := range allocs {
			m[a.Group] = a
		}
		return m
	}
	var train, web *api.Allocation
	eventually(t, 60*time.Second, "both allocations running", func() bool {
		m := byGroup()
		train, web = m["train"], m["web"]
		return train != nil && web != nil && train.ClientStatus == api.AllocRunning && web.ClientStatus == api.AllocRunning
	}, server, agent)

	server.signal(syscall.SIGKILL)
	stopLine := "stopping an allocation: the node cannot reach any server"
	eventually(t, 60*time.Second, "the agent to stop the train allocation itself", func() bool {
		for _, line := range strings.Split(agent.log.String(), "\n") {
			if strings.Contains(line, stopLine) && strings.Contains(line, train.ShortID()) {
				return true
			}
		}
		return false
	}, agent)
	for _, line := range strings.Split(agent.log.String(), "\n") {
		if strings.Contains(line, stopLine) && strings.Contains(line, web.ShortID()) {
			t.Errorf("the agent stopped the web allocation, whose group has no stop_after: %s", line)
		}
	}

	server.start(t)
	eventually(t, 90*time.Second, "the train allocation reported failed because the node was disconnected", func() bool {
		ctx, cancel := bounded()
		defer cancel()
		a, err := c.Alloc(ctx, train.ID)
		return err == nil && a.ClientStatus == api.AllocFailed && strings.Contains(a.ClientReason, "node was disconnected")
	}, server, agent)
	ctx, cancel = bounded()
	defer cancel()
	if w, err := c.Alloc(ctx, web.ID); err != nil || w.ClientStatus != api.AllocRunning {
		t.Errorf("web allocation after the reconnect: %s (%v), want running", w.ClientStatus, err)
	}
}
