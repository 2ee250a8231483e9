package audit

import (
	"fmt"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
)

// containerChecks are the container runtime checks, in benchmark order. Ids
// and titles are those of the CIS Docker Benchmark v1.6.0; the logic follows
// each recommendation's audit procedure, reading the same fields of
// `docker inspect`.
var containerChecks = []Check{
	{
		ID: "4.1", Name: "ContainerUser",
		Title:       "Ensure that a user for the container has been created",
		Severity:    SeverityMedium,
		Remediation: "Create a non-root user in the image (USER) or run the container with --user set to a non-root UID.",
		Run:         checkUser,
	},
	{
		ID: "5.2", Name: "AppArmorProfile",
		Title:       "Ensure that, if applicable, an AppArmor Profile is enabled",
		Severity:    SeverityMedium,
		Remediation: "Run the container with the engine's default AppArmor profile or a custom one (--security-opt apparmor=PROFILE); never apparmor=unconfined.",
		Run:         checkAppArmor,
	},
	{
		ID: "5.4", Name: "RestrictedCapabilities",
		Title:       "Ensure that Linux kernel capabilities are restricted within containers",
		Severity:    SeverityHigh,
		Remediation: "Remove capabilities added with --cap-add (above all SYS_ADMIN, SYS_MODULE, SYS_PTRACE, DAC_READ_SEARCH, NET_ADMIN); drop what the workload does not need with --cap-drop.",
		Run:         checkCapabilities,
	},
	{
		ID: "5.5", Name: "PrivilegedContainer",
		Title:       "Ensure that privileged containers are not used",
		Severity:    SeverityCritical,
		Remediation: "Do not run the container with --privileged; add only the specific capabilities or devices it needs.",
		Run:         checkPrivileged,
	},
	{
		ID: "5.6", Name: "SensitiveHostMounts",
		Title:       "Ensure sensitive host system directories are not mounted on containers",
		Severity:    SeverityHigh,
		Remediation: "Do not bind-mount /, /boot, /dev, /etc, /lib, /proc, /sys or /usr (or paths under them) into containers; if one is unavoidable, mount it read-only.",
		Run:         checkSensitiveMounts,
	},
	{
		ID: "5.8", Name: "PrivilegedPorts",
		Title:       "Ensure privileged ports are not mapped within containers",
		Severity:    SeverityLow,
		Remediation: "Publish container ports on host ports 1024 and above.",
		Run:         checkPrivilegedPorts,
	},
	{
		ID: "5.10", Name: "HostNetwork",
		Title:       "Ensure that the host's network namespace is not shared",
		Severity:    SeverityHigh,
		Remediation: "Do not run the container with --network=host; publish the ports it needs instead.",
		Run:         checkHostNetwork,
	},
	{
		ID: "5.11", Name: "MemoryLimit",
		Title:       "Ensure that the memory usage for containers is limited",
		Severity:    SeverityMedium,
		Remediation: "Set a memory limit (--memory).",
		Run:         checkMemory,
	},
	{
		ID: "5.12", Name: "CPUPriority",
		Title:       "Ensure that CPU priority is set appropriately on containers",
		Severity:    SeverityLow,
		Remediation: "Set CPU shares or a CPU limit (--cpu-shares, --cpus).",
		Run:         checkCPU,
	},
	{
		ID: "5.13", Name: "ReadOnlyRootFilesystem",
		Title:       "Ensure that the container's root filesystem is mounted as read only",
		Severity:    SeverityLow,
		Remediation: "Run the container with --read-only and mount writable volumes or tmpfs only where it writes.",
		Run:         checkReadOnlyRoot,
	},
	{
		ID: "5.14", Name: "BoundHostInterface",
		Title:       "Ensure that incoming container traffic is bound to a specific host interface",
		Severity:    SeverityMedium,
		Remediation: "Publish ports on a specific host address (-p ADDRESS:HOSTPORT:PORT), not on all interfaces.",
		Run:         checkBoundInterface,
	},
	{
		ID: "5.15", Name: "RestartPolicy",
		Title:       "Ensure that the 'on-failure' container restart policy is set to '5'",
		Severity:    SeverityLow,
		Remediation: "Use --restart=on-failure:5 (or no restart policy); avoid always, unless-stopped and unbounded on-failure.",
		Run:         checkRestartPolicy,
	},
	{
		ID: "5.16", Name: "HostPIDNamespace",
		Title:       "Ensure that the host's process namespace is not shared",
		Severity:    SeverityHigh,
		Remediation: "Do not run the container with --pid=host.",
		Run:         checkHostPID,
	},
	{
		ID: "5.17", Name: "HostIPCNamespace",
		Title:       "Ensure that the host's IPC namespace is not shared",
		Severity:    SeverityHigh,
		Remediation: "Do not run the container with --ipc=host.",
		Run:         checkHostIPC,
	},
	{
		ID: "5.18", Name: "HostDevices",
		Title:       "Ensure that host devices are not directly exposed to containers",
		Severity:    SeverityMedium,
		Remediation: "Do not pass host devices with --device, above all memory, I/O port and disk devices (/dev/mem, /dev/kmem, /dev/port, /dev/sd*, /dev/nvme*); give GPUs through the GPU request (the NVIDIA runtime by UUID), never devices and never all of them.",
		Run:         checkDevices,
	},
	{
		ID: "5.20", Name: "MountPropagation",
		Title:       "Ensure mount propagation mode is not set to shared",
		Severity:    SeverityMedium,
		Remediation: "Mount volumes with private or slave propagation, not shared or rshared.",
		Run:         checkPropagation,
	},
	{
		ID: "5.21", Name: "HostUTSNamespace",
		Title:       "Ensure that the host's UTS namespace is not shared",
		Severity:    SeverityMedium,
		Remediation: "Do not run the container with --uts=host.",
		Run:         checkHostUTS,
	},
	{
		ID: "5.22", Name: "SeccompProfile",
		Title:       "Ensure the default seccomp profile is not Disabled",
		Severity:    SeverityHigh,
		Remediation: "Do not run the container with --security-opt seccomp=unconfined; use the default or a custom profile.",
		Run:         checkSeccomp,
	},
	{
		ID: "5.26", Name: "NoNewPrivileges",
		Title:       "Ensure that the container is restricted from acquiring additional privileges",
		Severity:    SeverityMedium,
		Remediation: "Run the container with --security-opt no-new-privileges (or set no-new-privileges in the daemon's configuration).",
		Run:         checkNoNewPrivileges,
	},
	{
		ID: "5.27", Name: "HealthCheck",
		Title:       "Ensure that container health is checked at runtime",
		Severity:    SeverityLow,
		Remediation: "Give the container a health check (HEALTHCHECK in the image or --health-cmd).",
		Run:         checkHealth,
	},
	{
		ID: "5.29", Name: "PIDsLimit",
		Title:       "Ensure that the PIDs cgroup limit is used",
		Severity:    SeverityMedium,
		Remediation: "Set a PIDs limit (--pids-limit).",
		Run:         checkPidsLimit,
	},
	{
		ID: "5.31", Name: "HostUserNamespace",
		Title:       "Ensure that the host's user namespaces are not shared",
		Severity:    SeverityMedium,
		Remediation: "Do not run the container with --userns=host.",
		Run:         checkHostUserns,
	},
	{
		ID: "5.32", Name: "DockerSocketMount",
		Title:       "Ensure that the Docker socket is not mounted inside any containers",
		Severity:    SeverityCritical,
		Remediation: "Do not mount the engine's or containerd's socket, or a directory holding it (/run, /var/run), into containers; either gives full control of the engine and the host.",
		Run:         checkDockerSocket,
	},
}

