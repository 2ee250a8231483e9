package docker

import (
	"testing"

	"github.com/moby/moby/client"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/audit"
	"github.com/gantryhq/gantry/internal/driver"
)

// hostDecided are the checks whose verdict depends on the engine alone
// (AppArmor may be absent); they may be informational, never failing.
var hostDecided = map[string]bool{"5.2": true}

// TestPlainTaskPassesTheAudit starts a plain demo task (no security
// settings at all) on the real engine and audits the container the engine
// reports, the way the agent does: every container check passes. Without
// health checks, 5.27 is the one failure, which no driver default can fix.
func TestPlainTaskPassesTheAudit(t *testing.T) {
	d := newDriver(t)
	ctx := testCtx(t)
	inf, err := d.Client().Info(ctx, client.InfoOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		checks []api.Check
		want   map[string]bool // failing checks
	}{
		{"with checks", []api.Check{{Type: api.CheckHTTP, Port: "http", Path: "/healthz"}}, map[string]bool{}},
		{"without checks", nil, map[string]bool{"5.27": true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := task(testNode)
			port := freePort(t)
			cfg.Task.Config.Ports = []api.PortSpec{{Name: "http", To: 8080}}
			cfg.Task.Checks = tc.checks
			cfg.Resources.Ports = []api.AllocatedPort{{Name: "http", Host: port, To: 8080}}
			h := start(t, d, cfg)
			res, err := d.Client().ContainerInspect(ctx, h.ID, client.ContainerInspectOptions{})
			if err != nil {
				t.Fatal(err)
			}
			allocs := audit.Allocations{audit.TaskKey(cfg.AllocID, cfg.Task.Name): {Checks: len(tc.checks)}}
			e := &audit.Engine{Info: inf.Info, Daemon: &audit.DaemonConfig{}, Allocations: allocs}
			got := map[string]bool{}
			for _, f := range audit.AuditContainer(res.Container, e) {
				switch {
				case f.Failed():
					got[f.CheckID] = true
					if !tc.want[f.CheckID] {
						t.Errorf("%s fails: %s", f.CheckID, f.Detail)
					}
				case f.Status == audit.StatusInfo && !hostDecided[f.CheckID]:
					t.Errorf("%s is informational: %s", f.CheckID, f.Detail)
				}
			}
			for id := range tc.want {
				if !got[id] {
					t.Errorf("%s passes; want it to fail", id)
				}
			}
			// The container runs (read-only root, no-new-privileges) and
			// serves on the node address.
			if body := getRoot(t, ctx, port); body["alloc_id"] != cfg.AllocID {
				t.Errorf("demo app answered %v", body)
			}
			if res.Container.Config.Labels[driver.LabelChecks] == "" && len(tc.checks) > 0 {
				t.Errorf("no %s label", driver.LabelChecks)
			}
		})
	}
}
