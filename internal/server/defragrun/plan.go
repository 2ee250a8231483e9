package defragrun

import (
	"cmp"
	"errors"
	"slices"
	"sort"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/defragplan"
)

// input reads what Decide needs: every node and live allocation, their
// jobs, and the job to make room for (named, or the largest pending GPU
// request, or none).
func (r *Runner) input(req api.DefragRequest) (*defragplan.Input, error) {
	v := r.p.View
	snap := v.Snapshot()
	in := &defragplan.Input{Nodes: snap.Nodes, Allocs: snap.Allocs, Jobs: map[string]*api.Job{}}
	for _, a := range snap.Allocs {
		if _, ok := in.Jobs[a.JobKey()]; !ok {
			if j, ok := v.Job(a.Namespace, a.Job); ok {
				in.Jobs[a.JobKey()] = j
			}
		}
	}
	if !slices.ContainsFunc(snap.Nodes, func(n *api.Node) bool { return len(n.GPUs) > 0 }) {
		return nil, badRequest("no node in the cluster has a GPU: there is nothing to defragment")
	}
	ns := cmp.Or(req.Namespace, api.DefaultNamespace)
	if req.Job != "" {
		j, ok := v.Job(ns, req.Job)
		if !ok {
			return nil, notFound("job %q not found in namespace %q", req.Job, ns)
		}
		group, count := r.waiting(j)
		if group == "" {
			return nil, conflict("job %s is not waiting for GPUs: every replica is placed (or none asks for a GPU), so there is nothing to make room for", j.Key())
		}
		in.Target, in.Group, in.Count = j, group, count
		in.Jobs[j.Key()] = j
		return in, nil
	}
	// The largest pending GPU request: most GPUs (in milli) waiting.
	best := 0
	for _, j := range v.Jobs("") {
		group, count := r.waiting(j)
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
func (r *Runner) waiting(j *api.Job) (string, int) {
	if j.Stop {
		return "", 0
	}
	evals := r.p.View.Evals(j.Namespace, j.Name)
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

// Plan is what `gantry gpu defrag plan` answers: the moves after which
// the job req names (or the largest pending GPU request) fits, as of the
// store's index now. It changes nothing.
func (r *Runner) Plan(req api.DefragRequest) (*api.DefragPlan, error) {
	in, err := r.input(req)
	if err != nil {
		return nil, err
	}
	p, err := defragplan.Decide(engine(), in)
	switch {
	case errors.Is(err, defragplan.ErrNoGPUs):
		return nil, badRequest("no node in the cluster has a GPU: there is nothing to defragment")
	case errors.Is(err, defragplan.ErrNotGPUWork):
		return nil, badRequest("%v", err)
	case err != nil:
		return nil, err
	}
	p.Index = r.p.View.Index()
	return p, nil
}

// ForPlan is what `job plan` adds to a job blocked only by
// fragmentation: the moves after which its first GPU group that cannot be
// placed fits, or nil.
func (r *Runner) ForPlan(job *api.Job, failed map[string]*api.Explanation) *api.DefragPlan {
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
		in, err := r.input(api.DefragRequest{})
		if err != nil {
			return nil
		}
		in.Target, in.Group, in.Count = job, g, max(failed[g].Unplaced, 1)
		in.Jobs[job.Key()] = job
		p, err := defragplan.Decide(engine(), in)
		if err != nil || !p.Fits || len(p.Moves) == 0 {
			continue
		}
		return p
	}
	return nil
}
