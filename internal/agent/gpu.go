package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/driver"
	"github.com/gantryhq/gantry/internal/gpu/mps"
	"github.com/gantryhq/gantry/internal/gpu/nvml"
	"github.com/gantryhq/gantry/internal/vfio"
)

// GPURuntime is the node's GPU library. *nvml.Library implements it over
// NVML; tests use go-nvml's mocks through it, or fakes.
type GPURuntime interface {
	Inventory() (*nvml.Inventory, error)
	CreateMIG(gpu, profile string, start, size int) (instance string, err error)
	DestroyMIG(gpu, instance string) error
	Samples() ([]nvml.Sample, error)
	WatchXID(ctx context.Context, fn func(nvml.XIDEvent)) error
}

// GPUConfig says how the agent uses the node's GPUs.
type GPUConfig struct {
	// Runtime discovers the GPUs and changes their MIG instances; nil
	// means the node has none.
	Runtime GPURuntime
	// ManageMIG names the GPUs (by index or UUID, or "all") on which the
	// agent creates the MIG instances plans ask for and destroys the ones
	// it created once they stayed unused for MIGIdle. Empty (the default):
	// none; MIG instances are then the operator's to create.
	ManageMIG []string
	// MIGIdle is how long an instance the agent created may stay unused
	// before the agent destroys it; 0 means DefaultMIGIdle.
	MIGIdle time.Duration
	// MPSPipeDir is the pipe directory of the node's MPS control daemon;
	// empty means mps.DefaultPipeDir.
	MPSPipeDir string
	// SysfsRoot is where the kernel's sysfs is, for the discovery of the
	// GPUs bound to vfio-pci that VMs may be given whole (vfio.Discover);
	// empty means vfio.DefaultRoot. Tests point it at a fake tree.
	SysfsRoot string
	// NoPassthrough skips that discovery: the node's PCI devices are not
	// its own (the load tool's simulated nodes, thousands in one process,
	// would otherwise each read the host's sysfs every fingerprint).
	NoPassthrough bool
}

// DefaultMIGIdle is how long a MIG instance the agent created may stay
// unused before it is destroyed.
const DefaultMIGIdle = 10 * time.Minute

// gpuManager is the agent's side of the node's GPUs: it puts them in the
// fingerprint, prepares each GPU task (MIG instances, MPS limits), keeps
// the health that XID events report, and destroys idle MIG instances it
// created.
type gpuManager struct {
	cfg   GPUConfig
	log   *slog.Logger
	state string // file of the MIG instances the agent created
	kick  func() // asks for a new fingerprint now
	// running reports whether a process whose command name starts with
	// the prefix runs (processRunning; tests replace it).
	running func(prefix string) bool

	mu      sync.Mutex
	inv     *nvml.Inventory
	invErr  error
	summary string
	xid     map[string]string // GPU UUID → the XID that made it unhealthy
	lastXID map[string]uint64 // GPU UUID → last XID seen, for metrics
	created map[string]*createdMIG
	mps     mps.Status
	// passthrough are the GPUs bound to vfio-pci the last fingerprint
	// reported (by PCI address), and ptSummary what it said of them.
	passthrough map[string]bool
	ptSummary   string
}

// createdMIG is a MIG instance the agent created, kept in a file so a
// restarted agent still knows which instances are its own to destroy.
type createdMIG struct {
	GPU       string    `json:"gpu"`
	Profile   string    `json:"profile"`
	Start     int       `json:"start"`
	Size      int       `json:"size"`
	Created   time.Time `json:"created"`
	IdleSince time.Time `json:"idle_since,omitzero"`
}

func newGPUManager(cfg GPUConfig, dataDir string, log *slog.Logger, kick func()) *gpuManager {
	if cfg.MIGIdle <= 0 {
		cfg.MIGIdle = DefaultMIGIdle
	}
	if cfg.MPSPipeDir == "" {
		cfg.MPSPipeDir = mps.DefaultPipeDir
	}
	if cfg.SysfsRoot == "" {
		cfg.SysfsRoot = vfio.DefaultRoot
	}
	g := &gpuManager{
		cfg: cfg, log: log, kick: kick, state: filepath.Join(dataDir, "gpu-mig-created.json"), running: processRunning,
		xid: map[string]string{}, lastXID: map[string]uint64{}, created: map[string]*createdMIG{},
	}
	if b, err := os.ReadFile(g.state); err == nil {
		if err := json.Unmarshal(b, &g.created); err != nil {
			log.Warn("cannot read the MIG instances this agent created; it will destroy none of them", "file", g.state, "err", err)
			g.created = map[string]*createdMIG{}
		}
	}
	return g
}

