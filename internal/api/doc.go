// Package api owns Gantry's data model: jobs, groups, tasks, resources, GPU
// requests, nodes, allocations, evaluations and events, plus the small
// helpers that define their identity (names, keys) and their lifecycles
// (which allocation and task states are terminal).
//
// Every other package speaks in these types. They are plain data, encoded
// as JSON on the wire and in the store.
//
// This package must never do I/O, read the clock, or import another Gantry
// package: it sits at the bottom of the dependency graph.
package api
