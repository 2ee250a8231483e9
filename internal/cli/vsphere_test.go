package cli

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/vsphere"
)

// TestVSphereStatusListsGantryVMs: `gantry vsphere status` shows Gantry's
// own VMs as the row "gantry" beside the vCenters and lists them, with
// the job and allocation behind each, from /v1/vsphere/status/gantry;
// --json passes the API's entries through.
func TestVSphereStatusListsGantryVMs(t *testing.T) {
	vms := []vsphere.GantryVM{{Alloc: "0123456789abcdef", Task: "guest", NodeID: "n1", VSphereVM: api.VSphereVM{
		ID: "0123456789abcdef/guest", Name: "legacy.app[0].guest", Host: "node-1", PowerState: "poweredOn", VCPU: 2, MemoryMiB: 256,
		Latest: &api.VSphereSample{CPUUsage: 25, MemUsage: 150},
		Gantry: &api.VSphereGantryTask{Namespace: "default", Job: "legacy", Group: "app", Alloc: "0123456789abcdef", Task: "guest", NodeID: "n1"}}}}
	vc := api.VSphereStatus{Connection: api.VSphereConnection{Name: "vc1"}, Connected: true}
	vc.Counts.Hosts, vc.Counts.VMs = 4, 8
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		full := r.URL.Query().Get("full") == "true"
		switch r.URL.Path {
		case "/v1/vsphere/status":
			json.NewEncoder(w).Encode([]api.VSphereStatus{vc, vsphere.GantryStatus(vms, full)})
		case "/v1/vsphere/status/gantry":
			json.NewEncoder(w).Encode(vsphere.GantryStatus(vms, true))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	run := func(args ...string) (int, string) {
		var out, errw bytes.Buffer
		code := Main(append([]string{"--address", srv.URL}, args...), &out, &errw)
		return code, out.String() + errw.String()
	}
	code, out := run("vsphere", "status")
	if code != 0 {
		t.Fatalf("vsphere status: exit %d\n%s", code, out)
	}
	for _, want := range []string{"vc1", "connected", "own VMs", "Gantry's own VMs", "legacy.app[0].guest", "node-1", "poweredOn", "25.0", "150.0", "default/legacy", "01234567"} {
		if !strings.Contains(out, want) {
			t.Errorf("vsphere status lacks %q:\n%s", want, out)
		}
	}
	code, out = run("vsphere", "status", "--json")
	var sts []api.VSphereStatus
	if code != 0 || json.Unmarshal([]byte(out), &sts) != nil || len(sts) != 2 || len(sts[1].VMs) != 1 || sts[1].VMs[0].Gantry == nil || sts[1].VMs[0].Gantry.Job != "legacy" {
		t.Errorf("vsphere status --json: exit %d, want the gantry entry with its VM and job:\n%s", code, out)
	}
}
