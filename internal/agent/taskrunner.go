package agent

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/gantryhq/gantry/internal/agent/tasklife"
	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/driver"
)

// taskRunner is the shell around one task's lifecycle (tasklife.Step):
// one loop feeds Step what happened (the start's result, the driver's
// Wait, timers, stop requests, the checks' verdicts) and carries out the
// effects it returns through its port. It decides nothing itself, and
// reaches the agent only through the port.
//
// The loop is the runner's own goroutine (run), or, for a task whose
// driver completes at once on an agent with Config.EventTasks, the
// agent's shared task loop (taskloop.go, loop set): then the runner holds
// no goroutine, its driver tells of the exit by calling back instead of a
// blocking wait, and its restart delay is a timer that posts an event.
type taskRunner struct {
	task        *api.Task
	drv         driver.Driver // nil when the node lacks the task's driver; read by logs, exec and the sampler
	port        taskPort
	clock       clock
	log         *slog.Logger
	killTimeout time.Duration
	recovered   []*driver.Handle

	mu     sync.Mutex
	state  api.TaskState
	handle *driver.Handle
	life   tasklife.State

	msgs  chan taskMsg         // events for the loop
	stops chan context.Context // stop requests, with the context the stop runs under
	done  chan struct{}        // closed when the loop has ended
	runWG sync.WaitGroup       // the loop's background calls (start, wait, stop)
	wake  <-chan time.Time     // the loop's: the restart delay's end
	end   func()               // the loop's: ends the running checks and waits for them
	sctx  context.Context      // the loop's: the context stops and destroys run under

	// On the agent's task loop (nil: the runner's own goroutine), read
	// and written by the loop's goroutine only.
	loop       *taskLoop
	ctx        context.Context // the agent's, that starts and waits run under
	begun      bool            // the first step was taken
	over       bool            // Step said the task's life is over; done is closed
	stopCtx    context.Context // a stop that came before the first step
	cancelWake func() bool     // stops the restart delay's timer
}

// taskMsg is an event for the loop, with the handle a start returned.
type taskMsg struct {
	ev tasklife.Event
	h  *driver.Handle
}

func newTaskRunner(ar *allocRunner, job *api.Job, t *api.Task, policy api.RestartPolicy, prev *api.TaskState, recovered []*driver.Handle) *taskRunner {
	drv := ar.a.drivers[t.Driver]
	port := &allocTaskPort{ar: ar, task: t, drv: drv}
	log := ar.a.log.With("alloc", ar.alloc.ShortID(), "task", t.Name)
	var tp taskPort = port
	var loop *taskLoop
	if n, ok := drv.(driver.ExitNotifier); ok && ar.a.loop != nil {
		tp, loop = &notifyTaskPort{allocTaskPort: port, n: n}, ar.a.loop
	}
	return newTaskShell(t, drv, tp, ar.a.clock, log, ar.a.cfg.KillTimeout,
		tasklife.NewRestartTracker(policy, job.Type), prev, recovered, loop)
}

// newTaskShell is a task runner over any port and clock: on loop when
// one is given (port must then be a notifyPort), else with a goroutine
// of its own once run.
func newTaskShell(t *api.Task, drv driver.Driver, port taskPort, clk clock, log *slog.Logger, killTimeout time.Duration,
	restarts tasklife.RestartTracker, prev *api.TaskState, recovered []*driver.Handle, loop *taskLoop) *taskRunner {
	tr := &taskRunner{
		task: t, drv: drv, port: port, clock: clk, log: log, killTimeout: killTimeout,
		recovered: recovered,
		life:      tasklife.NewState(prev, len(t.Checks), killTimeout, restarts),
		done:      make(chan struct{}),
		loop:      loop,
	}
	if loop == nil {
		tr.msgs, tr.stops = make(chan taskMsg), make(chan context.Context)
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
		tr.log.Warn("removing a task found at start", "id", h.ID, "reason", ad.Reason)
		if h.Running {
			tr.port.stop(ctx, h, tr.killTimeout)
		}
		tr.port.destroy(ctx, h)
	}
	tr.recovered = nil
	return keep
}

