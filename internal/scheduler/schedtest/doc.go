// Package schedtest is a side-effect-free harness for the scheduler: build
// a cluster and jobs in a few lines, run the scheduler against the
// in-memory state, apply its plans, and check every node with
// scheduler.Fit.
//
//	h := schedtest.New(scheduler.Config{})
//	h.AddNodes(schedtest.Nodes(3, "n", schedtest.CPU(4000), schedtest.Label("zone", "a"))...)
//	plan, err := h.Run(schedtest.Job("web", schedtest.Group("web", 3, schedtest.Task("srv", 500, 256))))
//	// assert on plan.Placed, plan.Failed; h.Check() re-checks every node
//
// It also builds the heterogeneous fleets of the benchmarks (Fleet) and
// the random clusters of the property tests. Nothing here does I/O or
// reads the clock; randomness comes from explicitly seeded sources.
package schedtest
