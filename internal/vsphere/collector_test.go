package vsphere_test

import (
	"context"
	"errors"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/vsphere"
	"github.com/gantryhq/gantry/internal/vsphere/vcsim"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
)

func startSim(t *testing.T, cfg vcsim.Config) *vcsim.Sim {
	t.Helper()
	s, err := vcsim.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func conn(s *vcsim.Sim) vsphere.Connection {
	return vsphere.Connection{Name: "vc1", URL: s.URL, User: "gantry", Password: "simulated", CACert: s.CACert}
}

// recorder collects the changes a collector reports.
type recorder struct {
	mu      sync.Mutex
	changes []api.VSphereChange
}

func (r *recorder) notify(cs []api.VSphereChange) {
	r.mu.Lock()
	r.changes = append(r.changes, cs...)
	r.mu.Unlock()
}

func (r *recorder) has(typ, name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.changes {
		if c.Type == typ && c.Name == name {
			return true
		}
	}
	return false
}

func eventually(t *testing.T, d time.Duration, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func run(t *testing.T, c *vsphere.Collector) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

// TestInventoryMatchesModel checks counts and fields of hosts, VMs and
// datastores against what the simulator's own registry holds.
func TestInventoryMatchesModel(t *testing.T) {
	cfg := vcsim.Default()
	cfg.Clusters, cfg.HostsPerCluster, cfg.Standalone, cfg.VMs, cfg.Datastores = 2, 3, 1, 5, 2
	s := startSim(t, cfg)
	c := vsphere.NewCollector(conn(s), vsphere.Options{Interval: 200 * time.Millisecond})
	run(t, c)
	eventually(t, 30*time.Second, "the first inventory", func() bool { return c.Inventory() != nil })
	inv := c.Inventory()
	count := s.Model.Count()
	if len(inv.Hosts) != count.Host || len(inv.VMs) != count.Machine || len(inv.Datastores) != count.Datastore ||
		len(inv.Clusters) != count.Cluster || len(inv.Datacenters) != count.Datacenter {
		t.Fatalf("inventory has %d hosts, %d VMs, %d datastores, %d clusters, %d datacenters; the model %d, %d, %d, %d, %d",
			len(inv.Hosts), len(inv.VMs), len(inv.Datastores), len(inv.Clusters), len(inv.Datacenters),
			count.Host, count.Machine, count.Datastore, count.Cluster, count.Datacenter)
	}
	ctx := context.Background()
	reg := s.Model.Service.Context.Map
	for _, h := range inv.Hosts {
		ref, _ := inv.Ref(h.ID)
		sh := reg.Get(ref).(*simulator.HostSystem)
		if h.Name != sh.Name || h.Model != sh.Summary.Hardware.Model || h.CPUCores != int(sh.Summary.Hardware.NumCpuCores) ||
			h.MemoryMiB != sh.Summary.Hardware.MemorySize>>20 || h.Version != sh.Summary.Config.Product.Version ||
			h.Build != sh.Summary.Config.Product.Build || h.ConnectionState != string(sh.Runtime.ConnectionState) {
			t.Errorf("host %s: got %+v, the simulator has %+v / %+v", h.Name, h, sh.Summary.Hardware, sh.Summary.Config.Product)
		}
		var parent mo.ManagedEntity
		reg.Get(*sh.Parent)
		if sh.Parent.Type == "ClusterComputeResource" {
			parent = reg.Get(*sh.Parent).(*simulator.ClusterComputeResource).ManagedEntity
			if h.Cluster != parent.Name {
				t.Errorf("host %s: cluster %q, the simulator has %q", h.Name, h.Cluster, parent.Name)
			}
		} else if h.Cluster != "" {
			t.Errorf("standalone host %s: cluster %q", h.Name, h.Cluster)
		}
		if h.Datacenter == "" {
			t.Errorf("host %s has no datacenter", h.Name)
		}
	}
	for _, v := range inv.VMs {
		ref, _ := inv.Ref(v.ID)
		sv := reg.Get(ref).(*simulator.VirtualMachine)
		host := reg.Get(*sv.Runtime.Host).(*simulator.HostSystem)
		if v.Name != sv.Name || v.UUID != sv.Config.Uuid || v.VCPU != int(sv.Config.Hardware.NumCPU) ||
			v.MemoryMiB != int(sv.Config.Hardware.MemoryMB) || v.PowerState != string(sv.Runtime.PowerState) ||
			v.Host != host.Name || v.GuestOS != sv.Config.GuestFullName {
			t.Errorf("VM %s: got %+v, the simulator has uuid %s, %d vCPU, %d MiB, %s on %s", v.Name, v, sv.Config.Uuid,
				sv.Config.Hardware.NumCPU, sv.Config.Hardware.MemoryMB, sv.Runtime.PowerState, host.Name)
		}
		if len(v.Datastores) == 0 {
			t.Errorf("VM %s has no datastore", v.Name)
		}
	}
	for _, d := range inv.Datastores {
		ref, _ := inv.Ref(d.ID)
		sd := reg.Get(ref).(*simulator.Datastore)
		if d.Name != sd.Name || d.CapacityBytes != sd.Summary.Capacity || d.FreeBytes != sd.Summary.FreeSpace {
			t.Errorf("datastore %s: got %+v, the simulator has %+v", d.Name, d, sd.Summary)
		}
	}
	_ = ctx
	st := c.Status(true)
	if !st.Connected || st.Counts.VMs != count.Machine || len(st.VMs) != count.Machine {
		t.Fatalf("status: connected %v, %d VMs counted, %d listed", st.Connected, st.Counts.VMs, len(st.VMs))
	}
}

// TestChangesAndHistory powers a VM off and puts a host into maintenance
// through govmomi, and expects both as changes and in the status within
// one interval; the history fills with performance samples.
func TestChangesAndHistory(t *testing.T) {
	s := startSim(t, vcsim.Default())
	rec := &recorder{}
	c := vsphere.NewCollector(conn(s), vsphere.Options{Interval: 300 * time.Millisecond, Notify: rec.notify})
	run(t, c)
	eventually(t, 30*time.Second, "the first inventory", func() bool { return c.Inventory() != nil })

	ctx := context.Background()
	cl, err := vsphere.Dial(ctx, conn(s))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Logout(ctx)
	f := find.NewFinder(cl.Client, true)
	dc, err := f.DefaultDatacenter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f.SetDatacenter(dc)
	vms, err := f.VirtualMachineList(ctx, "*")
	if err != nil {
		t.Fatal(err)
	}
	vm := vms[0]
	task, err := vm.PowerOff(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	hosts, err := f.HostSystemList(ctx, "*/*")
	if err != nil {
		t.Fatal(err)
	}
	// A host in a cluster other than the one vm runs on is fine: any host.
	host := hosts[0]
	task, err = host.EnterMaintenanceMode(ctx, 0, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the power-off and maintenance changes", func() bool {
		return rec.has(api.VSphereVMPoweredOff, vm.Name()) && rec.has(api.VSphereHostEnteredMaint, host.Name())
	})
	st := c.Status(true)
	for _, v := range st.VMs {
		if v.Name == vm.Name() && v.PowerState != "poweredOff" {
			t.Errorf("status shows VM %s %s", v.Name, v.PowerState)
		}
	}
	for _, h := range st.Hosts {
		if h.Name == host.Name() && !h.Maintenance {
			t.Errorf("status shows host %s not in maintenance", h.Name)
		}
	}
	// The history fills: a powered-on VM and a host get samples.
	var on string
	for _, v := range st.VMs {
		if v.PowerState == "poweredOn" {
			on = v.Name
		}
	}
	eventually(t, 20*time.Second, "three samples of a VM and a host", func() bool {
		hv, ok1 := c.History(on)
		hh, ok2 := c.History(st.Hosts[len(st.Hosts)-1].Name)
		return ok1 && ok2 && len(hv.Samples) >= 3 && len(hh.Samples) >= 3
	})
	hv, _ := c.History(on)
	nonzero := false
	for _, s := range hv.Samples {
		if s.CPUUsage > 0 || s.MemUsage > 0 || s.NetKBps > 0 {
			nonzero = true
		}
	}
	if !nonzero {
		t.Errorf("VM %s: every sample is zero: %+v", on, hv.Samples)
	}
	_ = object.NewReference
}

// TestDialFailures: a wrong password, an unreachable URL and an untrusted
// certificate are each one clear sentence.
func TestDialFailures(t *testing.T) {
	s := startSim(t, vcsim.Default())
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	cases := []struct {
		name string
		edit func(*vsphere.Connection)
		want error
	}{
		{"wrong password", func(c *vsphere.Connection) { c.Password = "wrong" }, vsphere.ErrLogin},
		{"unreachable", func(c *vsphere.Connection) { c.URL = "https://" + closed + "/sdk" }, vsphere.ErrUnreachable},
		{"untrusted certificate", func(c *vsphere.Connection) { c.CACert = "" }, vsphere.ErrUntrusted},
		{"bad URL", func(c *vsphere.Connection) { c.URL = "vcenter.example.com" }, vsphere.ErrBadURL},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := conn(s)
			tc.edit(&c)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			_, err := vsphere.Dial(ctx, c)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			msg := err.Error()
			if slices.Contains([]string{"simulated", "wrong"}, msg) || containsAny(msg, "simulated", "password \"") {
				t.Errorf("the error shows the password: %s", msg)
			}
			t.Log(msg)
		})
	}
	ok := conn(s)
	if _, err := vsphere.Dial(context.Background(), ok); err != nil {
		t.Fatalf("the right password and CA: %v", err)
	}
}