// foundOf is a driver's handle as the adoption planner sees it.
func foundOf(h *driver.Handle) tasklife.Found {
	return tasklife.Found{AllocID: h.AllocID, Task: h.Task, ID: h.ID, Running: h.Running, Started: h.Running || !h.Started.IsZero()}
}

// run is the task's life: adopt what was found or start, then feed
// every event to Step until it says the task is over for good, or the
// agent shuts down (ctx; the task keeps running then).
func (tr *taskRunner) run(ctx context.Context) {
	defer close(tr.done)
	defer tr.runWG.Wait()
	defer tr.endChecks()
	tr.sctx = ctx
	if tr.apply(ctx, tr.first(ctx)) {
		return
	}
	for {
		var m taskMsg
		select {
		case <-ctx.Done():
			return
		case m = <-tr.msgs:
		case sctx := <-tr.stops:
			tr.sctx = sctx
			m.ev = tasklife.Event{Kind: tasklife.StopRequested, Message: tr.describeStop()}
		case <-tr.wake:
			tr.wake = nil
			m.ev = tasklife.Event{Kind: tasklife.DelayElapsed}
		}
		if tr.apply(ctx, m) {
			return
		}
	}
}

// first is the event the task's life begins with: adopt what was found
// at start, else start the task (or find its driver missing).
func (tr *taskRunner) first(ctx context.Context) taskMsg {
	first := tasklife.Event{Kind: tasklife.Begin}
	if tr.drv == nil {
		first = tasklife.Event{Kind: tasklife.DriverMissing, Driver: tr.task.Driver}
	} else if h := tr.adopt(ctx); h != nil {
		tr.mu.Lock()
		tr.handle = h
		tr.mu.Unlock()
		first.Kind = tasklife.RecoveredExited
		if h.Running {
			first.Kind = tasklife.RecoveredRunning
		}
	}
	return taskMsg{ev: first}
}

// describeStop is what the driver's stop does, when it says so.
func (tr *taskRunner) describeStop() string {
	sd, ok := tr.drv.(driver.StopDescriber)
	h := tr.currentHandle()
	if !ok || h == nil {
		return ""
	}
	return sd.DescribeStop(h, tr.killTimeout)
}

// apply steps the lifecycle with one event and carries out its effects;
// it returns true once the task's life is over.
func (tr *taskRunner) apply(ctx context.Context, m taskMsg) bool {
	now := tr.clock.now()
	tr.mu.Lock()
	if m.h != nil {
		tr.handle = m.h
	}
	next, effects := tasklife.Step(tr.life, m.ev, now)
	tr.life = next
	next.Status.Apply(&tr.state)
	for _, e := range effects {
		if e.Op == tasklife.Record {
			tr.state.AddEvent(api.TaskEvent{Time: e.Time, Type: e.Type, Message: e.Message})
		}
	}
	h := tr.handle
	tr.mu.Unlock()
	for _, e := range effects {
		switch e.Op {
		case tasklife.StartTask:
			if tr.loop != nil {
				tr.start(ctx) // returns at once; its result is posted
			} else {
				tr.background(func() { tr.start(ctx) })
			}
		case tasklife.WaitTask:
			if np, ok := tr.port.(notifyPort); ok && tr.loop != nil {
				np.notifyExit(h, func(res *driver.ExitResult, err error) { tr.send(ctx, exitMsg(res, err)) })
			} else {
				tr.background(func() { tr.wait(ctx, h) })
			}
		case tasklife.StartChecks:
			tr.startChecks(ctx, h)
		case tasklife.EndChecks:
			tr.endChecks()
		case tasklife.Wake:
			if tr.loop != nil {
				tr.cancelWake = tr.clock.afterFunc(e.Delay, func() { tr.send(ctx, delayElapsed) })
			} else {
				tr.wake = tr.clock.after(e.Delay)
			}
		case tasklife.StopTask:
			sctx := tr.sctx
			stop := func() {
				if err := tr.port.stop(sctx, h, e.Timeout); err != nil && !errors.Is(err, driver.ErrTaskNotFound) {
					tr.log.Warn("stop task", "err", err)
				}
			}
			if tr.loop != nil {
				stop() // returns at once; the exit is called back
			} else {
				tr.background(stop)
			}
		case tasklife.DestroyHandle:
			tr.destroy(tr.sctx)
		case tasklife.Record:
			tr.log.Info("task "+e.Type, "msg", e.Message)
		case tasklife.Report:
			tr.port.report()
		}
	}
	return next.Done
}

