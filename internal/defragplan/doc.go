// Package defragplan decides which replicas the server moves to make room
// for GPU work that fits nowhere: it turns the server's state (nodes, live
// allocations, their jobs) into internal/defrag's model, runs its search,
// and checks the moves it proposes with the scheduler's own Fit and Plan
// before it returns them.
//
// Only replicas of groups with `migrate: true` move, and of those only
// the ones whose GPU work is one share or whole GPUs in one task, without
// static ports, on a node that takes new work, and never moved before
// (a replica moved once stays, so apply cannot ping-pong). Gangs, MIG
// instances and everything else are pinned. A plan never over-allocates
// a GPU, node CPU or memory (scheduler.Fit on every node it touches),
// places each moved replica only on a node its group's constraints and
// drivers allow, and, for a job, ends with the scheduler placing every
// replica the job is waiting for (preemption off).
//
// Background is the background defragmenter's round (server flag
// --gpu-defrag-interval): follow the move under way, or propose a plan,
// or start a proposed move within the per-hour rate limit, never a move
// of a group without migrate: true.
//
// Decide and Background are pure: state (and, for Background, the time)
// in, moves out. They do no I/O, read no clock and draw no random
// numbers; the server (internal/server, `gantry gpu defrag` and the
// background loop) reads the store, calls them and carries the moves out.
package defragplan
