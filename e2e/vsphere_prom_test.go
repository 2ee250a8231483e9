//go:build cgo && linux

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/vsphere"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
)

// TestVSphereAlerts makes every alert of the gantry-vsphere rule group go
// off with Debian's Prometheus scraping a dev cluster connected to a
// simulated vCenter: CPU ready and memory reclaim as vcsim's sample data
// report them, a datastore filled past 85%, a host put into maintenance
// and one disconnected through govmomi, and at last the vCenter gone.
func TestVSphereAlerts(t *testing.T) {
	promtool := requireUIDep(t, "prometheus", "promtool")
	prom := requireUIDep(t, "prometheus", "prometheus")
	rules := filepath.Join(repoRoot, "deploy", "prometheus", "alerts.yml")
	if out, err := exec.Command(promtool, "check", "rules", rules).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	sim, ca, pw := startVCSim(t)
	c := StartDev(t, "--drivers", "null", "--vsphere-interval", "1s")
	if r := c.Gantry("vsphere", "add", "sim", "--url", sim.URL, "--user", "gantry", "--password-file", pw, "--vcenter-ca", ca); r.Code != 0 {
		t.Fatalf("vsphere add: %d %s%s", r.Code, r.Stdout, r.Stderr)
	}

	// The conditions: a full datastore, a host in maintenance, a host
	// disconnected.
	ctx := context.Background()
	cl, err := vsphere.Dial(ctx, vsphere.Connection{URL: sim.URL, User: "gantry", Password: vsphereSecret, CACert: sim.CACert})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Logout(ctx)
	reg := sim.Model.Service.Context.Map
	ds := reg.All("Datastore")[0].(*simulator.Datastore)
	if !sim.SetDatastoreFree(ds.Name, ds.Summary.Capacity/20) {
		t.Fatal("no datastore to fill")
	}
	hosts := reg.All("HostSystem")
	maint := object.NewHostSystem(cl.Client, hosts[0].Reference())
	if task, err := maint.EnterMaintenanceMode(ctx, 0, false, nil); err != nil || task.Wait(ctx) != nil {
		t.Fatalf("maintenance: %v", err)
	}
	gone := object.NewHostSystem(cl.Client, hosts[1].Reference())
	if task, err := gone.Disconnect(ctx); err != nil || task.Wait(ctx) != nil {
		t.Fatalf("disconnect host: %v", err)
	}

	dir := t.TempDir()
	promPort := freePort(t)
	cfg := fmt.Sprintf(`global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [%q]
scrape_configs:
  - job_name: gantry-servers
    static_configs: [{targets: [%q]}]
`, rules, strings.TrimPrefix(c.Addr, "http://"))
	os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644)
	var plog strings.Builder
	p := exec.Command(prom, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", promPort), "--log.level=warn")
	p.Stdout, p.Stderr = &plog, &plog
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Process.Kill()
		p.Wait()
		if t.Failed() {
			t.Logf("prometheus log:\n%s", plog.String())
		}
	})
	base := fmt.Sprintf("http://127.0.0.1:%d", promPort)
	goesOff := func(alert string) {
		t.Helper()
		c.Eventually(90*time.Second, "alert "+alert+" to go off", func() bool {
			r, err := promQuery(t, base, fmt.Sprintf(`ALERTS{alertname=%q}`, alert))
			return err == nil && len(r.Data.Result) > 0
		})
	}
	for _, a := range []string{"GantryVSphereCPUReady", "GantryVSphereMemoryPressure", "GantryVSphereDatastoreFull",
		"GantryVSphereHostDisconnected", "GantryVSphereHostMaintenance"} {
		goesOff(a)
	}
	// The alerts carry the labels the rules promise.
	r, err := promQuery(t, base, `ALERTS{alertname="GantryVSphereHostMaintenance"}`)
	if err != nil || !strings.Contains(string(r.Data.Result[0]), `"host":"`+hosts[0].Entity().Name+`"`) {
		t.Errorf("maintenance alert: %v %s", err, r.Data.Result)
	}
	sim.Close()
	goesOff("GantryVSphereDown")
}
