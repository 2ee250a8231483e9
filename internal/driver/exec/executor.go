package exec

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	osexec "os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// ExecutorCommand is the hidden subcommand of the gantry binary that runs
// the executor: `gantry executor <spec file>` must call RunExecutor with
// the arguments after the subcommand.
const ExecutorCommand = "executor"

// Files of one task in <alloc dir>/.exec/ (.<Config.Kind>/).
const (
	specSuffix   = ".spec.json"    // what to run, written by the driver
	handleSuffix = ".handle.json"  // the running task, written by the executor
	exitSuffix   = ".exit.json"    // how it ended, written by the executor
	logSuffix    = ".executor.log" // the executor's own diagnostics
	// framesSuffix (frames.go): the totals of the task's frame streams
)

// executorSpec is what the driver asks the executor to run.
type executorSpec struct {
	NodeID  string   `json:"node_id"`
	AllocID string   `json:"alloc_id"`
	Task    string   `json:"task"`
	Path    string   `json:"path"` // resolved program
	Args    []string `json:"args"` // argv, argv[0] included
	Env     []string `json:"env"`
	Dir     string   `json:"dir"`
	UID     *uint32  `json:"uid,omitempty"`
	GID     *uint32  `json:"gid,omitempty"`

	LogDir      string `json:"log_dir"`
	LogMaxBytes int64  `json:"log_max_bytes"`
	LogMaxFiles int    `json:"log_max_files"`

	Cgroup    string `json:"cgroup,omitempty"` // empty: limits not enforced
	MemoryMiB int    `json:"memory_mib,omitempty"`
	CPUMilli  int    `json:"cpu_milli,omitempty"`
	// DenyGPUMinors are /dev/nvidia<N> minors the task's cgroup denies.
	DenyGPUMinors []int `json:"deny_gpu_minors,omitempty"`

	HandlePath string `json:"handle_path"`
	ExitPath   string `json:"exit_path"`

	// FrameStreams are counted on descriptors 3, 4, … of the task, their
	// totals kept in FramesPath (frames.go).
	FrameStreams []string `json:"frame_streams,omitempty"`
	FramesPath   string   `json:"frames_path,omitempty"`
}

// taskState is the handle file: enough to find, signal and wait for the
// task from any later process.
type taskState struct {
	NodeID        string    `json:"node_id"`
	AllocID       string    `json:"alloc_id"`
	Task          string    `json:"task"`
	StateDir      string    `json:"state_dir"`
	Pid           int       `json:"pid"`
	PidStart      uint64    `json:"pid_start"` // clock ticks after boot, against pid reuse
	ExecutorPid   int       `json:"executor_pid"`
	ExecutorStart uint64    `json:"executor_start"`
	Started       time.Time `json:"started"`
	Cgroup        string    `json:"cgroup,omitempty"`
}

// exitState is the exit file.
type exitState struct {
	ExitCode  int       `json:"exit_code"`
	Signal    int       `json:"signal,omitempty"`
	OOMKilled bool      `json:"oom_killed,omitempty"`
	Finished  time.Time `json:"finished"`
}

// readyMsg is what the executor tells the driver once the task runs or
// could not be started, on the pipe passed as file descriptor 3.
type readyMsg struct {
	Error string `json:"error,omitempty"`
}

// writeJSON writes v to path atomically and durably: readers see the old
// file or the whole new one, also after a crash.
func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return replaceFile(path, b, true)
}

