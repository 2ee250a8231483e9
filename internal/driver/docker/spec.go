package docker

import (
	"fmt"
	"net/netip"
	"regexp"
	"sort"
	"strconv"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/driver"
	"github.com/gantryhq/gantry/internal/gpu/mps"
)

// Defaults applied by BuildContainer.
const (
	// DefaultPidsLimit bounds the processes of one container (CIS Docker
	// Benchmark 5.28), so a fork bomb cannot exhaust the node.
	DefaultPidsLimit = 4096
	// LogMaxSize and LogMaxFile bound the json-file log of one container
	// to 3 × 10 MiB.
	LogMaxSize = "10m"
	LogMaxFile = 3
)

// ContainerSpec is everything the engine's create call needs for one task.
type ContainerSpec struct {
	Name       string
	Config     *container.Config
	HostConfig *container.HostConfig
}

var containerNamePattern = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

// ContainerName is the name of a task's container:
// gantry-<job>-<group>-<task>-<first 8 characters of the allocation id>.
func ContainerName(cfg *driver.TaskConfig) string {
	return "gantry-" + cfg.Job + "-" + cfg.Group + "-" + cfg.Task.Name + "-" + api.ShortID(cfg.AllocID)
}

// BuildContainer turns a task into a container create request. It is pure:
// it reads nothing but cfg, so the same cfg always gives the same spec
// (environment sorted, labels copied), and it can be checked without an
// engine.
//
// Mapping (as Nomad's docker driver does):
//   - Cmd is command followed by args; args alone replace the image's CMD;
//     neither keeps the image's CMD. Entrypoint, when set, replaces the
//     image's ENTRYPOINT.
//   - Env is driver.TaskEnv(cfg, false) (GANTRY_PORT_<NAME> is the
//     container port), plus any key of cfg.Env that TaskEnv does not set.
//   - Memory is the allocated MiB in bytes, with swap disabled (MemorySwap
//     equal to Memory); CPU is a relative weight, CPUShares = millicores ×
//     1024 / 1000 (at least 2), as Nomad does: a task gets at least its
//     share when the node is busy and may use idle cores. A hard CFS quota
//     would throttle even the container's start (10 millicores make runc
//     take seconds); the scheduler never hands out more millicores than a
//     node has, so shares keep every task's guarantee. The pids limit is
//     DefaultPidsLimit.
//   - task.Security is applied as asked: privileged, read-only rootfs,
//     user, capabilities added and dropped, seccomp and AppArmor. What it
//     leaves out gets the safe defaults of harden: read-only root with a
//     tmpfs /tmp, no-new-privileges, NET_RAW dropped, the image's user.
//   - The docker-only isolation keys of task.Config are applied as asked
//     (see isolation): network, PID, IPC and UTS modes, volumes as bind
//     mounts, host devices. With network mode host or none no port is
//     published, and with host GANTRY_PORT_<NAME> is the host port.
//   - With cfg.Resolver, a container on the default bridge resolves
//     names through it, with its search domains (the agent's resolver
//     for containers: load-balanced services by plain name, every other
//     name through the node's own resolvers).
//   - WorkingDir and ExtraHosts are passed on; Labels are added to
//     Gantry's own (which they cannot replace); DockerVolumes become
//     named-volume mounts, which the engine creates on first use and which
//     stay on this node.
//   - Restart policy "no": the agent restarts tasks, never the engine.
//   - Logs go to json-file, LogMaxFile files of LogMaxSize.
//   - Each allocated port publishes container port To/tcp (To defaults to
//     the host port) on cfg.BindAddress:Host (all addresses when
//     BindAddress is empty).
//   - Allocated GPUs are requested from the engine's "nvidia" device
//     driver by the identifiers of driver.GPUVisibleDevices (GPU UUIDs, or
//     MIG-<uuid> for a MIG instance), and NVIDIA_VISIBLE_DEVICES names
//     them ("void" without GPUs), whatever the image or the spec's env
//     say. A share with MPS limits in cfg.Env (mps.EnvPipeDir) also binds
//     the MPS pipe directory and joins the host IPC namespace.
func BuildContainer(cfg *driver.TaskConfig) (*ContainerSpec, error) {
	if cfg == nil || cfg.Task == nil {
		return nil, fmt.Errorf("docker: task config has no task")
	}
	t := cfg.Task
	if t.Config.Image == "" {
		return nil, fmt.Errorf("docker: task %q has no config.image", t.Name)
	}
	if cfg.AllocID == "" {
		return nil, fmt.Errorf("docker: task %q has no allocation id", t.Name)
	}
	name := ContainerName(cfg)
	if !containerNamePattern.MatchString(name) {
		return nil, fmt.Errorf("docker: container name %q is not valid: job, group, task and allocation id must be identifiers", name)
	}

	labels := driver.Labels(cfg)
	for k, v := range t.Config.Labels {
		if _, own := labels[k]; !own {
			labels[k] = v
		}
	}

	hostNetwork := t.Config.NetworkMode == string(network.NetworkHost)
	env := driver.TaskEnv(cfg, hostNetwork)
	for k, v := range cfg.Env {
		if _, ok := env[k]; !ok {
			env[k] = v
		}
	}
	envList := make([]string, 0, len(env))
	for k, v := range env {
		envList = append(envList, k+"="+v)
	}
	sort.Strings(envList)

	var cmd []string
	if t.Config.Command != "" {
		cmd = append([]string{t.Config.Command}, t.Config.Args...)
	} else if len(t.Config.Args) > 0 {
		cmd = append([]string(nil), t.Config.Args...)
	}
	var entrypoint []string
	if len(t.Config.Entrypoint) > 0 {
		entrypoint = append([]string(nil), t.Config.Entrypoint...)
	}

	cpu, mem := t.Resources.CPU, t.Resources.Memory
	var ports []api.AllocatedPort
	var gpu *api.AllocatedGPU
	if r := cfg.Resources; r != nil {
		cpu, mem = r.CPU, r.Memory
		ports = r.Ports
		gpu = r.GPU
	}
	if cpu < 0 || mem < 0 {
		return nil, fmt.Errorf("docker: task %q has negative resources (cpu %d, memory %d)", t.Name, cpu, mem)
	}

	var hostIP netip.Addr
	if cfg.BindAddress != "" {
		a, err := netip.ParseAddr(cfg.BindAddress)
		if err != nil {
			return nil, fmt.Errorf("docker: bind address %q is not an IP address: %w", cfg.BindAddress, err)
		}
		hostIP = a
	}
	exposed := network.PortSet{}
	bindings := network.PortMap{}
	for _, p := range ports {
		if hostNetwork || t.Config.NetworkMode == network.NetworkNone {
			break // nothing to publish: the task listens on the host, or has no network
		}
		to := p.To
		if to == 0 {
			to = p.Host
		}
		if p.Host < 1 || p.Host > 65535 || to < 1 || to > 65535 {
			return nil, fmt.Errorf("docker: port %q maps host port %d to container port %d: both must be in 1..65535", p.Name, p.Host, to)
		}
		cp, _ := network.PortFrom(uint16(to), network.TCP)
		exposed[cp] = struct{}{}
		bindings[cp] = append(bindings[cp], network.PortBinding{HostIP: hostIP, HostPort: strconv.Itoa(p.Host)})
	}

	pids := int64(DefaultPidsLimit)
	hc := &container.HostConfig{
		LogConfig: container.LogConfig{
			Type:   "json-file",
			Config: map[string]string{"max-size": LogMaxSize, "max-file": strconv.Itoa(LogMaxFile)},
		},
		PortBindings:  bindings,
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyDisabled},
		Resources: container.Resources{
			Memory:    int64(mem) << 20,
			CPUShares: cpuShares(cpu),
			PidsLimit: &pids,
		},
	}
	if mem > 0 {
		hc.MemorySwap = hc.Memory
	}
	if ids := driver.GPUVisibleDevices(gpu); len(ids) > 0 {
		hc.DeviceRequests = []container.DeviceRequest{{
			Driver:       "nvidia",
			DeviceIDs:    ids,
			Capabilities: [][]string{{"gpu"}},
		}}
		// A share enforced by MPS: the client reaches the node's control
		// daemon through its pipe directory and shared memory, which MPS
		// documents as needing the host IPC namespace.
		if dir := cfg.Env[mps.EnvPipeDir]; dir != "" && gpu.Share != nil {
			hc.Binds = append(hc.Binds, dir+":"+dir)
			hc.IpcMode = container.IPCModeHost
		}
	}
	c := &container.Config{
		Image:      t.Config.Image,
		Cmd:        cmd,
		Entrypoint: entrypoint,
		Env:        envList,
		Labels:     labels,
		WorkingDir: t.Config.WorkingDir,
	}
	if len(exposed) > 0 {
		c.ExposedPorts = exposed
	}
	if err := isolation(t, hc); err != nil {
		return nil, err
	}
	if r := cfg.Resolver; r != nil && (hc.NetworkMode == "" || hc.NetworkMode.IsDefault() || hc.NetworkMode.IsBridge()) {
		ip, err := netip.ParseAddr(r.Address)
		if err != nil {
			return nil, fmt.Errorf("docker: the node's resolver address %q: %w", r.Address, err)
		}
		hc.DNS = []netip.Addr{ip}
		hc.DNSSearch = append([]string(nil), r.Search...)
	}
	if s := t.Security; s != nil {
		hc.Privileged = s.Privileged
		if s.ReadOnlyRootfs != nil {
			hc.ReadonlyRootfs = *s.ReadOnlyRootfs
		}
		c.User = s.User
		if len(s.CapAdd) > 0 {
			hc.CapAdd = append([]string(nil), s.CapAdd...)
		}
		if len(s.CapDrop) > 0 {
			hc.CapDrop = append([]string(nil), s.CapDrop...)
		}
	}
	harden(cfg, c, hc)
	return &ContainerSpec{Name: name, Config: c, HostConfig: hc}, nil
}

// cpuShares converts millicores to a Docker CPU weight (1024 per core).
func cpuShares(millicores int) int64 {
	return max(int64(millicores)*1024/1000, 2)
}
