package docker

import (
	"fmt"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/jobspec"
)

// isolation applies the task's docker-only isolation keys to hc, exactly as
// the job asks. Whether the job may ask is the admission policy's decision
// (internal/admission audits this very output), not the driver's.
//
// Volumes become bind mounts through the Mounts API, not Binds: a missing
// host path is an error at create instead of a directory the engine makes
// as root.
func isolation(t *api.Task, hc *container.HostConfig) error {
	c := t.Config
	if c.NetworkMode != "" {
		hc.NetworkMode = container.NetworkMode(c.NetworkMode)
	}
	if c.PidMode != "" {
		hc.PidMode = container.PidMode(c.PidMode)
	}
	if c.IpcMode != "" {
		hc.IpcMode = container.IpcMode(c.IpcMode)
	}
	if c.UTSMode != "" {
		hc.UTSMode = container.UTSMode(c.UTSMode)
	}
	for _, v := range c.Volumes {
		m, problem := jobspec.ParseVolume(v)
		if problem != "" {
			return fmt.Errorf("docker: task %q: volume %q %s", t.Name, v, problem)
		}
		mt := mount.Mount{Type: mount.TypeBind, Source: m.Source, Target: m.Target, ReadOnly: m.ReadOnly}
		if m.Propagation != "" {
			mt.BindOptions = &mount.BindOptions{Propagation: mount.Propagation(m.Propagation)}
		}
		hc.Mounts = append(hc.Mounts, mt)
	}
	for _, v := range c.DockerVolumes {
		m, problem := jobspec.ParseDockerVolume(v)
		if problem != "" {
			return fmt.Errorf("docker: task %q: named volume %q %s", t.Name, v, problem)
		}
		hc.Mounts = append(hc.Mounts, mount.Mount{Type: mount.TypeVolume, Source: m.Source, Target: m.Target, ReadOnly: m.ReadOnly})
	}
	hc.ExtraHosts = append(hc.ExtraHosts, c.ExtraHosts...)
	for _, d := range c.Devices {
		dev, problem := jobspec.ParseDevice(d)
		if problem != "" {
			return fmt.Errorf("docker: task %q: device %q %s", t.Name, d, problem)
		}
		hc.Devices = append(hc.Devices, container.DeviceMapping{
			PathOnHost: dev.Host, PathInContainer: dev.Container, CgroupPermissions: dev.Permissions,
		})
	}
	if s := t.Security; s != nil {
		switch s.Seccomp {
		case "unconfined":
			hc.SecurityOpt = append(hc.SecurityOpt, "seccomp=unconfined")
		}
		if s.AppArmor != "" {
			hc.SecurityOpt = append(hc.SecurityOpt, "apparmor="+s.AppArmor)
		}
	}
	return nil
}
