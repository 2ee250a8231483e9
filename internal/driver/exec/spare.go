package exec

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// A spare is an executor started before its task is known, with its
// program already running: a driver whose program takes long to get ready
// (the wasm runner compiling a module) starts one ahead, and a task that
// would start the same program takes it instead of starting anew.
//
// The spare executor starts the program at once, in a process group of its
// own, with only PATH in its environment, / as its directory and the
// agent's user; the program's output waits in pipes. It then waits for the
// path of a task's spec on descriptor 4. When one comes, it checks the
// spec asks for the same program, opens the task's logs, moves the program
// into the task's cgroup, hands the program the task's arguments (as a
// JSON array, one line on the program's descriptor 3) and supervises it
// like any task: from then on it is that task's executor. When the
// driver's end of descriptor 4 closes first (the spare was let go, or the
// agent ended), it ends the program and exits.

// spareFlag makes the executor a spare:
// `<gantry> executor --spare <path> <argv...>`.
const spareFlag = "--spare"

// Spare is the driver's side of a spare executor.
type Spare struct {
	// Path is the program the spare runs; only a task that runs the same
	// program may take it.
	Path   string
	cmd    *osexec.Cmd
	specW  *os.File // the executor's descriptor 4
	readyR *os.File // the executor's descriptor 3
	reaped chan struct{}
	once   sync.Once
}

