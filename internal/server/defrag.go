package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/defragplan"
	"github.com/gantryhq/gantry/internal/scheduler"
	"github.com/gantryhq/gantry/internal/state"
	"github.com/google/uuid"
)

// GPU defragmentation (`gantry gpu defrag plan|apply`): the plan comes
// from internal/defragplan, a pure function of the store's state; apply
// carries it out one move at a time, each call one step: place a
// replacement on the planned node and GPU, and, once it is healthy, stop
// the replica it replaces. Between calls the state lives in the store
// (Allocation.Move), so any server that leads can take over.

// defragHealthyDeadline bounds how long a replacement may take to become
// healthy when its group's update block does not say.
const defragHealthyDeadline = 5 * time.Minute

func (s *Server) defragEngine() *scheduler.Engine {
	return scheduler.New(scheduler.Config{DisablePreemption: true})
}

// defragInput reads what Decide needs: every node and live allocation,
// their jobs, and the job to make room for (named, or the largest pending
// GPU request, or none).
func (s *Server) defragInput(req api.DefragRequest) (*defragplan.Input, error) {
	snap := s.store.Snapshot()
	in := &defragplan.Input{Nodes: snap.Nodes, Allocs: snap.Allocs, Jobs: map[string]*api.Job{}}
	for _, a := range snap.Allocs {
		if _, ok := in.Jobs[a.JobKey()]; !ok {
			if j, ok := s.store.Job(a.Namespace, a.Job); ok {
				in.Jobs[a.JobKey()] = j
			}
		}
	}
	if !slices.ContainsFunc(snap.Nodes, func(n *api.Node) bool { return len(n.GPUs) > 0 }) {
		return nil, badRequest("no node in the cluster has a GPU: there is nothing to defragment")
	}
	ns := cmp.Or(req.Namespace, api.DefaultNamespace)
	if req.Job != "" {
		j, ok := s.store.Job(ns, req.Job)
		if !ok {
			return nil, notFound("job %q not found in namespace %q", req.Job, ns)
		}
		group, count := s.waiting(j)
		if group == "" {
			return nil, &httpError{status: http.StatusConflict, msg: fmt.Sprintf("job %s is not waiting for GPUs: every replica is placed (or none asks for a GPU), so there is nothing to make room for", j.Key())}
		}
		in.Target, in.Group, in.Count = j, group, count
		in.Jobs[j.Key()] = j
		return in, nil
	}
	// The largest pending GPU request: most GPUs (in milli) waiting.
	best := 0
	for _, j := range s.store.Jobs("") {
		group, count := s.waiting(j)
		if group == "" {
			continue
		}
		if size := gpuMilli(j.LookupGroup(group)) * count; size > best {
			best, in.Target, in.Group, in.Count = size, j, group, count
		}
	}
	if in.Target != nil {
		in.Jobs[in.Target.Key()] = in.Target
	}
	return in, nil
}

// waiting returns a group of j that asks for GPUs and has replicas its
// latest blocked evaluation could not place, and how many.
func (s *Server) waiting(j *api.Job) (string, int) {
	if j.Stop {
		return "", 0
	}
	evals := s.store.Evals(j.Namespace, j.Name)
	for i := len(evals) - 1; i >= 0; i-- {
		e := evals[i]
		if e.Status != api.EvalBlocked {
			continue
		}
		names := make([]string, 0, len(e.FailedGroups))
		for g := range e.FailedGroups {
			names = append(names, g)
		}
		sort.Strings(names)
		for _, g := range names {
			if grp := j.LookupGroup(g); grp != nil && gpuMilli(grp) > 0 {
				return g, max(e.FailedGroups[g].Unplaced, 1)
			}
		}
		return "", 0
	}
	return "", 0
}

// gpuMilli is a replica's GPU demand in milli-GPU (0: none).
func gpuMilli(g *api.Group) int {
	total := 0
	for _, t := range g.Tasks {
		switch r := t.Resources.GPU; {
		case r == nil:
		case r.Share != nil:
			total += r.Share.Milli
		case r.MIG != "":
			total += 1 // a MIG instance: GPU work, of unknown size here
		default:
			total += 1000 * r.Count
		}
	}
	return total
}

func (s *Server) defragPlan(req api.DefragRequest) (*api.DefragPlan, error) {
	in, err := s.defragInput(req)
	if err != nil {
		return nil, err
	}
	p, err := defragplan.Decide(s.defragEngine(), in)
	switch {
	case errors.Is(err, defragplan.ErrNoGPUs):
		return nil, badRequest("no node in the cluster has a GPU: there is nothing to defragment")
	case errors.Is(err, defragplan.ErrNotGPUWork):
		return nil, badRequest("%v", err)
	case err != nil:
		return nil, err
	}
	p.Index = s.store.Index()
	return p, nil
}

func (s *Server) handleDefragPlan(w http.ResponseWriter, r *http.Request) error {
	var req api.DefragRequest
	if err := s.decodeBody(w, r, &req); err != nil {
		return err
	}
	p, err := s.defragPlan(req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, p)
	return nil
}

