// Package gc is the leader's garbage collection of evaluations,
// allocations and GPU defragmentation move records that nobody needs any
// more.
//
// Evals, Allocs and DefragMoves are the decision, pure functions of what
// the collector reads and the time: the IDs to delete. Collector is the
// thin shell: a Round reads the store through Store and deletes with the
// leader's fence. The package never reads the clock (the time and the
// ticks come in), starts no goroutine and does no I/O but through Store;
// it never deletes without the fence, and never deletes an evaluation
// that has not finished or an allocation whose client has not.
package gc

import (
	"time"

	"github.com/gantryhq/gantry/internal/api"
)

// Garbage collection ages and bounds.
const (
	// EvalAge is how long a finished evaluation is kept after its last
	// change.
	EvalAge = 15 * time.Minute
	// AllocAge is how long an allocation the client finished is kept
	// after its last change.
	AllocAge = time.Hour
	// KeepEvalsPerJob finished evaluations of each job, its newest, are
	// kept whatever their age.
	KeepEvalsPerJob = 5
)

// Evals lists the finished (complete or failed) evaluations to delete:
// those older than EvalAge beyond the newest KeepEvalsPerJob finished ones
// of their job. evals is in the store's order, oldest first.
func Evals(evals []*api.Evaluation, now time.Time) []string {
	var ids []string
	perJob := map[string]int{}
	for i := len(evals) - 1; i >= 0; i-- {
		e := evals[i]
		if e.Status != api.EvalComplete && e.Status != api.EvalFailed {
			continue
		}
		perJob[e.JobKey()]++
		if perJob[e.JobKey()] > KeepEvalsPerJob && now.Sub(e.ModifyTime) > EvalAge {
			ids = append(ids, e.ID)
		}
	}
	return ids
}

// Allocs lists the allocations to delete: those the client finished at
// least AllocAge ago that were replaced (another names them as its
// previous allocation), or whose job is gone or stopped, or that were
// asked to stop. job looks a job up by namespace and name.
func Allocs(allocs []*api.Allocation, job func(namespace, name string) (*api.Job, bool), now time.Time) []string {
	var ids []string
	newer := map[string]bool{}
	for _, a := range allocs {
		if a.PreviousAlloc != "" {
			newer[a.PreviousAlloc] = true
		}
	}
	for _, a := range allocs {
		if !a.ClientTerminal() || now.Sub(a.ModifyTime) < AllocAge {
			continue
		}
		j, ok := job(a.Namespace, a.Job)
		if newer[a.ID] || !ok || j.Stop || a.DesiredStatus == api.AllocDesiredStop {
			ids = append(ids, a.ID)
		}
	}
	return ids
}

// DefragMoves lists the GPU defragmentation move records to delete: those
// of replicas no longer in the store (a move record is keyed by the
// replica it moved, which garbage collection removes after AllocAge once
// it was stopped). A move under way still has its replica.
func DefragMoves(recorded []string, exists func(alloc string) bool) []string {
	var ids []string
	for _, id := range recorded {
		if !exists(id) {
			ids = append(ids, id)
		}
	}
	return ids
}
