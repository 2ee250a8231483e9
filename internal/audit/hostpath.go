package audit

import (
	"path"
	"slices"
	"strings"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
)

// Host paths a container must not reach through a bind mount. A mount is
// judged by every path its host source stands for: the source as given,
// its canonical spelling (/var/run is /run on every current distribution)
// and, when the caller resolved it on the host (Engine.HostPaths), the
// path its symlinks lead to. A mount reaches a location when any of those
// paths is the location, lies under it, or contains it (a bind mount of a
// parent directory carries everything below it).

// DefaultSockets are where the Docker engine and containerd keep their API
// sockets unless configured otherwise: the engine's own, containerd's, and
// the containerd the engine manages itself (Docker 20.10).
var DefaultSockets = []string{
	"/run/docker.sock",
	"/run/containerd/containerd.sock",
	"/run/docker/containerd/containerd.sock",
	"/run/docker/containerd/docker-containerd.sock",
}

// canonical cleans p and spells /var/run as /run.
func canonical(p string) string {
	p = path.Clean(p)
	if p == "/var/run" || strings.HasPrefix(p, "/var/run/") {
		p = "/run" + strings.TrimPrefix(p, "/var/run")
	}
	return p
}

// reaches reports whether a mount of p reaches loc: p is loc, lies under
// it, or contains it.
func reaches(p, loc string) bool {
	return p == loc || p == "/" || strings.HasPrefix(p, loc+"/") || strings.HasPrefix(loc, p+"/")
}

// under reports whether p is loc or lies under it.
func under(p, loc string) bool {
	return p == loc || loc == "/" || strings.HasPrefix(p, loc+"/")
}

// hostPaths returns every path a host source stands for (see above),
// without repeats.
func (e *Engine) hostPaths(src string) []string {
	if src == "" || !strings.HasPrefix(src, "/") {
		return nil
	}
	out := []string{path.Clean(src), canonical(src)}
	if e != nil {
		if r, ok := e.HostPaths[src]; ok && strings.HasPrefix(r, "/") {
			out = append(out, path.Clean(r), canonical(r))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// sockets returns the engine's and containerd's sockets: the defaults,
// where the caller found the engine (Engine.Sockets) and the containerd
// the engine reports using, canonical and without repeats, the engine's
// own first.
func (e *Engine) sockets() []string {
	all := append([]string(nil), DefaultSockets...)
	if e != nil {
		all = append(all, e.Sockets...)
		if e.Info.Containerd != nil && e.Info.Containerd.Address != "" {
			all = append(all, strings.TrimPrefix(e.Info.Containerd.Address, "unix://"))
		}
		for _, s := range e.Sockets {
			if r, ok := e.HostPaths[s]; ok {
				all = append(all, r)
			}
		}
	}
	out := make([]string, 0, len(all))
	for _, s := range all {
		if c := canonical(s); strings.HasPrefix(s, "/") && !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out
}

// reachedSocket returns the first engine or containerd socket a mount of
// src reaches, and the host path through which it does.
func (e *Engine) reachedSocket(src string) (socket, via string, ok bool) {
	socks := e.sockets()
	for _, p := range e.hostPaths(src) {
		for _, s := range socks {
			if reaches(p, s) {
				return s, p, true
			}
		}
	}
	return "", "", false
}

// rawDevicePrefixes name the device nodes that give raw access to
// physical memory, kernel memory, I/O ports or block storage: a container
// holding one can read or rewrite the host underneath every isolation
// mechanism. The entries ending in "/" are directories of device links.
var rawDevicePrefixes = []string{
	"/dev/mem", "/dev/kmem", "/dev/port",
	"/dev/sd", "/dev/hd", "/dev/vd", "/dev/xvd", "/dev/nvme", "/dev/mmcblk",
	"/dev/loop", "/dev/dm-", "/dev/md", "/dev/nbd", "/dev/rbd", "/dev/zd", "/dev/sr",
	"/dev/mapper/", "/dev/disk/", "/dev/block/",
}

// rawDevice reports whether the device node p gives raw access to memory,
// the kernel, I/O ports or a disk. /dev/loop-control and
// /dev/mapper/control are control nodes of those subsystems and count too.
func rawDevice(p string) bool {
	p = path.Clean(p)
	for _, pre := range rawDevicePrefixes {
		if strings.HasSuffix(pre, "/") {
			if strings.HasPrefix(p, pre) {
				return true
			}
			continue
		}
		if p == pre {
			return true
		}
		if strings.HasPrefix(p, pre) && pre != "/dev/mem" && pre != "/dev/kmem" && pre != "/dev/port" {
			return true
		}
	}
	return false
}

// rawDeviceRule reports whether a device cgroup rule ("b 8:* rwm",
// "a *:* rwm") allows block devices or every device.
func rawDeviceRule(rule string) bool {
	kind, _, _ := strings.Cut(strings.TrimSpace(rule), " ")
	return kind == "b" || kind == "a"
}

// rawDevice reports whether the device node p, or where its symlinks lead
// on the host, gives raw access (see rawDevice).
func (e *Engine) rawDevice(p string) bool {
	return slices.ContainsFunc(e.hostPaths(p), rawDevice)
}

// HostPathsOf returns the host paths a container names that the caller
// should resolve on the host for Engine.HostPaths: bind-mount sources and
// device nodes.
func HostPathsOf(c container.InspectResponse) []string {
	var out []string
	for _, m := range c.Mounts {
		if m.Type == mount.TypeBind || m.Type == "" {
			out = append(out, m.Source)
		}
	}
	if c.HostConfig != nil {
		for _, d := range c.HostConfig.Devices {
			out = append(out, d.PathOnHost)
		}
	}
	return out
}