func containsAny(s string, subs ...string) bool {
	for _, x := range subs {
		if len(x) > 0 && len(s) >= len(x) {
			for i := 0; i+len(x) <= len(s); i++ {
				if s[i:i+len(x)] == x {
					return true
				}
			}
		}
	}
	return false
}

// TestSessionExpiry ends the collector's vCenter session from another
// client: the collector logs in again, says so, and keeps its history.
func TestSessionExpiry(t *testing.T) {
	s := startSim(t, vcsim.Default())
	rec := &recorder{}
	c := vsphere.NewCollector(conn(s), vsphere.Options{Interval: 200 * time.Millisecond, MinBackoff: 100 * time.Millisecond, Notify: rec.notify})
	run(t, c)
	eventually(t, 30*time.Second, "the first inventory", func() bool { return c.Inventory() != nil })
	host := c.Inventory().Hosts[0].Name
	eventually(t, 20*time.Second, "three samples", func() bool { h, _ := c.History(host); return len(h.Samples) >= 3 })
	before, _ := c.History(host)

	ctx := context.Background()
	admin, err := vsphere.Dial(ctx, conn(s))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Logout(ctx)
	var sm mo.SessionManager
	if err := admin.RetrieveOne(ctx, *admin.ServiceContent.SessionManager, []string{"sessionList", "currentSession"}, &sm); err != nil {
		t.Fatal(err)
	}
	var others []string
	for _, us := range sm.SessionList {
		if us.Key != sm.CurrentSession.Key {
			others = append(others, us.Key)
		}
	}
	if len(others) == 0 {
		t.Fatal("no collector session to end")
	}
	if err := admin.SessionManager.TerminateSession(ctx, others); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the collector to notice and log in again", func() bool {
		return rec.has(api.VSphereVCenterDisconnected, "vc1") && rec.has(api.VSphereVCenterConnected, "vc1") && c.Status(false).Connected
	})
	rec.mu.Lock()
	for _, ch := range rec.changes {
		if ch.Type == api.VSphereVCenterDisconnected && !containsAny(ch.Message, "session expired") {
			t.Errorf("disconnection message %q does not say the session expired", ch.Message)
		}
	}
	rec.mu.Unlock()
	eventually(t, 20*time.Second, "the history to keep growing", func() bool {
		h, _ := c.History(host)
		return len(h.Samples) > len(before.Samples) && h.Samples[0].Time.Equal(before.Samples[0].Time)
	})
}
