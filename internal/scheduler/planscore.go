package scheduler

// PlanScorer is an optional interface of a GPUScorer. When the scorer of
// a call (Request.Scorer, else Config.GPUScorer) implements it, Engine.Plan calls ForPlan once, before
// it scores any node, and uses the scorer ForPlan returns for the whole
// call: for GPU work and, when that scorer implements CPUScorer, for work
// without GPUs (the configured scorer's own ScoreGPU is then not called).
//
// It lets one configured scorer serve many clusters and change its policy
// over time:
//   - Per-node caches keyed by NodeState.Index and Gen are meaningful only
//     within one Cluster (a Cluster rebuilt from a snapshot numbers its
//     nodes and counts their Gen afresh). ForPlan sees which Cluster a plan
//     runs against and can hand each one its own instance, and keep that
//     instance across the plans of a Cluster that evolves through Plan.
//   - A policy built on what was learnt from the workload (policy.Served,
//     passed as Request.Scorer) is bound to one plan, so every node of a
//     placement is rated by the same policy.
//
// Contract: ForPlan must not modify c; a nil result means BestFit. It may be called from several
// goroutines at once (an Engine may serve many), each with its own
// Cluster; the scorer it returns serves that one Plan call on its
// goroutine. To keep plans deterministic, what it returns must depend only
// on c and on the scorer's own value, never on the clock or on earlier
// calls.
type PlanScorer interface {
	ForPlan(c *Cluster) GPUScorer
}