// saveLocked writes the created instances; g.mu is held.
func (g *gpuManager) saveLocked() {
	b, _ := json.MarshalIndent(g.created, "", "  ")
	tmp := g.state + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err == nil {
		err = os.Rename(tmp, g.state)
		if err == nil {
			return
		}
	}
	g.log.Warn("cannot record the MIG instances this agent created", "file", g.state)
}

func (g *gpuManager) inventory() (*nvml.Inventory, error) {
	if g.cfg.Runtime == nil {
		return nil, fmt.Errorf("%w: GPU discovery is off", nvml.ErrNoDriver)
	}
	return g.cfg.Runtime.Inventory()
}

// managed reports whether the operator lets the agent create and destroy
// MIG instances on the GPU.
func (g *gpuManager) managed(d *api.GPUDevice) bool {
	for _, m := range g.cfg.ManageMIG {
		if m == "all" || m == d.UUID || m == strconv.Itoa(d.Index) {
			return true
		}
	}
	return false
}

// detectMPS looks for the MPS control daemon: its control pipe, and a
// process that serves it.
func (g *gpuManager) detectMPS() mps.Status {
	st := mps.Status{PipeDir: g.cfg.MPSPipeDir}
	fi, err := os.Stat(filepath.Join(g.cfg.MPSPipeDir, "control"))
	switch {
	case err != nil:
		st.Reason = "no MPS control daemon: " + filepath.Join(g.cfg.MPSPipeDir, "control") + " does not exist"
	case fi.Mode()&(os.ModeNamedPipe|os.ModeSocket) == 0:
		st.Reason = filepath.Join(g.cfg.MPSPipeDir, "control") + " is not a pipe"
	case !g.running("nvidia-cuda-mps"):
		st.Reason = "the MPS control pipe exists but no nvidia-cuda-mps-control process runs"
	default:
		st.Running = true
	}
	return st
}

// processRunning reports whether a process whose command name starts
// with prefix runs (the kernel keeps 15 characters of it).
func processRunning(prefix string) bool {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return false
	}
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		if b, err := os.ReadFile("/proc/" + e.Name() + "/comm"); err == nil && strings.HasPrefix(string(b), prefix) {
			return true
		}
	}
	return false
}

// fingerprint discovers the GPUs and puts them, with the agent's own
// decisions (managed MIG, enforced sharing, health), in the node.
func (g *gpuManager) fingerprint(n *api.Node) {
	inv, err := g.inventory()
	st := g.detectMPS()
	summary := nvml.Summary(inv, err)

	g.mu.Lock()
	g.inv, g.invErr, g.mps = inv, err, st
	changed := summary != g.summary
	g.summary = summary
	var gpus []api.GPUDevice
	if inv != nil {
		for i := range inv.Devices {
			gpus = append(gpus, g.deviceLocked(&inv.Devices[i]))
		}
	}
	g.mu.Unlock()

	// GPUs bound to vfio-pci are invisible to NVML: sysfs finds them, for
	// VMs only. They follow the NVML GPUs in the node's list.
	var pt []vfio.GPU
	var ptErr error
	if !g.cfg.NoPassthrough {
		pt, ptErr = vfio.Discover(g.cfg.SysfsRoot)
	}
	ptSummary := vfio.Summary(pt)
	if ptErr != nil {
		ptSummary = "cannot be discovered: " + ptErr.Error()
	}
	ptDevs := vfio.Nodes(pt, len(gpus))
	gpus = append(gpus, ptDevs...)
	g.mu.Lock()
	g.passthrough = map[string]bool{}
	for _, d := range ptDevs {
		g.passthrough[d.UUID] = true
	}
	ptChanged := ptSummary != g.ptSummary
	g.ptSummary = ptSummary
	g.mu.Unlock()
	if ptChanged && ptSummary != "" {
		if ptErr != nil {
			g.log.Warn("GPU passthrough", "summary", ptSummary)
		} else {
			g.log.Info("GPU passthrough", "summary", ptSummary)
		}
	}
	if ptSummary != "" {
		n.Attributes["gpu.passthrough"] = ptSummary
	}

	if changed {
		if err != nil && !errors.Is(err, nvml.ErrNoDriver) && !errors.Is(err, nvml.ErrNotBuilt) {
			g.log.Warn("GPUs", "summary", summary)
		} else {
			g.log.Info("GPUs", "summary", summary)
		}
	}
	n.GPUs = gpus
	n.Attributes["gpu.status"] = summary
	n.Attributes["gpu.count"] = strconv.Itoa(len(gpus))
	if inv != nil {
		n.Attributes["gpu.driver.version"] = inv.DriverVersion
		if inv.CUDAVersion != "" {
			n.Attributes["gpu.cuda.version"] = inv.CUDAVersion
		}
		if inv.NVMLVersion != "" {
			n.Attributes["gpu.nvml.version"] = inv.NVMLVersion
		}
	}
	if len(gpus) > 0 {
		n.Attributes["gpu.mps"] = st.String()
		var managed []string
		for _, d := range gpus {
			if d.MIGManaged {
				managed = append(managed, strconv.Itoa(d.Index))
			}
		}
		if len(managed) == 0 {
			managed = []string{"none"}
		}
		n.Attributes["gpu.mig.managed"] = strings.Join(managed, ",")
	}
}

