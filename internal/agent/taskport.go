package agent

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/driver"
)

// taskPort is everything a task runner does outside itself: the driver's
// start, wait, stop and destroy for its task, a health probe, and the
// report of its allocation. The runner's decisions are tasklife.Step's;
// the port carries out the ones that touch the world. The agent's port
// is allocTaskPort; tests give the runner their own.
type taskPort interface {
	start(ctx context.Context) (*driver.Handle, error)
	wait(ctx context.Context, h *driver.Handle) (*driver.ExitResult, error)
	stop(ctx context.Context, h *driver.Handle, timeout time.Duration) error
	destroy(ctx context.Context, h *driver.Handle) error
	probe(ctx context.Context, c api.Check, h *driver.Handle) error
	report()
}

// clock is a task runner's time (its restart delays and its health
// checks' grace periods and intervals) and the agent's disconnect check's:
// when now is, and a channel that fires after a delay (for a runner with
// its own goroutine) or a function called after a delay, which returns a
// stop for its timer (for the agent's task loop). The agent's is the wall
// clock; tests give a fake.
type clock struct {
	now       func() time.Time
	after     func(time.Duration) <-chan time.Time
	afterFunc func(time.Duration, func()) func() bool
}

var wallClock = clock{now: time.Now, after: time.After, afterFunc: afterFunc}

// allocTaskPort is a task's port onto the agent: its allocation (for the
// task's configuration, GPU and check addresses), its driver and the
// allocation's report.
type allocTaskPort struct {
	ar   *allocRunner
	task *api.Task
	drv  driver.Driver
}

func (p *allocTaskPort) start(ctx context.Context) (*driver.Handle, error) {
	cfg := p.config()
	if err := p.prepareGPU(cfg); err != nil {
		return nil, err
	}
	return p.drv.Start(ctx, cfg)
}

func (p *allocTaskPort) wait(ctx context.Context, h *driver.Handle) (*driver.ExitResult, error) {
	return p.drv.Wait(ctx, h)
}

func (p *allocTaskPort) stop(ctx context.Context, h *driver.Handle, timeout time.Duration) error {
	return p.drv.Stop(ctx, h, timeout)
}

func (p *allocTaskPort) destroy(ctx context.Context, h *driver.Handle) error {
	return p.drv.Destroy(ctx, h)
}

func (p *allocTaskPort) report() { p.ar.report() }

func (p *allocTaskPort) config() *driver.TaskConfig {
	al := p.ar.current()
	cfg := &driver.TaskConfig{
		NodeID:      p.ar.a.nodeID,
		AllocID:     al.ID,
		Namespace:   al.Namespace,
		Job:         al.Job,
		Group:       al.Group,
		Index:       al.Index,
		Task:        p.task,
		Resources:   al.Resources[p.task.Name],
		AllocDir:    p.ar.dir(),
		BindAddress: p.ar.a.cfg.NodeAddress,
		Resolver:    p.ar.a.taskResolver(al.Namespace),
	}
	if cfg.Resources == nil {
		cfg.Resources = &api.AllocatedResources{CPU: p.task.Resources.CPU, Memory: p.task.Resources.Memory}
	}
	cfg.Env = driver.TaskEnv(cfg, p.task.Driver == api.DriverExec || p.task.Driver == api.DriverWasm)
	return cfg
}

// checkAddr is where a check dials: the node address and the host port
// allocated for the named port.
func (p *allocTaskPort) checkAddr(port string) (string, error) {
	al := p.ar.current()
	r := al.Resources[p.task.Name]
	if r == nil {
		return "", fmt.Errorf("task has no allocated resources")
	}
	pt, ok := r.Port(port)
	if !ok {
		return "", fmt.Errorf("check port %q is not a port of the task", port)
	}
	host := p.ar.a.cfg.NodeAddress
	if host == "" || host == "0.0.0.0" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, strconv.Itoa(pt.Host)), nil
}
