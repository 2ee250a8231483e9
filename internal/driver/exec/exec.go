package exec

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	osexec "os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/driver"
)

// Name is the driver's name in job specs.
const Name = api.DriverExec

// Defaults of Config.
const (
	DefaultLogMaxBytes  = 10 << 20
	DefaultLogMaxFiles  = 3
	DefaultCgroupParent = cgroupMount + "/gantry"
	DefaultStartTimeout = 30 * time.Second
	defaultPath         = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// Config places the driver's files and names its executor.
type Config struct {
	// AllocRoot holds the allocation directories: a task's AllocDir must be
	// AllocRoot/<something>, so that Recover finds it again. Required.
	AllocRoot string
	// ExecutorPath is the binary started as `<ExecutorPath> executor
	// <spec>`; it must call RunExecutor. Empty: os.Executable().
	ExecutorPath string
	// LogMaxBytes and LogMaxFiles bound each output stream's files.
	LogMaxBytes int64
	LogMaxFiles int
	// CgroupParent is the cgroup v2 directory under which each task gets
	// its own. Empty: DefaultCgroupParent.
	CgroupParent string
	// StartTimeout bounds how long Start waits for the executor to report.
	StartTimeout time.Duration
	// Kind lets another driver supervise its processes with this one (the
	// qemu driver does): it names the handles (Handle.Driver) and the
	// directory of the state files, AllocDir/.<Kind>, so that each driver
	// recovers only its own tasks. Empty: "exec".
	Kind string
	// StateDir names the directory under each allocation directory that
	// holds the executor's files. Empty: "."+Kind. A driver built on this
	// one (wasm) keeps its own, so that each Recover finds only its tasks.
	StateDir string
}

// Driver runs tasks as processes on the node, each under an executor that
// survives the agent. Everything it knows about a task is in files under
// the task's allocation directory, so a new Driver, in a new agent
// process, picks up where the last one left off.
type Driver struct {
	cfg Config

	limits    bool   // cpu and memory limits enforced with cgroup v2
	limitsWhy string // why not, when not
	devices   bool   // GPUs not given are denied with a cgroup device program
	devWhy    string // why not, when not

	mu       sync.Mutex
	children map[string]chan struct{} // executors started by this process, closed once reaped
}

var (
	_ driver.Driver = (*Driver)(nil)
	_ driver.Logs   = (*Driver)(nil)
	_ driver.Execer = (*Driver)(nil)
)

// New makes an exec driver. It checks whether this host lets it enforce
// limits (cgroup v2) once, here.
func New(cfg Config) (*Driver, error) {
	if cfg.AllocRoot == "" {
		return nil, errors.New("exec driver: Config.AllocRoot is required")
	}
	root, err := filepath.Abs(cfg.AllocRoot)
	if err != nil {
		return nil, err
	}
	cfg.AllocRoot = root
	if cfg.ExecutorPath == "" {
		p, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("exec driver: find own binary for the executor: %w", err)
		}
		cfg.ExecutorPath = p
	}
	if cfg.LogMaxBytes <= 0 {
		cfg.LogMaxBytes = DefaultLogMaxBytes
	}
	if cfg.LogMaxFiles <= 0 {
		cfg.LogMaxFiles = DefaultLogMaxFiles
	}
	if cfg.CgroupParent == "" {
		cfg.CgroupParent = DefaultCgroupParent
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = DefaultStartTimeout
	}
	if cfg.Kind == "" {
		cfg.Kind = Name
	}
	if cfg.StateDir == "" {
		cfg.StateDir = "." + cfg.Kind
	}
	d := &Driver{cfg: cfg, children: map[string]chan struct{}{}}
	d.limits, d.limitsWhy = cgroupSupport(cfg.CgroupParent)
	if d.limits {
		d.devices, d.devWhy = deviceFilterSupport()
	} else {
		d.devWhy = d.limitsWhy
	}
	return d, nil
}

// Name implements driver.Driver.
func (d *Driver) Name() string { return Name }

// LimitsEnforced reports whether tasks get a cgroup v2 with memory.max and
// cpu.max, and if not, why.
func (d *Driver) LimitsEnforced() (bool, string) { return d.limits, d.limitsWhy }