// deviceLocked is what the scheduler sees of one GPU; g.mu is held.
func (g *gpuManager) deviceLocked(d *nvml.Device) api.GPUDevice {
	out := d.GPUDevice
	out.NVLinkPeers = append([]string(nil), d.NVLinkPeers...)
	out.MIGInstances = append([]api.MIGInstance(nil), d.MIGInstances...)
	out.MIGManaged = d.MIGEnabled && g.managed(&d.GPUDevice)
	out.SharingEnforced = g.mps.Running && !d.MIGEnabled
	var why []string
	if d.Health != "" {
		why = append(why, d.Health)
	}
	if r := g.xid[d.UUID]; r != "" {
		why = append(why, r)
	}
	out.Unhealthy = len(why) > 0
	out.HealthReason = strings.Join(why, "; ")
	return out
}

// isPassthrough reports whether the last fingerprint found the GPU of
// that UUID (a PCI address) bound to vfio-pci.
func (g *gpuManager) isPassthrough(uuid string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.passthrough[uuid]
}

// device returns the last discovered state of a GPU.
func (g *gpuManager) device(uuid string) (*nvml.Device, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.inv == nil {
		return nil, fmt.Errorf("GPU %s: this node has no GPUs (%s)", uuid, g.summary)
	}
	for i := range g.inv.Devices {
		if g.inv.Devices[i].UUID == uuid {
			d := g.inv.Devices[i]
			return &d, nil
		}
	}
	return nil, fmt.Errorf("GPU %s is not on this node", uuid)
}

// prepare readies a task's GPU before it starts. A MIG instance the plan
// asks for is created (on a managed GPU), or an existing one resolved,
// and the resources returned name it; created is its UUID when the agent
// made it or found it anew. A share gets the MPS client limits in env
// where an MPS daemon runs, and fails when the job requires enforcement
// and none runs.
func (g *gpuManager) prepare(res *api.AllocatedResources) (out *api.AllocatedResources, env map[string]string, created string, err error) {
	if res == nil || res.GPU == nil {
		return res, nil, "", nil
	}
	a := res.GPU
	for _, u := range a.Devices {
		if g.isPassthrough(u) {
			continue // the qemu driver checks its binding at start
		}
		if _, err := g.device(u); err != nil {
			return nil, nil, "", err
		}
	}
	switch {
	case a.MIG != nil:
		m := *a.MIG
		created, err := g.ensureMIG(&m)
		if err != nil {
			return nil, nil, "", err
		}
		cp := *res
		ga := *a
		ga.MIG = &m
		cp.GPU = &ga
		return &cp, nil, created, nil
	case a.Share != nil:
		d, err := g.device(a.Share.GPU)
		if err != nil {
			return nil, nil, "", err
		}
		g.mu.Lock()
		st := g.mps
		g.mu.Unlock()
		if st.Running && !d.MIGEnabled {
			return res, mps.ClientEnv(st.PipeDir, a.Share), "", nil
		}
		if a.Share.Enforce {
			return nil, nil, "", fmt.Errorf("the share of GPU %s must be enforced (share.enforce) but %s", a.Share.GPU, st.String())
		}
		return res, map[string]string{mps.EnvEnforced: "no"}, "", nil
	}
	return res, nil, "", nil
}

