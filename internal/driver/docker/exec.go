package docker

import (
	"context"
	"fmt"
	"io"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/client"

	"github.com/gantryhq/gantry/internal/driver"
)

// Exec implements driver.Execer: it runs req.Cmd in the container with the
// container's environment, copies req.Stdin in (when given) and the output
// out, and returns the command's exit code. Without TTY stdout and stderr
// stay apart; with TTY the terminal merges them into req.Stdout and each
// size sent on req.Resize is applied to it.
func (d *Driver) Exec(ctx context.Context, h *driver.Handle, req *driver.ExecRequest) (int, error) {
	if len(req.Cmd) == 0 {
		return -1, fmt.Errorf("docker: exec needs a command")
	}
	stdout, stderr := req.Stdout, req.Stderr
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	created, err := d.cli.ExecCreate(ctx, h.ID, client.ExecCreateOptions{
		TTY:          req.TTY,
		AttachStdin:  req.Stdin != nil,
		AttachStdout: true,
		AttachStderr: true,
		Cmd:          req.Cmd,
	})
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return -1, fmt.Errorf("docker: container %s: %w", h.ID, driver.ErrTaskNotFound)
		}
		return -1, fmt.Errorf("docker: exec in container %s: %w", h.ID, err)
	}
	att, err := d.cli.ExecAttach(ctx, created.ID, client.ExecAttachOptions{TTY: req.TTY})
	if err != nil {
		return -1, fmt.Errorf("docker: attach to exec in container %s: %w", h.ID, err)
	}
	defer att.Close()
	stop := context.AfterFunc(ctx, att.Close)
	defer stop()

	if req.TTY && req.Resize != nil {
		rctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go func() {
			for {
				select {
				case <-rctx.Done():
					return
				case sz, ok := <-req.Resize:
					if !ok {
						return
					}
					_, _ = d.cli.ExecResize(rctx, created.ID, client.ExecResizeOptions{Height: sz.Height, Width: sz.Width})
				}
			}
		}()
	}
	if req.Stdin != nil {
		go func() {
			_, _ = io.Copy(att.Conn, req.Stdin)
			_ = att.CloseWrite()
		}()
	}
	if req.TTY {
		_, err = io.Copy(stdout, att.Reader)
	} else {
		_, err = stdcopy.StdCopy(stdout, stderr, att.Reader)
	}
	if ctx.Err() != nil {
		return -1, ctx.Err()
	}
	if err != nil {
		return -1, fmt.Errorf("docker: exec output from container %s: %w", h.ID, err)
	}
	// The output ends a moment before the engine records the exit code.
	for {
		in, err := d.cli.ExecInspect(ctx, created.ID, client.ExecInspectOptions{})
		if err != nil {
			return -1, fmt.Errorf("docker: exec in container %s: %w", h.ID, err)
		}
		if !in.Running {
			return in.ExitCode, nil
		}
		select {
		case <-ctx.Done():
			return -1, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