// Fingerprint implements driver.Driver.
func (d *Driver) Fingerprint(ctx context.Context) api.DriverInfo {
	if runtime.GOOS != "linux" {
		return api.DriverInfo{Reason: "the exec driver runs on Linux only"}
	}
	info := api.DriverInfo{Detected: true, Version: kernelRelease()}
	if st, err := os.Stat(d.cfg.ExecutorPath); err != nil || st.Mode()&0o111 == 0 {
		info.Reason = fmt.Sprintf("executor binary %s is not an executable file (%v)", d.cfg.ExecutorPath, err)
		return info
	}
	if err := os.MkdirAll(d.cfg.AllocRoot, 0o755); err != nil {
		info.Reason = fmt.Sprintf("allocation directory %s cannot be created: %v", d.cfg.AllocRoot, err)
		return info
	}
	info.Healthy = true
	iso := "processes in their own session and process group, in the task's directory, as the agent's user unless security.user names another; " +
		"no filesystem, network, pid or user namespace isolation, and security settings other than user are not applied"
	if d.limits {
		iso += "; cpu (cpu.max) and memory (memory.max, no swap) limits enforced with a cgroup v2 per task under " + d.cfg.CgroupParent
	} else {
		iso += "; cpu and memory limits are NOT enforced: " + d.limitsWhy
	}
	iso += "; GPUs: CUDA_VISIBLE_DEVICES names the allocated GPUs (MIG-<uuid> for a MIG instance) and is empty for tasks given none"
	if d.devices {
		iso += ", and the /dev/nvidia<N> of every GPU the task was not given is denied by a cgroup v2 device program (a MIG task can reach its GPU's device; MIG instances are told apart by CUDA_VISIBLE_DEVICES only)"
	} else {
		iso += ", which CUDA honours but a process can ignore: /dev/nvidia* are NOT restricted (" + d.devWhy + ")"
	}
	info.Isolation = iso
	return info
}

// paths of one task's files.
type taskPaths struct {
	taskDir, logDir, stateDir string
	spec, handle, exit, log   string
	frames                    string
}

func pathsFor(allocDir, stateDir, task string) taskPaths {
	state := filepath.Join(allocDir, stateDir)
	return taskPaths{
		taskDir:  filepath.Join(allocDir, task),
		logDir:   filepath.Join(allocDir, "logs"),
		stateDir: state,
		spec:     filepath.Join(state, task+specSuffix),
		handle:   filepath.Join(state, task+handleSuffix),
		exit:     filepath.Join(state, task+exitSuffix),
		log:      filepath.Join(state, task+logSuffix),
		frames:   filepath.Join(state, task+framesSuffix),
	}
}

func statePaths(st *taskState) taskPaths {
	return pathsFor(filepath.Dir(st.StateDir), filepath.Base(st.StateDir), st.Task)
}

// TaskEnv is the environment of an exec task: driver.TaskEnv with host
// ports, any key of cfg.Env it does not set, PATH and HOME when the spec
// sets none (HOME is the task directory), and CUDA_VISIBLE_DEVICES: the
// allocated GPUs, or empty when none were allocated, which hides every
// GPU from CUDA (cuInit answers CUDA_ERROR_NO_DEVICE; checked on an H100
// node).
func TaskEnv(cfg *driver.TaskConfig, taskDir string) map[string]string {
	env := driver.TaskEnv(cfg, true)
	for k, v := range cfg.Env {
		if _, ok := env[k]; !ok {
			env[k] = v
		}
	}
	if _, ok := env["PATH"]; !ok {
		env["PATH"] = defaultPath
	}
	if _, ok := env["HOME"]; !ok {
		env["HOME"] = taskDir
	}
	var gpu *api.AllocatedGPU
	if cfg.Resources != nil {
		gpu = cfg.Resources.GPU
	}
	env["CUDA_VISIBLE_DEVICES"] = strings.Join(driver.GPUVisibleDevices(gpu), ",")
	return env
}

