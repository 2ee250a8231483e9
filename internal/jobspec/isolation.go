package jobspec

import (
	"path"
	"regexp"
	"strings"

	"github.com/gantryhq/gantry/internal/api"
)

// The rules for the docker-only keys that weaken a container's isolation
// (config.network_mode, pid_mode, ipc_mode, uts_mode, volumes, devices) and
// for the security keys beyond user and capabilities. They check only that
// a value is well formed: whether it is allowed is the admission policy's
// decision (internal/admission), which can make per-namespace exceptions.

var (
	networkModes = []string{"bridge", "host", "none"}
	ipcModes     = []string{"private", "shareable", "none", "host"}
	// Mount options a volume may carry: access, then propagation.
	volumeAccess      = []string{"ro", "rw"}
	volumePropagation = []string{"private", "rprivate", "shared", "rshared", "slave", "rslave"}
	devicePerms       = regexp.MustCompile(`^[rwm]{1,3}$`)
	apparmorProfile   = lazyRegexp(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)
)

// isolation checks the docker-only keys of a task's config.
func (v *validator) isolation(t *api.Task, cp string) {
	c := t.Config
	if t.Driver == api.DriverQEMU {
		for _, k := range []struct {
			key string
			set bool
		}{
			{"network_mode", c.NetworkMode != ""}, {"pid_mode", c.PidMode != ""}, {"ipc_mode", c.IpcMode != ""},
			{"uts_mode", c.UTSMode != ""}, {"volumes", len(c.Volumes) > 0}, {"devices", len(c.Devices) > 0},
			{"docker_volumes", len(c.DockerVolumes) > 0}, {"extra_hosts", len(c.ExtraHosts) > 0}, {"labels", len(c.Labels) > 0},
		} {
			if k.set {
				v.add(cp+"."+k.key, "applies only to the docker driver; a VM gets user-mode networking and its own disk overlay")
			}
		}
		return
	}
	if t.Driver == api.DriverExec || t.Driver == api.DriverWasm {
		for _, k := range []struct {
			key string
			set bool
		}{
			{"network_mode", c.NetworkMode != ""}, {"pid_mode", c.PidMode != ""}, {"ipc_mode", c.IpcMode != ""},
			{"uts_mode", c.UTSMode != ""}, {"volumes", len(c.Volumes) > 0}, {"devices", len(c.Devices) > 0},
		} {
			if k.set {
				if t.Driver == api.DriverWasm {
					v.add(cp+"."+k.key, "applies only to the docker driver; a wasm module reaches only what it is handed (config.mounts, config.ports)")
				} else {
					v.add(cp+"."+k.key, "applies only to the docker driver; exec tasks run in the node's own namespaces and filesystem")
				}
			}
		}
		return
	}
	if c.NetworkMode != "" && !contains(networkModes, c.NetworkMode) {
		v.add(cp+".network_mode", "%s is not a network mode; use bridge, host or none", quote(c.NetworkMode))
	}
	switch c.NetworkMode {
	case "none":
		if len(c.Ports) > 0 {
			v.add(cp+".ports", "cannot be published with network_mode none: the container has no network; remove the ports or the network mode")
		}
	case "host":
		for i, port := range c.Ports[:min(len(c.Ports), MaxPorts)] {
			if port.To != 0 {
				v.add(index(cp+".ports", i)+".to", "must be left out with network_mode host: the task listens on the host port itself (GANTRY_PORT_%s)", strings.ToUpper(strings.ReplaceAll(port.Name, "-", "_")))
			}
		}
	}
	if c.PidMode != "" && c.PidMode != "host" {
		v.add(cp+".pid_mode", "%s is not a PID mode; use host, or leave it out for the container's own process namespace", quote(c.PidMode))
	}
	if c.IpcMode != "" && !contains(ipcModes, c.IpcMode) {
		v.add(cp+".ipc_mode", "%s is not an IPC mode; use private, shareable, none or host", quote(c.IpcMode))
	}
	if c.UTSMode != "" && c.UTSMode != "host" {
		v.add(cp+".uts_mode", "%s is not a UTS mode; use host, or leave it out for the container's own", quote(c.UTSMode))
	}
	// Bind mounts and named volumes share the container's paths: each
	// path takes one of either.
	targets := map[string]string{}
	mounts := func(key string, list []string, parse func(string) (target, problem string)) {
		for i, vol := range list[:v.bounded(cp+"."+key, len(list), MaxVolumes, "volumes")] {
			q := index(cp+"."+key, i)
			if !v.length(q, vol, MaxString) {
				continue
			}
			target, problem := parse(vol)
			if problem != "" {
				v.add(q, "%s %s", quote(vol), problem)
				continue
			}
			target = path.Clean(target)
			if first, ok := targets[target]; ok {
				v.add(q, "mounts onto %s, as %s already does; each volume needs its own container path", target, first)
				continue
			}
			targets[target] = q
		}
	}
	mounts("volumes", c.Volumes, func(s string) (string, string) { m, p := ParseVolume(s); return m.Target, p })
	mounts("docker_volumes", c.DockerVolumes, func(s string) (string, string) { m, p := ParseDockerVolume(s); return m.Target, p })
	for i, h := range c.ExtraHosts[:v.bounded(cp+".extra_hosts", len(c.ExtraHosts), MaxVolumes, "extra hosts")] {
		q := index(cp+".extra_hosts", i)
		if !v.length(q, h, MaxString) {
			continue
		}
		if !extraHost().MatchString(h) {
			v.add(q, `%s is not a host entry; write it as "name:IP" or "name:host-gateway"`, quote(h))
		}
	}
	if len(c.Labels) > MaxEnv {
		v.add(cp+".labels", "has %d entries; at most %d are allowed", len(c.Labels), MaxEnv)
	}
	for k := range c.Labels {
		if strings.HasPrefix(k, "gantry.") {
			v.add(cp+".labels", "%s: labels under gantry. are Gantry's own; choose another prefix", quote(k))
		}
	}
	for i, dev := range c.Devices[:v.bounded(cp+".devices", len(c.Devices), MaxDevices, "devices")] {
		q := index(cp+".devices", i)
		if !v.length(q, dev, MaxString) {
			continue
		}
		if _, problem := ParseDevice(dev); problem != "" {
			v.add(q, "%s %s", quote(dev), problem)
		}
	}
}

