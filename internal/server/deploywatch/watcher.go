package deploywatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/state"
)

// Reader is what the watcher reads: Changed to wait on between rounds,
// the open deployments and, for their jobs, the Signature of their
// allocations (kept by the store as they change), evaluations and spec that Watch
// decides on, every deployment for the garbage collection, and the
// version a rollback registers again. *state.Store is one.
type Reader interface {
	Changed() <-chan struct{}
	OpenDeployments() []*api.Deployment
	Deployments(namespace, job string) []*api.Deployment
	JobSignature(namespace, job string) uint64
	Evals(namespace, job string) []*api.Evaluation
	Job(namespace, name string) (*api.Job, bool)
	JobVersion(ctx context.Context, namespace, name string, v uint64) (*api.Job, error)
}

// Writer is the watcher's writes, each with the leader's fence: the
// evaluations Watch asks for, a rollback's registration and its note on
// the deployment, and the deletion of old deployments. *state.Store is
// one. Each returns state.ErrNotLeader, having written nothing, once
// leadership moved.
type Writer interface {
	CreateEvals(ctx context.Context, fence *state.Fence, evals ...*api.Evaluation) error
	UpdateDeployment(ctx context.Context, fence *state.Fence, id string, fn func(d *api.Deployment) error, evals ...*api.Evaluation) (*api.Deployment, int64, error)
	DeleteDeployments(ctx context.Context, fence *state.Fence, ids []string) error
	RegisterJobFenced(ctx context.Context, fence *state.Fence, job *api.Job, eval *api.Evaluation, now time.Time) (*state.RegisterResult, error)
}

// gcEvery is how often old deployments are deleted.
const gcEvery = time.Minute

// Watcher runs the decision against the store while its server leads.
type Watcher struct {
	reads   Reader
	writes  Writer
	fence   *state.Fence
	now     func() time.Time
	newEval func(namespace, job, trigger string) *api.Evaluation
	log     *slog.Logger
	seen    map[string]uint64 // deployment → allocation signature last evaluated
	nextGC  time.Time
}

// New returns a watcher that reads through reads and writes through
// writes for the leadership that holds fence; newEval mints an evaluation
// (a fresh ID, the time). Old deployments are first deleted a minute
// after now.
func New(reads Reader, writes Writer, fence *state.Fence, now func() time.Time,
	newEval func(namespace, job, trigger string) *api.Evaluation, log *slog.Logger) *Watcher {
	return &Watcher{reads: reads, writes: writes, fence: fence, now: now, newEval: newEval, log: log,
		seen: map[string]uint64{}, nextGC: now().Add(gcEvery)}
}

// Run calls Round, then wait, until ctx ends; wait returns once changed
// fires, a while passed or ctx ended. It returns state.ErrNotLeader when a
// round finds that leadership moved.
func (w *Watcher) Run(ctx context.Context, wait func(ctx context.Context, changed <-chan struct{})) error {
	for ctx.Err() == nil {
		changed := w.reads.Changed()
		if err := w.Round(ctx, w.now()); err != nil {
			return err
		}
		wait(ctx, changed)
	}
	return nil
}

// Round deletes old deployments once a minute, then carries out Watch's
// decision. It returns only state.ErrNotLeader; other failures are logged
// and retried next round.
func (w *Watcher) Round(ctx context.Context, now time.Time) error {
	if now.After(w.nextGC) {
		w.nextGC = now.Add(gcEvery)
		if err := w.writes.DeleteDeployments(ctx, w.fence, Old(w.reads.Deployments("", ""))); errors.Is(err, state.ErrNotLeader) {
			return err
		} else if err != nil {
			w.log.Warn("garbage-collect deployments", "err", err)
		}
	}
	if err := w.watch(ctx, now); errors.Is(err, state.ErrNotLeader) {
		return err
	} else if err != nil && ctx.Err() == nil {
		w.log.Warn("deployment watcher", "err", err)
	}
	return nil
}

func (w *Watcher) watch(ctx context.Context, now time.Time) error {
	d := Watch(w.reads.OpenDeployments(), w.seen, Reads{
		Signature: w.reads.JobSignature,
		Evals:     w.reads.Evals,
		Job:       w.reads.Job,
	}, now)
	for _, rv := range d.Revert {
		if err := w.revert(ctx, rv); err != nil {
			return err
		}
	}
	for _, id := range d.Forget {
		delete(w.seen, id)
	}
	var evals []*api.Evaluation
	for _, ev := range d.Evaluate {
		e := w.newEval(ev.Deployment.Namespace, ev.Deployment.Job, api.TriggerDeployment)
		e.JobVersion, e.Priority = ev.Deployment.JobVersion, ev.Priority
		evals = append(evals, e)
	}
	if err := w.writes.CreateEvals(ctx, w.fence, evals...); err != nil {
		return fmt.Errorf("create evaluations for %d deployments: %w", len(evals), err)
	}
	for _, ev := range d.Evaluate {
		w.seen[ev.Deployment.ID] = ev.Signature
	}
	return nil
}

var errUnchanged = errors.New("unchanged")

// revert registers the version a failed deployment names again, as a new
// version, or notes why it does not.
func (w *Watcher) revert(ctx context.Context, rv Revert) error {
	d := rv.Deployment
	note := func(as uint64, msg string) error {
		_, _, err := w.writes.UpdateDeployment(ctx, w.fence, d.ID, func(cur *api.Deployment) error {
			if cur.RevertedAs != nil {
				return errUnchanged
			}
			cur.RevertedAs = &as
			cur.StatusDescription += msg
			cur.ModifyTime = w.now()
			return nil
		})
		if errors.Is(err, errUnchanged) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("note the rollback of deployment %s: %w", api.ShortID(d.ID), err)
		}
		return nil
	}
	if rv.Skip != "" {
		return note(rv.Version, rv.Skip)
	}
	target, err := w.reads.JobVersion(ctx, d.Namespace, d.Job, *d.RevertTo)
	if err != nil {
		return note(rv.Version, fmt.Sprintf("; not rolled back: %v", err))
	}
	spec, err := RevertSpec(target)
	if err != nil {
		return note(rv.Version, fmt.Sprintf("; not rolled back: %v", err))
	}
	eval := w.newEval(d.Namespace, d.Job, api.TriggerJobRevert)
	res, err := w.writes.RegisterJobFenced(ctx, w.fence, spec, eval, w.now())
	if err != nil {
		return fmt.Errorf("roll job %s back to version %d: %w", d.JobKey(), *d.RevertTo, err)
	}
	w.log.Warn("deployment failed; rolled back", "job", d.JobKey(), "failed_version", d.JobVersion,
		"reverted_to", *d.RevertTo, "as_version", res.Job.Version, "reason", d.StatusDescription)
	return note(res.Job.Version, fmt.Sprintf(" (registered as version %d)", res.Job.Version))
}
