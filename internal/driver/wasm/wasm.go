package wasm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/driver"
	execdriver "github.com/gantryhq/gantry/internal/driver/exec"
)

// Name is the driver's name in job specs.
const Name = api.DriverWasm

// Defaults of Config.
const (
	DefaultCacheMaxBytes = 1 << 30
	// RuntimeMemoryMiB is added to resources.memory for the runner
	// process's cgroup: the runtime and the compiled code live beside the
	// module's linear memory, which alone is capped at resources.memory.
	RuntimeMemoryMiB = 256
	// stateDir holds the runner's files under each allocation directory
	// (the executor's too: the wasm driver's own exec driver keeps them
	// there, apart from exec tasks').
	stateDir = ".wasm"
)

// Config places the driver's files.
type Config struct {
	// AllocRoot holds the allocation directories, as for the exec driver.
	AllocRoot string
	// CacheDir holds compiled modules; empty: no cache.
	CacheDir string
	// CacheMaxBytes bounds CacheDir. 0: DefaultCacheMaxBytes.
	CacheMaxBytes int64
	// RunnerPath is the binary started as `<RunnerPath> executor ...` and
	// `<RunnerPath> wasm-run <spec>`. Empty: os.Executable().
	RunnerPath string
	// HostMountRoots are the host directories (and what is under them)
	// that a task's mounts may name by absolute path. Empty: none, only
	// directories under the task's own directory.
	HostMountRoots []string
	// HTTPClient downloads artifacts. Nil: a client with a 5 minute timeout.
	HTTPClient *http.Client
	// Spares is how many spare runners (spares.go) the driver keeps, one
	// for each of the modules started most recently; 0: none.
	Spares int
	// SpareIdle is how long an unused spare is kept; 0: DefaultSpareIdle.
	SpareIdle time.Duration
	// SpareDir holds the spares' ready files and their executors' log.
	// Empty: <AllocRoot>/../wasm-spares.
	SpareDir string
	// MemAvailable reads the node's available memory (MemAvailable of
	// /proc/meminfo), for spareRoom; false: unknown, and no spare starts.
	// Nil: spares start without the check.
	MemAvailable func() (uint64, bool)
}

// Driver runs WASI modules, each in its own runner process supervised by
// the exec driver's executor.
type Driver struct {
	cfg      Config
	exec     *execdriver.Driver
	version  string
	provided map[string]bool // host functions the runtime gives, "module.name"
	pruneMu  sync.Mutex
	pool     sparePool
	idMu     sync.Mutex
	ids      map[fileKey]moduleID // identify's memory
}

var (
	_ driver.Driver = (*Driver)(nil)
	_ driver.Logs   = (*Driver)(nil)
	_ driver.Stats  = (*Driver)(nil)
)

// New makes a wasm driver.
func New(cfg Config) (*Driver, error) {
	if cfg.AllocRoot == "" {
		return nil, errors.New("wasm driver: Config.AllocRoot is required")
	}
	if cfg.RunnerPath == "" {
		p, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("wasm driver: find own binary for the runner: %w", err)
		}
		cfg.RunnerPath = p
	}
	if cfg.CacheMaxBytes <= 0 {
		cfg.CacheMaxBytes = DefaultCacheMaxBytes
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 5 * time.Minute}
	}
	ed, err := execdriver.New(execdriver.Config{AllocRoot: cfg.AllocRoot, ExecutorPath: cfg.RunnerPath, StateDir: stateDir})
	if err != nil {
		return nil, fmt.Errorf("wasm driver: %w", err)
	}
	provided, err := hostFunctions()
	if err != nil {
		return nil, fmt.Errorf("wasm driver: %w", err)
	}
	if cfg.SpareDir == "" {
		cfg.SpareDir = filepath.Join(filepath.Dir(cfg.AllocRoot), "wasm-spares")
	}
	d := &Driver{cfg: cfg, exec: ed, version: RuntimeVersion(), provided: provided, ids: map[fileKey]moduleID{}}
	d.pool.spares, d.pool.filling = map[string]*spare{}, map[string]bool{}
	return d, nil
}

// RuntimeVersion is the wazero version built into this binary.
func RuntimeVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			if m.Path == "github.com/tetratelabs/wazero" {
				return "wazero " + m.Version
			}
		}
	}
	return "wazero (unknown version)"
}

