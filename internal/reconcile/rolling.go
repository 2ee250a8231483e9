package reconcile

import (
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/gantryhq/gantry/internal/api"
)

// Rolling updates.
//
// A service group with an update block changes version one slot (index) at
// a time under a deployment. Each slot holds at most one allocation of the
// job's current version ("new", including those moved in place) and one of
// an older version ("old"). The rules, applied on every evaluation:
//
//   - An empty slot is filled at once, as without an update block.
//   - While canaries are wanted and not promoted, that many slots that hold
//     an old replica get a canary of the new version beside it; nothing
//     old is stopped.
//   - Otherwise, with L = max_parallel minus the slots whose new replica is
//     not yet healthy for min_healthy_time (an empty slot counts as one),
//     up to L slots that hold only an old replica have it stopped and a new
//     one placed, unhealthy old replicas first.
//   - A slot with both generations stops the old one once the new one is
//     healthy (or the old one is not); a canary waits for promotion.
//
// So at most max_parallel slots are ever without a healthy replica because
// of the update: at no moment do fewer than count - max_parallel healthy
// replicas serve, as long as the old ones were healthy. The property test
// checks exactly that.
//
// The deployment fails when a replica it placed cannot become healthy:
// it fails, or it is not healthy (its checks failing or not yet passing)
// once healthy_deadline has passed since it was placed (with no
// healthy_deadline, as soon as its checks fail), or
// when no replica became healthy within progress_deadline; with auto_revert
// it names the version to roll back to (Input.Stable), which the caller
// registers again. It succeeds once every slot holds a new replica healthy
// for min_healthy_time and nothing old is left.

// groupOutcome is what rolling one group concluded about its deployment.
type groupOutcome struct {
	done     bool   // every slot holds a healthy new replica, nothing old left
	waiting  bool   // canaries healthy, waiting for promotion
	failure  string // why the deployment fails, "" when it does not
	canaries bool
}

// hasUpdate reports whether any group of the job has an update block.
func hasUpdate(job *api.Job) bool {
	for _, g := range job.Groups {
		if g.Update != nil {
			return true
		}
	}
	return false
}

// deploymentFor returns a working copy of the deployment that rolls out
// the job's current version, creating it when the version has none, or nil
// when no group of the job has an update block. An older deployment still
// running is cancelled.
func deploymentFor(in *Input, r *Result) *api.Deployment {
	job := in.Job
	if old := in.Deployment; old != nil {
		if old.JobVersion == job.Version {
			return copyDeployment(old)
		}
		if old.Active() {
			r.Deployments = append(r.Deployments, endDeployment(old, api.DeploymentCancelled,
				fmt.Sprintf("superseded by job version %d", job.Version), in.Now))
		}
	}
	if job.Type != api.JobService || !hasUpdate(job) {
		return nil
	}
	d := &api.Deployment{
		ID: in.DeploymentID, Namespace: job.Namespace, Job: job.Name, JobVersion: job.Version,
		Status: api.DeploymentRunning, StatusDescription: "deployment is running",
		Groups: map[string]*api.DeploymentGroup{}, CreateTime: in.Now, ModifyTime: in.Now,
		Previous: healthyVersion(in.Allocs, job.Version),
	}
	for _, g := range job.Groups {
		if g.Update == nil {
			continue
		}
		dg := &api.DeploymentGroup{Desired: g.Count, MaxParallel: max(g.Update.MaxParallel, 1), AutoRevert: g.Update.AutoRevert}
		if pd := g.Update.ProgressDeadline.D(); pd > 0 {
			dg.RequireProgressBy = in.Now.Add(pd)
		}
		d.Groups[g.Name] = dg
	}
	return d
}