// ensureMIG makes m name an instance that exists: the one it names, the
// unnamed one at its position, or one the agent creates there when the
// GPU is managed. It returns the UUID of an instance it created or found
// in place of the named one.
func (g *gpuManager) ensureMIG(m *api.MIGAssignment) (string, error) {
	if g.cfg.Runtime == nil {
		return "", fmt.Errorf("MIG instance on GPU %s: this node has no GPU runtime", m.GPU)
	}
	inv, err := g.cfg.Runtime.Inventory()
	if err != nil {
		return "", fmt.Errorf("MIG instance on GPU %s: %w", m.GPU, err)
	}
	var dev *nvml.Device
	for i := range inv.Devices {
		if inv.Devices[i].UUID == m.GPU {
			dev = &inv.Devices[i]
		}
	}
	if dev == nil {
		return "", fmt.Errorf("GPU %s is not on this node", m.GPU)
	}
	if !dev.MIGEnabled {
		return "", fmt.Errorf("GPU %s is not in MIG mode (the agent never changes MIG mode)", m.GPU)
	}
	for _, in := range dev.MIGInstances {
		if m.InstanceUUID != "" && in.UUID == m.InstanceUUID && !m.Create {
			return "", nil
		}
	}
	if !m.Create && m.InstanceUUID == "" {
		for _, in := range dev.MIGInstances {
			if in.Start == m.Start && in.Size == m.Size && in.Profile == m.Profile && in.UUID != "" {
				m.InstanceUUID = in.UUID
				return in.UUID, nil
			}
		}
	}
	if !g.managed(&dev.GPUDevice) {
		what := "does not exist"
		if m.Create {
			what = "must be created"
		}
		return "", fmt.Errorf("MIG instance %s at slice %d on GPU %s %s, and this agent does not manage MIG on that GPU (--gpu-manage-mig)", m.Profile, m.Start, m.GPU, what)
	}
	uuid, err := g.cfg.Runtime.CreateMIG(m.GPU, m.Profile, m.Start, m.Size)
	if err != nil {
		return "", err
	}
	g.mu.Lock()
	g.created[uuid] = &createdMIG{GPU: m.GPU, Profile: m.Profile, Start: m.Start, Size: m.Size, Created: time.Now()}
	g.saveLocked()
	g.mu.Unlock()
	g.log.Info("created MIG instance", "gpu", m.GPU, "profile", m.Profile, "start", m.Start, "instance", uuid)
	m.InstanceUUID, m.Create = uuid, false
	g.kick()
	return uuid, nil
}

// reap destroys the instances the agent created that no allocation of
// the node used for the configured idle time. inUse lists the instance
// UUIDs the node's live allocations hold.
func (g *gpuManager) reap(now time.Time, inUse map[string]bool) {
	if g.cfg.Runtime == nil {
		return
	}
	type victim struct{ uuid, gpu string }
	var victims []victim
	g.mu.Lock()
	for uuid, c := range g.created {
		switch {
		case inUse[uuid]:
			c.IdleSince = time.Time{}
		case c.IdleSince.IsZero():
			c.IdleSince = now
		case now.Sub(c.IdleSince) >= g.cfg.MIGIdle && g.managedLocked(c.GPU):
			victims = append(victims, victim{uuid, c.GPU})
		}
	}
	g.mu.Unlock()
	destroyed := 0
	for _, v := range victims {
		err := g.cfg.Runtime.DestroyMIG(v.gpu, v.uuid)
		if err != nil && !errors.Is(err, nvml.ErrNotFound) {
			g.log.Warn("cannot destroy an idle MIG instance; will retry", "gpu", v.gpu, "instance", v.uuid, "err", err)
			continue
		}
		g.mu.Lock()
		delete(g.created, v.uuid)
		g.mu.Unlock()
		destroyed++
		g.log.Info("destroyed idle MIG instance", "gpu", v.gpu, "instance", v.uuid, "idle_for", g.cfg.MIGIdle)
	}
	g.mu.Lock()
	g.saveLocked()
	g.mu.Unlock()
	if destroyed > 0 {
		g.kick()
	}
}

// managedLocked reports whether the GPU with that UUID, as the last
// inventory found it, is managed; g.mu is held. A GPU gone from the node
// is not.
func (g *gpuManager) managedLocked(uuid string) bool {
	if g.inv == nil {
		return false
	}
	for i := range g.inv.Devices {
		if g.inv.Devices[i].UUID == uuid {
			return g.managed(&g.inv.Devices[i].GPUDevice)
		}
	}
	return false
}