// handleDefragApply does one step of carrying a plan out.
func (s *Server) handleDefragApply(w http.ResponseWriter, r *http.Request) error {
	// Moves are made by the leader: another server forwards the request.
	if done, err := s.onLeader(w, r, "GPU moves"); done {
		return err
	}
	var req api.DefragRequest
	if err := s.decodeBody(w, r, &req); err != nil {
		return err
	}
	if req.Job == "" {
		return badRequest("apply needs the job to make room for (--for <job>); see the plan first with gantry gpu defrag plan")
	}
	fence := s.leaderFence()
	if fence == nil {
		return &httpError{status: http.StatusServiceUnavailable, msg: "this server does not lead the cluster: send the request to the leader"}
	}
	ctx := r.Context()
	now := s.now()
	// A move under way is followed first.
	if step, err := s.followMove(ctx, fence, now, api.DefragByApply); step != nil || err != nil {
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, step)
		return nil
	}
	p, err := s.defragPlan(req)
	if err != nil {
		return err
	}
	switch {
	case p.Fits && len(p.Moves) == 0:
		e := s.newEval(p.Namespace, p.Job, api.TriggerDefrag)
		if j, ok := s.store.Job(p.Namespace, p.Job); ok {
			e.Priority, e.JobVersion = j.Priority, j.Version
		}
		if err := s.store.CreateEvals(ctx, fence, e); err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, api.DefragStep{State: api.DefragDone, Plan: p,
			Message: fmt.Sprintf("%s/%s fits now; evaluation %s places it", p.Job, p.Group, api.ShortID(e.ID))})
		return nil
	case !p.Fits:
		writeJSON(w, http.StatusOK, api.DefragStep{State: api.DefragFailed, Plan: p, Message: p.Why})
		return nil
	}
	s.recordDefrag(ctx, fence, &api.DefragRecord{Type: api.DefragEventProposed, Source: api.DefragByApply, Namespace: p.Namespace, Job: p.Job, Plan: p, ModifyTime: now})
	m := p.Moves[0]
	placed, err := s.placeMove(ctx, fence, m, now, api.DefragByApply)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.DefragStep{State: api.DefragPlaced, Move: &m, Plan: p,
		Message: fmt.Sprintf("placed %s on %s GPU %v to replace %s on %s GPU %v (%d more move(s) planned)",
			placed.ShortID(), m.ToNode, m.ToGPUs, m.Name, m.FromNode, m.FromGPUs, len(p.Moves)-1)})
	return nil
}

