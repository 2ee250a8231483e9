// Package deploywatch is the leader's deployment watcher: it asks for an
// evaluation of a job whose running deployment's allocations changed
// (health, status, version), registers the stable version again when a
// deployment failed with auto_revert, and deletes old finished
// deployments.
//
// Watch, Old and RevertSpec are the decision, pure functions of what the
// watcher reads and the time. Watcher is the thin shell: a Round reads the
// store through Reader and writes through Writer, every write with the
// leader's fence (the revert's registration goes through
// RegisterJobFenced). The package never reads the clock (the time comes
// in as a func, the waiting between rounds as one), starts no goroutine
// and does no I/O but through Reader and Writer; it never reverts a job
// that was stopped or changed since the deployment failed, and never
// deletes a running deployment or a job's newest successful one.
package deploywatch

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/jobspec"
)

// Reads is what one decision reads besides the open deployments: the
// Signature of a job's allocations, its evaluations and its spec.
type Reads struct {
	Signature func(namespace, job string) uint64
	Evals     func(namespace, job string) []*api.Evaluation
	Job       func(namespace, name string) (*api.Job, bool)
}

// Evaluate asks for an evaluation of a running deployment's job, at the
// job's priority, and remembers Signature once it is created.
type Evaluate struct {
	Deployment *api.Deployment
	Priority   int
	Signature  uint64
}

// Revert rolls a failed deployment back to its RevertTo version, unless
// Skip says why not (the job was stopped or changed meanwhile); then the
// deployment is only noted as handled. Version is the job's version as
// read (0 when it is gone), recorded on a deployment not rolled back.
type Revert struct {
	Deployment *api.Deployment
	Version    uint64
	Skip       string
}

// Decision is what one round of the watcher does.
type Decision struct {
	Evaluate []Evaluate
	Revert   []Revert
	// Forget lists the deployments seen earlier that no longer run.
	Forget []string
}

// Watch decides a round: an evaluation for every running deployment
// whose allocations' signature changed since seen (deployment → the
// signature last evaluated) unless its job has an evaluation due now; a
// revert for every failed deployment with auto_revert not yet handled.
func Watch(open []*api.Deployment, seen map[string]uint64, r Reads, now time.Time) Decision {
	var out Decision
	live := map[string]bool{}
	for _, d := range open {
		switch {
		case d.Active():
			live[d.ID] = true
			sig := r.Signature(d.Namespace, d.Job)
			if seen[d.ID] == sig || hasDueEval(r.Evals(d.Namespace, d.Job), now) {
				continue
			}
			p := api.DefaultPriority
			if j, ok := r.Job(d.Namespace, d.Job); ok {
				p = j.Priority
			}
			out.Evaluate = append(out.Evaluate, Evaluate{Deployment: d, Priority: p, Signature: sig})
		case d.Status == api.DeploymentFailed && d.RevertTo != nil && d.RevertedAs == nil:
			job, ok := r.Job(d.Namespace, d.Job)
			rv := Revert{Deployment: d}
			if ok {
				rv.Version = job.Version
			}
			if !ok || job.Stop || job.Version != d.JobVersion {
				rv.Skip = "; not rolled back: the job was stopped or changed meanwhile"
			}
			out.Revert = append(out.Revert, rv)
		}
	}
	for id := range seen {
		if !live[id] {
			out.Forget = append(out.Forget, id)
		}
	}
	return out
}

// hasDueEval reports whether one of evals is pending and due now.
func hasDueEval(evals []*api.Evaluation, now time.Time) bool {
	for _, e := range evals {
		if e.Status == api.EvalPending && !now.Before(e.WaitUntil) {
			return true
		}
	}
	return false
}

// Signature summarizes what a deployment's progress depends on: each
// allocation's ID, job version, desired and client status and health
// (api.Allocation.ProgressHash). It is the same for the same allocations
// in any order: the count plus the sum of their hashes, which the store
// keeps per job as allocations change (state.Store.JobSignature), so that
// no round reads a job's allocations. Two different sets share a
// signature with a chance of about 2^-64.
func Signature(allocs []*api.Allocation) uint64 {
	sum := uint64(len(allocs))
	for _, a := range allocs {
		sum += a.ProgressHash()
	}
	return sum
}

// KeepPerJob bounds the finished deployments kept per job (the newest
// successful one is always kept: rollbacks go there).
const KeepPerJob = 10

// Old lists finished deployments beyond the newest KeepPerJob of their
// job, except the newest successful one. deployments is newest first per
// job.
func Old(deployments []*api.Deployment) []string {
	var ids []string
	kept := map[string]int{}
	stable := map[string]bool{}
	for _, d := range deployments {
		k := d.JobKey()
		kept[k]++
		switch {
		case d.Active():
		case d.Status == api.DeploymentSuccessful && !stable[k]:
			stable[k] = true
		case kept[k] > KeepPerJob:
			ids = append(ids, d.ID)
		}
	}
	return ids
}

// RevertSpec is the spec a revert registers again: a copy of the stored
// version (the store shares the versions it caches), running, with
// today's defaults filled in. A version stored before service groups
// got a default update block (api.DefaultUpdateStrategy) gets it now,
// so that a revert rolls one replica at a time under a deployment of its
// own instead of replacing every replica at once.
func RevertSpec(target *api.Job) (*api.Job, error) {
	data, err := json.Marshal(target)
	if err != nil {
		return nil, fmt.Errorf("copy version %d of job %s: %w", target.Version, target.Name, err)
	}
	spec := &api.Job{}
	if err := json.Unmarshal(data, spec); err != nil {
		return nil, fmt.Errorf("copy version %d of job %s: %w", target.Version, target.Name, err)
	}
	spec.Stop = false
	jobspec.Canonicalize(spec)
	return spec, nil
}
