// Package lifecycle owns the allocation state machine: the table of
// transitions an allocation may take over its pair of statuses (what the
// servers want, api.AllocDesired*, and what its node reports, api.Alloc*),
// who may take each one (the servers or the agent), and the question
// "is this change allowed?".
//
// The table is the one source for the state machine. The store refuses
// agent reports the table does not allow, the servers consult it before
// marking an allocation lost, the agent consults it before reporting, the
// end-to-end tests fail on any observed pair it does not allow, and the
// Promela model in model/ includes transitions generated from it
// (go generate ./internal/lifecycle/...; a test fails when the checked-in
// file is stale).
//
// It is pure: data and functions of their arguments. It must never do
// I/O, read the clock, hold state or import anything beyond internal/api.
package lifecycle

//go:generate go run ./gen -out model/transitions.pml