// followMove looks at the replacement under way, if any: once healthy it
// stops the replica it replaces; failed or late, it is stopped itself.
// It returns nil when no move is under way.
func (s *Server) followMove(ctx context.Context, fence *state.Fence, now time.Time, source string) (*api.DefragStep, error) {
	for _, a := range s.store.Snapshot().Allocs {
		if a.Move == "" || a.DesiredStatus != api.AllocDesiredRun {
			continue
		}
		old, ok := s.store.Alloc(a.PreviousAlloc)
		if !ok || old.DesiredStatus != api.AllocDesiredRun || old.ClientTerminal() {
			continue
		}
		mv := &api.DefragMove{Alloc: old.ID, Name: old.Name(), Namespace: old.Namespace, Job: old.Job, Group: old.Group,
			FromNode: old.NodeName, ToNode: a.NodeName, ToNodeID: a.NodeID, Reason: a.Move}
		deadline := defragHealthyDeadline
		if j, ok := s.store.Job(a.Namespace, a.Job); ok {
			if g := j.LookupGroup(a.Group); g != nil && g.Update != nil && g.Update.HealthyDeadline.D() > 0 {
				deadline = g.Update.HealthyDeadline.D()
			}
		}
		var stop *api.Allocation
		var step api.DefragStep
		done := &api.DefragRecord{Source: source, Namespace: old.Namespace, Job: old.Job, Move: mv, Replacement: a.ID, Reason: a.Move, ModifyTime: now}
		switch {
		case a.ClientStatus == api.AllocRunning && a.Health == api.HealthHealthy:
			healthy := *done
			healthy.Type = api.DefragEventHealthy
			s.recordDefrag(ctx, fence, &healthy)
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
		if _, err := s.store.ApplyPlan(ctx, &state.PlanCommit{Fence: fence, Update: []*api.Allocation{stop}}); err != nil {
			return nil, fmt.Errorf("stop %s: %w", stop.ShortID(), err)
		}
		s.recordDefrag(ctx, fence, done)
		s.log.Info("GPU defragmentation", "state", step.State, "alloc", old.ShortID(), "replacement", a.ShortID(), "reason", a.Move, "by", source)
		return &step, nil
	}
	return nil, nil
}

// placeMove places the replacement of one move: the scheduler places the
// replica on the destination node alone (constraints, drivers, ports),
// it is given the planned GPUs, checked with scheduler.Fit against the
// node's latest allocations and committed with the node's plan guard.
func (s *Server) placeMove(ctx context.Context, fence *state.Fence, m api.DefragMove, now time.Time, source string) (*api.Allocation, error) {
	a, err := s.placeMoveOnce(ctx, fence, m, now)
	rec := &api.DefragRecord{Source: source, Namespace: m.Namespace, Job: m.Job, Move: &m, Reason: m.Reason, ModifyTime: now}
	var he *httpError
	switch {
	case err == nil:
		rec.Type, rec.Replacement = api.DefragEventStarted, a.ID
	case errors.As(err, &he):
		// The cluster changed since the plan: the move is given up.
		rec.Type, rec.Reason = api.DefragEventAbandoned, "not started: "+he.msg
	default:
		return nil, err
	}
	s.recordDefrag(ctx, fence, rec)
	return a, err
}

func (s *Server) placeMoveOnce(ctx context.Context, fence *state.Fence, m api.DefragMove, now time.Time) (*api.Allocation, error) {
	old, ok := s.store.Alloc(m.Alloc)
	if !ok {
		return nil, notFound("allocation %s is gone; plan again", m.Alloc)
	}
	job, ok := s.store.Job(old.Namespace, old.Job)
	if !ok {
		return nil, notFound("job %s of allocation %s is gone; plan again", old.Job, old.ShortID())
	}
	node, ok := s.store.Node(m.ToNodeID)
	if !ok {
		return nil, notFound("node %s is gone; plan again", m.ToNode)
	}
	guard := s.store.NodePlanIndex(node.ID)
	var live []*api.Allocation
	for _, a := range s.store.NodeAllocsUnsorted(node.ID) {
		if !a.Terminal() {
			live = append(live, a)
		}
	}
	eng := s.defragEngine()
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
		return nil, &httpError{status: http.StatusConflict, msg: fmt.Sprintf("%s no longer fits on %s (%s): the cluster changed; plan again", old.Name(), node.Name, why)}
	}
	var gs []int
	for _, u := range m.ToUUIDs {
		gs = append(gs, slices.IndexFunc(node.GPUs, func(d api.GPUDevice) bool { return d.UUID == u }))
	}
	if slices.Contains(gs, -1) {
		return nil, &httpError{status: http.StatusConflict, msg: fmt.Sprintf("node %s no longer has the planned GPUs; plan again", node.Name)}
	}
	want := defragplan.Relocate(old, node, gs)
	a := plan.Placed[0]
	for task, res := range a.Resources {
		if res.GPU != nil && want.Resources[task] != nil {
			res.GPU = want.Resources[task].GPU
		}
	}
	a.ID, a.Namespace, a.Job, a.JobVersion, a.Priority = uuid.NewString(), old.Namespace, old.Job, job.Version, job.Priority
	a.DesiredStatus, a.ClientStatus, a.CreateTime, a.ModifyTime = api.AllocDesiredRun, api.AllocPending, now, now
	a.PreviousAlloc = old.ID
	a.Move = fmt.Sprintf("from %s GPU %v to %s GPU %v: %s", m.FromNode, m.FromGPUs, m.ToNode, m.ToGPUs, m.Reason)
	if err := scheduler.Fit(node, append(live, a)); err != nil {
		return nil, &httpError{status: http.StatusConflict, msg: fmt.Sprintf("moving %s to %s GPU %v would break a placement rule (%v): plan again", old.Name(), node.Name, m.ToGPUs, err)}
	}
	if _, err := s.store.ApplyPlan(ctx, &state.PlanCommit{Fence: fence, Place: []*api.Allocation{a}, NodeGuards: map[string]int64{node.ID: guard}}); err != nil {
		return nil, fmt.Errorf("place the replacement of %s on %s: %w", old.ShortID(), node.Name, err)
	}
	s.log.Info("GPU defragmentation: replacement placed", "alloc", old.ShortID(), "replacement", a.ShortID(), "move", a.Move)
	return a, nil
}

// recordDefrag records a proposal or a move's step as an event of topic
// defrag. The record is the event's only trace, not a part of the move:
// a failure to write it is logged and the move goes on.
func (s *Server) recordDefrag(ctx context.Context, fence *state.Fence, r *api.DefragRecord) {
	if err := s.store.PutDefragRecord(ctx, fence, r); err != nil {
		s.log.Warn("GPU defragmentation event not recorded", "type", r.Type, "job", r.Job, "err", err)
	}
}

// defragForPlan is what `job plan` adds to a job blocked only by
// fragmentation: the moves after which its first GPU group that cannot be
// placed fits, or nil.
func (s *Server) defragForPlan(job *api.Job, failed map[string]*api.Explanation) *api.DefragPlan {
	names := make([]string, 0, len(failed))
	for g := range failed {
		names = append(names, g)
	}
	sort.Strings(names)
	for _, g := range names {
		grp := job.LookupGroup(g)
		if grp == nil || gpuMilli(grp) == 0 {
			continue
		}
		in, err := s.defragInput(api.DefragRequest{})
		if err != nil {
			return nil
		}
		in.Target, in.Group, in.Count = job, g, max(failed[g].Unplaced, 1)
		in.Jobs[job.Key()] = job
		p, err := defragplan.Decide(s.defragEngine(), in)
		if err != nil || !p.Fits || len(p.Moves) == 0 {
			continue
		}
		return p
	}
	return nil
}