// StartSpare starts a spare executor running path with argv args (args[0]
// included), its own diagnostics appended to logPath until a task takes
// it. Let it go with Close when no task will.
func (d *Driver) StartSpare(path string, args []string, logPath string) (*Spare, error) {
	if len(args) == 0 {
		return nil, errors.New("exec driver: a spare needs its program's argv")
	}
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("exec driver: spare log: %w", err)
	}
	defer logf.Close()
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("exec driver: %w", err)
	}
	specR, specW, err := os.Pipe()
	if err != nil {
		readyR.Close()
		readyW.Close()
		return nil, fmt.Errorf("exec driver: %w", err)
	}
	cmd := osexec.Command(d.cfg.ExecutorPath, append([]string{ExecutorCommand, spareFlag, path}, args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{readyW, specR}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	readyW.Close()
	specR.Close()
	if err != nil {
		readyR.Close()
		specW.Close()
		return nil, fmt.Errorf("exec driver: start a spare executor %s: %w", d.cfg.ExecutorPath, err)
	}
	s := &Spare{Path: path, cmd: cmd, specW: specW, readyR: readyR, reaped: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(s.reaped)
	}()
	return s, nil
}

// Alive says whether the spare's executor still runs.
func (s *Spare) Alive() bool {
	select {
	case <-s.reaped:
		return false
	default:
		return true
	}
}

// Close lets a spare no task took go: its executor ends its program and
// exits. Closing a taken spare does nothing.
func (s *Spare) Close() {
	s.once.Do(func() {
		s.specW.Close()
		s.readyR.Close()
	})
}

// take gives the spare the task whose spec StartWith wrote to p.spec and
// waits for its executor's word, as launch does for a new executor.
func (s *Spare) take(ctx context.Context, d *Driver, p taskPaths, id string) error {
	taken := false
	s.once.Do(func() { taken = true })
	if !taken || !s.Alive() {
		return fmt.Errorf("exec driver: %w", errSpareGone)
	}
	defer s.readyR.Close()
	_, err := s.specW.WriteString(p.spec + "\n")
	s.specW.Close()
	if err != nil {
		return fmt.Errorf("exec driver: %w: %v", errSpareGone, err)
	}
	return d.await(ctx, p, id, s.cmd, s.reaped, s.readyR)
}

// errSpareGone: the spare ended or was taken before; start the task anew.
var errSpareGone = errors.New("the spare executor is gone")

// runSpare is the executor as a spare (see above); args are the program's
// path and argv.
func runSpare(log *slog.Logger, args []string, tell func(readyMsg), fail func(error) int) int {
	if len(args) < 2 {
		return fail(errors.New("usage: gantry executor --spare <path> <argv...>"))
	}
	syscall.CloseOnExec(4)
	specR := os.NewFile(4, "spec")
	outR, outW, err := os.Pipe()
	if err != nil {
		return fail(err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		return fail(err)
	}
	goR, goW, err := os.Pipe()
	if err != nil {
		return fail(err)
	}
	cmd := &osexec.Cmd{
		Path: args[0], Args: args[1:], Env: []string{"PATH=" + os.Getenv("PATH")}, Dir: "/",
		Stdout: outW, Stderr: errW, ExtraFiles: []*os.File{goR},
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
	}
	if err := cmd.Start(); err != nil {
		return fail(fmt.Errorf("start %s: %w", args[0], err))
	}
	outW.Close()
	errW.Close()
	goR.Close()
	pid := cmd.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	wait := func() error { return <-exited }
	abandon := func(err error) int {
		killGroup(pid, syscall.SIGKILL)
		<-exited
		if err != nil {
			return fail(err)
		}
		return 0
	}

	// Wait for a task; a program that ends before one comes ends the
	// spare, so the driver no longer offers it.
	lines := make(chan string, 1)
	go func() {
		line, err := bufio.NewReader(specR).ReadString('\n')
		if err != nil {
			line = ""
		}
		lines <- line
	}()
	var line string
	select {
	case line = <-lines:
	case err := <-exited:
		log.Warn("executor: the spare's program ended before a task came", "err", err)
		return 1
	}
	specR.Close()
	if line == "" {
		return abandon(nil) // let go
	}
	var spec executorSpec
	if err := readJSON(strings.TrimSpace(line), &spec); err != nil {
		return abandon(fmt.Errorf("read spec: %w", err))
	}
	log = log.With("alloc", spec.AllocID, "task", spec.Task)
	if f, err := os.OpenFile(filepath.Join(filepath.Dir(spec.HandlePath), spec.Task+logSuffix), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600); err == nil {
		syscall.Dup3(int(f.Fd()), 1, 0)
		syscall.Dup3(int(f.Fd()), 2, 0)
		f.Close()
	}
	switch {
	case spec.Path != args[0]:
		return abandon(fmt.Errorf("the spare runs %s, the task asks for %s", args[0], spec.Path))
	case spec.UID != nil || len(spec.FrameStreams) > 0:
		return abandon(errors.New("a spare runs as the agent's user and counts no frames"))
	}
	outLog, errLog, err := openTaskLogs(&spec)
	if err != nil {
		return abandon(err)
	}
	defer outLog.Close()
	defer errLog.Close()
	if spec.Cgroup != "" {
		if err := joinCgroup(&spec, pid); err != nil {
			removeCgroup(spec.Cgroup)
			return abandon(err)
		}
	}
	b, _ := json.Marshal(spec.Args)
	if _, err := goW.Write(append(b, '\n')); err != nil {
		removeCgroup(spec.Cgroup)
		return abandon(fmt.Errorf("hand the task to the spare's program: %w", err))
	}
	goW.Close()
	return supervise(log, &spec, cmd, wait, outR, errR, outLog, errLog, nil, tell, fail)
}

// joinCgroup makes the task's cgroup and moves the running program into
// it. What the program allocated before stays charged where it was.
func joinCgroup(spec *executorSpec, pid int) error {
	if err := setupCgroup(spec.Cgroup, spec.MemoryMiB, spec.CPUMilli); err != nil {
		return err
	}
	if len(spec.DenyGPUMinors) > 0 {
		fd, err := syscall.Open(spec.Cgroup, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open cgroup %s: %w", spec.Cgroup, err)
		}
		defer syscall.Close(fd)
		if err := denyGPUDevices(fd, spec.DenyGPUMinors); err != nil {
			return fmt.Errorf("hide the GPUs the task was not given: %w", err)
		}
	}
	if err := os.WriteFile(filepath.Join(spec.Cgroup, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
		return fmt.Errorf("move the task into cgroup %s: %w", spec.Cgroup, err)
	}
	return nil
}