func envList(env map[string]string) []string {
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

func envGet(env []string, key string) string {
	for _, kv := range env {
		if k, v, _ := strings.Cut(kv, "="); k == key {
			return v
		}
	}
	return ""
}

// lookPath resolves a command as the task would: a path with a slash is
// taken relative to the task directory, a bare name is searched in the
// task's PATH.
func lookPath(name, path, dir string) (string, error) {
	check := func(p string) error {
		st, err := os.Stat(p)
		if err != nil {
			return err
		}
		if st.IsDir() || st.Mode()&0o111 == 0 {
			return fmt.Errorf("%s is not an executable file", p)
		}
		return nil
	}
	if strings.Contains(name, "/") {
		if !filepath.IsAbs(name) {
			name = filepath.Join(dir, name)
		}
		if err := check(name); err != nil {
			return "", fmt.Errorf("command %s: %w", name, err)
		}
		return name, nil
	}
	for _, p := range filepath.SplitList(path) {
		if p == "" {
			continue
		}
		c := filepath.Join(p, name)
		if check(c) == nil {
			return c, nil
		}
	}
	return "", fmt.Errorf("command %q not found in PATH %s", name, path)
}

func lookupUser(spec string) (uid, gid uint32, err error) {
	name, group, _ := strings.Cut(spec, ":")
	if n, err := strconv.ParseUint(name, 10, 32); err == nil {
		uid, gid = uint32(n), uint32(n)
	} else {
		u, err := user.Lookup(name)
		if err != nil {
			return 0, 0, fmt.Errorf("security.user %q: %w", spec, err)
		}
		a, _ := strconv.ParseUint(u.Uid, 10, 32)
		b, _ := strconv.ParseUint(u.Gid, 10, 32)
		uid, gid = uint32(a), uint32(b)
	}
	if group != "" {
		if n, err := strconv.ParseUint(group, 10, 32); err == nil {
			gid = uint32(n)
		} else {
			g, err := user.LookupGroup(group)
			if err != nil {
				return 0, 0, fmt.Errorf("security.user %q: %w", spec, err)
			}
			b, _ := strconv.ParseUint(g.Gid, 10, 32)
			gid = uint32(b)
		}
	}
	return uid, gid, nil
}

// Start implements driver.Driver: it prepares AllocDir/<task>, writes what
// to run, starts the executor in a session of its own and returns once the
// executor reports the task running (or why it could not start it). A
// task of the same allocation still running from an earlier Start is
// adopted.
func (d *Driver) Start(ctx context.Context, cfg *driver.TaskConfig) (*driver.Handle, error) {
	return d.StartWith(ctx, cfg, StartOptions{})
}

// StartWith is Start with what a driver built on this one asks beyond the
// task config (frames.go).
func (d *Driver) StartWith(ctx context.Context, cfg *driver.TaskConfig, opts StartOptions) (*driver.Handle, error) {
	if err := checkFrameStreams(opts.FrameStreams); err != nil {
		return nil, fmt.Errorf("exec driver: %w", err)
	}
	if cfg == nil || cfg.Task == nil {
		return nil, errors.New("exec driver: task config has no task")
	}
	t := cfg.Task
	if t.Config.Command == "" {
		return nil, fmt.Errorf("exec driver: task %q has no config.command", t.Name)
	}
	if !api.ValidName(t.Name) {
		return nil, fmt.Errorf("exec driver: task name %q %s", t.Name, api.NameRule)
	}
	allocDir, err := filepath.Abs(cfg.AllocDir)
	if err != nil || cfg.AllocDir == "" {
		return nil, fmt.Errorf("exec driver: task %q has no allocation directory", t.Name)
	}
	if filepath.Dir(allocDir) != d.cfg.AllocRoot {
		return nil, fmt.Errorf("exec driver: allocation directory %s is not directly under %s, where Recover looks after a restart", allocDir, d.cfg.AllocRoot)
	}
	p := pathsFor(allocDir, d.cfg.StateDir, t.Name)

	if h := d.adopt(p, cfg); h != nil {
		return h, nil
	}
	for _, dir := range []string{p.taskDir, p.logDir} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("exec driver: %w", err)
		}
	}
	if err := os.MkdirAll(p.stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("exec driver: %w", err)
	}
	for _, f := range []string{p.handle, p.exit, p.frames} {
		os.Remove(f)
	}

	env := TaskEnv(cfg, p.taskDir)
	path, err := lookPath(t.Config.Command, env["PATH"], p.taskDir)
	if err != nil {
		return nil, fmt.Errorf("exec driver: task %q: %w", t.Name, err)
	}
	spec := executorSpec{
		NodeID: cfg.NodeID, AllocID: cfg.AllocID, Task: t.Name,
		Path: path, Args: append([]string{t.Config.Command}, t.Config.Args...),
		Env: envList(env), Dir: p.taskDir,
		LogDir: p.logDir, LogMaxBytes: d.cfg.LogMaxBytes, LogMaxFiles: d.cfg.LogMaxFiles,
		HandlePath: p.handle, ExitPath: p.exit,
		FrameStreams: opts.FrameStreams, FramesPath: p.frames,
	}
	if s := t.Security; s != nil && s.User != "" {
		uid, gid, err := lookupUser(s.User)
		if err != nil {
			return nil, fmt.Errorf("exec driver: %w", err)
		}
		spec.UID, spec.GID = &uid, &gid
		if err := os.Chown(p.taskDir, int(uid), int(gid)); err != nil {
			return nil, fmt.Errorf("exec driver: give the task directory to user %s: %w", s.User, err)
		}
	}
	if d.limits {
		if d.devices {
			spec.DenyGPUMinors = cfg.DenyGPUMinors
		}
		spec.Cgroup = filepath.Join(d.cfg.CgroupParent, cfg.AllocID+"-"+t.Name)
		spec.CPUMilli, spec.MemoryMiB = t.Resources.CPU, t.Resources.Memory
		if r := cfg.Resources; r != nil {
			spec.CPUMilli, spec.MemoryMiB = r.CPU, r.Memory
		}
	}
	if err := writeJSON(p.spec, spec); err != nil {
		return nil, fmt.Errorf("exec driver: write task spec: %w", err)
	}
	launch := d.launch
	if opts.Spare != nil {
		launch = opts.Spare.take
	}
	if err := launch(ctx, d, p, cfg.AllocID+"/"+t.Name); err != nil {
		return nil, err
	}
	var st taskState
	if err := readJSON(p.handle, &st); err != nil {
		return nil, fmt.Errorf("exec driver: executor reported the task started but left no handle: %w", err)
	}
	return d.handleOf(&st, true), nil
}

