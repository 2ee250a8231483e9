package linearize

import (
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/apiclient"
)

// cutProxy stands between one agent and one server: while cut, every
// connection it holds is closed and every new one is closed at once, so
// the agent cannot reach that server (and the server, which never calls
// an agent over it, cannot reach the agent either).
type cutProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  map[net.Conn]bool
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	t.Cleanup(func() { ln.Close(); p.setCut(true) })
	go p.serve()
	return p
}

func (p *cutProxy) addr() string { return p.ln.Addr().String() }

func (p *cutProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.pipe(c)
	}
}

func (p *cutProxy) pipe(c net.Conn) {
	if !p.track(c) {
		c.Close()
		return
	}
	defer p.untrack(c)
	s, err := net.DialTimeout("tcp", p.target, 2*time.Second)
	if err != nil {
		c.Close()
		return
	}
	if !p.track(s) {
		s.Close()
		c.Close()
		return
	}
	defer p.untrack(s)
	done := make(chan struct{}, 2)
	go func() { io.Copy(s, c); done <- struct{}{} }()
	go func() { io.Copy(c, s); done <- struct{}{} }()
	<-done
	c.Close()
	s.Close()
	<-done
}

// track registers a connection unless the proxy is cut.
func (p *cutProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		return false
	}
	p.conns[c] = true
	return true
}

func (p *cutProxy) untrack(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c)
}

func (p *cutProxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for c := range p.conns {
			c.Close()
		}
		p.conns = map[net.Conn]bool{}
	}
}

// localAllocs asks an agent's own API (agent: a client of that agent)
// which allocations have a task running on it.
func localAllocs(agent *apiclient.Client) (map[string]bool, error) {
	ctx, cancel := bounded()
	defer cancel()
	list, err := agent.AgentAllocs(ctx)
	if err != nil {
		return nil, fmt.Errorf("allocations running on the agent at %s: %w", agent.Address(), err)
	}
	out := map[string]bool{}
	for _, a := range list {
		out[a.ID] = true
	}
	return out, nil
}

// jobAllocs lists a job's allocations through a server; none for a job
// it does not know.
func jobAllocs(server *apiclient.Client, job string) ([]*api.Allocation, error) {
	ctx, cancel := bounded()
	defer cancel()
	as, err := server.JobAllocs(ctx, api.DefaultNamespace, job, false)
	if apiclient.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("allocations of %s: %w", job, err)
	}
	return as, nil
}

// overlapWatch samples, every 100 ms, which agents run an allocation of
// one job, and remembers the last time the cut agent ran one and the
// first time the other did.
type overlapWatch struct {
	mu           sync.Mutex
	lastOnCut    time.Time
	firstOnOther time.Time
	samples      int
}

func (w *overlapWatch) run(stop <-chan struct{}, cutAgent, otherAgent *apiclient.Client, isGuard func(id string) bool) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		now := time.Now()
		a, errA := localAllocs(cutAgent)
		b, errB := localAllocs(otherAgent)
		w.mu.Lock()
		w.samples++
		if errA == nil {
			for id := range a {
				if isGuard(id) {
					w.lastOnCut = now
				}
			}
		}
		if errB == nil && w.firstOnOther.IsZero() {
			for id := range b {
				if isGuard(id) {
					w.firstOnOther = now
				}
			}
		}
		w.mu.Unlock()
	}
}

// guardJob is a service job whose group a cut-off node must stop by
// itself after stopAfter.
func guardJob(stopAfter time.Duration) *api.Job {
	return &api.Job{Name: "guard", Namespace: api.DefaultNamespace, Type: api.JobService, Priority: api.DefaultPriority,
		Groups: []*api.Group{{Name: "g", Count: 1, Disconnect: &api.Disconnect{StopAfter: api.Duration(stopAfter)},
			Tasks: []*api.Task{{Name: "t", Driver: api.DriverNull, Resources: api.Resources{CPU: 10, Memory: 10}}}}}}
}
