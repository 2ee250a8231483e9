package vspheremon

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/state"
	"github.com/gantryhq/gantry/internal/vsphere"
	"github.com/gantryhq/gantry/internal/vsphere/vcsim"
	"github.com/vmware/govmomi/object"
)

func startSim(t *testing.T) (*vcsim.Sim, vsphere.Connection) {
	t.Helper()
	sim, err := vcsim.Start(vcsim.Default())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	return sim, vsphere.Connection{Name: "sim", URL: sim.URL, User: "gantry", Password: "simulated", CACert: sim.CACert, DrainOnMaintenance: true}
}

func (m *Monitor) pendingChanges() []api.VSphereChange {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]api.VSphereChange(nil), m.pending...)
}

func count(cs []api.VSphereChange, typ, name string) int {
	n := 0
	for _, c := range cs {
		if c.Type == typ && c.Name == name {
			n++
		}
	}
	return n
}

// hostInMaintenance waits until the collector sees host in (or out of)
// maintenance mode.
func hostInMaintenance(t *testing.T, m *Monitor, host string, want bool) {
	t.Helper()
	waitFor(t, "host "+host+" maintenance "+map[bool]string{true: "on", false: "off"}[want], func() bool {
		inv := m.Collectors()[0].Inventory()
		i := slices.IndexFunc(inv.Hosts, func(h api.VSphereHost) bool { return h.Name == host })
		return i >= 0 && inv.Hosts[i].Maintenance == want
	})
}