// Running returns the handle of cfg's task if an earlier Start (in this
// process or an earlier one) left it running, else nil. A driver built on
// this one checks it before preparing anything for a new start.
func (d *Driver) Running(cfg *driver.TaskConfig) *driver.Handle {
	allocDir, err := filepath.Abs(cfg.AllocDir)
	if err != nil || cfg.Task == nil {
		return nil
	}
	return d.adopt(pathsFor(allocDir, d.cfg.StateDir, cfg.Task.Name), cfg)
}

// adopt returns the handle of the task if an earlier Start left it running.
func (d *Driver) adopt(p taskPaths, cfg *driver.TaskConfig) *driver.Handle {
	var st taskState
	if readJSON(p.handle, &st) != nil || st.AllocID != cfg.AllocID || st.NodeID != cfg.NodeID {
		return nil
	}
	if _, err := os.Stat(p.exit); err == nil || !alive(st.Pid, st.PidStart) {
		return nil
	}
	return d.handleOf(&st, true)
}

// launch starts the executor and waits for its word.
func (d *Driver) launch(ctx context.Context, _ *Driver, p taskPaths, id string) error {
	logf, err := os.OpenFile(p.log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("exec driver: %w", err)
	}
	defer logf.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("exec driver: %w", err)
	}
	defer r.Close()
	cmd := osexec.Command(d.cfg.ExecutorPath, ExecutorCommand, p.spec)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{w}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return fmt.Errorf("exec driver: start executor %s: %w", d.cfg.ExecutorPath, err)
	}
	w.Close()
	reaped := make(chan struct{})
	go func() {
		cmd.Wait()
		close(reaped)
	}()
	return d.await(ctx, p, id, cmd, reaped, r)
}

// await registers a started executor and waits for its word on r; when
// it could not start the task, whatever got started goes.
func (d *Driver) await(ctx context.Context, p taskPaths, id string, cmd *osexec.Cmd, reaped chan struct{}, r io.Reader) error {
	d.mu.Lock()
	d.children[id] = reaped
	d.mu.Unlock()

	msgc := make(chan readyMsg, 1)
	go func() {
		var m readyMsg
		if err := json.NewDecoder(r).Decode(&m); err != nil {
			m.Error = "the executor ended without a word (see " + p.log + ")"
		}
		msgc <- m
	}()
	timer := time.NewTimer(d.cfg.StartTimeout)
	defer timer.Stop()
	var m readyMsg
	select {
	case m = <-msgc:
	case <-ctx.Done():
		m.Error = ctx.Err().Error()
	case <-timer.C:
		m.Error = fmt.Sprintf("the executor did not report within %s", d.cfg.StartTimeout)
	}
	if m.Error == "" {
		return nil
	}
	// Whatever got started goes.
	var st taskState
	if readJSON(p.handle, &st) == nil {
		killGroup(st.Pid, syscall.SIGKILL)
	}
	cmd.Process.Kill()
	os.Remove(p.handle)
	return fmt.Errorf("exec driver: task not started: %s", m.Error)
}