// replaceFile writes b to path through a temporary file and a rename,
// synced first when durable.
func replaceFile(path string, b []byte, durable bool) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if durable {
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// RunExecutor is the executor: the small supervisor between the agent and
// one task. The driver starts it as `<gantry> executor <spec file>` in a
// session of its own, so it outlives the agent. It starts the task in its
// own process group (and cgroup, when limits are enforced), copies the
// task's stdout and stderr into size-rotated files, writes the handle
// file, and when the task ends kills what is left of its process group
// and writes the exit file. It returns the executor's own exit status.
func RunExecutor(args []string) int {
	if len(args) != 1 && (len(args) == 0 || args[0] != spareFlag) {
		fmt.Fprintln(os.Stderr, "usage: gantry executor <spec file> (started by the exec driver, not by hand)")
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	// Descriptor 3 is the driver's ready pipe; the task must not inherit it.
	syscall.CloseOnExec(3)
	ready := os.NewFile(3, "ready")
	tell := func(msg readyMsg) {
		if ready != nil {
			_ = json.NewEncoder(ready).Encode(msg)
			ready.Close()
			ready = nil
		}
	}
	fail := func(err error) int {
		log.Error("executor: task not started", "err", err)
		tell(readyMsg{Error: err.Error()})
		return 1
	}

	// The agent's terminal or service manager may signal us; we stay until
	// the task ends. (Caught, not ignored: an ignored signal would stay
	// ignored in the task.)
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGPIPE)
	go func() {
		for s := range sigs {
			log.Info("executor: ignoring signal", "signal", s.String())
		}
	}()

	if args[0] == spareFlag {
		return runSpare(log, args[1:], tell, fail)
	}
	var spec executorSpec
	if err := readJSON(args[0], &spec); err != nil {
		return fail(fmt.Errorf("read spec: %w", err))
	}
	log = log.With("alloc", spec.AllocID, "task", spec.Task)

	outLog, errLog, err := openTaskLogs(&spec)
	if err != nil {
		return fail(err)
	}
	defer outLog.Close()
	defer errLog.Close()
	outR, outW, err := os.Pipe()
	if err != nil {
		return fail(err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		return fail(err)
	}
	var frames *frameStreams
	if len(spec.FrameStreams) > 0 {
		if frames, err = openFrameStreams(&spec); err != nil {
			return fail(err)
		}
	}

	newCmd := func() *osexec.Cmd {
		c := &osexec.Cmd{
			Path: spec.Path, Args: spec.Args, Env: spec.Env, Dir: spec.Dir,
			Stdout: outW, Stderr: errW,
			SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
		}
		if frames != nil {
			c.ExtraFiles = frames.writers
		}
		if spec.UID != nil {
			c.SysProcAttr.Credential = &syscall.Credential{Uid: *spec.UID, Gid: *spec.GID}
		}
		return c
	}
	cmd := newCmd()
	if spec.Cgroup != "" {
		if err := setupCgroup(spec.Cgroup, spec.MemoryMiB, spec.CPUMilli); err != nil {
			return fail(err)
		}
		fd, err := syscall.Open(spec.Cgroup, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
		if err != nil {
			return fail(fmt.Errorf("open cgroup %s: %w", spec.Cgroup, err))
		}
		defer syscall.Close(fd)
		if len(spec.DenyGPUMinors) > 0 {
			if err := denyGPUDevices(fd, spec.DenyGPUMinors); err != nil {
				removeCgroup(spec.Cgroup)
				return fail(fmt.Errorf("hide the GPUs the task was not given: %w", err))
			}
		}
		// Born in the cgroup (clone3), so not even its first fork escapes.
		cmd.SysProcAttr.UseCgroupFD = true
		cmd.SysProcAttr.CgroupFD = fd
	}
	err = cmd.Start()
	if err != nil && spec.Cgroup != "" && (errors.Is(err, syscall.ENOSYS) || errors.Is(err, syscall.EINVAL)) {
		// Kernels before 5.7 have no clone3: move the task in right after.
		log.Warn("executor: cannot start the task inside its cgroup, moving it there after start", "err", err)
		cmd = newCmd()
		if err = cmd.Start(); err == nil {
			if werr := os.WriteFile(filepath.Join(spec.Cgroup, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); werr != nil {
				killGroup(cmd.Process.Pid, syscall.SIGKILL)
				cmd.Wait()
				removeCgroup(spec.Cgroup)
				return fail(fmt.Errorf("move the task into cgroup %s: %w", spec.Cgroup, werr))
			}
		}
	}
	if err != nil {
		removeCgroup(spec.Cgroup)
		return fail(fmt.Errorf("start %s: %w", spec.Path, err))
	}
	outW.Close()
	errW.Close()
	return supervise(log, &spec, cmd, cmd.Wait, outR, errR, outLog, errLog, frames, tell, fail)
}

// openTaskLogs opens the task's rotated stdout and stderr files.
func openTaskLogs(spec *executorSpec) (out, errs io.WriteCloser, err error) {
	if out, err = openRotator(spec.LogDir, spec.Task+".stdout", spec.LogMaxBytes, spec.LogMaxFiles); err != nil {
		return nil, nil, fmt.Errorf("open stdout log: %w", err)
	}
	if errs, err = openRotator(spec.LogDir, spec.Task+".stderr", spec.LogMaxBytes, spec.LogMaxFiles); err != nil {
		out.Close()
		return nil, nil, fmt.Errorf("open stderr log: %w", err)
	}
	return out, errs, nil
}

// supervise is the executor's life once its task runs: it copies the
// task's output into its logs, writes the handle file, tells the driver,
// waits for the task and records how it ended.
func supervise(log *slog.Logger, spec *executorSpec, cmd *osexec.Cmd, wait func() error, outR, errR *os.File, outLog, errLog io.Writer,
	frames *frameStreams, tell func(readyMsg), fail func(error) int) int {
	stopFrames := make(chan struct{})
	if frames != nil {
		frames.started(stopFrames, log.Warn)
	}
	var copies sync.WaitGroup
	copies.Add(2)
	go func() { defer copies.Done(); io.Copy(outLog, outR) }()
	go func() { defer copies.Done(); io.Copy(errLog, errR) }()

	pid := cmd.Process.Pid
	pidStart, _, err := procStart(pid)
	if err != nil {
		log.Warn("executor: cannot read the task's start time", "err", err)
	}
	selfStart, _, _ := procStart(os.Getpid())
	st := taskState{
		NodeID: spec.NodeID, AllocID: spec.AllocID, Task: spec.Task,
		StateDir: filepath.Dir(spec.HandlePath),
		Pid:      pid, PidStart: pidStart,
		ExecutorPid: os.Getpid(), ExecutorStart: selfStart,
		Started: time.Now(), Cgroup: spec.Cgroup,
	}
	if err := writeJSON(spec.HandlePath, st); err != nil {
		killGroup(pid, syscall.SIGKILL)
		cmd.Wait()
		removeCgroup(spec.Cgroup)
		return fail(fmt.Errorf("write handle: %w", err))
	}
	tell(readyMsg{})
	log.Info("executor: task started", "pid", pid, "path", spec.Path)

	werr := wait()
	// What the task left running in its group would hold the log pipes
	// open and outlive it: it goes with the task.
	killGroup(pid, syscall.SIGKILL)
	ex := exitState{Finished: time.Now()}
	if spec.Cgroup != "" {
		ex.OOMKilled = cgroupOOMKilled(spec.Cgroup)
		if err := removeCgroup(spec.Cgroup); err != nil {
			log.Warn("executor: cgroup left behind", "err", err)
		}
	}
	if ps := cmd.ProcessState; ps != nil {
		ws := ps.Sys().(syscall.WaitStatus)
		switch {
		case ws.Signaled():
			ex.Signal = int(ws.Signal())
			ex.ExitCode = 128 + ex.Signal
		default:
			ex.ExitCode = ws.ExitStatus()
		}
	} else if werr != nil {
		ex.ExitCode = -1
		log.Error("executor: wait failed", "err", werr)
	}
	// A process that left the group (setsid) may still hold the pipes; do
	// not wait for it forever.
	drained := make(chan struct{})
	go func() { copies.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(5 * time.Second):
		log.Warn("executor: output still open after the task ended; a process escaped its group")
	}
	if frames != nil {
		if err := frames.finish(stopFrames, time.Second); err != nil {
			log.Warn("executor: cannot record the frame counts", "err", err)
		}
	}
	if err := writeJSON(spec.ExitPath, ex); err != nil {
		log.Error("executor: cannot record the exit status", "err", err)
		return 1
	}
	log.Info("executor: task ended", "exit_code", ex.ExitCode, "signal", ex.Signal, "oom_killed", ex.OOMKilled)
	return 0
}
