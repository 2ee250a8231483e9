package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/vsphere"
	"github.com/gantryhq/gantry/internal/vsphere/vcsim"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

// vsphereSecret is the simulated vCenter's password: it must never show
// in any output or log.
const vsphereSecret = "e2e-Sekr1t-vsphere"

// startVCSim serves govmomi's vCenter simulator in the test process:
// one cluster of three hosts with six VMs.
func startVCSim(t *testing.T) (*vcsim.Sim, string, string) {
	t.Helper()
	cfg := vcsim.Default()
	cfg.Password = vsphereSecret
	cfg.Standalone, cfg.VMs = 0, 6
	sim, err := vcsim.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	dir := t.TempDir()
	ca, pw := filepath.Join(dir, "vc-ca.pem"), filepath.Join(dir, "vc-password")
	os.WriteFile(ca, []byte(sim.CACert), 0o644)
	os.WriteFile(pw, []byte(vsphereSecret+"\n"), 0o600)
	return sim, ca, pw
}

// simVMs lists the simulator's VMs, first moving (vMotion, through
// govmomi) one VM onto every host that has none: vcsim places VMs at
// random.
func simVMs(t *testing.T, sim *vcsim.Sim) []*simulator.VirtualMachine {
	t.Helper()
	reg := sim.Model.Service.Context.Map
	ctx := context.Background()
	cl, err := vsphere.Dial(ctx, vsphere.Connection{URL: sim.URL, User: "gantry", Password: vsphereSecret, CACert: sim.CACert})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Logout(ctx)
	perHost := map[types.ManagedObjectReference][]*simulator.VirtualMachine{}
	for _, e := range reg.All("VirtualMachine") {
		vm := e.(*simulator.VirtualMachine)
		perHost[*vm.Runtime.Host] = append(perHost[*vm.Runtime.Host], vm)
	}
	for _, e := range reg.All("HostSystem") {
		h := e.(*simulator.HostSystem)
		if len(perHost[h.Self]) > 0 {
			continue
		}
		for from, vms := range perHost {
			if len(vms) < 2 {
				continue
			}
			hs := h.Self
			task, err := object.NewVirtualMachine(cl.Client, vms[0].Self).Relocate(ctx, types.VirtualMachineRelocateSpec{Host: &hs}, types.VirtualMachineMovePriorityDefaultPriority)
			if err != nil || task.Wait(ctx) != nil {
				t.Fatalf("move VM %s to host %s: %v", vms[0].Name, h.Name, err)
			}
			perHost[h.Self], perHost[from] = vms[:1], vms[1:]
			break
		}
	}
	var out []*simulator.VirtualMachine
	for _, e := range reg.All("VirtualMachine") {
		out = append(out, e.(*simulator.VirtualMachine))
	}
	return out
}

// startVSphereAgent runs `gantry agent` with the null driver, reporting
// uuid as its BIOS UUID (the test-only override of the UUID source).
func startVSphereAgent(t *testing.T, c *Cluster, name, uuid string) {
	t.Helper()
	dir := t.TempDir()
	f := filepath.Join(dir, "product_uuid")
	os.WriteFile(f, []byte(uuid+"\n"), 0o644)
	cmd := exec.Command(gantryBin, "agent", "--insecure", "--servers", strings.TrimPrefix(c.Addr, "http://"),
		"--data-dir", dir, "--node-name", name, "--agent-addr", fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		"--drivers", "null", "--audit-interval", "-1s", "--bios-uuid-file", f)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
}

// vsphereEvents reads the vsphere events after index 0 for up to d, and
// returns them once cond holds on what was read.
func vsphereEvents(t *testing.T, c *Cluster, d time.Duration, cond func([]api.VSphereChange) bool) []api.VSphereChange {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.Addr+"/v1/events?topic=vsphere&index=1", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got []api.VSphereChange
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var e api.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("event %q: %v", sc.Text(), err)
		}
		var ch api.VSphereChange
		json.Unmarshal(e.Payload, &ch)
		if e.Topic != api.TopicVSphere || e.Type != ch.Type {
			t.Errorf("event %+v does not carry its change", e)
		}
		got = append(got, ch)
		if cond(got) {
			return got
		}
	}
	t.Fatalf("within %s the vsphere events were %+v", d, got)
	return nil
}