// background runs one of the loop's driver calls beside it.
func (tr *taskRunner) background(f func()) {
	tr.runWG.Add(1)
	go func() {
		defer tr.runWG.Done()
		f()
	}()
}

// send hands the loop an event, unless ctx ended or the loop has.
func (tr *taskRunner) send(ctx context.Context, m taskMsg) {
	if tr.loop != nil {
		tr.loop.post(loopItem{tr: tr, m: m})
		return
	}
	select {
	case tr.msgs <- m:
	case <-ctx.Done():
	case <-tr.done:
	}
}

func (tr *taskRunner) start(ctx context.Context) {
	h, err := tr.port.start(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return // the agent shuts down
		}
		permanent := errors.Is(err, driver.ErrImageNotFound) || errors.Is(err, driver.ErrCannotRun)
		tr.send(ctx, taskMsg{ev: tasklife.Event{Kind: tasklife.StartFailed, Err: err.Error(), Permanent: permanent}})
		return
	}
	tr.send(ctx, taskMsg{ev: tasklife.Event{Kind: tasklife.Started}, h: h})
}

func (tr *taskRunner) wait(ctx context.Context, h *driver.Handle) {
	res, err := tr.port.wait(ctx, h)
	if ctx.Err() != nil {
		return // the agent shuts down: the task keeps running
	}
	tr.send(ctx, exitMsg(res, err))
}

// exitResult is a driver's exit as the lifecycle sees it.
func exitResult(r *driver.ExitResult) tasklife.ExitResult {
	out := tasklife.ExitResult{ExitCode: r.ExitCode, Signal: r.Signal, OOMKilled: r.OOMKilled, Message: r.Message}
	if r.Err != nil {
		out.Err = r.Err.Error()
	}
	return out
}

// startChecks runs the task's health checks until endChecks; their
// verdicts come to the loop as events.
func (tr *taskRunner) startChecks(ctx context.Context, h *driver.Handle) {
	cctx, cancel := context.WithCancel(ctx)
	var checks sync.WaitGroup
	for i, c := range tr.task.Checks {
		checks.Add(1)
		go func() {
			defer checks.Done()
			tr.runCheck(cctx, i, c, h)
		}()
	}
	tr.end = func() { cancel(); checks.Wait() }
}

// endChecks ends the running checks and returns once none runs: no check
// probes a task that exited or was told to stop.
func (tr *taskRunner) endChecks() {
	if tr.end != nil {
		tr.end()
		tr.end = nil
	}
}

// stop kills the task (SIGTERM, then SIGKILL after the kill timeout) and
// waits for its runner to finish.
func (tr *taskRunner) stop(ctx context.Context) {
	if tr.loop != nil {
		tr.loop.post(loopItem{tr: tr, kind: loopStop, ctx: ctx})
		select {
		case <-tr.done:
		case <-tr.loop.shut: // the agent shuts down: the task keeps running
		}
		return
	}
	select {
	case tr.stops <- ctx:
	case <-tr.done:
	}
	<-tr.done
}

// destroy removes the task's container or process leftovers.
func (tr *taskRunner) destroy(ctx context.Context) {
	tr.mu.Lock()
	h := tr.handle
	tr.handle = nil
	tr.mu.Unlock()
	if h != nil && tr.drv != nil {
		if err := tr.port.destroy(ctx, h); err != nil {
			tr.log.Warn("destroy task", "err", err)
		}
	}
}

// currentHandle is the task's handle, for logs and exec.
func (tr *taskRunner) currentHandle() *driver.Handle {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.handle
}
