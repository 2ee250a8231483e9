// Package reconcile owns the decision of what must change for one job to
// reach its desired state: which replicas to place, which allocations to
// stop (scaled down, replaced by a new version, on a lost or draining
// node, of a stopped job), which to move to a new version in place, and
// when a failed allocation's replacement is due. For service groups with an
// update block it rolls a new version out under a deployment (rolling.go):
// max_parallel replicas at a time, canaries that wait for promotion, and
// the deployment's progress, success or failure (naming the version an
// automatic rollback registers again).
//
// It is pure: a function of the job, its allocations, the nodes they sit on,
// the job's newest deployment and a time value; the caller supplies the ID
// of a deployment it may create. It must never do I/O, read the clock or choose nodes;
// the scheduler places what it asks for and the server applies both.
package reconcile
