package agent

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/gantryhq/gantry/internal/agent/tasklife"
	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/driver"
)

// taskRunner starts one task, waits for it, restarts it per the group's
// policy, runs its health checks and records every transition.
type taskRunner struct {
	ar        *allocRunner
	task      *api.Task
	drv       driver.Driver
	recovered []*driver.Handle

	mu       sync.Mutex
	state    api.TaskState
	handle   *driver.Handle
	stopping bool
	checks   []string // health per check: "", healthy, unhealthy
	// endChecks ends the running checks and waits until they have; stop
	// calls it first, so no check probes a task that was told to stop.
	endChecks func()
	restarts  tasklife.RestartTracker

	stopCh chan struct{}
	done   chan struct{}
}

func newTaskRunner(ar *allocRunner, job *api.Job, t *api.Task, policy api.RestartPolicy, prev *api.TaskState, recovered []*driver.Handle) *taskRunner {
	tr := &taskRunner{
		ar: ar, task: t, drv: ar.a.drivers[t.Driver],
		recovered: recovered, restarts: tasklife.NewRestartTracker(policy, job.Type),
		stopCh: make(chan struct{}), done: make(chan struct{}),
	}
	if prev != nil {
		tr.state = *prev
		tr.state.Events = append([]api.TaskEvent(nil), prev.Events...)
	} else {
		tr.state.State = api.TaskPending
	}
	return tr
}

func (tr *taskRunner) snapshot() *api.TaskState {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	st := tr.state
	st.Events = append([]api.TaskEvent(nil), tr.state.Events...)
	return &st
}

// event records a transition and reports the allocation.
func (tr *taskRunner) event(typ, msg string, mutate func(*api.TaskState)) {
	tr.mu.Lock()
	if mutate != nil {
		mutate(&tr.state)
	}
	tr.state.AddEvent(api.TaskEvent{Time: time.Now(), Type: typ, Message: msg})
	tr.mu.Unlock()
	tr.ar.a.log.Info("task "+typ, "alloc", tr.ar.alloc.ShortID(), "task", tr.task.Name, "msg", msg)
	tr.ar.report()
}

func (tr *taskRunner) config() *driver.TaskConfig {
	al := tr.ar.current()
	cfg := &driver.TaskConfig{
		NodeID:      tr.ar.a.nodeID,
		AllocID:     al.ID,
		Namespace:   al.Namespace,
		Job:         al.Job,
		Group:       al.Group,
		Index:       al.Index,
		Task:        tr.task,
		Resources:   al.Resources[tr.task.Name],
		AllocDir:    tr.ar.dir(),
		BindAddress: tr.ar.a.cfg.NodeAddress,
		Resolver:    tr.ar.a.taskResolver(al.Namespace),
	}
	if cfg.Resources == nil {
		cfg.Resources = &api.AllocatedResources{CPU: tr.task.Resources.CPU, Memory: tr.task.Resources.Memory}
	}
	cfg.Env = driver.TaskEnv(cfg, tr.task.Driver == api.DriverExec || tr.task.Driver == api.DriverWasm)
	return cfg
}

func (tr *taskRunner) isStopping() bool {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.stopping
}

// keepFinished adopts the handles of a task that ended before the agent
// started, so its logs stay readable; it runs nothing.
func (tr *taskRunner) keepFinished() {
	tr.mu.Lock()
	if len(tr.recovered) > 0 {
		tr.handle = tr.recovered[0]
	}
	tr.mu.Unlock()
	close(tr.done)
}

// adopt carries out the adoption planner's pick among the tasks found
// for this task at start (tasklife.AdoptTask): the one it keeps is
// returned (running: adopted; exited: its exit is reported and the
// restart policy applied); the others (duplicates, and containers created
// but never started) are removed first.
func (tr *taskRunner) adopt(ctx context.Context) *driver.Handle {
	found := make([]tasklife.Found, len(tr.recovered))
	for i, h := range tr.recovered {
		found[i] = foundOf(h)
	}
	var keep *driver.Handle
	for i, ad := range tasklife.AdoptTask(found) {
		h := tr.recovered[i]
		if ad.Action != tasklife.Destroy {
			keep = h
			continue
		}
		tr.ar.a.log.Warn("removing a task found at start", "alloc", api.ShortID(h.AllocID), "task", h.Task, "id", h.ID, "reason", ad.Reason)
		if h.Running {
			tr.drv.Stop(ctx, h, tr.ar.a.cfg.KillTimeout)
		}
		tr.drv.Destroy(ctx, h)
	}
	tr.recovered = nil
	return keep
}

// foundOf is a driver's handle as the adoption planner sees it.
func foundOf(h *driver.Handle) tasklife.Found {
	return tasklife.Found{AllocID: h.AllocID, Task: h.Task, ID: h.ID, Running: h.Running, Started: h.Running || !h.Started.IsZero()}
}

