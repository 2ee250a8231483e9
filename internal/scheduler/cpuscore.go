package scheduler

// CPUScorer is an optional interface of a GPUScorer. When Config.GPUScorer
// implements it, the engine asks it, instead of its built-in best-fit, to
// rate the nodes for work that asks for no GPUs. The trace simulator uses
// it so that each policy it replays places CPU-only tasks the way the
// published simulator did (by the same policy as GPU tasks), since where
// CPU-only work lands decides which GPUs stay usable.
//
// Contract: as for ScoreGPU, without devices to pick. ScoreCPU is called
// once per candidate node that passes every other check; higher wins, ties
// go to the node seen first, ok=false rejects the node. Work without GPUs
// is looked at through the free-cpu index, SampleSize nodes at a time:
// set Config.SampleSize negative for every node to be scored.
type CPUScorer interface {
	ScoreCPU(n *NodeState, ask *Ask) (score float64, ok bool)
}

// FitCPU is the core's own rating of a node for work without GPUs, the
// one it uses when the GPU scorer is no CPUScorer: best fit on cpu and
// memory in [0, 1] (worst fit when ask.Spread; see fitScore), minus 1 on
// a node with GPUs, so that GPU nodes take such work last. A CPUScorer may
// return it for the nodes it has no opinion on.
func FitCPU(n *NodeState, ask *Ask) float64 {
	s := fitScore(n, ask.CPU, ask.Memory, ask.Spread)
	if len(n.gpus) > 0 {
		s-- // keep GPU nodes for GPU work: use them last
	}
	return s
}
