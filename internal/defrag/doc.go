// Package defrag decides which placed GPU work to move so that a task that
// fits nowhere can be placed: a move plan. It owns the search and the small
// model of a cluster it searches (nodes with free CPU and memory, GPUs with
// free milli-GPU, the items placed on them) and the rules a plan must keep.
//
// A plan is a list of moves, each one item stopped on its node and placed
// on another node, followed by the placement of the task it was made for.
// Every plan Find returns keeps these invariants, checked by Apply and by
// the property tests:
//
//   - nothing is over-allocated: no node gives more CPU or memory than it
//     has, no GPU more than 1000 milli, a GPU held whole holds nothing else;
//   - MIG legality: a GPU in MIG mode is never a destination and what it
//     holds never moves (MIG instances are pinned to their slices);
//   - gangs stay whole: an item holding several GPUs moves as one, to one
//     node; work that must stay together across items (a gang of several
//     replicas) is given to the search as pinned and never moves;
//   - an item moved at time t is not moved again before t+Window;
//   - at most MaxMoves moves, and, applied, the plan places the task.
//
// The search is online and deterministic: it sees only the current state
// and the task at hand, and breaks every tie by node and GPU index. For
// each node where the task could run it finds the fewest items to evict
// (whole GPUs to clear, or shares to lift off one GPU, then CPU or memory
// still short), ranks the nodes by that count, and for the best ones finds
// each evicted item a destination elsewhere by best fit (the tightest GPU
// that takes it), so that moved work fills slivers other work cannot use.
// A share with no such GPU may still go by a chain of two moves: another
// share leaves a GPU for a place of its own on a third node, and the
// evicted share takes the room it left (tightest room first); both moves
// count against MaxMoves.
//
// It must never do I/O, read the clock or draw random numbers (the
// scheduler's architecture test checks it): time is a counter the caller
// passes in (the replay uses the task index). Its users are the trace
// replay (internal/sim, `gantry sim --migrate`) and the server's GPU
// defragmenter (internal/defragplan, `gantry gpu defrag`).
package defrag
