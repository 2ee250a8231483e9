package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/driver"
	"github.com/gantryhq/gantry/internal/lifecycle"
)

// allocRunner runs one allocation's tasks and reports their state.
type allocRunner struct {
	a         *Agent
	recovered map[string][]*driver.Handle

	mu       sync.Mutex
	alloc    *api.Allocation
	tasks    map[string]*taskRunner
	order    []string
	reason   string            // why the allocation ended, when it did
	mig      map[string]string // task → MIG instance the agent created or resolved
	stopping bool
	// jobType and group are the allocation's, once run() loaded its job
	// (the disconnect decision reads the group's disconnect block).
	jobType api.JobType
	group   *api.Group
	// disconnected says the agent stopped the allocation itself because
	// the node could not reach any server (disconnect.go): it is
	// reported failed, not complete.
	disconnected bool
	// reported is the client status last reported (at first the servers'
	// view); the lifecycle table says which report may follow it.
	reported string
	// reportMu makes each report read the tasks and queue the result as
	// one step, so a report computed earlier can never overwrite a newer
	// one in the updater.
	reportMu sync.Mutex
	ready    chan struct{} // closed once tasks exist
	stopped  chan struct{} // closed once a stop finished
	stopOnce sync.Once
}

func newAllocRunner(a *Agent, al *api.Allocation, recovered map[string][]*driver.Handle) *allocRunner {
	return &allocRunner{
		a: a, alloc: al, recovered: recovered, reported: al.ClientStatus,
		tasks: map[string]*taskRunner{}, ready: make(chan struct{}), stopped: make(chan struct{}),
	}
}

func (r *allocRunner) dir() string { return filepath.Join(r.a.allocDir, r.alloc.ID) }

// run builds the task runners and starts them.
func (r *allocRunner) run(ctx context.Context) {
	al := r.current()
	log := r.a.log.With("alloc", al.ShortID(), "job", al.JobKey(), "group", al.Group)
	job, err := r.a.jobs.get(ctx, al)
	if err != nil {
		if ctx.Err() == nil {
			log.Error("cannot load the allocation's job", "err", err)
			r.fail(fmt.Sprintf("job %s version %d is not available: %v", al.JobKey(), al.JobVersion, err))
		}
		return
	}
	g := job.LookupGroup(al.Group)
	if g == nil {
		r.fail(fmt.Sprintf("job %s version %d has no group %s", al.JobKey(), al.JobVersion, al.Group))
		return
	}
	if err := os.MkdirAll(r.dir(), 0o755); err != nil {
		r.fail(fmt.Sprintf("cannot create allocation directory: %v", err))
		return
	}
	terminal := al.ClientTerminal()
	r.mu.Lock()
	r.jobType, r.group = job.Type, g
	restart := api.DefaultRestartPolicy(job.Type)
	if g.Restart != nil {
		restart = *g.Restart
	}
	for _, t := range g.Tasks {
		tr := newTaskRunner(r, job, t, restart, al.TaskStates[t.Name], r.recovered[t.Name])
		r.tasks[t.Name] = tr
		r.order = append(r.order, t.Name)
	}
	r.recovered = nil
	stopping := r.stopping
	close(r.ready)
	r.mu.Unlock()

	for _, name := range r.order {
		tr := r.tasks[name]
		if terminal {
			// Finished before this agent started: keep what is left for
			// logs, run nothing.
			tr.keepFinished()
			continue
		}
		tr.launch(ctx)
	}
	if stopping {
		r.stop(ctx)
	}
	r.report()
}

func (r *allocRunner) current() *api.Allocation {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.alloc
}

// update takes the server's latest view of the allocation.
func (r *allocRunner) update(al *api.Allocation) {
	r.mu.Lock()
	r.alloc = al
	if al.ClientStatus == api.AllocLost {
		r.reported = al.ClientStatus // the servers ended it: nothing follows
	}
	r.mu.Unlock()
	// A task still running under an allocation the servers hold as ended
	// (its failure reached them, a later "running" was refused) is
	// stopped too: nothing else would ever stop it.
	if al.DesiredStatus == api.AllocDesiredStop || al.ClientStatus == api.AllocLost || al.ClientTerminal() && r.anyRunning() {
		go r.stop(context.Background())
	}
}

// anyRunning reports whether one of the allocation's tasks runs.
func (r *allocRunner) anyRunning() bool {
	for _, tr := range r.taskList() {
		if tr.snapshot().State == api.TaskRunning {
			return true
		}
	}
	return false
}

// fail ends an allocation that could not start at all.
func (r *allocRunner) fail(reason string) {
	r.reportMu.Lock()
	defer r.reportMu.Unlock()
	r.mu.Lock()
	r.reason = reason
	al := r.alloc
	r.mu.Unlock()
	r.push(api.AllocUpdate{ID: al.ID, ClientStatus: api.AllocFailed, ClientReason: reason, TaskStates: al.TaskStates})
}

// push queues a report if the lifecycle table allows it after the last
// one: a terminal allocation is never reported running again. The caller
// holds reportMu.
func (r *allocRunner) push(u api.AllocUpdate) {
	r.mu.Lock()
	from := lifecycle.State{Desired: r.alloc.DesiredStatus, Client: r.reported}
	ok := r.reported == "" || lifecycle.ClientAllowed(from, u.ClientStatus)
	if ok {
		r.reported = u.ClientStatus
	}
	r.mu.Unlock()
	if !ok {
		r.a.log.Debug("not reporting a status the allocation lifecycle does not allow",
			"alloc", api.ShortID(u.ID), "from", from.String(), "to", u.ClientStatus)
		return
	}
	r.a.updates.push(u)
}

