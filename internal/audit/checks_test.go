package audit

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/api/types/system"
)

// cisTitles are the CIS Docker Benchmark v1.6.0 ids and titles of the
// recommendations the package checks, copied from the benchmark's list.
var cisTitles = map[string]string{
	"2.9":  "Enable user namespace support",
	"2.14": "Ensure containers are restricted from acquiring new privileges",
	"2.15": "Ensure live restore is enabled",
	"2.18": "Ensure that experimental features are not implemented in production",
	"4.1":  "Ensure that a user for the container has been created",
	"5.1":  "Ensure swarm mode is not Enabled, if not needed",
	"5.2":  "Ensure that, if applicable, an AppArmor Profile is enabled",
	"5.4":  "Ensure that Linux kernel capabilities are restricted within containers",
	"5.5":  "Ensure that privileged containers are not used",
	"5.6":  "Ensure sensitive host system directories are not mounted on containers",
	"5.8":  "Ensure privileged ports are not mapped within containers",
	"5.10": "Ensure that the host's network namespace is not shared",
	"5.11": "Ensure that the memory usage for containers is limited",
	"5.12": "Ensure that CPU priority is set appropriately on containers",
	"5.13": "Ensure that the container's root filesystem is mounted as read only",
	"5.14": "Ensure that incoming container traffic is bound to a specific host interface",
	"5.15": "Ensure that the 'on-failure' container restart policy is set to '5'",
	"5.16": "Ensure that the host's process namespace is not shared",
	"5.17": "Ensure that the host's IPC namespace is not shared",
	"5.18": "Ensure that host devices are not directly exposed to containers",
	"5.20": "Ensure mount propagation mode is not set to shared",
	"5.21": "Ensure that the host's UTS namespace is not shared",
	"5.22": "Ensure the default seccomp profile is not Disabled",
	"5.26": "Ensure that the container is restricted from acquiring additional privileges",
	"5.27": "Ensure that container health is checked at runtime",
	"5.29": "Ensure that the PIDs cgroup limit is used",
	"5.31": "Ensure that the host's user namespaces are not shared",
	"5.32": "Ensure that the Docker socket is not mounted inside any containers",
}

func TestRegistry(t *testing.T) {
	seen := map[string]bool{}
	check := func(id, name, title, remediation string, sev Severity) {
		if seen[id] {
			t.Errorf("check %s registered twice", id)
		}
		seen[id] = true
		if want, ok := cisTitles[id]; !ok || title != want {
			t.Errorf("check %s title %q, want the benchmark's %q", id, title, want)
		}
		if name == "" || remediation == "" || strings.Contains(remediation, "\n") || !sev.Valid() {
			t.Errorf("check %s: name %q, remediation %q, severity %q", id, name, remediation, sev)
		}
	}
	for i, c := range containerChecks {
		check(c.ID, c.Name, c.Title, c.Remediation, c.Severity)
		if i > 0 && !lessID(containerChecks[i-1].ID, c.ID) {
			t.Errorf("container checks out of order at %s", c.ID)
		}
	}
	for i, c := range engineChecks {
		check(c.ID, c.Name, c.Title, c.Remediation, c.Severity)
		if i > 0 && !lessID(engineChecks[i-1].ID, c.ID) {
			t.Errorf("engine checks out of order at %s", c.ID)
		}
	}
	for id := range cisTitles {
		if !seen[id] {
			t.Errorf("no check for %s", id)
		}
	}
}

// Engines in the states the host-dependent checks distinguish.
var (
	engPlain    = &Engine{Info: system.Info{ServerVersion: "20.10.24", SecurityOptions: []string{"name=seccomp,profile=default"}, MemoryLimit: true, PidsLimit: true}}
	engAppArmor = &Engine{Info: system.Info{ServerVersion: "24.0.7", SecurityOptions: []string{"name=apparmor", "name=seccomp,profile=builtin"}, MemoryLimit: true, PidsLimit: true}}
	engUserns   = &Engine{Info: system.Info{ServerVersion: "24.0.7", SecurityOptions: []string{"name=seccomp,profile=builtin", "name=userns"}, MemoryLimit: true, PidsLimit: true}}
	engBare     = &Engine{Info: system.Info{ServerVersion: "20.10.24"}} // no seccomp, no memory or pids cgroup
)

