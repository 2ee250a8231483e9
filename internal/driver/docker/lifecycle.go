package docker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/gantryhq/gantry/internal/driver"
)

// ImageError is returned by Start when the image is absent and cannot be
// pulled. It matches driver.ErrImageNotFound with errors.Is.
type ImageError struct {
	Image string
	Err   error // why the pull failed
}

func (e *ImageError) Error() string {
	hint := "build it on this node or load it with docker load"
	if strings.HasPrefix(e.Image, "gantry-demo") {
		hint = "build or load it (scripts/build-demo-image.sh builds gantry-demo:latest)"
	}
	return fmt.Sprintf("image %q is not on this node and cannot be pulled (%v): %s", e.Image, e.Err, hint)
}

// Is makes errors.Is(err, driver.ErrImageNotFound) true.
func (e *ImageError) Is(target error) bool { return target == driver.ErrImageNotFound }

func (e *ImageError) Unwrap() error { return e.Err }

// PortInUseError is returned by Start when a host port the scheduler
// assigned is already taken on this node.
type PortInUseError struct {
	Name    string // the task's name for the port
	Host    int
	Address string // bind address, empty for all
	Err     error  // the engine's words
}

func (e *PortInUseError) Error() string {
	addr := e.Address
	if addr == "" {
		addr = "0.0.0.0"
	}
	return fmt.Sprintf("host port %d (port %q) on %s is already in use on this node: %v", e.Host, e.Name, addr, e.Err)
}

func (e *PortInUseError) Unwrap() error { return e.Err }

// Start implements driver.Driver: it makes sure the image is here (trying
// a pull bounded by Config.PullTimeout), creates the container described
// by BuildContainer and starts it. A container of the same name left by an
// earlier attempt is adopted when it belongs to the same allocation and
// runs, and replaced otherwise.
func (d *Driver) Start(ctx context.Context, cfg *driver.TaskConfig) (*driver.Handle, error) {
	spec, err := BuildContainer(cfg)
	if err != nil {
		return nil, err
	}
	if err := d.ensureImage(ctx, spec.Config.Image); err != nil {
		return nil, err
	}
	id, adopted, err := d.create(ctx, spec, cfg)
	if err != nil {
		return nil, err
	}
	if !adopted {
		if _, err := d.cli.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
			startErr := d.explainStartError(cfg, err)
			// Leave nothing half-made behind; the agent will try again.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			_, _ = d.cli.ContainerRemove(rctx, id, client.ContainerRemoveOptions{Force: true})
			return nil, startErr
		}
	}
	h, err := d.handle(ctx, id)
	if err != nil {
		return nil, err
	}
	return h, nil
}

func (d *Driver) ensureImage(ctx context.Context, image string) error {
	_, err := d.cli.ImageInspect(ctx, image)
	if err == nil {
		return nil
	}
	if !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("docker: inspect image %q: %w", image, err)
	}
	pctx, cancel := context.WithTimeout(ctx, d.cfg.PullTimeout)
	defer cancel()
	perr := d.pull(pctx, image)
	if perr == nil {
		return nil
	}
	if errors.Is(perr, context.DeadlineExceeded) {
		perr = fmt.Errorf("pull gave no answer within %s", d.cfg.PullTimeout)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return &ImageError{Image: image, Err: perr}
}

func (d *Driver) pull(ctx context.Context, image string) error {
	resp, err := d.cli.ImagePull(ctx, image, client.ImagePullOptions{})
	if err != nil {
		return err
	}
	defer resp.Close()
	if err := resp.Wait(ctx); err != nil {
		return err
	}
	if _, err := d.cli.ImageInspect(ctx, image); err != nil {
		return fmt.Errorf("pull ended but the image is not there: %w", err)
	}
	return nil
}

// create makes the container, or finds the one an earlier attempt made.
func (d *Driver) create(ctx context.Context, spec *ContainerSpec, cfg *driver.TaskConfig) (id string, adopted bool, err error) {
	opts := client.ContainerCreateOptions{Name: spec.Name, Config: spec.Config, HostConfig: spec.HostConfig}
	res, err := d.cli.ContainerCreate(ctx, opts)
	if err == nil {
		return res.ID, false, nil
	}
	if !cerrdefs.IsConflict(err) {
		return "", false, fmt.Errorf("docker: create container %s: %w", spec.Name, err)
	}
	old, ierr := d.cli.ContainerInspect(ctx, spec.Name, client.ContainerInspectOptions{})
	if ierr != nil {
		return "", false, fmt.Errorf("docker: create container %s: %w (and inspecting the existing one: %v)", spec.Name, err, ierr)
	}
	c := old.Container
	if c.Config != nil && c.Config.Labels[driver.LabelAlloc] == cfg.AllocID &&
		c.Config.Labels[driver.LabelNode] == cfg.NodeID && c.State != nil && c.State.Running {
		return c.ID, true, nil
	}
	if _, rerr := d.cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true}); rerr != nil && !cerrdefs.IsNotFound(rerr) {
		return "", false, fmt.Errorf("docker: container %s exists and cannot be removed: %w", spec.Name, rerr)
	}
	res, err = d.cli.ContainerCreate(ctx, opts)
	if err != nil {
		return "", false, fmt.Errorf("docker: create container %s: %w", spec.Name, err)
	}
	return res.ID, false, nil
}

