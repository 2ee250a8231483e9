package api

import (
	"regexp"
	"time"
)

// JobType says how a job's work ends: services run until stopped, batch
// work runs to completion.
type JobType string

const (
	JobService JobType = "service"
	JobBatch   JobType = "batch"
)

// Job statuses, derived by the server from the job and its allocations.
const (
	JobStatusPending = "pending" // accepted, nothing running yet
	JobStatusRunning = "running" // at least one allocation is not terminal
	JobStatusDead    = "dead"    // stopped, or batch work finished
)

// DefaultNamespace holds jobs that name none.
const DefaultNamespace = "default"

// Priority bounds.
const (
	MinPriority     = 0
	MaxPriority     = 100
	DefaultPriority = 50
)

// Placement algorithms for choosing among feasible nodes.
const (
	PlacementBinpack = "binpack"
	PlacementSpread  = "spread"
)

// namePattern is the identifier rule for every name in a job spec and for
// namespaces, queues and nodes.
var namePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// ValidName reports whether s is a legal Gantry identifier:
// [a-z0-9][a-z0-9-]{0,62}.
func ValidName(s string) bool { return namePattern.MatchString(s) }

// NameRule is the identifier rule in words, for error messages.
const NameRule = "must match [a-z0-9][a-z0-9-]{0,62}"

// Job is the unit users submit: one or more groups of tasks.
//
// The fields above the line come from the user's spec; the ones below are
// set by the server and ignored on submit.
type Job struct {
	Name      string   `json:"name"`
	Namespace string   `json:"namespace"`
	Type      JobType  `json:"type"`
	Priority  int      `json:"priority"`
	Placement string   `json:"placement,omitempty"` // binpack | spread; empty: the cluster's default
	Groups    []*Group `json:"groups"`

	Version     uint64    `json:"version"`
	Stop        bool      `json:"stop"`
	Status      string    `json:"status,omitempty"`
	SubmitTime  time.Time `json:"submit_time"`
	ModifyIndex int64     `json:"modify_index"`
}

// Key is the job's identity inside the cluster: "<namespace>/<name>".
func (j *Job) Key() string { return JobKey(j.Namespace, j.Name) }

// JobKey builds the identity of a job from its namespace and name.
func JobKey(namespace, name string) string { return namespace + "/" + name }

// LookupGroup returns the group with the given name, or nil.
func (j *Job) LookupGroup(name string) *Group {
	for _, g := range j.Groups {
		if g.Name == name {
			return g
		}
	}
	return nil
}

// Group is a set of tasks placed together on one node, replicated Count
// times.
type Group struct {
	Name        string          `json:"name"`
	Count       int             `json:"count"`
	Gang        *Gang           `json:"gang,omitempty"`
	Constraints []Constraint    `json:"constraints,omitempty"`
	Affinities  []Affinity      `json:"affinities,omitempty"`
	Spread      []Spread        `json:"spread,omitempty"`
	Restart     *RestartPolicy  `json:"restart,omitempty"`
	Update      *UpdateStrategy `json:"update,omitempty"`
	Services    []Service       `json:"services,omitempty"`
	// Migrate lets Gantry move this group's replicas to another node or
	// GPU to defragment GPUs (`gantry gpu defrag`): each move places a
	// replacement, waits until it is healthy and only then stops the old
	// replica. Groups without it are never moved.
	Migrate bool `json:"migrate,omitempty"`
	// Disconnect says what happens to the group's allocations while their
	// node cannot reach any server; nil takes DisconnectFor's defaults.
	Disconnect *Disconnect `json:"disconnect,omitempty"`
	Tasks      []*Task     `json:"tasks"`
}

// Disconnect is a group's answer to a node cut off from the servers
// (Nomad's stop_on_client_after and replace).
//
// StopAfter, when positive, is how long the node's agent keeps the
// group's allocations running without reaching any server; then it stops
// them itself and, once it reaches a server again, reports them failed
// because the node was disconnected. Zero: they run on until the servers
// say otherwise.
//
// Replace (nil means true) says whether the servers place a replacement
// elsewhere once the node is marked down. With false they wait for the
// node to come back (or for the job to change or stop) instead.
type Disconnect struct {
	StopAfter Duration `json:"stop_after,omitempty"`
	Replace   *bool    `json:"replace,omitempty"`
}