func yes() *bool { b := true; return &b }
func no() *bool  { b := false; return &b }

func withDaemon(e *Engine, d *DaemonConfig) *Engine {
	c := *e
	c.Daemon = d
	return &c
}

func inspect(mod func(c *container.InspectResponse)) container.InspectResponse {
	c := container.InspectResponse{Config: &container.Config{}, HostConfig: &container.HostConfig{},
		NetworkSettings: &container.NetworkSettings{}, State: &container.State{}}
	mod(&c)
	return c
}

func runCheck(t *testing.T, id string, c container.InspectResponse, e *Engine) Finding {
	t.Helper()
	for _, f := range AuditContainer(c, e) {
		if f.CheckID == id {
			return f
		}
	}
	t.Fatalf("no check %s", id)
	return Finding{}
}

func TestContainerChecks(t *testing.T) {
	pb := func(ip, port string) network.PortMap {
		b := network.PortBinding{HostPort: port}
		if ip != "" {
			b.HostIP = netip.MustParseAddr(ip)
		}
		return network.PortMap{network.MustParsePort("80/tcp"): {b}}
	}
	type tc struct {
		name   string
		check  string
		engine *Engine
		mod    func(c *container.InspectResponse)
		status Status
		sev    Severity // checked when set
		detail string   // substring of the detail, checked when set
	}
	none := func(*container.InspectResponse) {}
	cases := []tc{
		// 4.1
		{"no user", "4.1", engPlain, none, StatusFail, "", "container root is root on the host"},
		{"uid 0", "4.1", engPlain, func(c *container.InspectResponse) { c.Config.User = "0:0" }, StatusFail, "", `user "0:0"`},
		{"root:root", "4.1", engPlain, func(c *container.InspectResponse) { c.Config.User = "root:root" }, StatusFail, "", ""},
		{"root remapped", "4.1", engUserns, none, StatusFail, "", "unprivileged user on the host"},
		{"root opting out of remapping", "4.1", engUserns, func(c *container.InspectResponse) { c.HostConfig.UsernsMode = "host" }, StatusFail, "", "opts out"},
		{"uid 1000", "4.1", engPlain, func(c *container.InspectResponse) { c.Config.User = "1000" }, StatusPass, "", ""},
		{"named user", "4.1", engPlain, func(c *container.InspectResponse) { c.Config.User = "nobody" }, StatusPass, "", ""},

		// 5.2 states the host condition.
		{"apparmor absent", "5.2", engPlain, none, StatusInfo, "", "reports no AppArmor support"},
		{"apparmor absent, asked unconfined", "5.2", engPlain, func(c *container.InspectResponse) {
			c.HostConfig.SecurityOpt = []string{"apparmor=unconfined"}
		}, StatusInfo, "", "asks for apparmor=unconfined"},
		{"apparmor unknown engine", "5.2", nil, none, StatusInfo, "", "unavailable"},
		{"apparmor default", "5.2", engAppArmor, func(c *container.InspectResponse) { c.AppArmorProfile = "docker-default" }, StatusPass, "", "docker-default"},
		{"apparmor none", "5.2", engAppArmor, none, StatusFail, "", "supports AppArmor"},
		{"apparmor unconfined", "5.2", engAppArmor, func(c *container.InspectResponse) { c.AppArmorProfile = "unconfined" }, StatusFail, "", ""},
		{"apparmor privileged", "5.2", engAppArmor, func(c *container.InspectResponse) {
			c.AppArmorProfile = "docker-default"
			c.HostConfig.Privileged = true
		}, StatusFail, "", "privileged"},

		// 5.4
		{"cap prefix and case", "5.4", engPlain, func(c *container.InspectResponse) { c.HostConfig.CapAdd = []string{"cap_sys_module"} }, StatusFail, SeverityCritical, "SYS_MODULE"},
		{"cap all", "5.4", engPlain, func(c *container.InspectResponse) { c.HostConfig.CapAdd = []string{"ALL"} }, StatusFail, SeverityCritical, "ALL"},
		{"cap ptrace", "5.4", engPlain, func(c *container.InspectResponse) { c.HostConfig.CapAdd = []string{"SYS_PTRACE"} }, StatusFail, SeverityCritical, ""},
		{"cap dac_read_search", "5.4", engPlain, func(c *container.InspectResponse) { c.HostConfig.CapAdd = []string{"DAC_READ_SEARCH"} }, StatusFail, SeverityCritical, ""},
		{"cap benign", "5.4", engPlain, func(c *container.InspectResponse) { c.HostConfig.CapAdd = []string{"IPC_LOCK"} }, StatusFail, SeverityMedium, "IPC_LOCK"},
		{"cap default", "5.4", engPlain, func(c *container.InspectResponse) { c.HostConfig.CapAdd = []string{"CAP_NET_BIND_SERVICE"} }, StatusPass, "", ""},

		// 5.6
		{"under /etc rw", "5.6", engPlain, func(c *container.InspectResponse) {
			c.Mounts = []container.MountPoint{{Type: mount.TypeBind, Source: "/etc/ssh", Destination: "/ssh", RW: true}}
		}, StatusFail, SeverityHigh, "/etc/ssh"},
		{"host root ro", "5.6", engPlain, func(c *container.InspectResponse) {
			c.Mounts = []container.MountPoint{{Type: mount.TypeBind, Source: "/", Destination: "/host"}}
		}, StatusFail, SeverityLow, "read-only"},
		{"lookalike path", "5.6", engPlain, func(c *container.InspectResponse) {
			c.Mounts = []container.MountPoint{{Type: mount.TypeBind, Source: "/etcetera", Destination: "/x", RW: true}}
		}, StatusPass, "", ""},
		{"named volume", "5.6", engPlain, func(c *container.InspectResponse) {
			c.Mounts = []container.MountPoint{{Type: mount.TypeVolume, Name: "etc", Source: "/var/lib/docker/volumes/etc/_data", Destination: "/etc", RW: true}}
		}, StatusPass, "", ""},

		// 5.8 and 5.14 read the configured bindings of a container that is not running.
		{"port range below 1024", "5.8", engPlain, func(c *container.InspectResponse) { c.HostConfig.PortBindings = pb("10.0.0.1", "80-90") }, StatusFail, "", "80-90"},
		{"high port", "5.8", engPlain, func(c *container.InspectResponse) { c.HostConfig.PortBindings = pb("10.0.0.1", "8080") }, StatusPass, "", ""},
		{"no ports", "5.8", engPlain, none, StatusPass, "", "no ports"},
		{"ipv6 wildcard", "5.14", engPlain, func(c *container.InspectResponse) { c.HostConfig.PortBindings = pb("::", "8080") }, StatusFail, "", "[::]:8080"},
		{"ipv4 wildcard", "5.14", engPlain, func(c *container.InspectResponse) { c.HostConfig.PortBindings = pb("0.0.0.0", "8080") }, StatusFail, "", "0.0.0.0:8080"},
		{"specific address", "5.14", engPlain, func(c *container.InspectResponse) { c.HostConfig.PortBindings = pb("10.0.0.1", "") }, StatusPass, "", ""},
		{"actual bindings win", "5.14", engPlain, func(c *container.InspectResponse) {
			c.HostConfig.PortBindings = pb("10.0.0.1", "")
			c.NetworkSettings.Ports = pb("", "32768")
		}, StatusFail, "", "32768"},

		// 5.11, 5.29: limits the kernel cannot enforce.
		{"memory unenforced", "5.11", engBare, func(c *container.InspectResponse) { c.HostConfig.Memory = 1 << 20 }, StatusFail, "", "no memory limit support"},
		{"pids unenforced", "5.29", engBare, func(c *container.InspectResponse) { p := int64(10); c.HostConfig.PidsLimit = &p }, StatusFail, "", "no PIDs cgroup support"},
		{"pids -1", "5.29", engPlain, func(c *container.InspectResponse) { p := int64(-1); c.HostConfig.PidsLimit = &p }, StatusFail, "", ""},
		{"pids 0", "5.29", engPlain, func(c *container.InspectResponse) { p := int64(0); c.HostConfig.PidsLimit = &p }, StatusFail, "", ""},

		// 5.12
		{"cpu shares", "5.12", engPlain, func(c *container.InspectResponse) { c.HostConfig.CPUShares = 512 }, StatusPass, "", "shares 512"},
		{"cfs quota", "5.12", engPlain, func(c *container.InspectResponse) { c.HostConfig.CPUQuota = 50000 }, StatusPass, "", ""},

		// 5.15
		{"on-failure unbounded", "5.15", engPlain, func(c *container.InspectResponse) {
			c.HostConfig.RestartPolicy = container.RestartPolicy{Name: container.RestartPolicyOnFailure}
		}, StatusFail, "", "without limit"},
		{"on-failure 5", "5.15", engPlain, func(c *container.InspectResponse) {
			c.HostConfig.RestartPolicy = container.RestartPolicy{Name: container.RestartPolicyOnFailure, MaximumRetryCount: 5}
		}, StatusPass, "", ""},
		{"unless-stopped", "5.15", engPlain, func(c *container.InspectResponse) {
			c.HostConfig.RestartPolicy = container.RestartPolicy{Name: container.RestartPolicyUnlessStopped}
		}, StatusFail, "", ""},

		// 5.16, 5.17: joining another container's namespace is not the host's.
		{"pid of a container", "5.16", engPlain, func(c *container.InspectResponse) { c.HostConfig.PidMode = "container:abc" }, StatusPass, "", ""},
		{"ipc shareable", "5.17", engPlain, func(c *container.InspectResponse) { c.HostConfig.IpcMode = container.IPCModeShareable }, StatusPass, "", ""},

		// 5.18
		{"cgroup rule", "5.18", engPlain, func(c *container.InspectResponse) { c.HostConfig.DeviceCgroupRules = []string{"c 1:3 rwm"} }, StatusFail, SeverityMedium, "c 1:3 rwm"},
		{"gpu by uuid", "5.18", engPlain, func(c *container.InspectResponse) {
			c.HostConfig.DeviceRequests = []container.DeviceRequest{{Driver: "nvidia", DeviceIDs: []string{"GPU-1"}, Capabilities: [][]string{{"gpu"}}}}
			c.Config.Env = []string{"NVIDIA_VISIBLE_DEVICES=GPU-1"}
		}, StatusPass, "", ""},
		{"gpu env all lower case", "5.18", engPlain, func(c *container.InspectResponse) { c.Config.Env = []string{"NVIDIA_VISIBLE_DEVICES=All"} }, StatusFail, SeverityHigh, ""},
		{"raw nvidiactl", "5.18", engPlain, func(c *container.InspectResponse) {
			c.HostConfig.Devices = []container.DeviceMapping{{PathOnHost: "/dev/nvidiactl", PathInContainer: "/dev/nvidiactl"}}
		}, StatusFail, SeverityHigh, "raw GPU device"},

		// 5.20
		{"rshared", "5.20", engPlain, func(c *container.InspectResponse) {
			c.Mounts = []container.MountPoint{{Type: mount.TypeBind, Source: "/mnt", Destination: "/mnt", Propagation: mount.PropagationRShared}}
		}, StatusFail, "", "rshared"},
		{"rslave", "5.20", engPlain, func(c *container.InspectResponse) {
			c.Mounts = []container.MountPoint{{Type: mount.TypeBind, Source: "/mnt", Destination: "/mnt", Propagation: mount.PropagationRSlave}}
		}, StatusPass, "", ""},

		// 5.22 states the host condition.
		{"seccomp colon form", "5.22", engPlain, func(c *container.InspectResponse) { c.HostConfig.SecurityOpt = []string{"seccomp:unconfined"} }, StatusFail, "", ""},
		{"seccomp custom", "5.22", engPlain, func(c *container.InspectResponse) {
			c.HostConfig.SecurityOpt = []string{`seccomp={"defaultAction":"SCMP_ACT_ERRNO"}`}
		}, StatusPass, "", "custom"},
		{"engine without seccomp", "5.22", engBare, none, StatusFail, "", "reports no seccomp support"},
		{"seccomp unknown engine", "5.22", nil, none, StatusInfo, "", "unavailable"},
		{"seccomp default", "5.22", engPlain, none, StatusPass, "", `profile "default"`},

		// 5.26 states what it knows of the daemon's default.
		{"nnp bare", "5.26", engPlain, func(c *container.InspectResponse) { c.HostConfig.SecurityOpt = []string{"no-new-privileges"} }, StatusPass, "", ""},
		{"nnp equals", "5.26", engPlain, func(c *container.InspectResponse) { c.HostConfig.SecurityOpt = []string{"no-new-privileges=true"} }, StatusPass, "", ""},
		{"nnp disabled", "5.26", withDaemon(engPlain, &DaemonConfig{NoNewPrivileges: yes()}), func(c *container.InspectResponse) {
			c.HostConfig.SecurityOpt = []string{"no-new-privileges:false"}
		}, StatusFail, "", "explicitly disabled"},
		{"nnp daemon unknown", "5.26", engPlain, none, StatusFail, "", "default is unknown"},
		{"nnp daemon default on", "5.26", withDaemon(engPlain, &DaemonConfig{NoNewPrivileges: yes()}), none, StatusPass, "", "by default"},
		{"nnp daemon default off", "5.26", withDaemon(engPlain, &DaemonConfig{NoNewPrivileges: no()}), none, StatusFail, "", "does not set it"},

		// 5.27
		{"healthcheck NONE", "5.27", engPlain, func(c *container.InspectResponse) {
			c.Config.Healthcheck = &container.HealthConfig{Test: []string{"NONE"}}
		}, StatusFail, "", "NONE"},

		// 5.31 states whether the engine remaps.
		{"userns remapped", "5.31", engUserns, none, StatusPass, "", "engine remaps"},
		{"userns not remapped", "5.31", engPlain, none, StatusPass, "", "does not remap"},

		// 5.32
		{"socket elsewhere", "5.32", engPlain, func(c *container.InspectResponse) {
			c.Mounts = []container.MountPoint{{Type: mount.TypeBind, Source: "/run/user/1000/docker.sock", Destination: "/var/run/docker.sock"}}
		}, StatusFail, SeverityCritical, "/run/user/1000/docker.sock"},
		// A parent directory of the engine's or containerd's socket is the
		// socket (issue 15), read-only or not, through symlinks too.
		{"parent /run", "5.32", engPlain, func(c *container.InspectResponse) {
			c.Mounts = []container.MountPoint{{Type: mount.TypeBind, Source: "/run", Destination: "/host-run", RW: true}}
		}, StatusFail, SeverityCritical, "holds the engine's socket /run/docker.sock"},
		{"parent /var/run read-only", "5.32", engPlain, func(c *container.InspectResponse) {
			c.Mounts = []container.MountPoint{{Type: mount.TypeBind, Source: "/var/run/", Destination: "/host-run"}}
		}, StatusFail, SeverityCritical, "/var/run/ -> /host-run"},
		{"containerd's directory", "5.32", engPlain, func(c *container.InspectResponse) {
			c.Mounts = []container.MountPoint{{Type: mount.TypeBind, Source: "/run/containerd", Destination: "/c"}}
		}, StatusFail, SeverityCritical, "/run/containerd/containerd.sock"},
		{"containerd where the engine says", "5.32", &Engine{Info: system.Info{ServerVersion: "28.0.0", Containerd: &system.ContainerdInfo{Address: "/srv/ctr/containerd.sock"}}}, func(c *container.InspectResponse) {
			c.Mounts = []container.MountPoint{{Type: mount.TypeBind, Source: "/srv/ctr", Destination: "/c"}}
		}, StatusFail, SeverityCritical, "/srv/ctr/containerd.sock"},
		{"engine socket where the client found it", "5.32", &Engine{Sockets: []string{"/home/u/.docker/run/docker.sock"}}, func(c *container.InspectResponse) {
			c.Mounts = []container.MountPoint{{Type: mount.TypeBind, Source: "/home/u/.docker", Destination: "/d"}}
		}, StatusFail, SeverityCritical, "/home/u/.docker/run/docker.sock"},
		{"symlink to /run", "5.32", &Engine{HostPaths: map[string]string{"/srv/link": "/run"}}, func(c *container.InspectResponse) {
			c.Mounts = []container.MountPoint{{Type: mount.TypeBind, Source: "/srv/link", Destination: "/r"}}
		}, StatusFail, SeverityCritical, "/srv/link -> /r"},
		{"host root holds the socket", "5.32", engPlain, func(c *container.InspectResponse) {
			c.Mounts = []container.MountPoint{{Type: mount.TypeBind, Source: "/", Destination: "/host"}}
		}, StatusFail, SeverityCritical, "/run/docker.sock"},
		{"beside the socket", "5.32", engPlain, func(c *container.InspectResponse) {
			c.Mounts = []container.MountPoint{
				{Type: mount.TypeBind, Source: "/run/user/1000/app", Destination: "/a"},
				{Type: mount.TypeBind, Source: "/running", Destination: "/b"},
				{Type: mount.TypeVolume, Name: "run", Source: "/var/lib/docker/volumes/run/_data", Destination: "/run"},
			}
		}, StatusPass, "", ""},

		// 5.6 after resolving symlinks.
		{"symlink into /etc", "5.6", &Engine{HostPaths: map[string]string{"/data/cfg": "/etc/app"}}, func(c *container.InspectResponse) {
			c.Mounts = []container.MountPoint{{Type: mount.TypeBind, Source: "/data/cfg", Destination: "/cfg", RW: true}}
		}, StatusFail, SeverityHigh, "/etc/app on the host, under /etc"},

		// 5.18: raw access devices are high (blocking by default), others medium.
		{"dev mem", "5.18", engPlain, func(c *container.InspectResponse) {
			c.HostConfig.Devices = []container.DeviceMapping{{PathOnHost: "/dev/mem", PathInContainer: "/dev/mem"}}
		}, StatusFail, SeverityHigh, "raw access device /dev/mem"},
		{"dev kmem", "5.18", engPlain, func(c *container.InspectResponse) {
			c.HostConfig.Devices = []container.DeviceMapping{{PathOnHost: "/dev/kmem"}}
		}, StatusFail, SeverityHigh, "raw access"},
		{"dev port", "5.18", engPlain, func(c *container.InspectResponse) {
			c.HostConfig.Devices = []container.DeviceMapping{{PathOnHost: "/dev/port"}}
		}, StatusFail, SeverityHigh, "raw access"},
		{"disk", "5.18", engPlain, func(c *container.InspectResponse) {
			c.HostConfig.Devices = []container.DeviceMapping{{PathOnHost: "/dev/sda", PathInContainer: "/dev/xvda"}}
		}, StatusFail, SeverityHigh, "/dev/sda -> /dev/xvda"},
		{"nvme partition", "5.18", engPlain, func(c *container.InspectResponse) {
			c.HostConfig.Devices = []container.DeviceMapping{{PathOnHost: "/dev/nvme0n1p1"}}
		}, StatusFail, SeverityHigh, "raw access"},
		{"disk by id", "5.18", engPlain, func(c *container.InspectResponse) {
			c.HostConfig.Devices = []container.DeviceMapping{{PathOnHost: "/dev/disk/by-id/ata-x"}}
		}, StatusFail, SeverityHigh, "raw access"},
		{"symlink to a disk", "5.18", &Engine{HostPaths: map[string]string{"/srv/d": "/dev/vdb"}}, func(c *container.InspectResponse) {
			c.HostConfig.Devices = []container.DeviceMapping{{PathOnHost: "/srv/d"}}
		}, StatusFail, SeverityHigh, "raw access"},
		{"block device rule", "5.18", engPlain, func(c *container.InspectResponse) {
			c.HostConfig.DeviceCgroupRules = []string{"b 8:* rwm"}
		}, StatusFail, SeverityHigh, "allows block devices"},
		{"fuse", "5.18", engPlain, func(c *container.InspectResponse) {
			c.HostConfig.Devices = []container.DeviceMapping{{PathOnHost: "/dev/fuse"}}
		}, StatusFail, SeverityMedium, "host device /dev/fuse"},
		{"memory lookalike", "5.18", engPlain, func(c *container.InspectResponse) {
			c.HostConfig.Devices = []container.DeviceMapping{{PathOnHost: "/dev/memory_bandwidth"}}
		}, StatusFail, SeverityMedium, "host device"},
	}
	for _, c := range cases {
		t.Run(c.check+"/"+c.name, func(t *testing.T) {
			f := runCheck(t, c.check, inspect(c.mod), c.engine)
			if f.Status != c.status {
				t.Errorf("status %s, want %s (detail %q)", f.Status, c.status, f.Detail)
			}
			if c.sev != "" && f.Severity != c.sev {
				t.Errorf("severity %s, want %s", f.Severity, c.sev)
			}
			if !strings.Contains(f.Detail, c.detail) {
				t.Errorf("detail %q does not say %q", f.Detail, c.detail)
			}
		})
	}
}

