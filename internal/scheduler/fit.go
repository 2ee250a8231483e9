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
	return overCapacity(n, s.cpu, s.mem, s.disk)
}

// FitUsage checks a node's summed usage (what its allocations take once
// a plan committed) against its allocatable capacity, as Fit does for
// allocations that hold no host port and no GPU (u.Itemized 0), with
// Fit's errors.
func FitUsage(n *api.Node, u api.Usage) error {
	if u.Itemized != 0 {
		return fmt.Errorf("node %s: usage of %d allocations with ports or GPUs cannot be checked as a sum", n.Name, u.Itemized)
	}
	return overCapacity(n, u.CPU, u.Memory, u.Disk)
}

// overCapacity names the first resource used beyond the node's
// allocatable capacity.
func overCapacity(n *api.Node, cpu, mem, disk int) error {
	c := n.Allocatable()
	switch {
	case cpu > c.CPU:
		return fmt.Errorf("node %s cpu over capacity: %d of %d millicores", n.Name, cpu, c.CPU)
	case mem > c.Memory:
		return fmt.Errorf("node %s memory over capacity: %d of %d MiB", n.Name, mem, c.Memory)
	case c.Disk > 0 && disk > c.Disk:
		return fmt.Errorf("node %s disk over capacity: %d of %d MiB", n.Name, disk, c.Disk)
	}
	return nil
}
