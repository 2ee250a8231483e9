package scheduler

import (
	"fmt"

	"github.com/gantryhq/gantry/internal/api"
)

// Fit checks that allocations fit a node: cpu, memory and disk within the
// node's allocatable capacity; no host port handed out twice; every GPU
// held by one form only (whole, MIG or share); a whole GPU or a MIG
// instance handed out once; shares on a GPU within 1000 milli and its
// memory, and enforced shares only on GPUs that enforce them; MIG
// instances only on MIG-enabled GPUs, at legal start slots with the
// profile's size, never overlapping, within the compute slices, instance
// limits and the one-"+me" rule. Terminal allocations are skipped.
//
// The plan applier calls it with the latest state of the node and every
// allocation that will hold resources on it once the plan is committed:
// the live allocations, less those the plan preempts or stops (the
// scheduler counted their resources as free), plus the plan's new ones.
// It returns the first rule broken; the applier then rejects the plan (or
// that node's part of it) and the evaluation is retried.
func Fit(n *api.Node, allocs []*api.Allocation) error {
	s := newNodeState(n, api.DefaultPortRange)
	for _, a := range allocs {
		if a == nil || a.Terminal() {
			continue
		}
		if a.NodeID != "" && a.NodeID != n.ID {
			return fmt.Errorf("allocation %s belongs to node %s, not %s", a.ShortID(), a.NodeID, n.ID)
		}
		if err := s.apply(a, 1, true); err != nil {
			return err
		}
	}
	switch {
	case s.cpu > s.capCPU:
		return fmt.Errorf("node %s cpu over capacity: %d of %d millicores", n.Name, s.cpu, s.capCPU)
	case s.mem > s.capMem:
		return fmt.Errorf("node %s memory over capacity: %d of %d MiB", n.Name, s.mem, s.capMem)
	case s.capDisk > 0 && s.disk > s.capDisk:
		return fmt.Errorf("node %s disk over capacity: %d of %d MiB", n.Name, s.disk, s.capDisk)
	}
	return nil
}
