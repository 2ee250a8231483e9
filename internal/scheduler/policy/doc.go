// Package policy holds GPU placement policies that plug into the scheduler
// core as scheduler.GPUScorer (and scheduler.CPUScorer, so that work
// without GPUs follows the same policy).
//
// Six reproduce the policies of the FGD study ("Beware of Fragmentation",
// USENIX ATC 2023) as its published simulator computed them, down to the
// integer scores of the Kubernetes scheduling framework and its random
// choice among the nodes that tie for the best score: random, dotprod,
// clustering, packing, bestfit and fgd. The seventh, gantry, is Gantry's
// own (see gantry.go). The trace simulator (internal/sim) replays the
// Alibaba GPU trace through the core with each of them.
//
// For the server, Served (learnt.go) runs a policy without knowing the
// workload in advance: a Workload (workload.go) counts the typical tasks
// of the jobs submitted so far, Learnt is that as a versioned value
// derived from the jobs in the store (an IncrementalLearner, in
// incremental.go, keeps it as jobs change without folding them all
// again), and Served, built on one Learnt per
// evaluation and passed in the scheduler's Request, hands each Plan a
// fresh instance (scheduler.PlanScorer). The same store state gives the
// same Learnt and so the same plan, in `job plan`, in the worker and on
// any leader.
//
// Everything here is pure: no clock, no I/O, randomness only from the
// seeded source a policy owns. A policy instance serves one Cluster on one
// goroutine; a Served and a Learnt are values and may be shared.
package policy
