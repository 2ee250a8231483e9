package exec

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	osexec "os/exec"
	"syscall"

	"github.com/creack/pty"

	"github.com/gantryhq/gantry/internal/driver"
)

// Exec implements driver.Execer: it runs req.Cmd in the task's directory
// with the task's environment and user, and returns its exit code (128 +
// the signal when a signal ended it). With TTY the command gets a
// pseudo-terminal that merges its output into req.Stdout and follows the
// sizes sent on req.Resize. The command runs in the agent's cgroup, not
// the task's.
func (d *Driver) Exec(ctx context.Context, h *driver.Handle, req *driver.ExecRequest) (int, error) {
	if len(req.Cmd) == 0 {
		return -1, errors.New("exec driver: exec needs a command")
	}
	st, err := stateOf(h)
	if err != nil {
		return -1, err
	}
	p := statePaths(st)
	var spec executorSpec
	if err := readJSON(p.spec, &spec); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return -1, fmt.Errorf("exec driver: task %s: %w", h.ID, driver.ErrTaskNotFound)
		}
		return -1, fmt.Errorf("exec driver: task %s: %w", h.ID, err)
	}
	path, err := lookPath(req.Cmd[0], envGet(spec.Env, "PATH"), spec.Dir)
	if err != nil {
		return -1, fmt.Errorf("exec driver: %w", err)
	}
	cmd := osexec.CommandContext(ctx, path, req.Cmd[1:]...)
	cmd.Args[0] = req.Cmd[0]
	cmd.Env = spec.Env
	cmd.Dir = spec.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{}
	if spec.UID != nil {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: *spec.UID, Gid: *spec.GID}
	}
	stdout, stderr := req.Stdout, req.Stderr
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}

	if !req.TTY {
		cmd.SysProcAttr.Setpgid = true
		cmd.Stdin, cmd.Stdout, cmd.Stderr = req.Stdin, stdout, stderr
		return exitCode(ctx, cmd.Run())
	}

	// pty.Start makes the command a session leader with the terminal as
	// its controlling one.
	ptmx, err := pty.Start(cmd)
	if err != nil {
		return -1, fmt.Errorf("exec driver: start %s on a terminal: %w", path, err)
	}
	defer ptmx.Close()
	if req.Resize != nil {
		rctx, cancel := context.WithCancel(ctx)
		resized := make(chan struct{})
		// Done with sizes before the terminal closes (deferred earlier).
		defer func() { cancel(); <-resized }()
		go func() {
			defer close(resized)
			for {
				select {
				case <-rctx.Done():
					return
				case sz, ok := <-req.Resize:
					if !ok {
						return
					}
					_ = pty.Setsize(ptmx, &pty.Winsize{Rows: uint16(sz.Height), Cols: uint16(sz.Width)})
				}
			}
		}()
	}
	if req.Stdin != nil {
		go io.Copy(ptmx, req.Stdin)
	}
	copied := make(chan struct{})
	go func() {
		// Reading the terminal fails with EIO once the command and its
		// children have closed it: that is its end of output.
		io.Copy(stdout, ptmx)
		close(copied)
	}()
	werr := cmd.Wait()
	<-copied
	return exitCode(ctx, werr)
}

func exitCode(ctx context.Context, err error) (int, error) {
	if err == nil {
		return 0, nil
	}
	if ctx.Err() != nil {
		return -1, ctx.Err()
	}
	var ee *osexec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return ee.ExitCode(), nil
	}
	return -1, fmt.Errorf("exec driver: %w", err)
}