func (d *Driver) handleOf(st *taskState, running bool) *driver.Handle {
	b, _ := json.Marshal(st)
	return &driver.Handle{
		Driver:   d.cfg.Kind,
		ID:       st.AllocID + "/" + st.Task,
		AllocID:  st.AllocID,
		Task:     st.Task,
		Started:  st.Started,
		Running:  running,
		Pid:      st.Pid,
		Internal: string(b),
	}
}

func stateOf(h *driver.Handle) (*taskState, error) {
	if h == nil || h.Internal == "" {
		return nil, fmt.Errorf("exec driver: handle carries no task state: %w", driver.ErrTaskNotFound)
	}
	var st taskState
	if err := json.Unmarshal([]byte(h.Internal), &st); err != nil {
		return nil, fmt.Errorf("exec driver: handle state: %w", err)
	}
	return &st, nil
}

func readExit(p taskPaths) (*exitState, bool) {
	var ex exitState
	if err := readJSON(p.exit, &ex); err != nil {
		return nil, false
	}
	return &ex, true
}

const pollInterval = 100 * time.Millisecond

// Wait implements driver.Driver. It watches for the exit file the
// executor writes, so it works the same for a task this process started
// and for one recovered after a restart. If the executor dies without
// writing it (killed), Wait returns once the task is gone too, with an
// ExitResult whose Err says the status is unknown.
func (d *Driver) Wait(ctx context.Context, h *driver.Handle) (*driver.ExitResult, error) {
	st, err := stateOf(h)
	if err != nil {
		return nil, err
	}
	p := statePaths(st)
	d.mu.Lock()
	reaped := d.children[h.ID]
	d.mu.Unlock()
	if _, err := os.Stat(p.handle); errors.Is(err, os.ErrNotExist) {
		if _, ok := readExit(p); !ok {
			return nil, fmt.Errorf("exec driver: task %s: %w", h.ID, driver.ErrTaskNotFound)
		}
	}
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		if ex, ok := readExit(p); ok {
			return &driver.ExitResult{ExitCode: ex.ExitCode, Signal: ex.Signal, OOMKilled: ex.OOMKilled}, nil
		}
		if !alive(st.ExecutorPid, st.ExecutorStart) {
			if ex, ok := readExit(p); ok {
				return &driver.ExitResult{ExitCode: ex.ExitCode, Signal: ex.Signal, OOMKilled: ex.OOMKilled}, nil
			}
			if !alive(st.Pid, st.PidStart) {
				return &driver.ExitResult{ExitCode: -1, Err: fmt.Errorf("exec driver: the executor of task %s died before the task's exit status was recorded", h.ID)}, nil
			}
			// The task outlived its executor: nobody can learn its status,
			// but it is still running.
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-reaped:
			reaped = nil // checked on the next round
		case <-tick.C:
		}
	}
}

// gone waits up to limit for the task to end; true if it did.
func gone(ctx context.Context, st *taskState, p taskPaths, limit time.Duration) bool {
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	tick := time.NewTicker(pollInterval / 2)
	defer tick.Stop()
	for {
		if _, ok := readExit(p); ok || !alive(st.Pid, st.PidStart) {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-deadline.C:
			return false
		case <-tick.C:
		}
	}
}

// Stop implements driver.Driver: SIGTERM to the task's process group,
// SIGKILL to it once grace has passed. It returns once the task has ended
// (or ctx does).
func (d *Driver) Stop(ctx context.Context, h *driver.Handle, grace time.Duration) error {
	st, err := stateOf(h)
	if err != nil {
		return err
	}
	p := statePaths(st)
	if _, ok := readExit(p); ok || !alive(st.Pid, st.PidStart) {
		return nil
	}
	if err := killGroup(st.Pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("exec driver: signal task %s: %w", h.ID, err)
	}
	if gone(ctx, st, p, grace) {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := killGroup(st.Pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("exec driver: kill task %s: %w", h.ID, err)
	}
	if !gone(ctx, st, p, time.Minute) {
		if err := ctx.Err(); err != nil {
			return err
		}
		return fmt.Errorf("exec driver: task %s (pid %d) survived SIGKILL", h.ID, st.Pid)
	}
	return nil
}

// Destroy implements driver.Driver: it kills what is left of the task and
// its executor, removes its cgroup and its state files. The task's
// directory and logs stay for the agent to collect with the allocation.
func (d *Driver) Destroy(ctx context.Context, h *driver.Handle) error {
	st, err := stateOf(h)
	if errors.Is(err, driver.ErrTaskNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	p := statePaths(st)
	if alive(st.Pid, st.PidStart) {
		killGroup(st.Pid, syscall.SIGKILL)
		gone(ctx, st, p, 10*time.Second)
	}
	// The executor leaves right after writing the exit file; one that
	// lingers is killed.
	if alive(st.ExecutorPid, st.ExecutorStart) {
		exited := false
		for i := 0; i < 50 && !exited; i++ {
			time.Sleep(pollInterval / 5)
			exited = !alive(st.ExecutorPid, st.ExecutorStart)
		}
		if !exited {
			syscall.Kill(st.ExecutorPid, syscall.SIGKILL)
		}
	}
	if err := removeCgroup(st.Cgroup); err != nil {
		return fmt.Errorf("exec driver: %w", err)
	}
	for _, f := range []string{p.spec, p.handle, p.exit, p.log, p.frames} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("exec driver: %w", err)
		}
	}
	d.mu.Lock()
	delete(d.children, h.ID)
	d.mu.Unlock()
	return nil
}

