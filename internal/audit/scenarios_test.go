package audit

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
)

// scenario is one container of the audit tests: the clean baseline with at
// most one setting changed. The same scenarios start real containers (see
// real_test.go) and, recorded with -record, are the fixtures under
// testdata/fixtures that the golden verdict table judges.
type scenario struct {
	name string
	// want lists the checks the changed setting must fail, on an engine
	// that has the mechanism the check relies on.
	want []string
	// wantAppArmor lists checks that fail only where the engine runs with
	// AppArmor (5.2 is not applicable elsewhere).
	wantAppArmor []string
	// mutate changes the baseline; dir is a scratch directory on the host
	// (made a shared mount point for the propagation scenario).
	mutate func(cfg *container.Config, hc *container.HostConfig, dir string)
	// createOnly says why this engine cannot start the container; it is
	// created (its configuration is what the checks read) but not started.
	createOnly string
	// sharedDir asks for dir to be a shared mount point; where that cannot
	// be arranged the container is only created.
	sharedDir bool
}

const (
	testImage    = "gantry-audit-test:latest"
	testLabel    = "gantry-audit-test" // value: the run's id
	testNS       = "audit-test"
	sleeperPath  = "/sleeper"
	cleanMemory  = 64 << 20
	cleanCPUs    = 250_000_000 // a quarter of a CPU
	cleanPids    = 64
	healthPeriod = 10 * time.Minute
)

var port8080 = network.MustParsePort("8080/tcp")

// baseline is the clean container: every automatable check passes.
func baseline(name, runID string) (*container.Config, *container.HostConfig) {
	pids := int64(cleanPids)
	cfg := &container.Config{
		Image: testImage,
		User:  "65534:65534",
		Labels: map[string]string{
			testLabel:      runID,
			LabelNamespace: testNS,
			LabelJob:       name,
			LabelGroup:     name,
			LabelAlloc:     runID + "-" + name,
			LabelTask:      "main",
		},
		Healthcheck: &container.HealthConfig{
			Test:     []string{"CMD", sleeperPath, "-health"},
			Interval: healthPeriod,
		},
		ExposedPorts: network.PortSet{port8080: {}},
	}
	hc := &container.HostConfig{
		ReadonlyRootfs: true,
		SecurityOpt:    []string{"no-new-privileges:true"},
		CapDrop:        []string{"NET_RAW"},
		RestartPolicy:  container.RestartPolicy{Name: container.RestartPolicyDisabled},
		PortBindings: network.PortMap{
			port8080: {{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: ""}},
		},
		Resources: container.Resources{
			Memory:    cleanMemory,
			NanoCPUs:  cleanCPUs,
			PidsLimit: &pids,
		},
	}
	return cfg, hc
}

func bind(src, dst string, ro bool) mount.Mount {
	return mount.Mount{Type: mount.TypeBind, Source: src, Target: dst, ReadOnly: ro}
}

