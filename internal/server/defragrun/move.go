package defragrun

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/defragplan"
	"github.com/gantryhq/gantry/internal/scheduler"
	"github.com/gantryhq/gantry/internal/state"
	"github.com/google/uuid"
)

// Follow looks at the replacement under way, if any: once healthy it
// stops the replica it replaces; failed or late, it is stopped itself.
// It returns nil when no move is under way. source says who asked
// (api.DefragByApply, api.DefragByBackground), for the records.
func (r *Runner) Follow(ctx context.Context, fence *state.Fence, now time.Time, source string) (*api.DefragStep, error) {
	v := r.p.View
	for _, a := range v.Snapshot().Allocs {
		if a.Move == "" || a.DesiredStatus != api.AllocDesiredRun {
			continue
		}
		old, ok := v.Alloc(a.PreviousAlloc)
		if !ok || old.DesiredStatus != api.AllocDesiredRun || old.ClientTerminal() {
			continue
		}
		mv := &api.DefragMove{Alloc: old.ID, Name: old.Name(), Namespace: old.Namespace, Job: old.Job, Group: old.Group,
			FromNode: old.NodeName, ToNode: a.NodeName, ToNodeID: a.NodeID, Reason: a.Move}
		deadline := healthyDeadline
		if j, ok := v.Job(a.Namespace, a.Job); ok {
			if g := j.LookupGroup(a.Group); g != nil && g.Update != nil && g.Update.HealthyDeadline.D() > 0 {
				deadline = g.Update.HealthyDeadline.D()
			}
		}
		var stop *api.Allocation
		var step api.DefragStep
		done := &api.DefragRecord{Source: source, Namespace: old.Namespace, Job: old.Job, Move: mv, Replacement: a.ID, Reason: a.Move, ModifyTime: now}
		switch {
		case a.ClientStatus == api.AllocRunning && a.Health == api.HealthHealthy:
			// A leader deposed after recording this step, before stopping
			// the old replica, leaves it recorded: it is not recorded twice.
			last, err := v.DefragMove(ctx, old.ID)
			if err != nil {
				return nil, fmt.Errorf("follow the move of %s: %w", old.ShortID(), err)
			}
			if last == nil || last.Type != api.DefragEventHealthy || last.Replacement != a.ID {
				healthy := *done
				healthy.Type = api.DefragEventHealthy
				r.record(ctx, fence, &healthy)
			}
			done.Type = api.DefragEventCompleted
			stop = copyAlloc(old)
			stop.DesiredReason = "moved by GPU defragmentation to " + a.NodeName + " (" + a.ShortID() + "): " + a.Move
			step = api.DefragStep{State: api.DefragMoved, Move: mv,
				Message: fmt.Sprintf("%s is healthy on %s; stopped %s on %s", a.ShortID(), a.NodeName, old.Name(), old.NodeName)}
		case a.ClientTerminal() || a.Health == api.HealthUnhealthy || now.Sub(a.CreateTime) > deadline:
			done.Type = api.DefragEventAbandoned
			done.Reason = fmt.Sprintf("replacement %s on %s did not become healthy within %s (%s, health %q): it was stopped, the old replica stays", a.ShortID(), a.NodeName, deadline, a.ClientStatus, a.Health)
			stop = copyAlloc(a)
			stop.DesiredReason = "GPU defragmentation gave up on this move: the replacement did not become healthy; the old replica stays"
			step = api.DefragStep{State: api.DefragFailed, Move: mv,
				Message: fmt.Sprintf("replacement %s of %s on %s did not become healthy (%s, health %q); stopped it, %s stays on %s",
					a.ShortID(), old.Name(), a.NodeName, a.ClientStatus, a.Health, old.Name(), old.NodeName)}
		default:
			return &api.DefragStep{State: api.DefragWaiting, Move: mv,
				Message: fmt.Sprintf("waiting for %s on %s to become healthy (%s) before stopping %s on %s", a.ShortID(), a.NodeName, a.ClientStatus, old.Name(), old.NodeName)}, nil
		}
		stop.DesiredStatus, stop.ModifyTime = api.AllocDesiredStop, now
		// The stop and the record that resolves the move commit together.
		if _, err := r.p.Writer.ApplyPlan(ctx, &state.PlanCommit{Fence: fence, Update: []*api.Allocation{stop}, Defrag: done}); err != nil {
			return nil, fmt.Errorf("stop %s: %w", stop.ShortID(), err)
		}
		r.p.Log.Info("GPU defragmentation", "state", step.State, "alloc", old.ShortID(), "replacement", a.ShortID(), "reason", a.Move, "by", source)
		return &step, nil
	}
	return nil, nil
}