// createdInstances lists the UUIDs of the instances the agent created.
func (g *gpuManager) createdInstances() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]string, 0, len(g.created))
	for u := range g.created {
		out = append(out, u)
	}
	sort.Strings(out)
	return out
}

// onXID records an XID event: a device XID makes the GPU unhealthy until
// the agent restarts (after the GPU was reset), and the node is updated
// at once so the scheduler stops placing there.
func (g *gpuManager) onXID(e nvml.XIDEvent) {
	bad, reason := nvml.ClassifyXID(e.XID)
	g.mu.Lock()
	gpu := e.UUID
	if g.inv != nil && strings.HasPrefix(gpu, "MIG-") {
		for _, d := range g.inv.Devices {
			for _, in := range d.MIGInstances {
				if in.UUID == gpu {
					gpu = d.UUID
				}
			}
		}
	}
	if e.GI >= 0 {
		reason += fmt.Sprintf(" in GPU instance %d", e.GI)
	}
	g.lastXID[gpu] = e.XID
	fresh := bad && g.xid[gpu] == ""
	if fresh {
		g.xid[gpu] = reason
	}
	g.mu.Unlock()
	if !bad {
		g.log.Info("GPU reported an application XID; the GPU stays in service", "gpu", gpu, "xid", e.XID, "reason", reason)
		return
	}
	g.log.Warn("GPU unhealthy: no new work will be placed on it", "gpu", gpu, "xid", e.XID, "reason", reason)
	if fresh {
		g.kick()
	}
}

// watchXID follows XID events until ctx ends, starting again a minute
// after NVML could not be watched (no driver yet, an NVML error).
func (g *gpuManager) watchXID(ctx context.Context) {
	if g.cfg.Runtime == nil {
		return
	}
	var last string
	for ctx.Err() == nil {
		err := g.cfg.Runtime.WatchXID(ctx, g.onXID)
		if ctx.Err() != nil {
			return
		}
		if err != nil && err.Error() != last && !errors.Is(err, nvml.ErrNoDriver) && !errors.Is(err, nvml.ErrNotBuilt) {
			g.log.Warn("cannot watch GPU XID events; GPU health comes from ECC and page retirement counters only", "err", err)
		}
		if err != nil {
			last = err.Error()
		}
		sleep(ctx, time.Minute)
	}
}

// prepareGPU readies the task's GPU before the driver starts it: the MIG
// instance exists and cfg names it (reported to the servers when the
// agent created or resolved it), and a share carries its MPS limits in
// the environment.
func (p *allocTaskPort) prepareGPU(cfg *driver.TaskConfig) error {
	res, env, created, err := p.ar.a.gpus.prepare(cfg.Resources)
	if err != nil {
		return fmt.Errorf("GPU: %w", err)
	}
	if created != "" {
		p.ar.setMIGInstance(p.task.Name, created)
		p.ar.report()
	}
	if res != cfg.Resources {
		cfg.Resources = res
		// The environment names the GPUs: build it again over the
		// resolved resources.
		env2 := driver.TaskEnv(cfg, p.task.Driver == api.DriverExec)
		for k, v := range cfg.Env {
			if _, ok := env2[k]; !ok {
				env2[k] = v
			}
		}
		cfg.Env = env2
	}
	for k, v := range env {
		if cfg.Env == nil {
			cfg.Env = map[string]string{}
		}
		cfg.Env[k] = v
	}
	cfg.DenyGPUMinors = p.ar.a.gpus.denyMinors(cfg.Resources)
	return nil
}

// denyMinors lists the /dev/nvidia<N> minors of the node's GPUs that res
// does not give (all of them for a task without GPUs).
func (g *gpuManager) denyMinors(res *api.AllocatedResources) []int {
	given := map[string]bool{}
	if res != nil && res.GPU != nil {
		for _, u := range res.GPU.Devices {
			given[u] = true
		}
		if res.GPU.MIG != nil {
			given[res.GPU.MIG.GPU] = true
		}
		if res.GPU.Share != nil {
			given[res.GPU.Share.GPU] = true
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.inv == nil {
		return nil
	}
	var out []int
	for _, d := range g.inv.Devices {
		if d.Minor >= 0 && !given[d.UUID] {
			out = append(out, d.Minor)
		}
	}
	return out
}