// hostFunctions lists what a module may import: WASI preview 1, whose
// socket calls (sock_accept, sock_recv, sock_send, sock_shutdown) serve
// the pre-opened listeners.
func hostFunctions() (map[string]bool, error) {
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer rt.Close(ctx)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		return nil, fmt.Errorf("list the WASI functions: %w", err)
	}
	m := rt.Module(wasi_snapshot_preview1.ModuleName)
	if m == nil {
		return nil, errors.New("list the WASI functions: the WASI module is not instantiated")
	}
	out := map[string]bool{}
	for name := range m.ExportedFunctionDefinitions() {
		out[wasi_snapshot_preview1.ModuleName+"."+name] = true
	}
	return out, nil
}

// Name implements driver.Driver.
func (d *Driver) Name() string { return Name }

// Fingerprint implements driver.Driver.
func (d *Driver) Fingerprint(ctx context.Context) api.DriverInfo {
	if runtime.GOOS != "linux" {
		return api.DriverInfo{Reason: "the wasm driver runs on Linux only (its runner is supervised like an exec task)"}
	}
	info := d.exec.Fingerprint(ctx)
	info.Version = d.version + " (" + runtime.GOARCH + ")"
	if !info.Healthy {
		return info
	}
	iso := "WASI preview 1 modules on " + d.version + ", each in its own runner process supervised like an exec task; " +
		"a module sees only its arguments, environment, the directories handed to it (its task directory at /, and its mounts) and its pre-opened listeners; " +
		"linear memory capped at resources.memory"
	if ok, why := d.exec.LimitsEnforced(); ok {
		iso += fmt.Sprintf("; the runner's cpu (cpu.max) and memory (resources.memory + %d MiB for the runtime) limited with a cgroup v2", RuntimeMemoryMiB)
	} else {
		iso += "; the runner's cpu and total memory are NOT limited: " + why
	}
	if len(d.cfg.HostMountRoots) > 0 {
		iso += "; host directories that may be mounted: " + strings.Join(d.cfg.HostMountRoots, ", ")
	} else {
		iso += "; no host directory may be mounted"
	}
	info.Isolation = iso
	return info
}

func (d *Driver) paths(allocDir, task string) (spec, module, result string) {
	dir := filepath.Join(allocDir, stateDir)
	return filepath.Join(dir, task+".run.json"), filepath.Join(dir, task+".wasm"), filepath.Join(dir, task+".result.json")
}