// Recover implements driver.Driver: the tasks of nodeID whose handle files
// are under AllocRoot, running or exited. Running is checked against the
// pid and its start time, so a reused pid does not pass for the task.
func (d *Driver) Recover(ctx context.Context, nodeID string) ([]*driver.Handle, error) {
	files, err := filepath.Glob(filepath.Join(d.cfg.AllocRoot, "*", d.cfg.StateDir, "*"+handleSuffix))
	if err != nil {
		return nil, fmt.Errorf("exec driver: %w", err)
	}
	var out []*driver.Handle
	for _, f := range files {
		var st taskState
		if err := readJSON(f, &st); err != nil || st.NodeID != nodeID {
			continue
		}
		_, exited := readExit(statePaths(&st))
		out = append(out, d.handleOf(&st, !exited && alive(st.Pid, st.PidStart)))
	}
	return out, nil
}

// Logs implements driver.Logs: the task's stdout or stderr from its
// rotated files, the last opts.Tail lines or all, followed until the task
// has ended and everything it wrote has been read.
func (d *Driver) Logs(ctx context.Context, h *driver.Handle, opts driver.LogOptions) (io.ReadCloser, error) {
	st, err := stateOf(h)
	if err != nil {
		return nil, err
	}
	p := statePaths(st)
	stream := ".stdout"
	if opts.Stderr {
		stream = ".stderr"
	}
	done := func() bool {
		if _, ok := readExit(p); ok {
			return true
		}
		return !alive(st.ExecutorPid, st.ExecutorStart)
	}
	if !opts.Both {
		return newLogReader(ctx, p.logDir, st.Task+stream, opts.Tail, opts.Follow, done)
	}
	// The two streams are files of their own, without timestamps: their
	// lines are merged as they are read, each stream in its own order.
	out, err := newLogReader(ctx, p.logDir, st.Task+".stdout", opts.Tail, opts.Follow, done)
	if err != nil {
		return nil, err
	}
	errs, err := newLogReader(ctx, p.logDir, st.Task+".stderr", opts.Tail, opts.Follow, done)
	if err != nil {
		out.Close()
		return nil, err
	}
	return mergeLines(out, errs), nil
}

// mergeLines reads whole lines from each reader and writes them to one
// stream as they come, until both end; closing it closes both.
func mergeLines(rs ...io.ReadCloser) io.ReadCloser {
	pr, pw := io.Pipe()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, r := range rs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			br := bufio.NewReader(r)
			for {
				line, err := br.ReadBytes('\n')
				if len(line) > 0 {
					mu.Lock()
					_, werr := pw.Write(line)
					mu.Unlock()
					if werr != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
	}
	go func() {
		wg.Wait()
		pw.Close()
	}()
	return &mergedReader{PipeReader: pr, rs: rs}
}

type mergedReader struct {
	*io.PipeReader
	rs []io.ReadCloser
}

func (m *mergedReader) Close() error {
	for _, r := range m.rs {
		r.Close()
	}
	return m.PipeReader.Close()
}

// kernelRelease is the running kernel's release, the exec driver's version
// in effect.
func kernelRelease() string {
	var u syscall.Utsname
	if err := syscall.Uname(&u); err != nil {
		return ""
	}
	b := make([]byte, 0, len(u.Release))
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	return string(b)
}

// StateDirOf is the directory holding the executor's files of the task h
// names (AllocDir/<Config.StateDir>): a driver built on this one keeps its
// own files for the task beside them.
func StateDirOf(h *driver.Handle) (string, error) {
	st, err := stateOf(h)
	if err != nil {
		return "", err
	}
	return st.StateDir, nil
}