// 4.1: the container's user is root when Config.User is empty (and the
// image sets none), "root" or UID 0.
func checkUser(c *container.InspectResponse, e *Engine) Result {
	u := c.Config.User
	name, _, _ := strings.Cut(u, ":")
	if name != "" && name != "root" && name != "0" {
		return pass("runs as user %q", u)
	}
	what := "runs as root (no user set)"
	if u != "" {
		what = fmt.Sprintf("runs as root (user %q)", u)
	}
	switch {
	case !e.known():
		return fail("%s; engine information unavailable, user-namespace remapping unknown", what)
	case e.usernsRemapped() && c.HostConfig.UsernsMode.IsHost():
		return fail("%s; the container opts out of the engine's user-namespace remapping (userns host), so container root is root on the host", what)
	case e.usernsRemapped():
		return fail("%s; the engine remaps user namespaces, so container root is an unprivileged user on the host", what)
	default:
		return fail("%s; the engine does not remap user namespaces, so container root is root on the host", what)
	}
}

// 5.2: applicable only where the engine runs with AppArmor. The profile is
// missing when AppArmorProfile is empty or "unconfined" (a privileged
// container is always unconfined).
func checkAppArmor(c *container.InspectResponse, e *Engine) Result {
	if !e.known() {
		return info("engine information unavailable: cannot tell whether AppArmor applies")
	}
	requested := ""
	for _, o := range c.HostConfig.SecurityOpt {
		if k, v, ok := cutOpt(o); ok && k == "apparmor" {
			requested = v
		}
	}
	if _, ok := e.securityOption("apparmor"); !ok {
		d := fmt.Sprintf("not applicable: the engine reports no AppArmor support (security options: %s)", e.securityOptions())
		if requested != "" {
			d += fmt.Sprintf("; the container asks for apparmor=%s", requested)
		}
		return info("%s", d)
	}
	profile := c.AppArmorProfile
	if c.HostConfig.Privileged {
		return fail("no AppArmor confinement: privileged containers run unconfined")
	}
	if profile == "" || profile == "unconfined" {
		return fail("no AppArmor confinement (AppArmorProfile=%q) although the engine supports AppArmor", profile)
	}
	return pass("AppArmor profile %q", profile)
}