// Start implements driver.Driver: it resolves the module (downloading and
// verifying an artifact), refuses one that cannot run, writes the
// runner's spec and starts the runner under the exec driver's executor.
func (d *Driver) Start(ctx context.Context, cfg *driver.TaskConfig) (*driver.Handle, error) {
	if cfg == nil || cfg.Task == nil {
		return nil, errors.New("wasm driver: task config has no task")
	}
	t := cfg.Task
	c := t.Config
	if !api.ValidName(t.Name) {
		return nil, fmt.Errorf("wasm driver: task name %q %s", t.Name, api.NameRule)
	}
	allocDir, err := filepath.Abs(cfg.AllocDir)
	if err != nil || cfg.AllocDir == "" {
		return nil, fmt.Errorf("wasm driver: task %q has no allocation directory", t.Name)
	}
	// A task an earlier Start left running is adopted before anything is
	// prepared again (or a spare taken for it).
	if h := d.exec.Running(cfg); h != nil {
		return own(h), nil
	}
	specPath, modPath, resultPath := d.paths(allocDir, t.Name)
	taskDir := filepath.Join(allocDir, t.Name)
	for _, dir := range []string{taskDir, filepath.Dir(specPath)} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("wasm driver: %w", err)
		}
	}
	switch {
	case c.Artifact != nil && c.Module != "":
		return nil, fmt.Errorf("wasm driver: task %q: %w: give config.module or config.artifact, not both", t.Name, driver.ErrCannotRun)
	case c.Artifact != nil:
		if err := fetch(ctx, d.cfg.HTTPClient, c.Artifact, modPath); err != nil {
			return nil, fmt.Errorf("wasm driver: task %q: %w", t.Name, err)
		}
	case c.Module != "":
		modPath = c.Module
	default:
		return nil, fmt.Errorf("wasm driver: task %q: %w: config.module or config.artifact is required", t.Name, driver.ErrCannotRun)
	}
	id, err := d.identify(modPath)
	if err != nil {
		return nil, fmt.Errorf("wasm driver: task %q: %w", t.Name, err)
	}
	info := id.info
	if missing := info.Missing(d.provided); len(missing) > 0 {
		return nil, fmt.Errorf("wasm driver: task %q: %w: module %s imports what this node's runtime (%s, WASI preview 1) does not provide: %s",
			t.Name, driver.ErrCannotRun, modPath, d.version, strings.Join(missing, ", "))
	}
	if !info.Start {
		return nil, fmt.Errorf("wasm driver: task %q: %w: module %s exports no _start function: it is not a WASI command", t.Name, driver.ErrCannotRun, modPath)
	}
	memMiB := t.Resources.Memory
	if cfg.Resources != nil && cfg.Resources.Memory > 0 {
		memMiB = cfg.Resources.Memory
	}
	memMax := uint64(memMiB) << 20
	if min := info.MemoryMinPages * PageSize; min > memMax {
		return nil, fmt.Errorf("wasm driver: task %q: %w: %s", t.Name, driver.ErrCannotRun, memoryTooSmall(min, memMax))
	}
	mounts, err := d.mounts(taskDir, c.Mounts)
	if err != nil {
		return nil, fmt.Errorf("wasm driver: task %q: %w: %v", t.Name, driver.ErrCannotRun, err)
	}

	compiledPath := strings.TrimSuffix(specPath, ".run.json") + ".compiled"
	os.Remove(compiledPath)
	spec := runSpec{
		Module: modPath, ModuleSHA256: id.sum, CompiledPath: compiledPath, Name: t.Name,
		Args:      append([]string{t.Name}, c.Args...),
		Mounts:    mounts,
		MemoryMax: memMax, CacheDir: d.cfg.CacheDir, ResultPath: resultPath,
	}
	env := driver.TaskEnv(cfg, true)
	for k, v := range cfg.Env {
		if _, ok := env[k]; !ok {
			env[k] = v
		}
	}
	if cfg.Resources != nil {
		fd := 3 + len(mounts)
		for _, p := range cfg.Resources.Ports {
			spec.Listeners = append(spec.Listeners, listener{Name: p.Name, Port: p.Host, FD: fd})
			env["GANTRY_LISTEN_FD_"+strings.ToUpper(strings.ReplaceAll(p.Name, "-", "_"))] = strconv.Itoa(fd)
			fd++
		}
	}
	for k, v := range env {
		spec.Env = append(spec.Env, k+"="+v)
	}
	sort.Strings(spec.Env)
	os.Remove(resultPath)
	b, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(specPath, b, 0o600); err != nil {
		return nil, fmt.Errorf("wasm driver: write the runner's spec: %w", err)
	}
	if d.cfg.CacheDir != "" {
		d.pruneMu.Lock()
		pruneCache(d.cfg.CacheDir, d.cfg.CacheMaxBytes, time.Now())
		d.pruneMu.Unlock()
	}

	runner := *cfg
	rt := *t
	rt.Driver = execdriver.Name
	rt.Config = api.TaskConfig{Command: d.cfg.RunnerPath, Args: []string{RunnerCommand, specPath}}
	runner.Task = &rt
	runner.Env = nil
	res := api.AllocatedResources{CPU: t.Resources.CPU, Memory: memMiB}
	if cfg.Resources != nil {
		res = *cfg.Resources
	}
	res.Memory = memMiB + RuntimeMemoryMiB
	runner.Resources = &res
	var h *driver.Handle
	if t.Security == nil || t.Security.User == "" {
		if sp := d.takeSpare(spec.ModuleSHA256); sp != nil {
			defer sp.Close() // let go if StartWith did not take it
			// A spare that fails when taken is passed over.
			if h, err = d.exec.StartWith(ctx, &runner, execdriver.StartOptions{Spare: sp}); err != nil {
				h = nil
			}
		}
	}
	if h == nil {
		if h, err = d.exec.Start(ctx, &runner); err != nil {
			return nil, fmt.Errorf("wasm driver: %w", err)
		}
	}
	d.refill(spec.ModuleSHA256, modPath, compiledPath)
	return own(h), nil
}