// explainStartError names the host port when the engine could not bind
// one.
func (d *Driver) explainStartError(cfg *driver.TaskConfig, err error) error {
	msg := err.Error()
	if cfg.Resources != nil && (strings.Contains(msg, "port is already allocated") || strings.Contains(msg, "address already in use")) {
		for _, p := range cfg.Resources.Ports {
			if strings.Contains(msg, ":"+strconv.Itoa(p.Host)+" ") || strings.Contains(msg, ":"+strconv.Itoa(p.Host)+":") ||
				strings.HasSuffix(msg, ":"+strconv.Itoa(p.Host)) {
				return &PortInUseError{Name: p.Name, Host: p.Host, Address: cfg.BindAddress, Err: err}
			}
		}
		return fmt.Errorf("docker: start %s: a host port is already in use on this node: %w", ContainerName(cfg), err)
	}
	return fmt.Errorf("docker: start %s: %w", ContainerName(cfg), err)
}

// handle describes a container as the driver contract wants it.
func (d *Driver) handle(ctx context.Context, id string) (*driver.Handle, error) {
	res, err := d.cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return nil, fmt.Errorf("docker: container %s: %w", id, driver.ErrTaskNotFound)
		}
		return nil, fmt.Errorf("docker: inspect container %s: %w", id, err)
	}
	c := res.Container
	h := &driver.Handle{Driver: Name, ID: c.ID}
	if c.Config != nil {
		h.AllocID = c.Config.Labels[driver.LabelAlloc]
		h.Task = c.Config.Labels[driver.LabelTask]
	}
	if c.State != nil {
		h.Running = c.State.Running
		h.Pid = c.State.Pid
		if t, err := time.Parse(time.RFC3339Nano, c.State.StartedAt); err == nil && t.Year() > 1 {
			h.Started = t
		}
	}
	h.Internal = strings.TrimPrefix(c.Name, "/")
	return h, nil
}

// Wait implements driver.Driver. It returns the container's exit code and
// whether the kernel's OOM killer ended it.
func (d *Driver) Wait(ctx context.Context, h *driver.Handle) (*driver.ExitResult, error) {
	w := d.cli.ContainerWait(ctx, h.ID, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
	var code int64
	select {
	case r := <-w.Result:
		code = r.StatusCode
	case err := <-w.Error:
		if cerrdefs.IsNotFound(err) {
			return nil, fmt.Errorf("docker: container %s: %w", h.ID, driver.ErrTaskNotFound)
		}
		return nil, fmt.Errorf("docker: wait for container %s: %w", h.ID, err)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	res := &driver.ExitResult{ExitCode: int(code)}
	in, err := d.cli.ContainerInspect(ctx, h.ID, client.ContainerInspectOptions{})
	switch {
	case err == nil && in.Container.State != nil:
		res.ExitCode = in.Container.State.ExitCode
		res.OOMKilled = in.Container.State.OOMKilled
	case err != nil && !cerrdefs.IsNotFound(err):
		return nil, fmt.Errorf("docker: inspect container %s after exit: %w", h.ID, err)
	}
	return res, nil
}

// Stop implements driver.Driver: SIGTERM (or the image's STOPSIGNAL), and
// SIGKILL once grace has passed. The engine counts grace in whole seconds,
// so it is rounded up. Stopping a container that has exited is not an
// error; one that is gone gives driver.ErrTaskNotFound.
func (d *Driver) Stop(ctx context.Context, h *driver.Handle, grace time.Duration) error {
	secs := int((grace + time.Second - 1) / time.Second)
	if grace < 0 {
		secs = 0
	}
	if _, err := d.cli.ContainerStop(ctx, h.ID, client.ContainerStopOptions{Timeout: &secs}); err != nil {
		if cerrdefs.IsNotFound(err) {
			return fmt.Errorf("docker: container %s: %w", h.ID, driver.ErrTaskNotFound)
		}
		return fmt.Errorf("docker: stop container %s: %w", h.ID, err)
	}
	return nil
}

// Destroy implements driver.Driver: it removes the container by force,
// with its anonymous volumes. A container already gone is not an error.
func (d *Driver) Destroy(ctx context.Context, h *driver.Handle) error {
	_, err := d.cli.ContainerRemove(ctx, h.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
	switch {
	case err == nil, cerrdefs.IsNotFound(err):
		return nil
	case cerrdefs.IsConflict(err) && strings.Contains(err.Error(), "already in progress"):
		return nil
	}
	return fmt.Errorf("docker: remove container %s: %w", h.ID, err)
}

// Recover implements driver.Driver: every container labelled as Gantry's
// for nodeID, running or exited.
func (d *Driver) Recover(ctx context.Context, nodeID string) ([]*driver.Handle, error) {
	f := client.Filters{}.
		Add("label", driver.LabelManaged+"=true").
		Add("label", driver.LabelNode+"="+nodeID)
	res, err := d.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return nil, fmt.Errorf("docker: list containers of node %s: %w", nodeID, err)
	}
	var out []*driver.Handle
	for _, c := range res.Items {
		h, err := d.handle(ctx, c.ID)
		if errors.Is(err, driver.ErrTaskNotFound) {
			continue // removed between list and inspect
		}
		if err != nil {
			return nil, err
		}
		out = append(out, h)
	}
	return out, nil
}