// DisconnectPolicy is a group's disconnect behaviour with its defaults
// resolved.
type DisconnectPolicy struct {
	StopAfter time.Duration // 0: never stopped by the agent
	Replace   bool
	// Default says the policy is the implied one, not the group's block.
	Default bool
}

// DisconnectFor resolves a group's disconnect behaviour. A group with a
// disconnect block gets what it says (replace true when left out). One
// without gets the defaults: batch groups with a task that asks for GPUs
// stop after the node's heartbeat TTL (ttl, as the servers handed it to
// the node) and are replaced; every other group is never stopped by its
// agent and is replaced, as before the option existed.
func DisconnectFor(t JobType, g *Group, ttl time.Duration) DisconnectPolicy {
	if d := g.Disconnect; d != nil {
		return DisconnectPolicy{StopAfter: d.StopAfter.D(), Replace: d.Replace == nil || *d.Replace}
	}
	if t == JobBatch && g.asksGPU() {
		return DisconnectPolicy{StopAfter: ttl, Replace: true, Default: true}
	}
	return DisconnectPolicy{Replace: true, Default: true}
}

func (g *Group) asksGPU() bool {
	for _, t := range g.Tasks {
		if t != nil && t.Resources.GPU != nil {
			return true
		}
	}
	return false
}

// Gang asks for all-or-nothing placement of at least Min replicas.
type Gang struct {
	Min int `json:"min"`
}

// Constraint is a hard filter on node attributes and labels, for example
// {attribute: "${node.labels.zone}", operator: "=", value: "a"}.
type Constraint struct {
	Attribute string `json:"attribute"`
	Operator  string `json:"operator"`
	Value     string `json:"value,omitempty"`
}

// Affinity is a soft preference with a weight in [-100, 100].
type Affinity struct {
	Attribute string `json:"attribute"`
	Operator  string `json:"operator"`
	Value     string `json:"value,omitempty"`
	Weight    int    `json:"weight"`
}

// Spread distributes replicas over the values of an attribute, with
// optional target percentages per value.
type Spread struct {
	Attribute string         `json:"attribute"`
	Targets   map[string]int `json:"targets,omitempty"`
}

// Restart modes: what a task does once Attempts restarts within Interval
// are used up.
const (
	RestartModeDelay = "delay" // wait out the interval, then try again
	RestartModeFail  = "fail"  // fail the allocation; the server replaces it
)

// RestartPolicy governs in-place restarts of a group's tasks on their node.
type RestartPolicy struct {
	Attempts int      `json:"attempts"`
	Interval Duration `json:"interval"`
	Delay    Duration `json:"delay"`
	Mode     string   `json:"mode"`
}

// DefaultRestartPolicy is applied to groups that declare none.
func DefaultRestartPolicy(t JobType) RestartPolicy {
	if t == JobBatch {
		return RestartPolicy{Attempts: 3, Interval: Duration(24 * time.Hour), Delay: Duration(15 * time.Second), Mode: RestartModeFail}
	}
	return RestartPolicy{Attempts: 2, Interval: Duration(30 * time.Minute), Delay: Duration(15 * time.Second), Mode: RestartModeFail}
}

// UpdateStrategy governs rolling updates of a service group: at most
// MaxParallel replicas are replaced at once, a new replica counts once it
// stayed healthy for MinHealthyTime, a replica not healthy within
// HealthyDeadline is unhealthy, and the deployment fails when no replica
// became healthy within ProgressDeadline. With Canary > 0 that many
// replicas of a new version start beside the old ones and the rollout
// waits for `gantry job promote`. AutoRevert registers the last version
// whose deployment succeeded again when a deployment fails.
type UpdateStrategy struct {
	MaxParallel      int      `json:"max_parallel"`
	MinHealthyTime   Duration `json:"min_healthy_time"`
	HealthyDeadline  Duration `json:"healthy_deadline"`
	ProgressDeadline Duration `json:"progress_deadline"`
	AutoRevert       bool     `json:"auto_revert"`
	Canary           int      `json:"canary"`
}