// healthyVersion is the one version older than `below` that every live
// allocation runs, all of them running and none unhealthy; nil when there
// is no live allocation, or several versions, or one not (yet) running
// or unhealthy.
func healthyVersion(allocs []*api.Allocation, below uint64) *uint64 {
	var v *uint64
	for _, a := range allocs {
		if a.DesiredStatus != api.AllocDesiredRun || a.Terminal() {
			continue
		}
		if a.ClientStatus != api.AllocRunning || a.Health == api.HealthUnhealthy || a.JobVersion >= below {
			return nil
		}
		if v != nil && *v != a.JobVersion {
			return nil
		}
		jv := a.JobVersion
		v = &jv
	}
	return v
}

func copyDeployment(d *api.Deployment) *api.Deployment {
	c := *d
	if d.Previous != nil {
		v := *d.Previous
		c.Previous = &v
	}
	if d.RevertTo != nil {
		v := *d.RevertTo
		c.RevertTo = &v
	}
	if d.RevertedAs != nil {
		v := *d.RevertedAs
		c.RevertedAs = &v
	}
	c.Groups = make(map[string]*api.DeploymentGroup, len(d.Groups))
	for k, g := range d.Groups {
		gc := *g
		c.Groups[k] = &gc
	}
	return &c
}

func endDeployment(d *api.Deployment, status, why string, now time.Time) *api.Deployment {
	c := copyDeployment(d)
	c.Status, c.StatusDescription, c.ModifyTime = status, why, now
	return c
}

type slot struct{ old, new *api.Allocation }