func TestEngineChecks(t *testing.T) {
	type tc struct {
		name   string
		engine *Engine
		check  string
		status Status
		detail string
	}
	cases := []tc{
		{"no remap", engPlain, "2.9", StatusFail, "does not remap"},
		{"remap", engUserns, "2.9", StatusPass, ""},
		{"rootless", &Engine{Info: system.Info{ServerVersion: "24", SecurityOptions: []string{"name=seccomp,profile=builtin", "name=rootless"}}}, "2.9", StatusPass, "rootless"},
		{"nnp unknown", engPlain, "2.14", StatusInfo, "does not report"},
		{"nnp on", withDaemon(engPlain, &DaemonConfig{NoNewPrivileges: yes()}), "2.14", StatusPass, ""},
		{"nnp absent from config", withDaemon(engPlain, &DaemonConfig{}), "2.14", StatusFail, ""},
		{"live restore off", engPlain, "2.15", StatusFail, "disabled"},
		{"live restore on", &Engine{Info: system.Info{ServerVersion: "24", LiveRestoreEnabled: true}}, "2.15", StatusPass, ""},
		{"experimental", &Engine{Info: system.Info{ServerVersion: "24", ExperimentalBuild: true}}, "2.18", StatusFail, ""},
		{"swarm active", &Engine{Info: system.Info{ServerVersion: "24", Swarm: swarm.Info{LocalNodeState: swarm.LocalNodeStateActive}}}, "5.1", StatusFail, "active"},
		{"unknown engine", nil, "2.15", StatusInfo, "unavailable"},
	}
	for _, c := range cases {
		t.Run(c.check+"/"+c.name, func(t *testing.T) {
			var got Finding
			for _, f := range AuditEngine(c.engine) {
				if f.CheckID == c.check {
					got = f
				}
			}
			if got.Status != c.status || !strings.Contains(got.Detail, c.detail) {
				t.Errorf("%s %q, want %s containing %q", got.Status, got.Detail, c.status, c.detail)
			}
		})
	}
}

