package audit

import (
	"fmt"
	"strings"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
)

// FromCreate is the inspect record a container created with cfg and hc
// would have, as far as the checks read it: the configuration as given,
// and the mounts the engine would report for hc.Mounts and hc.Binds. The
// image's own settings (its USER, ENV and HEALTHCHECK, which the engine
// merges into the configuration at create) are not known here.
func FromCreate(name string, cfg *container.Config, hc *container.HostConfig) container.InspectResponse {
	c := container.InspectResponse{Name: "/" + name, Config: cfg, HostConfig: hc}
	if cfg != nil {
		c.Image = cfg.Image
	}
	if hc == nil {
		return c
	}
	for _, m := range hc.Mounts {
		mp := container.MountPoint{Type: m.Type, Source: m.Source, Destination: m.Target, RW: !m.ReadOnly}
		if m.BindOptions != nil {
			mp.Propagation = m.BindOptions.Propagation
		}
		c.Mounts = append(c.Mounts, mp)
	}
	for _, b := range hc.Binds {
		parts := strings.Split(b, ":")
		if len(parts) < 2 {
			continue // a volume without a target is not a mount the checks judge
		}
		mp := container.MountPoint{Type: mount.TypeBind, Source: parts[0], Destination: parts[1], RW: true}
		if !strings.HasPrefix(parts[0], "/") {
			mp.Type, mp.Name = mount.TypeVolume, parts[0]
		}
		if len(parts) > 2 {
			for _, o := range strings.Split(parts[2], ",") {
				switch o {
				case "ro":
					mp.RW = false
				case "shared", "rshared", "slave", "rslave", "private", "rprivate":
					mp.Propagation = mount.Propagation(o)
				}
			}
			mp.Mode = parts[2]
		}
		c.Mounts = append(c.Mounts, mp)
	}
	return c
}

// imageDecided are the checks whose verdict on a create request depends on
// the image, which is not known before the container exists: 4.1 when the
// request names no user (the image's USER applies) and 5.27 when it
// carries no health check (the image's HEALTHCHECK applies).
func imageDecided(checkID string, cfg *container.Config) (string, bool) {
	switch checkID {
	case "4.1":
		if cfg.User == "" {
			return "the image's USER decides (the task names no user); the runtime audit judges the container", true
		}
	case "5.27":
		if cfg.Healthcheck == nil && cfg.Labels[LabelChecks] == "" {
			return "the image's HEALTHCHECK, if any, decides (the task declares no checks); the runtime audit judges the container", true
		}
	}
	return "", false
}

// AuditCreate judges a container before it exists: the container checks,
// the very ones the runtime audit runs, over FromCreate(name, cfg, hc). A
// check whose verdict the image decides (see imageDecided) and that would
// fail is reported as info, saying so, instead of guessing. Admission runs
// this on the create request the driver would send.
func AuditCreate(name string, cfg *container.Config, hc *container.HostConfig, e *Engine) []Finding {
	if cfg == nil {
		cfg = &container.Config{}
	}
	fs := AuditContainer(FromCreate(name, cfg, hc), e)
	for i, f := range fs {
		if !f.Failed() {
			continue
		}
		if why, ok := imageDecided(f.CheckID, cfg); ok {
			fs[i].Status = StatusInfo
			fs[i].Detail = fmt.Sprintf("%s: %s", f.Detail, why)
		}
	}
	return fs
}
