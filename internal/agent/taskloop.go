package agent

import (
	"context"
	"sync"
	"time"

	"github.com/gantryhq/gantry/internal/agent/tasklife"
	"github.com/gantryhq/gantry/internal/driver"
)

// taskLoop steps the tasks whose driver completes at once (a
// driver.ExitNotifier, on an agent with Config.EventTasks) with no
// goroutine per task. Every event of those tasks is posted here (a
// start's result, an exit the driver calls back with, the end of a
// restart delay from the clock's timer, a stop request, a check's
// verdict), and one goroutine, started only while the queue holds any,
// hands them in order to their runner's apply: the same tasklife.Step
// and the same effects as the goroutine-per-task runner, carried out on
// the loop (the driver's calls return at once) instead of beside it.
//
// One loop serves one agent. Its runners are stepped one event at a
// time, so a runner's state is touched by one goroutine at a time as it
// is in its own loop.
type taskLoop struct {
	mu       sync.Mutex
	queue    []loopItem
	draining bool // a goroutine drains the queue
	closed   bool
	shut     chan struct{} // closed when the agent shuts down: nothing is stepped any more
	// spawn starts the goroutine that drains the queue; nil leaves the
	// draining to the caller of drain (tests).
	spawn func(func())
}

// loopKind says what a loop item asks of its runner.
type loopKind uint8

const (
	loopEvent loopKind = iota // step m
	loopBegin                 // begin the task's life (run's first step)
	loopStop                  // the allocation stops: StopRequested, with ctx for the stop
)

type loopItem struct {
	tr   *taskRunner
	kind loopKind
	m    taskMsg
	ctx  context.Context // loopBegin: the agent's; loopStop: the stop's
}

func newTaskLoop() *taskLoop {
	return &taskLoop{shut: make(chan struct{}), spawn: func(f func()) { go f() }}
}

// post queues an item, and starts the drainer if none runs. Once the
// loop is closed it drops the item. It never blocks and never steps
// anything itself: the driver calls it under its own locks.
func (l *taskLoop) post(it loopItem) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.queue = append(l.queue, it)
	start := !l.draining && l.spawn != nil
	if start {
		l.draining = true
	}
	l.mu.Unlock()
	if start {
		l.spawn(l.drain)
	}
}

// drain steps the queued items in order until none is left or the loop
// is closed.
func (l *taskLoop) drain() {
	for {
		l.mu.Lock()
		if len(l.queue) == 0 || l.closed {
			l.draining = false
			l.mu.Unlock()
			return
		}
		batch := l.queue
		l.queue = nil
		l.mu.Unlock()
		for i := range batch {
			if l.isClosed() {
				break
			}
			batch[i].tr.step(batch[i])
			batch[i] = loopItem{}
		}
	}
}

func (l *taskLoop) isClosed() bool {
	select {
	case <-l.shut:
		return true
	default:
		return false
	}
}

// close ends the loop as the agent shuts down: what is queued is
// dropped and nothing is stepped any more; the tasks keep running, as
// the goroutine-per-task runner leaves them.
func (l *taskLoop) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		l.closed, l.queue = true, nil
		close(l.shut)
	}
}

// launch begins the task's life: on the agent's task loop for a runner
// that has one, else in a goroutine of its own.
func (tr *taskRunner) launch(ctx context.Context) {
	if tr.loop != nil {
		tr.loop.post(loopItem{tr: tr, kind: loopBegin, ctx: ctx})
		return
	}
	go tr.run(ctx)
}

// step is one loop item for this runner, on the loop's goroutine.
func (tr *taskRunner) step(it loopItem) {
	if tr.over {
		return
	}
	switch it.kind {
	case loopBegin:
		tr.ctx, tr.sctx, tr.begun = it.ctx, it.ctx, true
		if tr.apply(tr.ctx, tr.first(tr.ctx)) {
			tr.finish()
			return
		}
		if tr.stopCtx != nil {
			// A stop came before the task's life began: it follows now.
			tr.step(loopItem{tr: tr, kind: loopStop, ctx: tr.stopCtx})
		}
	case loopStop:
		if !tr.begun {
			tr.stopCtx = it.ctx
			return
		}
		tr.sctx = it.ctx
		if tr.apply(tr.ctx, taskMsg{ev: tasklife.Event{Kind: tasklife.StopRequested, Message: tr.describeStop()}}) {
			tr.finish()
		}
	case loopEvent:
		if tr.begun && tr.apply(tr.ctx, it.m) {
			tr.finish()
		}
	}
}

// finish ends the life of a runner on the loop: Step said it is over.
func (tr *taskRunner) finish() {
	tr.over = true
	if tr.cancelWake != nil {
		tr.cancelWake()
		tr.cancelWake = nil
	}
	tr.endChecks()
	close(tr.done)
}

// notifyPort is a task port whose driver's calls return at once and
// that tells of a task's exit by calling back: its tasks are stepped by
// the agent's task loop.
type notifyPort interface {
	taskPort
	notifyExit(h *driver.Handle, f func(*driver.ExitResult, error))
}

// notifyTaskPort is the agent's port onto a driver.ExitNotifier.
type notifyTaskPort struct {
	*allocTaskPort
	n driver.ExitNotifier
}

func (p *notifyTaskPort) notifyExit(h *driver.Handle, f func(*driver.ExitResult, error)) {
	p.n.NotifyExit(h, f)
}

// exitMsg is a driver's answer to a wait as the loop's event.
func exitMsg(res *driver.ExitResult, err error) taskMsg {
	if err != nil {
		res = &driver.ExitResult{ExitCode: -1, Err: err}
	}
	return taskMsg{ev: tasklife.Event{Kind: tasklife.Exited, Result: exitResult(res)}}
}

// delayElapsed is the event a restart delay's timer posts.
var delayElapsed = taskMsg{ev: tasklife.Event{Kind: tasklife.DelayElapsed}}

// afterFunc is the wall clock's timer for the task loop: f runs after d
// on the runtime's timer, with no goroutine waiting meanwhile.
func afterFunc(d time.Duration, f func()) func() bool { return time.AfterFunc(d, f).Stop }
