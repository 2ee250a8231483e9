package docker

import (
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/moby/moby/api/types/container"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/driver"
)

// Hardening defaults, applied by BuildContainer to whatever the task's
// security settings leave out. With them a plain job passes every CIS
// Docker Benchmark v1.6.0 container check that a driver can automate:
//
//	5.26 no-new-privileges        set, unless security.no_new_privileges: false
//	5.4  capabilities             NET_RAW dropped, unless cap_add names it
//	5.29 PIDs limit               DefaultPidsLimit
//	5.11, 5.12 memory and CPU     the allocation's
//	5.13 read-only root           yes, unless security.read_only_rootfs: false;
//	                              a tmpfs at /tmp (TmpfsOptions) keeps scratch
//	                              space writable
//	4.1  user                     the image's USER, unless security.user
//	5.14 bound interface          ports bind to the node's address
//	5.15 restart policy           no: the agent restarts tasks
//	5.27 health check             the gantry.checks label, when the task has
//	                              checks: the agent runs them, not the engine
//
// 4.1 is "where the image allows": images that need root keep it unless the
// job names a user; the runtime audit reports them. 5.27 cannot be automated
// for a task without checks.
const (
	// TmpfsOptions mount /tmp in a read-only container: writable,
	// no setuid or device files, bounded. Its pages count against the
	// container's memory limit.
	TmpfsOptions = "rw,nosuid,nodev,size=64m"
	// NoGPUs is NVIDIA_VISIBLE_DEVICES for a task without GPUs: the NVIDIA
	// runtime then exposes none, even for images (CUDA bases) that set
	// NVIDIA_VISIBLE_DEVICES=all.
	NoGPUs = "void"
)

func harden(cfg *driver.TaskConfig, c *container.Config, hc *container.HostConfig) {
	s := cfg.Task.Security
	if s == nil {
		s = &api.Security{}
	}
	if s.NoNewPrivileges == nil || *s.NoNewPrivileges {
		hc.SecurityOpt = append(hc.SecurityOpt, "no-new-privileges=true")
	}
	if !capListed(s.CapDrop, "NET_RAW") && !capListed(s.CapAdd, "NET_RAW") && !s.Privileged {
		hc.CapDrop = append(hc.CapDrop, "NET_RAW")
	}
	if s.ReadOnlyRootfs == nil {
		hc.ReadonlyRootfs = true
	}
	if hc.ReadonlyRootfs && !mountsOnto(hc, "/tmp") {
		hc.Tmpfs = map[string]string{"/tmp": TmpfsOptions}
	}
	if v := checksLabel(cfg.Task.Checks); v != "" {
		c.Labels[driver.LabelChecks] = v
	}
	var gpu *api.AllocatedGPU
	if cfg.Resources != nil {
		gpu = cfg.Resources.GPU
	}
	visible := NoGPUs
	if ids := driver.GPUVisibleDevices(gpu); len(ids) > 0 {
		visible = strings.Join(ids, ",")
	}
	c.Env = slices.DeleteFunc(c.Env, func(kv string) bool { return strings.HasPrefix(kv, "NVIDIA_VISIBLE_DEVICES=") })
	c.Env = append(c.Env, "NVIDIA_VISIBLE_DEVICES="+visible)
	sort.Strings(c.Env)
}

// capListed reports whether caps names capability name, or ALL.
func capListed(caps []string, name string) bool {
	for _, c := range caps {
		c = strings.TrimPrefix(strings.ToUpper(c), "CAP_")
		if c == name || c == "ALL" {
			return true
		}
	}
	return false
}

func mountsOnto(hc *container.HostConfig, target string) bool {
	for _, m := range hc.Mounts {
		if path.Clean(m.Target) == target {
			return true
		}
	}
	return false
}

// checksLabel describes a task's health checks for the gantry.checks
// label: "type:port/path" for http, "type:port" for tcp, "exec" for exec.
func checksLabel(checks []api.Check) string {
	parts := make([]string, 0, len(checks))
	for _, ch := range checks {
		switch ch.Type {
		case api.CheckHTTP:
			parts = append(parts, ch.Type+":"+ch.Port+ch.Path)
		case api.CheckTCP:
			parts = append(parts, ch.Type+":"+ch.Port)
		default:
			parts = append(parts, ch.Type)
		}
	}
	return strings.Join(parts, ",")
}