// securityModes checks the security keys that only the docker driver
// applies; on exec tasks it reports every one that is set.
func (v *validator) securityModes(p, drv string, s *api.Security) {
	if drv == api.DriverExec || drv == api.DriverQEMU || drv == api.DriverWasm {
		for _, k := range []struct {
			key string
			set bool
		}{
			{"privileged", s.Privileged}, {"read_only_rootfs", s.ReadOnlyRootfs != nil},
			{"cap_add", len(s.CapAdd) > 0}, {"cap_drop", len(s.CapDrop) > 0},
			{"no_new_privileges", s.NoNewPrivileges != nil}, {"seccomp", s.Seccomp != ""}, {"apparmor", s.AppArmor != ""},
		} {
			if k.set {
				v.add(p+"."+k.key, "applies only to the docker driver; of security the %s driver applies only user", drv)
			}
		}
	}
	switch s.Seccomp {
	case "", "default", "unconfined":
	default:
		v.add(p+".seccomp", "%s is not a seccomp setting; use default or unconfined (custom profiles are not supported)", quote(s.Seccomp))
	}
	if s.AppArmor != "" && !apparmorProfile().MatchString(s.AppArmor) {
		v.add(p+".apparmor", "%s is not an AppArmor profile name; use a profile loaded on the nodes, or unconfined", quote(s.AppArmor))
	}
}

// Volume is one bind mount of a task, parsed from config.volumes.
type Volume struct {
	Source      string // absolute host path
	Target      string // absolute container path
	ReadOnly    bool
	Propagation string // empty: the engine's default (rprivate)
}