// run is the task's life: start (or re-attach), wait, restart, until the
// task ends for good, is stopped, or the agent shuts down (ctx).
func (tr *taskRunner) run(ctx context.Context) {
	defer close(tr.done)
	if tr.drv == nil {
		tr.event(api.TaskEventDriverFailure, fmt.Sprintf("driver %q is not available on this node", tr.task.Driver), func(s *api.TaskState) {
			s.State, s.Failed, s.FinishedAt = api.TaskDead, true, time.Now()
		})
		return
	}
	h := tr.adopt(ctx)
	if h != nil {
		tr.mu.Lock()
		tr.handle = h
		tr.mu.Unlock()
		if h.Running {
			tr.event(api.TaskEventRecovered, "re-attached after agent restart", func(s *api.TaskState) { s.State = api.TaskRunning })
		}
	}
	for {
		if h == nil {
			if tr.isStopping() {
				return
			}
			var err error
			h, err = tr.start(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				tr.event(api.TaskEventDriverFailure, err.Error(), nil)
				exit := tasklife.Exit{StartFailed: true, Message: exitMessage(&driver.ExitResult{ExitCode: -1, Err: err})}
				if errors.Is(err, driver.ErrImageNotFound) || errors.Is(err, driver.ErrCannotRun) {
					exit.Permanent, exit.Message = true, err.Error()
				}
				if !tr.restartAfter(ctx, exit) {
					return
				}
				continue
			}
		}
		res := tr.wait(ctx, h)
		if ctx.Err() != nil {
			return // agent shutting down: the task keeps running
		}
		if tr.isStopping() {
			return // stop() records the end
		}
		msg := exitMessage(res)
		tr.event(api.TaskEventTerminated, msg, func(s *api.TaskState) { s.ExitCode = res.ExitCode })
		if !tr.restartAfter(ctx, tasklife.Exit{Successful: res.Successful(), Message: msg}) {
			return
		}
		tr.drv.Destroy(ctx, h)
		h = nil
	}
}

func exitMessage(r *driver.ExitResult) string {
	switch {
	case r.Err != nil:
		return fmt.Sprintf("lost track of the task: %v", r.Err)
	case r.OOMKilled:
		return fmt.Sprintf("killed: out of memory (exit code %d)", r.ExitCode)
	case r.Signal != 0:
		return fmt.Sprintf("exit code %d, signal %d", r.ExitCode, r.Signal)
	case r.Message != "":
		return fmt.Sprintf("exit code %d: %s", r.ExitCode, r.Message)
	}
	return fmt.Sprintf("exit code %d", r.ExitCode)
}

func (tr *taskRunner) start(ctx context.Context) (*driver.Handle, error) {
	cfg := tr.config()
	if err := tr.prepareGPU(cfg); err != nil {
		return nil, err
	}
	h, err := tr.drv.Start(ctx, cfg)
	if err != nil {
		return nil, err
	}
	tr.mu.Lock()
	tr.handle = h
	tr.checks = make([]string, len(tr.task.Checks))
	tr.mu.Unlock()
	tr.event(api.TaskEventStarted, "", func(s *api.TaskState) {
		s.State, s.StartedAt, s.FinishedAt, s.Failed, s.Health = api.TaskRunning, time.Now(), time.Time{}, false, ""
	})
	return h, nil
}

// wait blocks until the task exits, running its health checks meanwhile.
func (tr *taskRunner) wait(ctx context.Context, h *driver.Handle) *driver.ExitResult {
	tr.mu.Lock()
	if len(tr.checks) != len(tr.task.Checks) {
		tr.checks = make([]string, len(tr.task.Checks))
	}
	tr.mu.Unlock()
	if len(tr.task.Checks) == 0 {
		tr.setHealth(api.HealthHealthy)
	} else {
		// The checks end with this run of the task. A task without
		// checks holds no context of its own while it runs.
		cctx, cancel := context.WithCancel(ctx)
		var checks sync.WaitGroup
		end := func() { cancel(); checks.Wait() }
		defer end()
		tr.mu.Lock()
		stopping := tr.stopping
		tr.endChecks = end
		if !stopping {
			for i, c := range tr.task.Checks {
				checks.Add(1)
				go func() {
					defer checks.Done()
					tr.runCheck(cctx, i, c, h)
				}()
			}
		}
		tr.mu.Unlock()
	}
	res, err := tr.drv.Wait(ctx, h)
	if err != nil {
		if errors.Is(err, driver.ErrTaskNotFound) {
			return &driver.ExitResult{ExitCode: -1, Err: err}
		}
		return &driver.ExitResult{ExitCode: -1, Err: err}
	}
	return res
}

