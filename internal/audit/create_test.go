package audit

import (
	"strings"
	"testing"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
)

// TestCreateMatchesInspect: judged from the create request alone (what
// admission sees), every scenario gets the verdicts its real container got
// from the engine (the recorded fixtures), except where the image decides
// and AuditCreate says so instead of guessing.
func TestCreateMatchesInspect(t *testing.T) {
	fixtures, engine := loadFixtures(t)
	for _, s := range scenarios {
		cfg, hc := baseline(s.name, "fixture")
		s.mutate(cfg, hc, "/tmp/shared")
		real := map[string]Finding{}
		for _, f := range AuditContainer(fixtures[s.name], engine) {
			real[f.CheckID] = f
		}
		for _, f := range AuditCreate("gantry-audit-fixture-"+s.name, cfg, hc, engine) {
			r := real[f.CheckID]
			if f.Status == r.Status {
				continue
			}
			if f.Status == StatusInfo && r.Status == StatusFail && strings.Contains(f.Detail, "decides") {
				if _, ok := imageDecided(f.CheckID, cfg); ok {
					continue
				}
			}
			t.Errorf("%s, check %s: from the create request %s (%s), from the engine %s (%s)",
				s.name, f.CheckID, f.Status, f.Detail, r.Status, r.Detail)
		}
	}
}

func TestFromCreateMounts(t *testing.T) {
	hc := &container.HostConfig{
		Mounts: []mount.Mount{
			{Type: mount.TypeBind, Source: "/etc", Target: "/host/etc", ReadOnly: true},
			{Type: mount.TypeBind, Source: "/srv", Target: "/srv", BindOptions: &mount.BindOptions{Propagation: mount.PropagationRShared}},
		},
		Binds: []string{"/var/run/docker.sock:/sock", "data:/data:ro", "/proc:/host/proc:ro,rslave", "anonymous"},
	}
	c := FromCreate("x", &container.Config{Image: "img"}, hc)
	want := []container.MountPoint{
		{Type: mount.TypeBind, Source: "/etc", Destination: "/host/etc"},
		{Type: mount.TypeBind, Source: "/srv", Destination: "/srv", RW: true, Propagation: mount.PropagationRShared},
		{Type: mount.TypeBind, Source: "/var/run/docker.sock", Destination: "/sock", RW: true},
		{Type: mount.TypeVolume, Name: "data", Source: "data", Destination: "/data", Mode: "ro"},
		{Type: mount.TypeBind, Source: "/proc", Destination: "/host/proc", Mode: "ro,rslave", Propagation: mount.PropagationRSlave},
	}
	if len(c.Mounts) != len(want) {
		t.Fatalf("mounts %+v", c.Mounts)
	}
	for i := range want {
		if c.Mounts[i] != want[i] {
			t.Errorf("mount %d: %+v, want %+v", i, c.Mounts[i], want[i])
		}
	}
	if c.Name != "/x" || c.Image != "img" {
		t.Errorf("name %q image %q", c.Name, c.Image)
	}
	for _, id := range []string{"5.6", "5.20", "5.32"} {
		if f := runCheck(t, id, c, nil); !f.Failed() {
			t.Errorf("%s passed on %+v: %s", id, c.Mounts, f.Detail)
		}
	}
}

func TestAuditCreateImageDecided(t *testing.T) {
	byID := func(fs []Finding) map[string]Finding {
		m := map[string]Finding{}
		for _, f := range fs {
			m[f.CheckID] = f
		}
		return m
	}
	fs := byID(AuditCreate("x", &container.Config{}, &container.HostConfig{}, nil))
	for _, id := range []string{"4.1", "5.27"} {
		if f := fs[id]; f.Status != StatusInfo || !strings.Contains(f.Detail, "the image's") {
			t.Errorf("%s: %s %q, want info naming the image", id, f.Status, f.Detail)
		}
	}
	// A root user or a disabled check the task itself asks for fails.
	fs = byID(AuditCreate("x", &container.Config{User: "0", Healthcheck: &container.HealthConfig{Test: []string{"NONE"}}}, &container.HostConfig{}, nil))
	for _, id := range []string{"4.1", "5.27"} {
		if f := fs[id]; !f.Failed() {
			t.Errorf("%s: %s %q, want a failure", id, f.Status, f.Detail)
		}
	}
}