// defaultCaps are the capabilities Docker grants a container by default.
var defaultCaps = map[string]bool{
	"AUDIT_WRITE": true, "CHOWN": true, "DAC_OVERRIDE": true, "FOWNER": true,
	"FSETID": true, "KILL": true, "MKNOD": true, "NET_BIND_SERVICE": true,
	"NET_RAW": true, "SETFCAP": true, "SETGID": true, "SETPCAP": true,
	"SETUID": true, "SYS_CHROOT": true,
}

// DangerousCapabilities are the capabilities that, added to a container,
// give it a direct path to the host: mounting and namespace control
// (SYS_ADMIN), loading kernel modules (SYS_MODULE), tracing other
// processes (SYS_PTRACE), reading any file (DAC_READ_SEARCH) and
// reconfiguring the network (NET_ADMIN). ALL includes them.
var DangerousCapabilities = []string{"SYS_ADMIN", "SYS_MODULE", "SYS_PTRACE", "DAC_READ_SEARCH", "NET_ADMIN"}

func normCap(s string) string {
	return strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(s)), "CAP_")
}

// 5.4: any capability added beyond Docker's defaults fails; a dangerous one
// (or ALL) is critical.
func checkCapabilities(c *container.InspectResponse, _ *Engine) Result {
	var extra, dangerous []string
	for _, raw := range c.HostConfig.CapAdd {
		cp := normCap(raw)
		if cp == "" || defaultCaps[cp] {
			continue
		}
		extra = append(extra, cp)
		if cp == "ALL" || slices.Contains(DangerousCapabilities, cp) {
			dangerous = append(dangerous, cp)
		}
	}
	drops := ""
	if len(c.HostConfig.CapDrop) > 0 {
		var d []string
		for _, raw := range c.HostConfig.CapDrop {
			d = append(d, normCap(raw))
		}
		drops = "; drops " + strings.Join(d, ",")
	}
	switch {
	case len(dangerous) > 0:
		return failAt(SeverityCritical, "adds dangerous capabilities %s (added beyond the defaults: %s)%s",
			strings.Join(dangerous, ","), strings.Join(extra, ","), drops)
	case len(extra) > 0:
		return failAt(SeverityMedium, "adds capabilities beyond the defaults: %s%s", strings.Join(extra, ","), drops)
	}
	if c.HostConfig.Privileged {
		return pass("no capabilities added (privileged mode grants all of them: see 5.5)%s", drops)
	}
	return pass("no capabilities added beyond the defaults%s", drops)
}

