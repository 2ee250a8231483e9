package agent_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/agent"
	"github.com/gantryhq/gantry/internal/driver"
	"github.com/gantryhq/gantry/internal/driver/null"
	"github.com/gantryhq/gantry/internal/server"
	"github.com/gantryhq/gantry/internal/state/statetest"
)

// slowRecover is the null driver whose scan for tasks of an earlier run
// waits until the node is registered (or gives up), as a scan of a busy
// container engine takes long, and says whether it saw the registration.
type slowRecover struct {
	*null.Driver
	registered func() bool
	sawNode    chan bool
}

func (d *slowRecover) Recover(ctx context.Context, nodeID string) ([]*driver.Handle, error) {
	seen := false
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && ctx.Err() == nil; time.Sleep(50 * time.Millisecond) {
		if d.registered() {
			seen = true
			break
		}
	}
	d.sawNode <- seen
	return nil, nil
}

// TestAgentRegistersBeforeRecoveringTasks: the agent scanned for the tasks
// of its earlier run before it registered, and a scan longer than the
// heartbeat TTL got the node marked down and all its work replaced. It now
// registers (and heartbeats) first.
func TestAgentRegistersBeforeRecoveringTasks(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st := statetest.Open(t, "/register-test/")
	ctx, cancel := context.WithCancel(context.Background())
	srv := server.New(server.Config{ID: "s1", HTTPAddr: "127.0.0.1:0", HeartbeatTTL: 3 * time.Second}, st, log)
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	var a *agent.Agent
	ready := make(chan struct{})
	d := &slowRecover{Driver: null.New(), sawNode: make(chan bool, 1), registered: func() bool {
		<-ready
		_, ok := st.Node(a.NodeID())
		return ok
	}}
	a, err := agent.New(agent.Config{Servers: []string{srv.Addr()}, DataDir: t.TempDir(), NodeName: "n1", HTTPAddr: "127.0.0.1:0",
		Drivers: []driver.Driver{d}, SampleInterval: -1}, log)
	if err != nil {
		t.Fatal(err)
	}
	close(ready)
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		srv.Wait()
	})
	if !<-d.sawNode {
		t.Fatal("the agent looked for the tasks of its earlier run before it registered the node")
	}
}