var scenarios = []scenario{
	{name: "clean", mutate: func(*container.Config, *container.HostConfig, string) {}},
	{name: "root-user", want: []string{"4.1"},
		mutate: func(c *container.Config, _ *container.HostConfig, _ string) { c.User = "" }},
	{name: "cap-add-net-admin", want: []string{"5.4"},
		mutate: func(_ *container.Config, h *container.HostConfig, _ string) { h.CapAdd = []string{"NET_ADMIN"} }},
	{name: "cap-add-sys-admin", want: []string{"5.4"},
		mutate: func(_ *container.Config, h *container.HostConfig, _ string) { h.CapAdd = []string{"SYS_ADMIN"} }},
	{name: "cap-add-sys-nice", want: []string{"5.4"},
		mutate: func(_ *container.Config, h *container.HostConfig, _ string) { h.CapAdd = []string{"SYS_NICE"} }},
	// Adding back a default capability after dropping all is not an addition.
	{name: "cap-add-default", mutate: func(_ *container.Config, h *container.HostConfig, _ string) {
		h.CapDrop = []string{"ALL"}
		h.CapAdd = []string{"CHOWN"}
	}},
	{name: "privileged", want: []string{"5.5"}, wantAppArmor: []string{"5.2"},
		mutate: func(_ *container.Config, h *container.HostConfig, _ string) { h.Privileged = true }},
	{name: "apparmor-unconfined", wantAppArmor: []string{"5.2"},
		mutate: func(_ *container.Config, h *container.HostConfig, _ string) {
			h.SecurityOpt = append(h.SecurityOpt, "apparmor=unconfined")
		}},
	{name: "etc-rw", want: []string{"5.6"},
		mutate: func(_ *container.Config, h *container.HostConfig, _ string) {
			h.Mounts = []mount.Mount{bind("/etc", "/host/etc", false)}
		}},
	{name: "usr-ro", want: []string{"5.6"},
		mutate: func(_ *container.Config, h *container.HostConfig, _ string) {
			h.Mounts = []mount.Mount{bind("/usr", "/host/usr", true)}
		}},
	{name: "privileged-port", want: []string{"5.8"},
		mutate: func(_ *container.Config, h *container.HostConfig, _ string) {
			h.PortBindings = network.PortMap{port8080: {{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: privilegedPort()}}}
		}},
	{name: "host-network", want: []string{"5.10"},
		mutate: func(c *container.Config, h *container.HostConfig, _ string) {
			h.NetworkMode = network.NetworkHost
			h.PortBindings = nil
			c.ExposedPorts = nil
		}},
	{name: "no-memory-limit", want: []string{"5.11"},
		mutate: func(_ *container.Config, h *container.HostConfig, _ string) { h.Memory = 0 }},
	{name: "no-cpu-limit", want: []string{"5.12"},
		mutate: func(_ *container.Config, h *container.HostConfig, _ string) { h.NanoCPUs = 0 }},
	{name: "writable-rootfs", want: []string{"5.13"},
		mutate: func(_ *container.Config, h *container.HostConfig, _ string) { h.ReadonlyRootfs = false }},
	{name: "all-interfaces", want: []string{"5.14"},
		mutate: func(_ *container.Config, h *container.HostConfig, _ string) {
			h.PortBindings = network.PortMap{port8080: {{HostPort: ""}}}
		}},
	{name: "restart-on-failure-10", want: []string{"5.15"},
		mutate: func(_ *container.Config, h *container.HostConfig, _ string) {
			h.RestartPolicy = container.RestartPolicy{Name: container.RestartPolicyOnFailure, MaximumRetryCount: 10}
		}},
	{name: "restart-always", want: []string{"5.15"},
		mutate: func(_ *container.Config, h *container.HostConfig, _ string) {
			h.RestartPolicy = container.RestartPolicy{Name: container.RestartPolicyAlways}
		}},
	{name: "host-pid", want: []string{"5.16"},
		mutate: func(_ *container.Config, h *container.HostConfig, _ string) { h.PidMode = "host" }},
	{name: "host-ipc", want: []string{"5.17"},
		mutate: func(_ *container.Config, h *container.HostConfig, _ string) { h.IpcMode = container.IPCModeHost }},
	{name: "host-device", want: []string{"5.18"},
		mutate: func(_ *container.Config, h *container.HostConfig, _ string) {
			h.Devices = []container.DeviceMapping{{PathOnHost: "/dev/zero", PathInContainer: "/dev/host-zero", CgroupPermissions: "rwm"}}
		}},
	{name: "gpu-env-all", want: []string{"5.18"},
		mutate: func(c *container.Config, _ *container.HostConfig, _ string) {
			c.Env = append(c.Env, "NVIDIA_VISIBLE_DEVICES=all")
		}},
	{name: "gpu-raw-device", want: []string{"5.18"},
		createOnly: "the engine can start it only where /dev/nvidia0 exists (no GPU here)",
		mutate: func(_ *container.Config, h *container.HostConfig, _ string) {
			h.Devices = []container.DeviceMapping{{PathOnHost: "/dev/nvidia0", PathInContainer: "/dev/nvidia0", CgroupPermissions: "rwm"}}
		}},
	{name: "gpu-request-all", want: []string{"5.18"},
		createOnly: "the engine can start it only with the NVIDIA container runtime (none here)",
		mutate: func(_ *container.Config, h *container.HostConfig, _ string) {
			h.DeviceRequests = []container.DeviceRequest{{Count: -1, Capabilities: [][]string{{"gpu"}}}}
		}},
	{name: "shared-propagation", want: []string{"5.20"}, sharedDir: true,
		mutate: func(_ *container.Config, h *container.HostConfig, dir string) {
			m := bind(dir, "/data", false)
			m.BindOptions = &mount.BindOptions{Propagation: mount.PropagationShared}
			h.Mounts = []mount.Mount{m}
		}},
	{name: "host-uts", want: []string{"5.21"},
		mutate: func(_ *container.Config, h *container.HostConfig, _ string) { h.UTSMode = "host" }},
	{name: "seccomp-unconfined", want: []string{"5.22"},
		mutate: func(_ *container.Config, h *container.HostConfig, _ string) {
			h.SecurityOpt = append(h.SecurityOpt, "seccomp=unconfined")
		}},
	{name: "no-new-privileges-missing", want: []string{"5.26"},
		mutate: func(_ *container.Config, h *container.HostConfig, _ string) { h.SecurityOpt = nil }},
	{name: "no-healthcheck", want: []string{"5.27"},
		mutate: func(c *container.Config, _ *container.HostConfig, _ string) { c.Healthcheck = nil }},
	{name: "no-pids-limit", want: []string{"5.29"},
		mutate: func(_ *container.Config, h *container.HostConfig, _ string) { h.PidsLimit = nil }},
	{name: "userns-host", want: []string{"5.31"},
		mutate: func(_ *container.Config, h *container.HostConfig, _ string) { h.UsernsMode = "host" }},
	{name: "docker-socket", want: []string{"5.32"},
		mutate: func(_ *container.Config, h *container.HostConfig, _ string) {
			h.Mounts = []mount.Mount{bind("/var/run/docker.sock", "/var/run/docker.sock", false)}
		}},
}

// wanted returns the checks scenario s must fail on engine e.
func (s scenario) wanted(e *Engine) []string {
	out := append([]string(nil), s.want...)
	if _, ok := e.securityOption("apparmor"); ok {
		out = append(out, s.wantAppArmor...)
	}
	return out
}

// privilegedPort finds a host port below 1024 that nothing holds right
// now, so that concurrent runs on one engine do not collide (987 when the
// test cannot bind low ports itself).
func privilegedPort() string {
	for p := 987; p > 900; p-- {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err == nil {
			l.Close()
			return strconv.Itoa(p)
		}
	}
	return "987"
}