// DefaultUpdateStrategy is the update block of a service group that
// declares none (as Nomad's default): one replica at a time, each healthy
// (its checks passing, or simply running when it has none) for 10s,
// within 5m of its start, some replica healthy every 10m, no automatic
// rollback, no canaries. Batch groups have no update block.
func DefaultUpdateStrategy() UpdateStrategy {
	return UpdateStrategy{
		MaxParallel:      1,
		MinHealthyTime:   Duration(10 * time.Second),
		HealthyDeadline:  Duration(5 * time.Minute),
		ProgressDeadline: Duration(10 * time.Minute),
	}
}

// Service publishes a task's named port as <name>.<namespace>: the
// registry (/v1/services) and DNS (<name>.<namespace>.service.gantry) list
// the node address and host port of every healthy replica. With LB, every
// load balancer (agents run with --lb, and gantry ingress) listens on
// LB.Port and spreads connections over those replicas.
type Service struct {
	Name string     `json:"name"`
	Port string     `json:"port"`
	LB   *ServiceLB `json:"lb,omitempty"`
}

// Load-balancing policies.
const (
	LBRoundRobin       = "round_robin"       // each endpoint in turn
	LBLeastOutstanding = "least_outstanding" // the endpoint with the fewest requests in flight
	LBP2C              = "p2c"               // the better of two random endpoints by recent latency and load
)

// Load-balancer protocols.
const (
	LBProtocolHTTP = "http" // reverse proxy: keep-alive, HTTP/2 (h2c) to clients, WebSocket and streaming
	LBProtocolTCP  = "tcp"  // one backend connection per client connection
)

// ServiceLB is how load balancers publish a service: on which port, with
// which policy (default round_robin) and protocol (default http).
type ServiceLB struct {
	Port     int    `json:"port"`
	Policy   string `json:"policy,omitempty"`
	Protocol string `json:"protocol,omitempty"`
}

// PolicyOrDefault is the policy, round_robin when unset.
func (l *ServiceLB) PolicyOrDefault() string {
	if l.Policy == "" {
		return LBRoundRobin
	}
	return l.Policy
}

// ProtocolOrDefault is the protocol, http when unset.
func (l *ServiceLB) ProtocolOrDefault() string {
	if l.Protocol == "" {
		return LBProtocolHTTP
	}
	return l.Protocol
}

// Task drivers.
const (
	DriverDocker = "docker"
	DriverExec   = "exec"
	// DriverQEMU runs a virtual machine (internal/driver/qemu).
	DriverQEMU = "qemu"
	// DriverWasm runs a WebAssembly module (internal/driver/wasm).
	DriverWasm = "wasm"
	// DriverNull pretends to run tasks (fault tests and scale runs).
	DriverNull = "null"
)

// Task is one process or container.
type Task struct {
	Name      string     `json:"name"`
	Driver    string     `json:"driver"`
	Config    TaskConfig `json:"config"`
	Resources Resources  `json:"resources"`
	Checks    []Check    `json:"checks,omitempty"`
	Security  *Security  `json:"security,omitempty"`
}