// TestMatchAndDrain drives the monitor's rounds against the simulated
// vCenter step by step: a node whose BIOS UUID is a VM's gets the VM's
// vsphere.* attributes (once, with one matched change); when the VM's
// host enters maintenance the node is drained once and its jobs
// evaluated; an operator who re-enables it is not overruled until the
// host's next maintenance; a removed connection takes its attributes
// with it; a node without a BIOS UUID is never touched.
func TestMatchAndDrain(t *testing.T) {
	_, conn := startSim(t)
	ctx := context.Background()
	fence := &state.Fence{Key: "leader", Rev: 1}
	st := newStore(&api.Node{ID: "n2", Name: "plain"})
	raw, _ := json.Marshal(conn)
	st.conns["sim"] = raw
	m := newMonitor(st, front{})
	t.Cleanup(m.stopAll)
	if err := m.sync(ctx); err != nil {
		t.Fatal(err)
	}
	if len(m.Collectors()) != 1 {
		t.Fatalf("%d collectors for one connection", len(m.Collectors()))
	}
	var inv *vsphere.Inventory
	waitFor(t, "the simulator's inventory", func() bool { inv = m.Collectors()[0].Inventory(); return inv != nil })
	vm := inv.VMs[0]
	st.mu.Lock()
	st.nodes["n1"] = &api.Node{ID: "n1", Name: "vm-node", Attributes: map[string]string{api.AttrBIOSUUID: strings.ToUpper(vm.UUID)}}
	st.mu.Unlock()

	for range 2 {
		if err := m.apply(ctx, fence); err != nil {
			t.Fatal(err)
		}
	}
	n := st.node("n1")
	if n.Attributes[api.AttrVSphereVCenter] != "sim" || n.Attributes[api.AttrVSphereVM] != vm.Name || n.Attributes[api.AttrVSphereHost] != vm.Host {
		t.Errorf("matched node's attributes %v, want vcenter sim, vm %s, host %s", n.Attributes, vm.Name, vm.Host)
	}
	if got := count(m.pendingChanges(), api.VSphereNodeMatched, "vm-node"); got != 1 {
		t.Errorf("%d node-matched changes after two rounds, want 1", got)
	}
	if len(st.node("n2").Attributes) != 0 {
		t.Errorf("a node without a BIOS UUID got %v", st.node("n2").Attributes)
	}
	full := m.Status(m.Collectors()[0], true)
	if i := slices.IndexFunc(full.VMs, func(v api.VSphereVM) bool { return v.ID == vm.ID }); i < 0 || full.VMs[i].Node != "vm-node" {
		t.Errorf("status does not name vm-node as %s's node", vm.Name)
	}

	// The VM's host enters maintenance.
	cl, err := vsphere.Dial(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Logout(ctx)
	hi := slices.IndexFunc(inv.Hosts, func(h api.VSphereHost) bool { return h.Name == vm.Host })
	ref, ok := inv.Ref(inv.Hosts[hi].ID)
	if !ok {
		t.Fatalf("no reference for host %s", vm.Host)
	}
	host := object.NewHostSystem(cl.Client, ref)
	maintenance := func(on bool) {
		t.Helper()
		var task *object.Task
		if on {
			task, err = host.EnterMaintenanceMode(ctx, 0, false, nil)
		} else {
			task, err = host.ExitMaintenanceMode(ctx, 0)
		}
		if err != nil || task.Wait(ctx) != nil {
			t.Fatalf("maintenance %v of %s: %v", on, vm.Host, err)
		}
		hostInMaintenance(t, m, vm.Host, on)
	}
	maintenance(true)
	for range 2 {
		if err := m.apply(ctx, fence); err != nil {
			t.Fatal(err)
		}
	}
	n = st.node("n1")
	if n.Drain == nil || !n.Drain.StartedAt.Equal(testNow) || !n.Drain.Deadline.Equal(testNow.Add(time.Hour)) {
		t.Fatalf("node on a host in maintenance: drain %+v, want started now with an hour's deadline", n.Drain)
	}
	if got := st.evaluated(); !slices.Equal(got, []string{"n1"}) {
		t.Errorf("jobs evaluated on %v, want n1 once", got)
	}
	if got := count(m.pendingChanges(), api.VSphereNodeDrained, "vm-node"); got != 1 {
		t.Errorf("%d node-drained changes, want 1", got)
	}

	// The operator takes the node back during the same maintenance.
	st.setDrain("n1", nil)
	if err := m.apply(ctx, fence); err != nil {
		t.Fatal(err)
	}
	if st.node("n1").Drain != nil || len(st.evaluated()) != 1 {
		t.Errorf("the monitor drained a node the operator re-enabled during the same maintenance")
	}

	// The next maintenance drains it again.
	maintenance(false)
	if err := m.apply(ctx, fence); err != nil {
		t.Fatal(err)
	}
	maintenance(true)
	if err := m.apply(ctx, fence); err != nil {
		t.Fatal(err)
	}
	if st.node("n1").Drain == nil || len(st.evaluated()) != 2 {
		t.Errorf("the host's next maintenance did not drain the node again (drain %+v, evaluations %v)", st.node("n1").Drain, st.evaluated())
	}

	// The connection is removed: its collector stops and its attributes go.
	delete(st.conns, "sim")
	if err := m.sync(ctx); err != nil {
		t.Fatal(err)
	}
	if len(m.Collectors()) != 0 {
		t.Fatalf("%d collectors after the connection was removed", len(m.Collectors()))
	}
	if err := m.apply(ctx, fence); err != nil {
		t.Fatal(err)
	}
	if got := st.node("n1").Attributes; len(got) != 1 || got[api.AttrBIOSUUID] == "" {
		t.Errorf("after the connection was removed the node has %v, want its BIOS UUID only", got)
	}
}

// TestRunRecordsAndStepsDown: Run records the changes handed to Notify,
// and returns state.ErrNotLeader once a node write finds that
// leadership moved (here: a node still carrying what a removed
// connection said).
func TestRunRecordsAndStepsDown(t *testing.T) {
	st := newStore()
	m := newMonitor(st, front{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx, &state.Fence{Key: "leader", Rev: 1}) }()
	m.Notify([]api.VSphereChange{{VCenter: "vc", Kind: "vm", Name: "vm-1", Type: api.VSphereVMPoweredOff}})
	waitFor(t, "the change to be recorded", func() bool {
		st.mu.Lock()
		defer st.mu.Unlock()
		return count(st.changes, api.VSphereVMPoweredOff, "vm-1") == 1
	})
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run ended by its context: %v, want nil", err)
	}

	st = newStore(&api.Node{ID: "n1", Name: "n1", Attributes: map[string]string{api.AttrVSphereVCenter: "removed", api.AttrVSphereHost: "esx-1"}})
	st.notLeader = true
	m = newMonitor(st, front{})
	if err := m.Run(context.Background(), &state.Fence{Key: "old", Rev: 1}); !errors.Is(err, state.ErrNotLeader) {
		t.Errorf("Run after leadership moved: %v, want state.ErrNotLeader", err)
	}
	if len(m.Collectors()) != 0 {
		t.Errorf("collectors still running after Run returned")
	}
}