// 5.5
func checkPrivileged(c *container.InspectResponse, _ *Engine) Result {
	if c.HostConfig.Privileged {
		return fail("runs privileged: every capability, every host device, no seccomp or AppArmor confinement")
	}
	return pass("not privileged")
}

// sensitiveDirs are the host directories recommendation 5.6 lists.
var sensitiveDirs = []string{"/", "/boot", "/dev", "/etc", "/lib", "/proc", "/sys", "/usr"}

// sensitiveDir returns the listed directory that a mount of src is, lies
// under or (for "/") contains, through any path src stands for on the host
// (the source as given, /var/run as /run, where its symlinks lead).
func (e *Engine) sensitiveDir(src string) (dir, via string, ok bool) {
	for _, p := range e.hostPaths(src) {
		for _, d := range sensitiveDirs {
			if under(p, d) && (d != "/" || p == "/") {
				return d, p, true
			}
		}
	}
	return "", "", false
}

// 5.6: a bind mount of a listed directory (or a path under it, or a path
// whose symlinks lead there) fails; high when writable, low when
// read-only.
func checkSensitiveMounts(c *container.InspectResponse, e *Engine) Result {
	var rw, ro []string
	for _, m := range c.Mounts {
		if m.Type != mount.TypeBind {
			continue
		}
		d, via, ok := e.sensitiveDir(m.Source)
		if !ok {
			continue
		}
		desc := fmt.Sprintf("%s -> %s", m.Source, m.Destination)
		if via != path.Clean(m.Source) {
			desc += fmt.Sprintf(" (%s on the host, under %s)", via, d)
		}
		if m.RW {
			rw = append(rw, desc+" (rw)")
		} else {
			ro = append(ro, desc+" (ro)")
		}
	}
	switch {
	case len(rw) > 0:
		return failAt(SeverityHigh, "mounts sensitive host directories read-write: %s", strings.Join(append(rw, ro...), ", "))
	case len(ro) > 0:
		return failAt(SeverityLow, "mounts sensitive host directories read-only: %s", strings.Join(ro, ", "))
	}
	return pass("no sensitive host directory mounted")
}

// binding is one published port.
type binding struct {
	port     string // container port, "8080/tcp"
	hostIP   string // "" when bound to all interfaces
	hostPort string
}

func (b binding) String() string {
	ip := b.hostIP
	if ip == "" {
		ip = "0.0.0.0"
	}
	if strings.Contains(ip, ":") {
		ip = "[" + ip + "]"
	}
	hp := b.hostPort
	if hp == "" {
		hp = "(any)"
	}
	return fmt.Sprintf("%s:%s -> %s", ip, hp, b.port)
}