// TaskConfig is what the driver starts. Image applies to docker; Command
// is the program for exec and overrides the image's command for docker.
//
// The fields below Ports apply to docker only. Each one hands the
// container part of the host, so the admission policy judges them (CIS
// Docker Benchmark section 5): they exist so that a job can say what it
// needs and be refused, or allowed by a namespace exception, by name.
type TaskConfig struct {
	Image      string            `json:"image,omitempty"`
	Command    string            `json:"command,omitempty"`
	Args       []string          `json:"args,omitempty"`
	Entrypoint []string          `json:"entrypoint,omitempty"`
	Env        map[string]string `json:"env,omitempty"`
	Ports      []PortSpec        `json:"ports,omitempty"`

	NetworkMode string   `json:"network_mode,omitempty"` // bridge (the default), host or none
	PidMode     string   `json:"pid_mode,omitempty"`     // empty (own namespace) or host
	IpcMode     string   `json:"ipc_mode,omitempty"`     // empty (the engine's default), private, shareable, none or host
	UTSMode     string   `json:"uts_mode,omitempty"`     // empty (own namespace) or host
	Volumes     []string `json:"volumes,omitempty"`      // bind mounts "/host/path:/container/path[:options]"; options ro, rw and a propagation mode, comma-separated
	Devices     []string `json:"devices,omitempty"`      // host devices "/dev/x[:/dev/y[:rwm]]"

	WorkingDir    string            `json:"working_dir,omitempty"`    // the container's working directory (default: the image's)
	Labels        map[string]string `json:"labels,omitempty"`         // container labels; gantry.* are Gantry's own and cannot be set
	ExtraHosts    []string          `json:"extra_hosts,omitempty"`    // "name:IP" or "name:host-gateway" lines added to the container's /etc/hosts
	DockerVolumes []string          `json:"docker_volumes,omitempty"` // node-local named Docker volumes "name:/container/path[:ro]"; they stay on their node

	// The qemu driver's keys (see internal/driver/qemu). Image is its
	// disk image (qcow2 or raw, a path on the node, never written);
	// Kernel, Initrd and Append boot a kernel directly; Args are extra
	// QEMU arguments, which the isolation policy judges.
	Kernel      string `json:"kernel,omitempty"`
	Initrd      string `json:"initrd,omitempty"`
	Append      string `json:"append,omitempty"`
	Accelerator string `json:"accelerator,omitempty"` // auto (the default), kvm or tcg
	Machine     string `json:"machine,omitempty"`     // default q35
	CPUModel    string `json:"cpu_model,omitempty"`
	// GracefulShutdown (default true) stops the VM with an ACPI power-down
	// and quits QEMU only after the kill timeout.
	GracefulShutdown *bool `json:"graceful_shutdown,omitempty"`
	// NetworkCounters (default true) counts the frames and bytes the
	// guest sends and receives: QEMU copies each frame to the task's
	// executor, which costs some throughput on bulk transfers.
	NetworkCounters *bool `json:"network_counters,omitempty"`

	// The wasm driver's keys: the module (a .wasm file on the node, or an
	// artifact the agent downloads and verifies) and the directories
	// handed to it. Args, Env and Ports above apply to it as well.
	Module   string      `json:"module,omitempty"`
	Artifact *Artifact   `json:"artifact,omitempty"`
	Mounts   []WasmMount `json:"mounts,omitempty"`
}

// Artifact is a file the agent downloads into the allocation directory and
// verifies before anything runs. Checksum is "sha256:<64 hex digits>".
type Artifact struct {
	Source   string `json:"source"`
	Checksum string `json:"checksum"`
}

// WasmMount hands a directory to a wasm module at Target. Source is a
// directory under the task's own directory (relative), or an absolute
// host path where the node allows host paths.
type WasmMount struct {
	Source   string `json:"source"`
	Target   string `json:"target"`
	ReadOnly bool   `json:"read_only,omitempty"`
}

// TaskKind names what a driver runs, for listings: container (docker),
// process (exec), VM (qemu), or the driver's name for others.
func TaskKind(driver string) string {
	switch driver {
	case DriverDocker:
		return "container"
	case DriverExec:
		return "process"
	case DriverQEMU:
		return "VM"
	}
	return driver
}

// QEMUMemoryOverhead is the memory, in MiB, a node accounts for a qemu
// task beyond its resources.memory (the guest's RAM): QEMU's own code,
// device models and, under software emulation, its translation cache.
// The qemu driver allows the QEMU process this much on top of the guest.
const QEMUMemoryOverhead = 160

// TaskMemory is the memory a node accounts for a task, in MiB: its
// resources.memory, plus QEMUMemoryOverhead for a VM.
func TaskMemory(t *Task) int {
	if t.Driver == DriverQEMU {
		return t.Resources.Memory + QEMUMemoryOverhead
	}
	return t.Resources.Memory
}

// QEMUVCPUs is the number of vCPUs a qemu task of cpu millicores gets:
// rounded up, at least 1.
func QEMUVCPUs(milli int) int {
	return max(1, (milli+999)/1000)
}

// QEMU accelerators.
const (
	AccelAuto = "auto" // KVM when /dev/kvm opens read-write, else TCG
	AccelKVM  = "kvm"
	AccelTCG  = "tcg" // software emulation
)