// rollGroup reconciles one group with an update block under deployment d.
func rollGroup(in *Input, r *Result, d *api.Deployment, g *api.Group, allocs []*api.Allocation,
	stopped, replaced map[string]bool, stop func(*api.Allocation, string, bool)) groupOutcome {
	job, u, now := in.Job, g.Update, in.Now
	dg := d.Groups[g.Name]
	if dg == nil {
		// The deployment predates this group's update block; follow it
		// without canaries.
		dg = &api.DeploymentGroup{Desired: g.Count, MaxParallel: max(u.MaxParallel, 1), AutoRevert: u.AutoRevert}
		d.Groups[g.Name] = dg
	}
	active := d.Active()
	created := d.ModifyIndex == 0

	slots := make([]slot, g.Count)
	latest := map[int]*api.Allocation{}
	for _, a := range allocs {
		if a.Group != g.Name || a.DesiredStatus != api.AllocDesiredRun {
			continue
		}
		latest[a.Index] = a
		if stopped[a.ID] || a.ClientTerminal() {
			continue
		}
		if a.Index >= g.Count {
			stop(a, fmt.Sprintf("group %s scaled down to %d", g.Name, g.Count), false)
			continue
		}
		s := &slots[a.Index]
		if a.JobVersion == job.Version || SameGroup(in.Versions[a.JobVersion], job, g.Name) {
			if s.new != nil {
				stop(a, fmt.Sprintf("duplicate of replica %d", a.Index), false)
				continue
			}
			s.new = a
			if a.JobVersion != job.Version {
				r.InPlace = append(r.InPlace, a)
			}
		} else {
			if s.old != nil {
				stop(a, fmt.Sprintf("duplicate of replica %d", a.Index), false)
				continue
			}
			s.old = a
		}
	}
	if created && u.Canary > 0 {
		// Canaries test a change that replaces replicas: as many as asked,
		// but no more than the slots that still hold only an old replica.
		outdated := 0
		for _, s := range slots {
			if s.old != nil && s.new == nil {
				outdated++
			}
		}
		dg.DesiredCanaries = min(u.Canary, outdated)
	}
	canaryPhase := active && dg.DesiredCanaries > 0 && !dg.Promoted
	depID := ""
	if active {
		depID = d.ID
	}
	replacedBy := fmt.Sprintf("replaced by job version %d", job.Version)

	// Slots with both generations: the old one goes once the new one
	// serves (a canary waits for promotion).
	for i := range slots {
		s := &slots[i]
		if s.old == nil || s.new == nil || s.new.Canary && !dg.Promoted {
			continue
		}
		if serving(s.new) || !serving(s.old) {
			stop(s.old, replacedBy, false)
			s.old = nil
		}
	}

	// Empty slots are filled at once.
	unready := 0
	for i := range slots {
		s := &slots[i]
		if s.old == nil && s.new == nil {
			unready++
			fillSlot(in, r, job, g, i, latest[i], stopped, replaced, depID)
		}
	}

	minHealthy := u.MinHealthyTime.D()
	ready := func(a *api.Allocation) bool {
		return serving(a) && !now.Before(healthySince(a).Add(minHealthy))
	}
	switch {
	case canaryPhase:
		have := 0
		for _, s := range slots {
			if s.new != nil && s.new.Canary {
				have++
			}
		}
		for i := range slots {
			if have >= dg.DesiredCanaries {
				break
			}
			if s := slots[i]; s.old != nil && s.new == nil {
				r.Place = append(r.Place, Placement{Group: g.Name, Index: i, Deployment: depID, Canary: true})
				have++
			}
		}
	case active:
		for _, s := range slots {
			if s.new != nil && !ready(s.new) {
				unready++
			}
		}
		var todo []int
		for i, s := range slots {
			if s.old != nil && s.new == nil {
				todo = append(todo, i)
			}
		}
		sort.SliceStable(todo, func(a, b int) bool {
			return !serving(slots[todo[a]].old) && serving(slots[todo[b]].old)
		})
		for _, i := range todo {
			if unready >= dg.MaxParallel {
				break
			}
			stop(slots[i].old, replacedBy, false)
			r.Place = append(r.Place, Placement{Group: g.Name, Index: i, Deployment: depID})
			unready++
		}
	}
	if !active {
		return groupOutcome{}
	}

	// Progress of the deployment in this group.
	var out groupOutcome
	placed, healthy, canaries, healthyCanaries, olds := 0, 0, 0, 0, 0
	for _, s := range slots {
		if s.old != nil {
			olds++
		}
		n := s.new
		if n == nil {
			continue
		}
		placed++
		ok := ready(n)
		if ok {
			healthy++
		}
		if n.Canary {
			canaries++
			if ok {
				healthyCanaries++
			}
		}
		if n.DeploymentID != d.ID {
			continue // kept or moved in place: not this deployment's to fail
		}
		switch {
		case n.Health == api.HealthUnhealthy && u.HealthyDeadline > 0 && now.Before(n.CreateTime.Add(u.HealthyDeadline.D())):
			// Failing checks while it starts: it may still become healthy
			// within healthy_deadline.
			r.retryAt(n.CreateTime.Add(u.HealthyDeadline.D()))
		case n.Health == api.HealthUnhealthy && u.HealthyDeadline > 0:
			out.failure = fmt.Sprintf("allocation %s (%s) failed its health checks and was not healthy within healthy_deadline %s", api.ShortID(n.ID), n.Name(), u.HealthyDeadline)
		case n.Health == api.HealthUnhealthy:
			out.failure = fmt.Sprintf("allocation %s (%s) failed its health checks", api.ShortID(n.ID), n.Name())
		case serving(n) && !ok:
			r.retryAt(healthySince(n).Add(minHealthy))
		case !serving(n) && u.HealthyDeadline > 0:
			due := n.CreateTime.Add(u.HealthyDeadline.D())
			if !now.Before(due) {
				out.failure = fmt.Sprintf("allocation %s (%s) was not healthy within healthy_deadline %s", api.ShortID(n.ID), n.Name(), u.HealthyDeadline)
			} else {
				r.retryAt(due)
			}
		}
	}
	// Replicas of this deployment that failed outright.
	for _, a := range allocs {
		if a.Group == g.Name && a.DeploymentID == d.ID && a.DesiredStatus == api.AllocDesiredRun &&
			a.ClientStatus == api.AllocFailed && !stopped[a.ID] && out.failure == "" {
			out.failure = fmt.Sprintf("allocation %s (%s) failed: %s", api.ShortID(a.ID), a.Name(), a.ClientReason)
		}
	}
	if pd := u.ProgressDeadline.D(); pd > 0 && healthy > dg.Healthy {
		dg.RequireProgressBy = now.Add(pd)
	}
	unhealthy := 0
	if out.failure != "" {
		unhealthy = 1
	}
	dg.Desired, dg.Placed, dg.Healthy, dg.Unhealthy, dg.HealthyCanaries = g.Count, placed, healthy, unhealthy, healthyCanaries
	out.canaries = dg.DesiredCanaries > 0
	out.waiting = canaryPhase && healthyCanaries >= dg.DesiredCanaries
	out.done = !canaryPhase && healthy >= g.Count && olds == 0
	if out.failure == "" && !out.done && !out.waiting && !dg.RequireProgressBy.IsZero() {
		if !now.Before(dg.RequireProgressBy) {
			out.failure = fmt.Sprintf("no replica of group %s became healthy within progress_deadline %s", g.Name, u.ProgressDeadline)
			dg.Unhealthy = max(dg.Unhealthy, 1)
		} else {
			r.retryAt(dg.RequireProgressBy)
		}
	}
	return out
}

