// Package defragrun carries GPU defragmentation out on the leader:
// `gantry gpu defrag plan|apply` (POST /v1/gpu/defrag/plan and /apply),
// the moves `job plan` suggests for a job blocked only by fragmentation,
// and the opt-in background defragmenter. What to move is decided
// elsewhere, by internal/defragplan (Decide, Background), pure functions
// of the state this package reads; this package owns doing it.
//
// A move is carried out one step per call: place a replacement on the
// planned node and GPUs, and once it is healthy stop the replica it
// replaces (or, failed or late, stop the replacement and keep the old
// one). Between steps the state lives in the store (Allocation.Move on
// the replacement, the latest proposal as a defrag record), so any server
// that leads takes over where another stopped. Every step is recorded as
// an event of topic defrag, once: the placement and the stop commit with
// their record (started; completed or abandoned) in one transaction, and
// the healthy record is not written again when the move's latest record
// already says so, so a leader deposed between two steps leaves nothing
// half-recorded for the next one.
//
// It reads through View and writes only through Writer, every write with
// the leader's fence; it sits on the server's API through Front.
//
// It must never commit a replacement the scheduler has not placed on its
// node and scheduler.Fit has not re-checked against the node's latest
// allocations, and never without the node's plan guard; never stop a
// replica before its replacement is healthy; never have more than one
// move under way; never move a replica of a group without migrate: true
// (defragplan decides, this package does not override it); and never
// write without the leader's fence.
package defragrun
