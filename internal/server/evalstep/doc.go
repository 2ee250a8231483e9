// Package evalstep decides what one evaluation does, as a pure step.
//
// Step takes an evaluation, a snapshot of what it depends on (the job,
// its allocations, evaluations and deployments, the older versions its
// allocations run, and a read-only View of the nodes) and the time, and
// returns a Decision: the allocations to stop, change and place, the
// evaluation's final status (complete or blocked), its follow-ups (the
// job's one future retry, superseded evaluations of the same job), the
// pending retries to remove, and the evaluation that finishes the plan if
// it commits only in part. A plan that no longer fits the latest view is
// a decision too (Replan), not a write.
//
// Failure decides what an evaluation's error means for it (fail at once
// with the message, fail as a panic, try again after a backoff, or stop
// leading), and Partial what is recorded when a plan committed in part.
//
// Apply carries a Decision out through Planner, the one narrow port
// (Nomad's Planner shape: submit a plan, update an evaluation with the
// evaluations it creates, delete evaluations). The server's port holds the
// leader's fence, so a deposed leader's plan is refused there.
//
// The package does no I/O, starts no goroutine and never reads the clock:
// the time and new IDs come in with the Input. The scheduler comes in as
// a Scheduler, which the server backs with its working cluster.
package evalstep