// finishDeployment derives the deployment's status from its groups and
// adds it to the result when it is new or changed.
func finishDeployment(in *Input, r *Result, d *api.Deployment, outcomes map[string]groupOutcome) {
	if d.Active() {
		names := make([]string, 0, len(outcomes))
		for n := range outcomes {
			names = append(names, n)
		}
		sort.Strings(names)
		failure, revert, done, waiting := "", false, true, false
		for _, n := range names {
			o := outcomes[n]
			if o.failure != "" && failure == "" {
				failure = o.failure
			}
			if o.failure != "" && d.Groups[n] != nil && d.Groups[n].AutoRevert {
				revert = true
			}
			done = done && o.done
			waiting = waiting || o.waiting
		}
		switch {
		case failure != "":
			d.Status, d.StatusDescription = api.DeploymentFailed, failure
			if revert {
				target := in.Stable
				if d.Previous != nil {
					target = d.Previous // what ran, healthy, before this deployment
				}
				if target != nil {
					v := *target
					d.RevertTo = &v
					d.StatusDescription += fmt.Sprintf("; rolling back to version %d", v)
				} else {
					d.StatusDescription += "; no earlier version ran healthy, so there is nothing to roll back to"
				}
			}
		case done:
			d.Status, d.StatusDescription = api.DeploymentSuccessful, fmt.Sprintf("every replica of version %d is healthy", d.JobVersion)
		case waiting:
			d.StatusDescription = "canaries are healthy; waiting for promotion (gantry job promote)"
		default:
			d.StatusDescription = "deployment is running"
		}
	}
	if d.ModifyIndex == 0 || in.Deployment == nil || in.Deployment.ID != d.ID || !sameDeployment(d, in.Deployment) {
		d.ModifyTime = in.Now
		r.Deployments = append(r.Deployments, d)
	}
}

// sameDeployment compares two deployments, ignoring when they changed.
func sameDeployment(a, b *api.Deployment) bool {
	ac, bc := *a, *b
	ac.ModifyTime, bc.ModifyTime = time.Time{}, time.Time{}
	aj, _ := json.Marshal(&ac)
	bj, _ := json.Marshal(&bc)
	return string(aj) == string(bj)
}

// serving reports whether an allocation runs and passes its checks.
func serving(a *api.Allocation) bool {
	return a.ClientStatus == api.AllocRunning && a.Health == api.HealthHealthy
}

// healthySince is when a serving allocation last became healthy: the
// latest "Healthy" event of its tasks (each task must have one), or its
// last change when the events no longer say.
func healthySince(a *api.Allocation) time.Time {
	var since time.Time
	for _, ts := range a.TaskStates {
		var last time.Time
		for _, e := range ts.Events {
			if e.Type == api.TaskEventHealthy {
				last = e.Time
			}
		}
		if last.IsZero() {
			return a.ModifyTime
		}
		if last.After(since) {
			since = last
		}
	}
	if since.IsZero() {
		return a.ModifyTime
	}
	return since
}