// mounts resolves the task's mounts: its task directory at / first, then
// each mount, a directory under the task directory (created) or a host
// directory under one of Config.HostMountRoots.
func (d *Driver) mounts(taskDir string, ms []api.WasmMount) ([]mountSpec, error) {
	out := []mountSpec{{Host: taskDir, Guest: "/"}}
	for i, m := range ms {
		if m.Target == "" || !path.IsAbs(m.Target) || path.Clean(m.Target) == "/" {
			return nil, fmt.Errorf("mounts[%d].target %q must be an absolute path other than / (the task directory is /)", i, m.Target)
		}
		host := m.Source
		if filepath.IsAbs(host) {
			host = filepath.Clean(host)
			if !d.hostAllowed(host) {
				return nil, fmt.Errorf("mounts[%d].source %s is a host path this node does not allow (allowed: %s)", i, host, allowedList(d.cfg.HostMountRoots))
			}
			st, err := os.Stat(host)
			if err != nil || !st.IsDir() {
				return nil, fmt.Errorf("mounts[%d].source %s is not a directory on this node", i, host)
			}
		} else {
			clean := filepath.Clean(host)
			if host == "" || clean == ".." || strings.HasPrefix(clean, "../") {
				return nil, fmt.Errorf("mounts[%d].source %q must name a directory under the task directory, or an absolute host path", i, m.Source)
			}
			host = filepath.Join(taskDir, clean)
			if err := os.MkdirAll(host, 0o755); err != nil {
				return nil, err
			}
		}
		out = append(out, mountSpec{Host: host, Guest: path.Clean(m.Target), ReadOnly: m.ReadOnly})
	}
	return out, nil
}

func (d *Driver) hostAllowed(p string) bool {
	for _, root := range d.cfg.HostMountRoots {
		root = filepath.Clean(root)
		if p == root || strings.HasPrefix(p, root+string(filepath.Separator)) || root == "/" {
			return true
		}
	}
	return false
}

func allowedList(roots []string) string {
	if len(roots) == 0 {
		return "none"
	}
	return strings.Join(roots, ", ")
}

func own(h *driver.Handle) *driver.Handle {
	if h != nil {
		h.Driver = Name
	}
	return h
}

// Wait implements driver.Driver: the runner's exit, with the reason it
// left (a trap, a memory refusal) when there is one.
func (d *Driver) Wait(ctx context.Context, h *driver.Handle) (*driver.ExitResult, error) {
	res, err := d.exec.Wait(ctx, h)
	if err != nil || res == nil {
		return res, err
	}
	if dir, err := execdriver.StateDirOf(h); err == nil {
		var r result
		if b, err := os.ReadFile(filepath.Join(dir, h.Task+".result.json")); err == nil && json.Unmarshal(b, &r) == nil {
			res.Message = r.Message
		}
	}
	return res, nil
}

// Stop implements driver.Driver: SIGTERM makes the runner cancel the
// module; past grace the runner is killed.
func (d *Driver) Stop(ctx context.Context, h *driver.Handle, grace time.Duration) error {
	return d.exec.Stop(ctx, h, grace)
}

// Destroy implements driver.Driver.
func (d *Driver) Destroy(ctx context.Context, h *driver.Handle) error {
	if dir, err := execdriver.StateDirOf(h); err == nil {
		for _, suffix := range []string{".run.json", ".result.json", ".compiled"} {
			os.Remove(filepath.Join(dir, h.Task+suffix))
		}
	}
	return d.exec.Destroy(ctx, h)
}

// Recover implements driver.Driver.
func (d *Driver) Recover(ctx context.Context, nodeID string) ([]*driver.Handle, error) {
	hs, err := d.exec.Recover(ctx, nodeID)
	for _, h := range hs {
		own(h)
	}
	return hs, err
}

// Logs implements driver.Logs: the module's stdout and stderr, in the same
// rotated files as exec tasks.
func (d *Driver) Logs(ctx context.Context, h *driver.Handle, opts driver.LogOptions) (io.ReadCloser, error) {
	return d.exec.Logs(ctx, h, opts)
}

// Stats implements driver.Stats: the runner process's usage.
func (d *Driver) Stats(ctx context.Context, h *driver.Handle) (*driver.TaskStats, error) {
	return d.exec.Stats(ctx, h)
}