func TestAuditContainerIdentity(t *testing.T) {
	c := inspect(func(c *container.InspectResponse) {
		c.ID, c.Name = "0123456789abcdef", "/web-1"
		c.Config.Image = "gantry-demo:latest"
		c.Config.Labels = map[string]string{LabelNamespace: "team-a", LabelJob: "web", LabelGroup: "g",
			LabelAlloc: "a1", LabelTask: "server"}
	})
	for _, f := range AuditContainer(c, engPlain) {
		if f.ContainerID != c.ID || f.ContainerName != "web-1" || f.Image != "gantry-demo:latest" ||
			f.Namespace != "team-a" || f.Job != "web" || f.Group != "g" || f.Alloc != "a1" || f.Task != "server" {
			t.Fatalf("identity %+v", f)
		}
		if f.Remediation == "" || f.Title == "" {
			t.Fatalf("%s has no title or remediation", f.CheckID)
		}
	}
	// A container Gantry did not start has no Gantry identity.
	for _, f := range AuditContainer(inspect(func(c *container.InspectResponse) { c.ID = "x" }), engPlain) {
		if f.Namespace != "" || f.Job != "" || f.Alloc != "" || f.Task != "" {
			t.Fatalf("foreign container got labels %+v", f)
		}
	}
}

// A record with every section missing must not panic any check, and a
// check that panics anyway turns into an informational finding.
func TestPartialRecordsAndPanics(t *testing.T) {
	fs := AuditContainer(container.InspectResponse{ID: "x"}, nil)
	if len(fs) != len(containerChecks) {
		t.Fatalf("%d findings, want %d", len(fs), len(containerChecks))
	}
	if n := len(AuditEngine(nil)); n != len(engineChecks) {
		t.Fatalf("%d engine findings, want %d", n, len(engineChecks))
	}
	r := runSafely(func() Result { panic("boom") })
	if r.Status != StatusInfo || !strings.Contains(r.Detail, "boom") {
		t.Fatalf("panicking check gave %+v", r)
	}
}