// Place places the replacement of one move: the scheduler places the
// replica on the destination node alone (constraints, drivers, ports),
// it is given the planned GPUs, checked with scheduler.Fit against the
// node's latest allocations and committed with the node's plan guard. A
// move the cluster no longer allows is recorded as abandoned and returned
// as an *Error (409 or 404): plan again.
// The replacement and the move's started record commit together.
func (r *Runner) Place(ctx context.Context, fence *state.Fence, m api.DefragMove, now time.Time, source string) (*api.Allocation, error) {
	rec := &api.DefragRecord{Type: api.DefragEventStarted, Source: source, Namespace: m.Namespace, Job: m.Job, Move: &m, Reason: m.Reason, ModifyTime: now}
	a, err := r.placeOnce(ctx, fence, m, now, rec)
	var he *Error
	if errors.As(err, &he) {
		// The cluster changed since the plan: the move is given up.
		rec.Type, rec.Reason = api.DefragEventAbandoned, "not started: "+he.Msg
		r.record(ctx, fence, rec)
	}
	return a, err
}

// placeOnce places the replacement of m and commits rec with it.
func (r *Runner) placeOnce(ctx context.Context, fence *state.Fence, m api.DefragMove, now time.Time, rec *api.DefragRecord) (*api.Allocation, error) {
	v := r.p.View
	old, ok := v.Alloc(m.Alloc)
	if !ok {
		return nil, notFound("allocation %s is gone; plan again", m.Alloc)
	}
	job, ok := v.Job(old.Namespace, old.Job)
	if !ok {
		return nil, notFound("job %s of allocation %s is gone; plan again", old.Job, old.ShortID())
	}
	node, ok := v.Node(m.ToNodeID)
	if !ok {
		return nil, notFound("node %s is gone; plan again", m.ToNode)
	}
	guard := v.NodePlanIndex(node.ID)
	var live []*api.Allocation
	for _, a := range v.NodeAllocsUnsorted(node.ID) {
		if !a.Terminal() {
			live = append(live, a)
		}
	}
	eng := engine()
	c := eng.NewCluster(&scheduler.Snapshot{Nodes: []*api.Node{node}, Allocs: live})
	plan, err := eng.Plan(c, &scheduler.Request{Job: job, Place: []scheduler.Placement{{Group: old.Group, Index: old.Index, PreviousAlloc: old}}})
	if err != nil {
		return nil, err
	}
	if len(plan.Placed) != 1 {
		why := "no room"
		if ex := plan.Failed[old.Group]; ex != nil {
			why = ex.String()
		}
		return nil, conflict("%s no longer fits on %s (%s): the cluster changed; plan again", old.Name(), node.Name, why)
	}
	var gs []int
	for _, u := range m.ToUUIDs {
		gs = append(gs, slices.IndexFunc(node.GPUs, func(d api.GPUDevice) bool { return d.UUID == u }))
	}
	if slices.Contains(gs, -1) {
		return nil, conflict("node %s no longer has the planned GPUs; plan again", node.Name)
	}
	want := defragplan.Relocate(old, node, gs)
	a := plan.Placed[0]
	for task, res := range a.Resources {
		if res.GPU != nil && want.Resources[task] != nil {
			res.GPU = want.Resources[task].GPU
		}
	}
	a.ID, a.Namespace, a.Job, a.JobVersion, a.Priority = uuid.NewString(), old.Namespace, old.Job, job.Version, job.Priority
	a.JobSubmitTime = job.SubmitTime
	a.DesiredStatus, a.ClientStatus, a.CreateTime, a.ModifyTime = api.AllocDesiredRun, api.AllocPending, now, now
	a.PreviousAlloc = old.ID
	a.Move = fmt.Sprintf("from %s GPU %v to %s GPU %v: %s", m.FromNode, m.FromGPUs, m.ToNode, m.ToGPUs, m.Reason)
	if err := scheduler.Fit(node, append(live, a)); err != nil {
		return nil, conflict("moving %s to %s GPU %v would break a placement rule (%v): plan again", old.Name(), node.Name, m.ToGPUs, err)
	}
	rec.Replacement = a.ID
	if _, err := r.p.Writer.ApplyPlan(ctx, &state.PlanCommit{Fence: fence, Place: []*api.Allocation{a}, NodeGuards: map[string]int64{node.ID: guard}, Defrag: rec}); err != nil {
		return nil, fmt.Errorf("place the replacement of %s on %s: %w", old.ShortID(), node.Name, err)
	}
	r.p.Log.Info("GPU defragmentation: replacement placed", "alloc", old.ShortID(), "replacement", a.ShortID(), "move", a.Move)
	return a, nil
}

// record records a proposal or a move's step as an event of topic
// defrag. The record is the event's only trace, not a part of the move:
// a failure to write it is logged and the move goes on.
func (r *Runner) record(ctx context.Context, fence *state.Fence, rec *api.DefragRecord) {
	if err := r.p.Writer.PutDefragRecord(ctx, fence, rec); err != nil {
		r.p.Log.Warn("GPU defragmentation event not recorded", "type", rec.Type, "job", rec.Job, "err", err)
	}
}

// copyAlloc returns a copy whose top-level fields can be changed.
func copyAlloc(a *api.Allocation) *api.Allocation {
	c := *a
	return &c
}
