// Package scheduler owns placement: given a snapshot of the cluster, the
// work to place and a time value, it returns a plan (which node and which
// resources each new allocation gets, which allocations are preempted, and
// why work could not be placed).
//
// The real scheduler is New(Config), an Engine: feasibility on node
// status, drivers, constraints, distinct hosts, cpu, memory, disk and
// ports; GPUs whole, as MIG instances at legal positions, or as
// fractional shares, scored by a pluggable GPUScorer; binpack or spread
// with affinities; spread held exactly through an index of the spread
// attribute; service replicas kept apart (nodes, then zone / physical
// host) by default; candidates sampled through a free-cpu index and a GPU
// index by free shape, with the sampling's regret measurable; gangs
// placed all or nothing; queue limits and dominant-resource fairness (Queues);
// preemption; explanations counted per reason. README.md draws the
// pipeline.
//
// It is pure. It must never do I/O, read the clock, generate random IDs,
// keep state between calls or mutate its inputs (TestArchitecturePureCore
// checks the first three). The server applies plans through its plan
// applier, which re-checks every placement with Fit against the latest
// state before committing it.
package scheduler