func TestNewReportIsDeterministic(t *testing.T) {
	a := inspect(func(c *container.InspectResponse) { c.ID, c.Name = "a", "/b" })
	b := inspect(func(c *container.InspectResponse) { c.ID, c.Name = "b", "/a" })
	r1 := NewReport("n", reportTime, engPlain, []container.InspectResponse{a, b})
	r2 := NewReport("n", reportTime, engPlain, []container.InspectResponse{b, a})
	if len(r1.Findings) != len(r2.Findings) || r1.Findings[0].ContainerName != "a" || r2.Findings[0].ContainerName != "a" {
		t.Fatalf("reports differ in order")
	}
	for i := range r1.Findings {
		if r1.Findings[i] != r2.Findings[i] {
			t.Fatalf("finding %d differs: %+v vs %+v", i, r1.Findings[i], r2.Findings[i])
		}
	}
	if r1.Containers != 2 || !r1.Time.Equal(reportTime) || r1.EngineVersion != "20.10.24" {
		t.Fatalf("report header %+v", r1)
	}
}

func TestParseDaemonConfig(t *testing.T) {
	d, err := ParseDaemonConfig([]byte(`{"no-new-privileges": true, "log-driver": "json-file"}`))
	if err != nil || d.NoNewPrivileges == nil || !*d.NoNewPrivileges {
		t.Fatalf("got %+v, %v", d, err)
	}
	d, err = ParseDaemonConfig([]byte(`{}`))
	if err != nil || d.NoNewPrivileges != nil {
		t.Fatalf("got %+v, %v", d, err)
	}
	if _, err := ParseDaemonConfig([]byte(`{`)); err == nil {
		t.Fatal("malformed configuration parsed")
	}
}
