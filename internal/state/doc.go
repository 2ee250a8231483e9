// Package state owns Gantry's durable state on etcd (embedded or an
// existing cluster) and the in-memory view of it that the server reads.
//
// Every object lives under one key prefix as JSON, except allocations,
// the most numerous: those are kept in the compact form of
// internal/state/codec once every server can read it (encoding.go), and
// read in either form; events carry them as JSON whatever the store
// keeps. The view is fed by one watch over that prefix, and the event
// stream is that same watch history, so an event's index is the etcd
// revision of the change: a stream from a recent index is served from
// the changes the view applied last (recent.go), any other by an etcd
// watch of its own. Every write that depends on a read is a
// transaction that compares revisions.
//
// It must never decide anything: placement belongs to the scheduler,
// desired state to the reconciler. Callers must treat objects returned by
// the view as read-only and copy before changing them.
package state
