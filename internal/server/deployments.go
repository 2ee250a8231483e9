package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gantryhq/gantry/internal/acl"
	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/server/deploywatch"
	"github.com/gantryhq/gantry/internal/state"
)

// Deployments: the reconciler decides (rolling.go in internal/reconcile);
// this file feeds it the job's newest deployment, writes what it decides
// with the plan, serves the deployment routes, and, while leading, runs
// the deployment watcher (internal/server/deploywatch): it asks for an
// evaluation whenever a running deployment's allocations change health,
// and registers the stable version again when a deployment failed with
// auto_revert.

// stableVersion is the newest version below `below` whose deployment
// succeeded.
func (s *Server) stableVersion(namespace, name string, below uint64) *uint64 {
	for _, d := range s.store.Deployments(namespace, name) {
		if d.Status == api.DeploymentSuccessful && d.JobVersion < below {
			v := d.JobVersion
			return &v
		}
	}
	return nil
}

// deploymentLoop runs the deployment watcher (internal/server/deploywatch)
// while leading: it asks for an evaluation of a job whose running
// deployment's allocations changed (health, status), rolls back failed
// deployments that ask for it, and deletes old finished deployments.
// Rounds run on every change of the store and at least every 5 seconds;
// a change after a quiet spell is looked at once (a deployment's last
// healthy replica is what `job run` waits for), and rounds come at most
// every watcherPause.
func (s *Server) deploymentLoop(ctx context.Context, fence *state.Fence) error {
	w := deploywatch.New(s.store, s.store, fence, s.now, s.newEval, s.log)
	roundStart := time.Now()
	return w.Run(ctx, func(ctx context.Context, changed <-chan struct{}) {
		roundEnd := time.Now()
		took := roundEnd.Sub(roundStart) // the round that just ran
		select {
		case <-ctx.Done():
		case <-changed:
		case <-time.After(5 * time.Second):
		}
		sleep(ctx, watcherWait(took, time.Since(roundEnd)))
		roundStart = time.Now()
	})
}

// watcherPause is the least time between the end of one round of the
// deployment watcher and the start of the next, after a round that took
// took: 20 ms, so that a burst of changes lands in one or two rounds, or
// twice the round's time when that is longer (at most a second), so that
// under load, with hundreds of deployments open and every report waking
// it, the watcher takes at most a third of a core from placing and
// reporting.
func watcherPause(took time.Duration) time.Duration {
	return min(max(20*time.Millisecond, 2*took), time.Second)
}

// watcherWait is how long the watcher still waits once a change came,
// quiet since the last round ended: nothing when the pause has passed.
func watcherWait(took, quiet time.Duration) time.Duration {
	return max(watcherPause(took)-quiet, 0)
}

// HTTP API.

func (s *Server) handleDeploymentList(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	ns := q.Get("namespace")
	if ns != "" && !api.ValidName(ns) {
		return badRequest("namespace %q %s", ns, api.NameRule)
	}
	if q.Get("job") != "" && ns == "" {
		ns = api.DefaultNamespace
	}
	out := s.store.Deployments(ns, q.Get("job"))
	if out == nil {
		out = []*api.Deployment{}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) handleDeploymentRead(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if d, ok := s.store.Deployment(id); ok {
		if err := s.allow(r, d.Namespace, acl.Read); err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, d)
		return nil
	}
	if len(id) < 4 {
		return badRequest("deployment ID prefix %q is too short: give at least 4 characters", id)
	}
	var match []*api.Deployment
	for _, d := range s.store.Deployments("", "") {
		if strings.HasPrefix(d.ID, id) {
			match = append(match, d)
		}
	}
	switch len(match) {
	case 0:
		return notFound("deployment %q not found", id)
	case 1:
		if err := s.allow(r, match[0].Namespace, acl.Read); err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, match[0])
		return nil
	}
	return badRequest("deployment prefix %q is ambiguous: %d deployments match", id, len(match))
}

// handleJobDeployment answers the job's newest deployment, or the one of
// ?version=N.
func (s *Server) handleJobDeployment(w http.ResponseWriter, r *http.Request) error {
	j, err := s.lookupJob(r)
	if err != nil {
		return err
	}
	ds := s.store.Deployments(j.Namespace, j.Name)
	if v := r.URL.Query().Get("version"); v != "" {
		var want uint64
		if _, err := fmt.Sscan(v, &want); err != nil {
			return badRequest("version %q must be a non-negative integer", v)
		}
		for _, d := range ds {
			if d.JobVersion == want {
				writeJSON(w, http.StatusOK, d)
				return nil
			}
		}
		return notFound("job %q has no deployment for version %d", j.Name, want)
	}
	if len(ds) == 0 {
		return notFound("job %q has no deployment: batch jobs have none, nor versions stored before service groups got a default update block", j.Name)
	}
	writeJSON(w, http.StatusOK, ds[0])
	return nil
}