func hasChange(cs []api.VSphereChange, typ, name string) bool {
	for _, c := range cs {
		if c.Type == typ && c.Name == name {
			return true
		}
	}
	return false
}

// TestVSphere drives the virtualization monitor as a user would: a
// simulated vCenter (govmomi's vcsim, in process) is connected to a dev
// cluster with two more agents; every agent reports the BIOS UUID of a
// VM on another ESXi host. Bad connections are refused and store
// nothing; the nodes get ${node.vsphere.*}; a job spread over
// ${node.vsphere.host} lands on three hosts; a VM powered off and a
// host put into maintenance through govmomi become events and show in
// the status; the host's node is drained; histories fill; the password
// shows nowhere.
func TestVSphere(t *testing.T) {
	sim, ca, pw := startVCSim(t)
	// One VM per host for the nodes, one more for the power-off.
	byHost := map[types.ManagedObjectReference]*simulator.VirtualMachine{}
	var spare *simulator.VirtualMachine
	for _, vm := range simVMs(t, sim) {
		if _, ok := byHost[*vm.Runtime.Host]; ok {
			spare = vm
			continue
		}
		byHost[*vm.Runtime.Host] = vm
	}
	if len(byHost) != 3 || spare == nil {
		t.Fatalf("the simulator spread its VMs over %d hosts; want 3 and a spare VM", len(byHost))
	}
	var nodeVMs []*simulator.VirtualMachine
	for _, vm := range byHost {
		nodeVMs = append(nodeVMs, vm)
	}
	dir := t.TempDir()
	devUUID := filepath.Join(dir, "product_uuid")
	os.WriteFile(devUUID, []byte(strings.ToUpper(nodeVMs[0].Config.Uuid)+"\n"), 0o644)
	c := StartDev(t, "--drivers", "null", "--vsphere-interval", "2s", "--bios-uuid-file", devUUID)
	startVSphereAgent(t, c, "vs-node-b", nodeVMs[1].Config.Uuid)
	startVSphereAgent(t, c, "vs-node-c", nodeVMs[2].Config.Uuid)

	// Refused connections: one sentence each, nothing stored.
	addr := freePort(t)
	bad := filepath.Join(dir, "bad-password")
	os.WriteFile(bad, []byte("not-it\n"), 0o600)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"wrong password", []string{"--url", sim.URL, "--user", "gantry", "--password-file", bad, "--vcenter-ca", ca}, "refused the login"},
		{"unreachable", []string{"--url", fmt.Sprintf("https://127.0.0.1:%d/sdk", addr), "--user", "gantry", "--password-file", pw, "--insecure"}, "cannot reach"},
		{"untrusted certificate", []string{"--url", sim.URL, "--user", "gantry", "--password-file", pw}, "not signed by a trusted CA"},
	} {
		r := c.Gantry(append([]string{"vsphere", "add", "bad"}, tc.args...)...)
		lines := strings.Split(strings.TrimSpace(r.Stderr), "\n")
		if r.Code != 1 || !strings.Contains(r.Stderr, tc.want) || len(lines) != 1 {
			t.Errorf("%s: exit %d, stderr %q; want 1 and one line with %q", tc.name, r.Code, r.Stderr, tc.want)
		}
	}
	if r := c.Gantry("vsphere", "list", "--json"); r.Code != 0 || strings.TrimSpace(r.Stdout) != "[]" {
		t.Fatalf("after refused connections, list: %d %q", r.Code, r.Stdout)
	}

	r := c.Gantry("vsphere", "add", "sim", "--url", sim.URL, "--user", "gantry", "--password-file", pw, "--vcenter-ca", ca, "--drain-on-maintenance")
	if r.Code != 0 {
		t.Fatalf("vsphere add: %d %s%s", r.Code, r.Stdout, r.Stderr)
	}

	// The inventory matches the simulator's model.
	count := sim.Model.Count()
	var st []api.VSphereStatus
	c.Eventually(60*time.Second, "the inventory", func() bool {
		r := c.Gantry("vsphere", "status", "--json")
		return r.Code == 0 && json.Unmarshal([]byte(r.Stdout), &st) == nil && len(st) == 1 && st[0].Connected && st[0].Counts.VMs == count.Machine
	})
	if st[0].Counts.Hosts != count.Host || st[0].Counts.Datastores != count.Datastore || st[0].Counts.Clusters != count.Cluster {
		t.Errorf("status counts %+v; the model has %d hosts, %d datastores, %d clusters", st[0].Counts, count.Host, count.Datastore, count.Cluster)
	}

	// Every node carries its VM's host, cluster and datastore.
	hostOf := map[string]string{} // node name → ESXi host
	c.Eventually(60*time.Second, "three nodes matched to their VMs", func() bool {
		var nodes []*api.Node
		if c.GetJSON("/v1/nodes", &nodes) != nil {
			return false
		}
		clear(hostOf)
		for _, n := range nodes {
			if n.Status == api.NodeStatusReady && n.Attributes[api.AttrVSphereHost] != "" && n.Attributes[api.AttrVSphereCluster] != "" && n.Attributes[api.AttrVSphereDatastore] != "" {
				hostOf[n.Name] = n.Attributes[api.AttrVSphereHost]
			}
		}
		return len(hostOf) == 3
	})
	distinct := map[string]bool{}
	for _, h := range hostOf {
		distinct[h] = true
	}
	if len(distinct) != 3 {
		t.Fatalf("nodes on hosts %v; want three hosts", hostOf)
	}

	// A job spread over ${node.vsphere.host} lands on three hosts.
	spec := WriteSpec(t, "spread.yaml", `name: spread
groups:
  - name: g
    count: 3
    spread: [{attribute: "${node.vsphere.host}"}]
    tasks:
      - name: t
        driver: "null"
        resources: {cpu: 10, memory: 10}
`)
	if r := c.Gantry("job", "run", "-d", spec); r.Code != 0 {
		t.Fatalf("job run: %d %s%s", r.Code, r.Stdout, r.Stderr)
	}
	var nodes []*api.Node
	c.Eventually(60*time.Second, "three allocations on three hosts", func() bool {
		nodes = nil
		if c.GetJSON("/v1/nodes", &nodes) != nil {
			return false
		}
		name := map[string]string{}
		for _, n := range nodes {
			name[n.ID] = n.Name
		}
		hosts := map[string]bool{}
		live := 0
		for _, a := range c.Allocs("spread") {
			if a.DesiredStatus == api.AllocDesiredRun {
				live++
				hosts[hostOf[name[a.NodeID]]] = true
			}
		}
		return live == 3 && len(hosts) == 3 && !hosts[""]
	})

	// Power a VM off and put a node's host into maintenance, through
	// govmomi against the simulator.
	ctx := context.Background()
	cl, err := vsphere.Dial(ctx, vsphere.Connection{URL: sim.URL, User: "gantry", Password: vsphereSecret, CACert: sim.CACert})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Logout(ctx)
	task, err := object.NewVirtualMachine(cl.Client, spare.Self).PowerOff(ctx)
	if err != nil || task.Wait(ctx) != nil {
		t.Fatalf("power off %s: %v", spare.Name, err)
	}
	var drainNode, drainHost string
	for n, h := range hostOf {
		if n == "vs-node-b" {
			drainNode, drainHost = n, h
		}
	}
	hostRef := *nodeVMs[1].Runtime.Host
	task, err = object.NewHostSystem(cl.Client, hostRef).EnterMaintenanceMode(ctx, 0, false, nil)
	if err != nil || task.Wait(ctx) != nil {
		t.Fatalf("maintenance of %s: %v", drainHost, err)
	}
	// Within one interval (2 s here; generous for a shared machine):
	// the events, then the status.
	vsphereEvents(t, c, 60*time.Second, func(cs []api.VSphereChange) bool {
		return hasChange(cs, api.VSphereVMPoweredOff, spare.Name) && hasChange(cs, api.VSphereHostEnteredMaint, drainHost) &&
			hasChange(cs, api.VSphereNodeDrained, drainNode) && hasChange(cs, api.VSphereNodeMatched, drainNode)
	})
	var full api.VSphereStatus
	if err := c.GetJSON("/v1/vsphere/status/sim", &full); err != nil {
		t.Fatal(err)
	}
	for _, v := range full.VMs {
		if v.Name == spare.Name && v.PowerState != "poweredOff" {
			t.Errorf("status: VM %s is %s", v.Name, v.PowerState)
		}
		if v.UUID == nodeVMs[1].Config.Uuid && v.Node != drainNode {
			t.Errorf("status: VM %s runs node %q, want %s", v.Name, v.Node, drainNode)
		}
	}
	for _, h := range full.Hosts {
		if h.Name == drainHost && !h.Maintenance {
			t.Errorf("status: host %s not in maintenance", h.Name)
		}
	}
	// The node on that host drains: its allocation moves away.
	c.Eventually(60*time.Second, "node "+drainNode+" to drain", func() bool {
		nodes = nil
		if c.GetJSON("/v1/nodes", &nodes) != nil {
			return false
		}
		for _, n := range nodes {
			if n.Name == drainNode {
				if n.Drain == nil {
					return false
				}
				for _, a := range c.Allocs("spread") {
					if a.NodeID == n.ID && a.DesiredStatus == api.AllocDesiredRun {
						return false
					}
				}
				return true
			}
		}
		return false
	})

	// Histories fill with performance samples; status of one VM.
	var h api.VSphereHistory
	c.Eventually(60*time.Second, "three samples of "+nodeVMs[0].Name, func() bool {
		r := c.Gantry("vsphere", "status", nodeVMs[0].Name, "--json")
		return r.Code == 0 && json.Unmarshal([]byte(r.Stdout), &h) == nil && len(h.Samples) >= 3
	})
	if h.Kind != "vm" || h.Samples[len(h.Samples)-1].MemUsage <= 0 {
		t.Errorf("history of %s: %+v", nodeVMs[0].Name, h)
	}
	// The Virtualization page lists the hosts, their VMs and which VM runs
	// a Gantry node.
	resp, err := http.Get(c.Addr + "/ui/fragments/virtualization")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`data-host="` + drainHost + `"`, `data-vm="` + nodeVMs[1].Name + `"`, `data-node="` + drainNode + `"`, `data-datastore="`, `data-chart-box="vs-sim-cpu"`, "maintenance"} {
		if !strings.Contains(string(page), want) {
			t.Errorf("the Virtualization page lacks %s", want)
		}
	}
	if r := c.Gantry("vsphere", "status"); r.Code != 0 || !strings.Contains(r.Stdout, "connected") {
		t.Errorf("vsphere status: %d %s%s", r.Code, r.Stdout, r.Stderr)
	}

	// The password shows nowhere: CLI output, API answers, the server log.
	for _, args := range [][]string{{"vsphere", "list"}, {"vsphere", "list", "--json"}, {"vsphere", "status", "--json"}} {
		if r := c.Gantry(args...); strings.Contains(r.Stdout+r.Stderr, vsphereSecret) {
			t.Errorf("gantry %v shows the password", args)
		}
	}
	if strings.Contains(c.log.String(), vsphereSecret) {
		t.Errorf("the server log holds the password")
	}
	if r := c.Gantry("vsphere", "remove", "sim"); r.Code != 0 {
		t.Errorf("remove: %d %s", r.Code, r.Stderr)
	}
	c.Eventually(30*time.Second, "the vsphere attributes to go with the connection", func() bool {
		var nodes []*api.Node // fresh: decoding into old nodes would merge their attribute maps
		if c.GetJSON("/v1/nodes", &nodes) != nil {
			return false
		}
		for _, n := range nodes {
			if n.Attributes[api.AttrVSphereHost] != "" {
				return false
			}
		}
		return true
	})
}
