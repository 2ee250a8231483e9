package server

import (
	"context"
	"encoding/json"
	"net"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/state"
	"github.com/gantryhq/gantry/internal/vsphere"
)

// A vCenter that accepts connections and never answers holds only its
// collector: the leader keeps placing work, and the status says the
// vCenter is not connected.
func TestHungVCenterDoesNotBlockScheduling(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var held []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			held = append(held, c) // accepted, never answered
		}
	}()
	s := startTestServer(t, Config{})
	ctx := context.Background()
	waitFor(t, "leadership", s.IsLeader)
	// Stored directly: 'vsphere add' would refuse a vCenter that does not
	// answer.
	raw, _ := json.Marshal(vsphere.Connection{Name: "hung", URL: "https://" + l.Addr().String() + "/sdk", User: "u", Password: "p", Insecure: true})
	if err := s.store.CreateVSphereConnection(ctx, "hung", raw); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the collector to start", func() bool { return len(s.vsphere.Collectors()) == 1 })
	node := &api.Node{ID: "n1", Name: "n1", Resources: api.NodeResources{CPU: 4000, Memory: 4096},
		Drivers: map[string]api.DriverInfo{api.DriverExec: {Detected: true, Healthy: true}}}
	if err := s.store.RegisterNode(ctx, node, time.Minute, time.Now()); err != nil {
		t.Fatal(err)
	}
	job := &api.Job{Name: "w", Namespace: api.DefaultNamespace, Type: api.JobService, Priority: 50, Groups: []*api.Group{{
		Name: "g", Count: 2, Tasks: []*api.Task{{Name: "t", Driver: api.DriverExec, Config: api.TaskConfig{Command: "/bin/sleep"},
			Resources: api.Resources{CPU: 100, Memory: 64}}}}}}
	if _, err := s.store.RegisterJob(ctx, job, s.newEval(job.Namespace, job.Name, api.TriggerJobRegister), time.Now()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "two allocations", func() bool {
		return len(s.store.Allocs(state.AllocFilter{Namespace: job.Namespace, Job: job.Name})) == 2
	})
	st := s.vsphere.Collectors()[0].Status(false)
	if st.Connected {
		t.Fatalf("a vCenter that never answered shows as connected")
	}
	t.Logf("placed while the collector says: %s", st.LastError)
}