// restartAfter asks the restart tracker what follows an exit: it waits
// out the delay and returns true to restart, or records the end and
// returns false.
func (tr *taskRunner) restartAfter(ctx context.Context, e tasklife.Exit) bool {
	now := time.Now()
	tr.mu.Lock()
	var v tasklife.Verdict
	tr.restarts, v = tr.restarts.Next(e, now)
	tr.mu.Unlock()
	switch v.Outcome {
	case tasklife.Finish, tasklife.Fail, tasklife.GiveUp:
		failed := v.Outcome != tasklife.Finish
		tr.event(api.TaskEventNotRestarting, v.Reason, func(s *api.TaskState) {
			s.State, s.Failed, s.FinishedAt = api.TaskDead, failed, time.Now()
		})
		return false
	}
	tr.event(api.TaskEventRestarting, fmt.Sprintf("restarting in %s", v.Delay.Round(time.Millisecond)), func(s *api.TaskState) {
		s.State, s.Restarts, s.Health = api.TaskPending, s.Restarts+1, ""
	})
	select {
	case <-time.After(v.Delay):
		return !tr.isStopping()
	case <-tr.stopCh:
		return false
	case <-ctx.Done():
		return false
	}
}

// stop kills the task (SIGTERM, then SIGKILL after the kill timeout) and
// waits for its runner to finish.
func (tr *taskRunner) stop(ctx context.Context) {
	tr.mu.Lock()
	if tr.stopping {
		tr.mu.Unlock()
		<-tr.done
		return
	}
	tr.stopping = true
	close(tr.stopCh)
	endChecks := tr.endChecks
	h := tr.handle
	wasDead := tr.state.State == api.TaskDead
	tr.mu.Unlock()
	if endChecks != nil {
		endChecks() // outside tr.mu: a check reporting its verdict takes it
	}
	if !wasDead {
		msg := fmt.Sprintf("sent SIGTERM, SIGKILL after %s", tr.ar.a.cfg.KillTimeout)
		if sd, ok := tr.drv.(driver.StopDescriber); ok && h != nil {
			msg = sd.DescribeStop(h, tr.ar.a.cfg.KillTimeout)
		}
		tr.event(api.TaskEventKilling, msg, nil)
	}
	if h != nil && tr.drv != nil {
		if err := tr.drv.Stop(ctx, h, tr.ar.a.cfg.KillTimeout); err != nil && !errors.Is(err, driver.ErrTaskNotFound) {
			tr.ar.a.log.Warn("stop task", "alloc", tr.ar.alloc.ShortID(), "task", tr.task.Name, "err", err)
		}
	}
	<-tr.done
	if !wasDead {
		tr.event(api.TaskEventKilled, "task stopped", func(s *api.TaskState) {
			// A task stopped after failing its checks stays unhealthy:
			// that is why it was replaced.
			if s.Health != api.HealthUnhealthy {
				s.Health = ""
			}
			s.State, s.FinishedAt = api.TaskDead, time.Now()
		})
	}
}

// destroy removes the task's container or process leftovers.
func (tr *taskRunner) destroy(ctx context.Context) {
	tr.mu.Lock()
	h := tr.handle
	tr.handle = nil
	tr.mu.Unlock()
	if h != nil && tr.drv != nil {
		if err := tr.drv.Destroy(ctx, h); err != nil {
			tr.ar.a.log.Warn("destroy task", "alloc", tr.ar.alloc.ShortID(), "task", tr.task.Name, "err", err)
		}
	}
}

// currentHandle is the task's handle, for logs and exec.
func (tr *taskRunner) currentHandle() *driver.Handle {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.handle
}

func (tr *taskRunner) setHealth(h string) {
	tr.mu.Lock()
	changed := tr.state.Health != h && tr.state.State == api.TaskRunning
	if changed {
		tr.state.Health = h
	}
	tr.mu.Unlock()
	if changed {
		typ := api.TaskEventHealthy
		if h == api.HealthUnhealthy {
			typ = api.TaskEventUnhealthy
		}
		tr.event(typ, "", nil)
	}
}

// checkResult records one check's verdict and derives the task's health:
// healthy when every check passes, unhealthy when any fails.
func (tr *taskRunner) checkResult(i int, verdict string) {
	tr.mu.Lock()
	if i >= len(tr.checks) || tr.stopping {
		tr.mu.Unlock()
		return
	}
	tr.checks[i] = verdict
	health := api.HealthHealthy
	for _, v := range tr.checks {
		switch v {
		case api.HealthUnhealthy:
			health = api.HealthUnhealthy
		case "":
			if health == api.HealthHealthy {
				health = ""
			}
		}
	}
	tr.mu.Unlock()
	if health != "" {
		tr.setHealth(health)
	}
}

func (tr *taskRunner) logDir() string { return filepath.Join(tr.ar.dir(), "logs") }