func TestHealthCheckedByGantry(t *testing.T) {
	gantry := func(checks string) container.InspectResponse {
		return inspect(func(c *container.InspectResponse) {
			c.Config.Labels = map[string]string{LabelAlloc: "0123456789", LabelTask: "server", LabelChecks: checks}
		})
	}
	known := &Engine{Allocations: Allocations{TaskKey("0123456789", "server"): {Checks: 1}}}
	unchecked := &Engine{Allocations: Allocations{TaskKey("0123456789", "server"): {}}}
	for _, tc := range []struct {
		name   string
		c      container.InspectResponse
		e      *Engine
		status Status
	}{
		{"label, allocations unknown", gantry("http:http/healthz"), nil, StatusPass},
		{"label, the agent checks the task", gantry("http:http/healthz"), known, StatusPass},
		{"label, the agent runs no checks", gantry("http:http/healthz"), unchecked, StatusFail},
		{"label on a task the node does not run", gantry("tcp:db"), &Engine{Allocations: Allocations{}}, StatusFail},
		{"no label", gantry(""), known, StatusFail},
		{"label without Gantry's allocation label", inspect(func(c *container.InspectResponse) {
			c.Config.Labels = map[string]string{LabelChecks: "http:http/healthz"}
		}), nil, StatusFail},
	} {
		if f := runCheck(t, "5.27", tc.c, tc.e); f.Status != tc.status {
			t.Errorf("%s: %s (%s), want %s", tc.name, f.Status, f.Detail, tc.status)
		}
	}
}

func TestGPUBeyondAllocation(t *testing.T) {
	const alloc = "aaaaaaaa-1111"
	labels := map[string]string{LabelAlloc: alloc, LabelTask: "train"}
	node := &Engine{Allocations: Allocations{
		TaskKey(alloc, "train"):     {GPUs: []string{"GPU-a", "GPU-b"}},
		TaskKey("bbbbbbbb", "cpu"):  {},
		TaskKey("cccccccc", "part"): {GPUs: []string{"MIG-c"}},
	}}
	req := func(ids ...string) []container.DeviceRequest {
		return []container.DeviceRequest{{Driver: "nvidia", DeviceIDs: ids, Capabilities: [][]string{{"gpu"}}}}
	}
	for _, tc := range []struct {
		name   string
		labels map[string]string
		env    []string
		reqs   []container.DeviceRequest
		e      *Engine
		fail   string // part of the detail; empty: pass
	}{
		{name: "exactly the allocation", labels: labels, env: []string{"NVIDIA_VISIBLE_DEVICES=GPU-a,GPU-b"}, reqs: req("GPU-a", "GPU-b"), e: node},
		{name: "part of the allocation", labels: labels, reqs: req("GPU-b"), e: node},
		{name: "MIG instance of its allocation", labels: map[string]string{LabelAlloc: "cccccccc", LabelTask: "part"}, env: []string{"NVIDIA_VISIBLE_DEVICES=MIG-c"}, e: node},
		{name: "a request beyond", labels: labels, reqs: req("GPU-a", "GPU-c"), e: node, fail: `sees GPUs GPU-c beyond its allocation (allocation aaaaaaaa task "train" holds GPU-a,GPU-b)`},
		{name: "env beyond", labels: labels, env: []string{"NVIDIA_VISIBLE_DEVICES=GPU-a", "NVIDIA_VISIBLE_DEVICES= GPU-a, 0"}, e: node, fail: "sees GPUs 0 beyond"},
		{name: "a task without GPUs", labels: map[string]string{LabelAlloc: "bbbbbbbb", LabelTask: "cpu"}, env: []string{"NVIDIA_VISIBLE_DEVICES=GPU-a"}, e: node, fail: "holds no GPUs"},
		{name: "void and none", labels: map[string]string{LabelAlloc: "bbbbbbbb", LabelTask: "cpu"}, env: []string{"NVIDIA_VISIBLE_DEVICES=void"}, e: node},
		{name: "not Gantry's", env: []string{"NVIDIA_VISIBLE_DEVICES=GPU-a"}, e: node, fail: "not started by Gantry"},
		{name: "an allocation the node does not run", labels: map[string]string{LabelAlloc: "dddddddd", LabelTask: "x"}, reqs: req("GPU-a"), e: node, fail: "does not run on this node"},
		{name: "unpinned count", labels: labels, reqs: []container.DeviceRequest{{Count: 1, Capabilities: [][]string{{"gpu"}}}}, e: node, fail: "asks the engine for 1 GPU(s) without naming them"},
		{name: "allocations unknown", env: []string{"NVIDIA_VISIBLE_DEVICES=GPU-a"}, e: nil},
	} {
		c := inspect(func(c *container.InspectResponse) {
			c.Config.Labels, c.Config.Env, c.HostConfig.DeviceRequests = tc.labels, tc.env, tc.reqs
		})
		f := runCheck(t, "5.18", c, tc.e)
		switch {
		case tc.fail == "" && f.Failed():
			t.Errorf("%s: failed: %s", tc.name, f.Detail)
		case tc.fail != "" && (!f.Failed() || f.Severity != SeverityHigh || !strings.Contains(f.Detail, tc.fail)):
			t.Errorf("%s: %s %s %q, want a high failure containing %q", tc.name, f.Status, f.Severity, f.Detail, tc.fail)
		}
	}
}