// stop stops every task, then reports the allocation complete.
func (r *allocRunner) stop(ctx context.Context) {
	r.mu.Lock()
	r.stopping = true
	r.mu.Unlock()
	select {
	case <-r.ready:
	default:
		return // run() stops the tasks once they exist
	}
	r.stopOnce.Do(func() {
		// Requests in flight through the load balancer finish first.
		r.a.drainEndpoints(ctx, r.current().ID)
		// Stopped work leaves nothing behind: each task is stopped, then
		// its container (or process leftovers) removed.
		var wg sync.WaitGroup
		for _, tr := range r.taskList() {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tr.stop(ctx)
				tr.destroy(ctx)
			}()
		}
		wg.Wait()
		r.mu.Lock()
		if r.reason == "" {
			r.reason = r.alloc.DesiredReason
		}
		r.mu.Unlock()
		r.report()
		close(r.stopped)
	})
}

// disconnectWatch is the allocation as the disconnect decision sees it,
// its group's policy resolved with the node's heartbeat TTL; false until
// its job is loaded.
func (r *allocRunner) disconnectWatch(ttl time.Duration) (disconnectWatch, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.group == nil {
		return disconnectWatch{}, false
	}
	done := r.stopping || r.alloc.ClientTerminal()
	switch r.reported {
	case api.AllocComplete, api.AllocFailed, api.AllocLost:
		done = true
	}
	p := api.DisconnectFor(r.jobType, r.group, ttl)
	return disconnectWatch{ID: r.alloc.ID, StopAfter: p.StopAfter, Done: done}, true
}

// stopDisconnected stops the allocation because the node could not reach
// any server for its group's stop_after; it is reported failed with the
// reason once a server answers.
func (r *allocRunner) stopDisconnected(ctx context.Context, reason string) {
	r.mu.Lock()
	if r.stopping {
		r.mu.Unlock()
		return
	}
	r.disconnected, r.reason = true, reason
	r.mu.Unlock()
	r.stop(ctx)
}

// destroy stops the allocation if needed and removes everything it left:
// tasks, containers and its directory.
func (r *allocRunner) destroy(ctx context.Context) {
	r.stop(ctx)
	select {
	case <-r.ready:
	default:
		return
	}
	for _, tr := range r.taskList() {
		tr.destroy(ctx)
	}
	os.RemoveAll(r.dir())
}

// detach lets go of the tasks without stopping them (agent shutdown).
func (r *allocRunner) detach() {}

func (r *allocRunner) taskList() []*taskRunner {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*taskRunner, 0, len(r.order))
	for _, n := range r.order {
		out = append(out, r.tasks[n])
	}
	return out
}

func (r *allocRunner) task(name string) *taskRunner {
	select {
	case <-r.ready:
	default:
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.tasks[name]
}

// report derives the allocation's status and health from its tasks and
// queues it for the servers.
func (r *allocRunner) report() {
	r.reportMu.Lock()
	defer r.reportMu.Unlock()
	r.mu.Lock()
	al := r.alloc
	reason := r.reason
	disconnected := r.disconnected
	names := append([]string(nil), r.order...)
	tasks := r.tasks
	r.mu.Unlock()
	if len(names) == 0 {
		return
	}
	states := make(map[string]*api.TaskState, len(names))
	running, dead, failed, healthy, unhealthy := 0, 0, 0, 0, 0
	for _, n := range names {
		st := tasks[n].snapshot()
		states[n] = st
		switch st.State {
		case api.TaskRunning:
			running++
		case api.TaskDead:
			dead++
			if st.Failed {
				failed++
			}
		}
		switch st.Health {
		case api.HealthHealthy:
			healthy++
		case api.HealthUnhealthy:
			unhealthy++
		}
	}
	u := api.AllocUpdate{ID: al.ID, TaskStates: states, MIGInstances: r.migInstances()}
	switch {
	case dead == len(names) && (failed > 0 || disconnected):
		// Work the node stopped because it was cut off did not finish.
		u.ClientStatus = api.AllocFailed
	case dead == len(names):
		u.ClientStatus = api.AllocComplete
	case running > 0:
		u.ClientStatus = api.AllocRunning
	default:
		u.ClientStatus = api.AllocPending
	}
	if u.ClientStatus == api.AllocFailed || u.ClientStatus == api.AllocComplete {
		u.ClientReason = reason
		if u.ClientReason == "" {
			u.ClientReason = lastMessage(states, names)
		}
	}
	switch {
	case unhealthy > 0:
		u.Health = api.HealthUnhealthy
	case running == len(names) && healthy == len(names):
		u.Health = api.HealthHealthy
	}
	r.push(u)
}

// lastMessage is the most recent task event, as the allocation's reason.
func lastMessage(states map[string]*api.TaskState, names []string) string {
	var best api.TaskEvent
	for _, n := range names {
		if ev := states[n].Events; len(ev) > 0 && ev[len(ev)-1].Time.After(best.Time) {
			best = ev[len(ev)-1]
			if best.Message != "" {
				best.Message = n + ": " + best.Message
			}
		}
	}
	return best.Message
}
