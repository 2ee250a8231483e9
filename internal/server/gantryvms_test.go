package server

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/jobspec"
	"github.com/gantryhq/gantry/internal/scheduler/schedtest"
	"github.com/gantryhq/gantry/internal/state"
)

// TestGantryVMsInVSphereAPI (issue 18 item 7): a qemu task placed by a
// real server is listed under "gantry" by /v1/vsphere/status with its
// node, vCPUs, memory, power state and usage from the node's history, and
// in the gantry_vsphere_vm_* series with vcenter="gantry"; a vCenter
// connection cannot take that name. The Virtualization page's side is
// TestGantryVMsOnVirtualizationPage in internal/ui/web.
func TestGantryVMsInVSphereAPI(t *testing.T) {
	s := startTestServer(t, Config{})
	base := "http://" + s.Addr()
	ctx := context.Background()
	n := schedtest.Node("n1")
	n.Drivers[api.DriverQEMU] = api.DriverInfo{Detected: true, Healthy: true}
	if err := s.store.RegisterNode(ctx, n, time.Minute, time.Now()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the node in the store", func() bool { return len(s.store.Nodes()) == 1 })
	job, err := jobspec.Parse("vm.yaml", []byte(`{"name":"legacy","groups":[{"name":"app","tasks":[
		{"name":"guest","driver":"qemu","config":{"kernel":"/k","accelerator":"tcg"},"resources":{"cpu":1500,"memory":256}},
		{"name":"side","driver":"exec","config":{"command":"/bin/sleep","args":["1000"]},"resources":{"cpu":10,"memory":10}}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.store.RegisterJob(ctx, job, s.newEval("default", "legacy", api.TriggerJobRegister), s.now()); err != nil {
		t.Fatal(err)
	}
	var a *api.Allocation
	waitFor(t, "the VM's allocation", func() bool {
		as := s.store.Allocs(state.AllocFilter{Namespace: "default", Job: "legacy", Live: true})
		if len(as) == 1 {
			a = as[0]
		}
		return a != nil
	})

	var before api.VSphereStatus
	getJSON(t, base+"/v1/vsphere/status/gantry", &before)
	if len(before.VMs) != 1 || before.VMs[0].Name != "legacy.app[0].guest" || before.VMs[0].PowerState != "poweredOff" || before.VMs[0].Host != "n1" {
		t.Errorf("before the VM runs, /v1/vsphere/status/gantry lists %+v, want legacy.app[0].guest powered off on n1 (and no process task)", before.VMs)
	}

	// The agent reports the VM running, and a sample of it.
	err = s.store.UpdateAllocsFromClient(ctx, n.ID, []api.AllocUpdate{{ID: a.ID, ClientStatus: api.AllocRunning,
		TaskStates: map[string]*api.TaskState{"guest": {State: api.TaskRunning}, "side": {State: api.TaskRunning}}}}, s.now(),
		func(x *api.Allocation) *api.Evaluation { return s.newEval(x.Namespace, x.Job, api.TriggerJobRegister) })
	if err != nil {
		t.Fatal(err)
	}
	cpu := 500
	s.history.Record(n.ID, &api.NodeSample{Time: time.Now().UTC(), Allocs: []api.AllocSample{{Alloc: a.ID, Task: "guest", CPUUsed: &cpu, MemoryBytes: 384 << 20}}})
	waitFor(t, "the VM powered on", func() bool {
		var one api.VSphereStatus
		getJSON(t, base+"/v1/vsphere/status/gantry", &one)
		return len(one.VMs) == 1 && one.VMs[0].PowerState == "poweredOn" && one.VMs[0].Latest != nil
	})

	// The API lists the same VM, after the (here absent) vCenters, with
	// vCenter's fields and the allocation behind it.
	var sts []api.VSphereStatus
	getJSON(t, base+"/v1/vsphere/status?full=true", &sts)
	if len(sts) != 1 || sts[0].Connection.Name != "gantry" || sts[0].Counts.VMs != 1 || sts[0].Counts.Hosts != 1 || len(sts[0].VMs) != 1 {
		t.Fatalf("/v1/vsphere/status?full=true = %+v, want one entry gantry with one VM on one host", sts)
	}
	vm := sts[0].VMs[0]
	wantRef := api.VSphereGantryTask{Namespace: "default", Job: "legacy", Group: "app", Alloc: a.ID, Task: "guest", NodeID: n.ID}
	if vm.Name != "legacy.app[0].guest" || vm.Host != "n1" || vm.PowerState != "poweredOn" || vm.VCPU != 2 || vm.MemoryMiB != 256 ||
		vm.Latest == nil || vm.Latest.CPUUsage != 25 || vm.Gantry == nil || *vm.Gantry != wantRef {
		t.Errorf("Gantry VM in the API: %+v (latest %+v, gantry %+v), want legacy.app[0].guest on n1, poweredOn, 2 vCPU, 256 MiB, 25%% CPU, %+v", vm, vm.Latest, vm.Gantry, wantRef)
	}
	sts = nil
	getJSON(t, base+"/v1/vsphere/status", &sts)
	if len(sts) != 1 || sts[0].Counts.VMs != 1 || len(sts[0].VMs) != 0 {
		t.Errorf("/v1/vsphere/status without full: %+v, want the gantry entry's counts only", sts)
	}
	var one api.VSphereStatus
	getJSON(t, base+"/v1/vsphere/status/gantry", &one)
	if len(one.VMs) != 1 || one.VMs[0].ID != vm.ID {
		t.Errorf("/v1/vsphere/status/gantry lists %+v, want the one VM %s", one.VMs, vm.ID)
	}

	_, _, prom := get(t, base+"/metrics", "")
	for _, want := range []string{
		`gantry_vsphere_vm_powered_on{cluster="",datacenter="",host="n1",vcenter="gantry",vm="legacy.app[0].guest"} 1`,
		`gantry_vsphere_vm_cpu_usage_percent{cluster="",datacenter="",host="n1",vcenter="gantry",vm="legacy.app[0].guest"} 25`,
		`gantry_vsphere_vm_memory_usage_percent{cluster="",datacenter="",host="n1",vcenter="gantry",vm="legacy.app[0].guest"} 150`,
	} {
		if !strings.Contains(prom, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(prom, `gantry_vsphere_vm_cpu_ready_percent{cluster="",datacenter="",host="n1",vcenter="gantry"`) {
		t.Error("a Gantry VM has a CPU ready series, which Gantry cannot measure")
	}

	req, _ := http.NewRequest(http.MethodPut, base+"/v1/vsphere/connections", strings.NewReader(`{"name":"gantry","url":"https://vc.example/sdk","user":"u","password":"p"}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a vCenter connection named gantry: %s, want 400", resp.Status)
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	code, _, body := get(t, url, "")
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, code, body)
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("GET %s: %v in %s", url, err, body)
	}
}