func (s *Server) handleJobDeployments(w http.ResponseWriter, r *http.Request) error {
	j, err := s.lookupJob(r)
	if err != nil {
		return err
	}
	ds := s.store.Deployments(j.Namespace, j.Name)
	if ds == nil {
		ds = []*api.Deployment{}
	}
	writeJSON(w, http.StatusOK, ds)
	return nil
}

// handleJobPromote promotes the canaries of the job's running deployment:
// the rollout goes on and replaces the remaining old replicas.
func (s *Server) handleJobPromote(w http.ResponseWriter, r *http.Request) error {
	j, err := s.lookupJob(r)
	if err != nil {
		return err
	}
	d, ok := s.store.LatestDeployment(j.Namespace, j.Name)
	if !ok || !d.Active() {
		return &httpError{status: http.StatusBadRequest, msg: fmt.Sprintf("job %q has no running deployment to promote", j.Name)}
	}
	if !d.RequiresPromotion() {
		return &httpError{status: http.StatusBadRequest, msg: fmt.Sprintf("deployment %s of job %q has no canaries waiting for promotion", api.ShortID(d.ID), j.Name)}
	}
	healthy := map[string]int{}
	for _, a := range s.store.Allocs(state.AllocFilter{Namespace: j.Namespace, Job: j.Name, Live: true}) {
		if a.DeploymentID == d.ID && a.Canary && a.DesiredStatus == api.AllocDesiredRun &&
			a.ClientStatus == api.AllocRunning && a.Health == api.HealthHealthy {
			healthy[a.Group]++
		}
	}
	for name, g := range d.Groups {
		if g.DesiredCanaries > 0 && !g.Promoted && healthy[name] < g.DesiredCanaries {
			return &httpError{status: http.StatusBadRequest, msg: fmt.Sprintf("group %s: %d of %d canaries are healthy; promote once they all are (gantry deployment status %s)",
				name, healthy[name], g.DesiredCanaries, api.ShortID(d.ID))}
		}
	}
	eval := s.newEval(j.Namespace, j.Name, api.TriggerPromote)
	eval.Priority, eval.JobVersion = j.Priority, j.Version
	_, rev, err := s.store.UpdateDeployment(r.Context(), nil, d.ID, func(cur *api.Deployment) error {
		if !cur.Active() {
			return &httpError{status: http.StatusConflict, msg: fmt.Sprintf("deployment %s is %s now", api.ShortID(cur.ID), cur.Status)}
		}
		now := s.now()
		for name, g := range cur.Groups {
			if g.DesiredCanaries == 0 {
				continue
			}
			g.Promoted = true
			// The wait for promotion does not count against progress.
			if jg := j.LookupGroup(name); jg != nil && jg.Update != nil && jg.Update.ProgressDeadline > 0 {
				g.RequireProgressBy = now.Add(jg.Update.ProgressDeadline.D())
			}
		}
		cur.StatusDescription = "promoted; rolling out"
		cur.ModifyTime = now
		return nil
	}, eval)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.PromoteResponse{DeploymentID: d.ID, EvalID: eval.ID, Index: rev})
	return nil
}

// handleJobRevert registers an older version's spec again as a new
// version.
func (s *Server) handleJobRevert(w http.ResponseWriter, r *http.Request) error {
	if err := s.refuseIfOverloaded("the revert"); err != nil {
		return err
	}
	j, err := s.lookupJob(r)
	if err != nil {
		return err
	}
	var req api.RevertRequest
	if err := s.decodeBody(w, r, &req); err != nil {
		return err
	}
	if req.Version == j.Version && !j.Stop {
		return &httpError{status: http.StatusBadRequest, msg: fmt.Sprintf("job %q already runs version %d", j.Name, j.Version), field: "version"}
	}
	target, err := s.store.JobVersion(r.Context(), j.Namespace, j.Name, req.Version)
	if err != nil {
		if errors.Is(err, state.ErrNotFound) {
			return &httpError{status: http.StatusNotFound, msg: fmt.Sprintf("job %q has no version %d (see gantry job history %s)", j.Name, req.Version, j.Name), field: "version"}
		}
		return err
	}
	spec, err := deploywatch.RevertSpec(target)
	if err != nil {
		return err
	}
	eval := s.newEval(j.Namespace, j.Name, api.TriggerJobRevert)
	res, err := s.store.RegisterJob(r.Context(), spec, eval, s.now())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.RegisterResponse{EvalID: res.Eval.ID, JobVersion: res.Job.Version, Changed: res.Changed, Index: res.Index})
	return nil
}