// PortSpec names a port the task listens on. To is the port inside the
// container (docker) and defaults to the host port; Static asks for a fixed
// host port instead of one assigned by the scheduler.
type PortSpec struct {
	Name   string `json:"name"`
	To     int    `json:"to,omitempty"`
	Static int    `json:"static,omitempty"`
}

// Resources a task asks for. CPU is in millicores, Memory and Disk in MiB.
type Resources struct {
	CPU    int         `json:"cpu"`
	Memory int         `json:"memory"`
	Disk   int         `json:"disk,omitempty"`
	GPU    *GPURequest `json:"gpu,omitempty"`
}

// GPURequest takes exactly one of three forms: Count whole GPUs (with
// optional Model, MemoryMin and ComputeCapabilityMin), one MIG instance of
// profile MIG, or a Share of one GPU.
type GPURequest struct {
	Count                int       `json:"count,omitempty"`
	Model                string    `json:"model,omitempty"` // glob, e.g. "H100*"
	MemoryMin            int       `json:"memory_min,omitempty"`
	ComputeCapabilityMin string    `json:"compute_capability_min,omitempty"`
	MIG                  string    `json:"mig,omitempty"`
	Share                *GPUShare `json:"share,omitempty"`
}

// GPUShare is part of one GPU: Milli thousandths of its compute and Memory
// MiB of its memory (default: Milli/1000 of the GPU's memory). Enforce asks
// for a node that enforces the limits (MPS).
type GPUShare struct {
	Milli   int  `json:"milli"`
	Memory  int  `json:"memory,omitempty"`
	Enforce bool `json:"enforce,omitempty"`
}

// Health check types.
const (
	CheckHTTP = "http"
	CheckTCP  = "tcp"
	CheckExec = "exec"
)

// Check is a health check run by the agent against a running task.
type Check struct {
	Type     string   `json:"type"`
	Port     string   `json:"port,omitempty"`
	Path     string   `json:"path,omitempty"`
	Command  []string `json:"command,omitempty"`
	Interval Duration `json:"interval,omitempty"`
	Timeout  Duration `json:"timeout,omitempty"`
	Failures int      `json:"failures,omitempty"`
	Grace    Duration `json:"grace,omitempty"`
}

// Security settings of a task's container. Left out, the docker driver
// runs a container that passes every automatable CIS Docker Benchmark
// check: read-only root filesystem (with a small tmpfs at /tmp),
// no-new-privileges, NET_RAW dropped, the image's own user; the exec
// driver applies only User.
type Security struct {
	Privileged bool `json:"privileged,omitempty"`
	// ReadOnlyRootfs defaults to true; false gives the container a
	// writable root filesystem.
	ReadOnlyRootfs *bool    `json:"read_only_rootfs,omitempty"`
	User           string   `json:"user,omitempty"` // empty: the image's USER
	CapAdd         []string `json:"cap_add,omitempty"`
	CapDrop        []string `json:"cap_drop,omitempty"` // NET_RAW is dropped too unless cap_add names it
	// NoNewPrivileges defaults to true; false lets setuid programs gain
	// privileges inside the container.
	NoNewPrivileges *bool  `json:"no_new_privileges,omitempty"`
	Seccomp         string `json:"seccomp,omitempty"`  // empty or default: the engine's profile; unconfined: none
	AppArmor        string `json:"apparmor,omitempty"` // empty: the engine's profile; a profile name, or unconfined
}

// Queue groups namespaces for fair sharing (scheduler issue).
type Queue struct {
	Name        string       `json:"name"`
	Weight      int          `json:"weight"`
	Guarantee   QueueLimits  `json:"guarantee"`
	Limit       *QueueLimits `json:"limit,omitempty"`
	Namespaces  []string     `json:"namespaces"`
	ModifyIndex int64        `json:"modify_index"`
}

// QueueLimits bounds cpu (millicores), memory (MiB) and whole-GPU
// equivalents.
type QueueLimits struct {
	CPU    int     `json:"cpu"`
	Memory int     `json:"memory"`
	GPU    float64 `json:"gpu"`
}

// DefaultQueue serves namespaces that no queue names.
const DefaultQueue = "default"