// bindings returns the ports the container publishes: the engine's actual
// bindings when the container runs, its configured ones otherwise.
func bindings(c *container.InspectResponse) []binding {
	m := c.NetworkSettings.Ports
	if !hasBindings(m) {
		m = c.HostConfig.PortBindings
	}
	var out []binding
	for p, bs := range m {
		for _, b := range bs {
			ip := ""
			if b.HostIP.IsValid() && !b.HostIP.IsUnspecified() {
				ip = b.HostIP.String()
			} else if b.HostIP.IsValid() && b.HostIP.Is6() {
				ip = "::"
			}
			out = append(out, binding{port: p.String(), hostIP: ip, hostPort: b.HostPort})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return slices.Compact(out)
}

func hasBindings(m network.PortMap) bool {
	for _, bs := range m {
		if len(bs) > 0 {
			return true
		}
	}
	return false
}

// hostPortLow returns the lowest host port of a binding ("987", or the
// start of a range "8000-8010"); 0 when the engine picks the port.
func hostPortLow(hp string) int {
	lo, _, _ := strings.Cut(hp, "-")
	n, err := strconv.Atoi(strings.TrimSpace(lo))
	if err != nil {
		return 0
	}
	return n
}

// 5.8: a published host port below 1024 fails.
func checkPrivilegedPorts(c *container.InspectResponse, _ *Engine) Result {
	var bad []string
	bs := bindings(c)
	for _, b := range bs {
		if p := hostPortLow(b.hostPort); p > 0 && p < 1024 {
			bad = append(bad, b.String())
		}
	}
	if len(bad) > 0 {
		return fail("maps privileged host ports: %s", strings.Join(bad, ", "))
	}
	if len(bs) == 0 {
		return pass("publishes no ports")
	}
	return pass("publishes no host port below 1024")
}

// 5.10
func checkHostNetwork(c *container.InspectResponse, _ *Engine) Result {
	if c.HostConfig.NetworkMode == network.NetworkHost {
		return fail("shares the host's network namespace (network mode host)")
	}
	return pass("own network namespace (network mode %q)", string(c.HostConfig.NetworkMode))
}

// 5.11: HostConfig.Memory is the limit in bytes; 0 means none.
func checkMemory(c *container.InspectResponse, e *Engine) Result {
	mem := c.HostConfig.Memory
	if mem <= 0 {
		return fail("no memory limit")
	}
	if e.known() && !e.Info.MemoryLimit {
		return fail("memory limit %d bytes is set, but the engine reports no memory limit support in the kernel, so it is not enforced", mem)
	}
	return pass("memory limited to %d bytes", mem)
}

// 5.12: CPU shares, a CPU count (NanoCPUs) or a CFS quota bound the
// container's CPU; none of them means it competes at the default weight
// with no ceiling.
func checkCPU(c *container.InspectResponse, _ *Engine) Result {
	r := c.HostConfig.Resources
	var set []string
	if r.CPUShares > 0 {
		set = append(set, fmt.Sprintf("cpu shares %d", r.CPUShares))
	}
	if r.NanoCPUs > 0 {
		set = append(set, fmt.Sprintf("%.3g CPUs", float64(r.NanoCPUs)/1e9))
	}
	if r.CPUQuota > 0 {
		set = append(set, fmt.Sprintf("CFS quota %d", r.CPUQuota))
	}
	if len(set) == 0 {
		return fail("no CPU shares or CPU limit")
	}
	return pass("%s", strings.Join(set, ", "))
}

// 5.13
func checkReadOnlyRoot(c *container.InspectResponse, _ *Engine) Result {
	if !c.HostConfig.ReadonlyRootfs {
		return fail("root filesystem is writable")
	}
	return pass("root filesystem is read-only")
}

// 5.14: a published port bound to 0.0.0.0 or :: (or no address) accepts
// traffic on every host interface.
func checkBoundInterface(c *container.InspectResponse, _ *Engine) Result {
	var bad []string
	bs := bindings(c)
	for _, b := range bs {
		if b.hostIP == "" || b.hostIP == "::" {
			bad = append(bad, b.String())
		}
	}
	if len(bad) > 0 {
		return fail("ports bound to all host interfaces: %s", strings.Join(bad, ", "))
	}
	if len(bs) == 0 {
		return pass("publishes no ports")
	}
	return pass("every published port is bound to a specific address")
}

// 5.15: "always" and "unless-stopped" restart without bound, as does
// "on-failure" with no maximum (0); more than 5 attempts fails too.
func checkRestartPolicy(c *container.InspectResponse, _ *Engine) Result {
	rp := c.HostConfig.RestartPolicy
	switch rp.Name {
	case "", container.RestartPolicyDisabled:
		return pass("no restart policy")
	case container.RestartPolicyAlways, container.RestartPolicyUnlessStopped:
		return fail("restart policy %q restarts without limit", string(rp.Name))
	case container.RestartPolicyOnFailure:
		if rp.MaximumRetryCount <= 0 {
			return fail("restart policy on-failure has no maximum, so it retries without limit")
		}
		if rp.MaximumRetryCount > 5 {
			return fail("restart policy on-failure:%d allows more than 5 attempts", rp.MaximumRetryCount)
		}
		return pass("restart policy on-failure:%d", rp.MaximumRetryCount)
	}
	return fail("unknown restart policy %q", string(rp.Name))
}

// 5.16
func checkHostPID(c *container.InspectResponse, _ *Engine) Result {
	if c.HostConfig.PidMode.IsHost() {
		return fail("shares the host's process namespace (pid mode host)")
	}
	return pass("own process namespace")
}

// 5.17
func checkHostIPC(c *container.InspectResponse, _ *Engine) Result {
	if c.HostConfig.IpcMode.IsHost() {
		return fail("shares the host's IPC namespace (ipc mode host)")
	}
	return pass("own IPC namespace (ipc mode %q)", string(c.HostConfig.IpcMode))
}

// 5.18: host devices passed with --device or allowed by device cgroup
// rules fail. Raw access to memory, the kernel, I/O ports or disks
// (/dev/mem, /dev/kmem, /dev/port, block devices, a rule allowing block
// devices) is high. GPU exposure is high too: raw /dev/nvidia* nodes passed around
// the NVIDIA runtime, a device request for all GPUs, or
// NVIDIA_VISIBLE_DEVICES=all, each of which lets the container see GPUs it
// was not given; and, where the node's allocations are known, any GPU
// beyond the container's allocation (gpu.go).
func checkDevices(c *container.InspectResponse, e *Engine) Result {
	var raw, gpu, other []string
	for _, d := range c.HostConfig.Devices {
		desc := d.PathOnHost
		if d.PathInContainer != "" && d.PathInContainer != d.PathOnHost {
			desc += " -> " + d.PathInContainer
		}
		switch {
		case strings.HasPrefix(d.PathOnHost, "/dev/nvidia") || strings.HasPrefix(d.PathInContainer, "/dev/nvidia"):
			gpu = append(gpu, "raw GPU device "+desc+" passed around the NVIDIA runtime (ask for GPUs with the task's gpu resources, never devices)")
		case e.rawDevice(d.PathOnHost):
			raw = append(raw, "raw access device "+desc+" (memory, kernel, I/O ports or a disk: the container can read and rewrite the host beneath every isolation)")
		default:
			other = append(other, "host device "+desc)
		}
	}
	for _, rule := range c.HostConfig.DeviceCgroupRules {
		if rawDeviceRule(rule) {
			raw = append(raw, fmt.Sprintf("device cgroup rule %q allows block devices", rule))
			continue
		}
		other = append(other, fmt.Sprintf("device cgroup rule %q", rule))
	}
	for _, r := range c.HostConfig.DeviceRequests {
		if r.Count < 0 {
			drv := r.Driver
			if drv == "" {
				drv = "default"
			}
			gpu = append(gpu, fmt.Sprintf("device request for all devices (driver %s, capabilities %v)", drv, r.Capabilities))
		}
	}
	for _, env := range c.Config.Env {
		k, v, _ := strings.Cut(env, "=")
		if k == "NVIDIA_VISIBLE_DEVICES" && strings.EqualFold(strings.TrimSpace(v), "all") {
			gpu = append(gpu, "NVIDIA_VISIBLE_DEVICES=all exposes every GPU on the node")
		}
	}
	gpu = append(gpu, gpuBeyondAllocation(c, e)...)
	switch {
	case len(raw) > 0 || len(gpu) > 0:
		return failAt(SeverityHigh, "%s", strings.Join(append(append(raw, gpu...), other...), "; "))
	case len(other) > 0:
		return fail("exposes %s", strings.Join(other, "; "))
	}
	if c.HostConfig.Privileged {
		return pass("no devices passed (privileged mode exposes all of them: see 5.5)")
	}
	return pass("no host devices exposed")
}

// 5.20
func checkPropagation(c *container.InspectResponse, _ *Engine) Result {
	var bad []string
	for _, m := range c.Mounts {
		if m.Propagation == mount.PropagationShared || m.Propagation == mount.PropagationRShared {
			bad = append(bad, fmt.Sprintf("%s -> %s (%s)", m.Source, m.Destination, m.Propagation))
		}
	}
	if len(bad) > 0 {
		return fail("mounts with shared propagation: %s", strings.Join(bad, ", "))
	}
	return pass("no mount with shared propagation")
}

// 5.21
func checkHostUTS(c *container.InspectResponse, _ *Engine) Result {
	if c.HostConfig.UTSMode.IsHost() {
		return fail("shares the host's UTS namespace (uts mode host)")
	}
	return pass("own UTS namespace")
}

// cutOpt splits a security option "key=value" or the older "key:value".
func cutOpt(o string) (key, value string, ok bool) {
	i := strings.IndexAny(o, "=:")
	if i < 0 {
		return o, "", false
	}
	return o[:i], o[i+1:], true
}

// 5.22: seccomp=unconfined disables filtering; so does an engine that has no
// seccomp support at all.
func checkSeccomp(c *container.InspectResponse, e *Engine) Result {
	profile := ""
	for _, o := range c.HostConfig.SecurityOpt {
		if k, v, ok := cutOpt(o); ok && k == "seccomp" {
			profile = v
		}
	}
	if profile == "unconfined" {
		return fail("seccomp disabled (seccomp=unconfined)")
	}
	if !e.known() {
		return info("engine information unavailable: cannot tell whether seccomp applies")
	}
	eng, ok := e.securityOption("seccomp")
	if !ok {
		return fail("the engine reports no seccomp support (security options: %s), so no system call filter applies", e.securityOptions())
	}
	note := ""
	if c.HostConfig.Privileged {
		note = "; privileged mode disables it at run time (see 5.5)"
	}
	if profile != "" {
		return pass("custom seccomp profile%s", note)
	}
	return pass("engine's seccomp profile (engine reports profile %q)%s", eng["profile"], note)
}

// 5.26: no-new-privileges in the container's security options, or as the
// daemon's default when the caller could read the daemon's configuration.
func checkNoNewPrivileges(c *container.InspectResponse, e *Engine) Result {
	for _, o := range c.HostConfig.SecurityOpt {
		k, v, ok := cutOpt(o)
		if k != "no-new-privileges" {
			continue
		}
		if !ok || v == "" {
			return pass("no-new-privileges set")
		}
		b, err := strconv.ParseBool(v)
		switch {
		case err != nil:
			return fail("no-new-privileges has an invalid value %q", v)
		case b:
			return pass("no-new-privileges set")
		default:
			return fail("no-new-privileges explicitly disabled (no-new-privileges=%s)", v)
		}
	}
	switch {
	case e == nil || e.Daemon == nil:
		return fail("no-new-privileges not set on the container; the daemon's default is unknown (its configuration was not read; the engine API does not report it)")
	case e.Daemon.NoNewPrivileges != nil && *e.Daemon.NoNewPrivileges:
		return pass("no-new-privileges not set on the container, but the daemon's configuration sets it by default")
	default:
		return fail("no-new-privileges not set on the container, and the daemon's configuration does not set it by default")
	}
}

// 5.27: a health check in the container's (merged) configuration, not
// disabled with NONE. Gantry runs a task's checks from its agent instead of
// the engine and says so with the gantry.checks label; the label counts
// when the agent confirms it checks that task, or, where the node's
// allocations are not known, on a container that carries Gantry's
// allocation label (a label is only as trustworthy as whoever may start
// containers on the engine, which the other checks are about).
func checkHealth(c *container.InspectResponse, e *Engine) Result {
	hc := c.Config.Healthcheck
	if hc == nil || len(hc.Test) == 0 || hc.Test[0] == "NONE" {
		if r, ok := gantryChecks(c, e); ok {
			return r
		}
	}
	if hc == nil || len(hc.Test) == 0 {
		return fail("no health check")
	}
	if hc.Test[0] == "NONE" {
		return fail("health check disabled (NONE)")
	}
	status := ""
	if c.State.Health != nil {
		status = fmt.Sprintf(" (status %s)", c.State.Health.Status)
	}
	return pass("health check %s%s", strings.Join(hc.Test, " "), status)
}

// gantryChecks judges a container by its gantry.checks label; ok is false
// when the label does not apply.
func gantryChecks(c *container.InspectResponse, e *Engine) (Result, bool) {
	l := c.Config.Labels
	checks, alloc := l[LabelChecks], l[LabelAlloc]
	if checks == "" || alloc == "" {
		return Result{}, false
	}
	if e == nil || e.Allocations == nil {
		return pass("health checked by the Gantry agent (%s=%s)", LabelChecks, checks), true
	}
	if ta, ok := e.Allocations[TaskKey(alloc, l[LabelTask])]; ok && ta.Checks > 0 {
		return pass("health checked by the Gantry agent: %d check(s) (%s=%s)", ta.Checks, LabelChecks, checks), true
	}
	return fail("labelled %s=%s, but the node's agent runs no checks for allocation %s task %q", LabelChecks, checks, alloc, l[LabelTask]), true
}

// 5.29: PidsLimit null, 0 or -1 means unlimited.
func checkPidsLimit(c *container.InspectResponse, e *Engine) Result {
	p := c.HostConfig.PidsLimit
	if p == nil || *p <= 0 {
		return fail("no PIDs limit")
	}
	if e.known() && !e.Info.PidsLimit {
		return fail("PIDs limit %d is set, but the engine reports no PIDs cgroup support, so it is not enforced", *p)
	}
	return pass("PIDs limited to %d", *p)
}

// 5.31
func checkHostUserns(c *container.InspectResponse, e *Engine) Result {
	if c.HostConfig.UsernsMode.IsHost() {
		return fail("shares the host's user namespace (userns mode host)")
	}
	switch {
	case !e.known():
		return pass("does not ask for the host's user namespace; engine remapping unknown")
	case e.usernsRemapped():
		return pass("own user namespace: the engine remaps user namespaces")
	default:
		return pass("does not ask for the host's user namespace, but the engine does not remap user namespaces (see 2.9), so its users are the host's")
	}
}

// 5.32: any mount that reaches the engine's or containerd's socket (the
// socket itself, or a directory that contains it, such as /run or
// /var/run, through any path the source stands for on the host), or whose
// container path is a docker.sock. A read-only mount does not help: a
// socket on a read-only mount still accepts connections.
func checkDockerSocket(c *container.InspectResponse, e *Engine) Result {
	var bad []string
	for _, m := range c.Mounts {
		desc := fmt.Sprintf("%s -> %s", m.Source, m.Destination)
		switch sock, via, ok := e.reachedSocket(m.Source); {
		case m.Type != "" && m.Type != mount.TypeBind:
		case ok && (via == sock || path.Clean(m.Source) == sock):
			bad = append(bad, desc)
			continue
		case ok:
			bad = append(bad, fmt.Sprintf("%s, which holds the engine's socket %s", desc, sock))
			continue
		}
		if path.Base(m.Source) == "docker.sock" || path.Base(m.Destination) == "docker.sock" {
			bad = append(bad, desc)
		}
	}
	if len(bad) > 0 {
		return fail("mounts the Docker socket: %s", strings.Join(bad, ", "))
	}
	return pass("Docker socket not mounted")
}