// ParseVolume reads "/host/path:/container/path[:options]", where options
// are ro or rw and a propagation mode, comma-separated, as docker run -v
// writes them. On failure it returns what is wrong, for "<value> <problem>"
// messages.
func ParseVolume(s string) (Volume, string) {
	parts := strings.Split(s, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return Volume{}, `is not a volume; write it as "/host/path:/container/path", optionally followed by ":ro"`
	}
	m := Volume{Source: parts[0], Target: parts[1]}
	if problem := absPath(m.Source, "host path"); problem != "" {
		return Volume{}, problem
	}
	if problem := absPath(m.Target, "container path"); problem != "" {
		return Volume{}, problem
	}
	if path.Clean(m.Target) == "/" {
		return Volume{}, "mounts over the container's root; choose a directory inside it"
	}
	if len(parts) == 3 {
		access, prop := 0, 0
		for _, o := range strings.Split(parts[2], ",") {
			switch {
			case contains(volumeAccess, o):
				access++
				m.ReadOnly = o == "ro"
			case contains(volumePropagation, o):
				prop++
				m.Propagation = o
			default:
				return Volume{}, "has the unknown option " + quote(o) + "; use ro or rw and optionally one of " + strings.Join(volumePropagation, ", ")
			}
		}
		if access > 1 || prop > 1 {
			return Volume{}, "gives more than one access mode or propagation mode"
		}
	}
	return m, ""
}

// extraHost is one /etc/hosts entry: a host name, then an IPv4 or IPv6
// address or the engine's host-gateway.
var extraHost = lazyRegexp(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,253}:([0-9.]+|[0-9A-Fa-f:]+|host-gateway)$`)

// dockerVolumeName is the engine's rule for volume names.
var dockerVolumeName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

// ParseDockerVolume reads a node-local named volume,
// "name:/container/path[:ro|rw]", as docker run -v writes one.
func ParseDockerVolume(s string) (Volume, string) {
	parts := strings.Split(s, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return Volume{}, `is not a named volume; write it as "name:/container/path", optionally followed by ":ro"`
	}
	m := Volume{Source: parts[0], Target: parts[1]}
	if !dockerVolumeName.MatchString(m.Source) {
		return Volume{}, "does not start with a volume name ([a-zA-Z0-9][a-zA-Z0-9_.-]+)"
	}
	if problem := absPath(m.Target, "container path"); problem != "" {
		return Volume{}, problem
	}
	if path.Clean(m.Target) == "/" {
		return Volume{}, "mounts over the container's root; choose a directory inside it"
	}
	if len(parts) == 3 {
		if !contains(volumeAccess, parts[2]) {
			return Volume{}, "has the unknown option " + quote(parts[2]) + "; use ro or rw"
		}
		m.ReadOnly = parts[2] == "ro"
	}
	return m, ""
}

// Device is one host device of a task, parsed from config.devices.
type Device struct {
	Host        string
	Container   string // defaults to Host
	Permissions string // defaults to rwm
}

// ParseDevice reads "/dev/x[:/dev/y[:perms]]", as docker run --device
// writes it.
func ParseDevice(s string) (Device, string) {
	parts := strings.Split(s, ":")
	if len(parts) > 3 {
		return Device{}, `is not a device; write it as "/dev/host[:/dev/container[:rwm]]"`
	}
	d := Device{Host: parts[0], Container: parts[0], Permissions: "rwm"}
	if problem := absPath(d.Host, "device path"); problem != "" {
		return Device{}, problem
	}
	if len(parts) > 1 {
		d.Container = parts[1]
		if problem := absPath(d.Container, "container path"); problem != "" {
			return Device{}, problem
		}
	}
	if len(parts) > 2 {
		d.Permissions = parts[2]
		if !devicePerms.MatchString(d.Permissions) || strings.Count(d.Permissions, "r") > 1 ||
			strings.Count(d.Permissions, "w") > 1 || strings.Count(d.Permissions, "m") > 1 {
			return Device{}, "has permissions " + quote(d.Permissions) + "; use a combination of r, w and m, like rw"
		}
	}
	return d, ""
}

func absPath(p, what string) string {
	switch {
	case p == "":
		return "has an empty " + what
	case !strings.HasPrefix(p, "/"):
		return "has the " + what + " " + quote(p) + ", which is not absolute; start it with /"
	case strings.ContainsAny(p, "\x00\n\r\t,"):
		return "has a " + what + " with a control character or comma"
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == ".." {
			return "has the " + what + " " + quote(p) + ", which climbs with ..; write the path without it"
		}
	}
	return ""
}
