// Package sim replays a GPU cluster trace through Gantry's scheduler core
// and measures how well each GPU placement policy packs it: `gantry sim`.
//
// It follows ../shared/traces/alibaba-gpu-v2023/REPLAY.md, which describes
// how the FGD study ("Beware of Fragmentation", USENIX ATC 2023) replayed
// Alibaba's production trace: the node list becomes api.Nodes, each task
// of a pod list becomes a one-task batch job (gpu_milli as a share's
// milli, or whole GPUs), the list is shuffled with the seed and tuned to
// 1.3 × the cluster's GPU capacity by appending random copies, and every
// task is tried once, in order, with scheduler.Engine.Plan against one
// evolving scheduler.Cluster. After every task the replay records the
// arrived GPU demand, the GPU allocation ratio and the fragmentation
// against the typical tasks; curves are then reduced to one value per
// whole percent of arrived demand, as the study's result files are.
//
// The policies are the scorers of internal/scheduler/policy. The
// published results in fgd-expected-results/ are the yardstick
// (CheckPublished): a policy that does not reproduce them is not a
// baseline.
//
// With --migrate (ReplayMigrate) a task that fits nowhere may get room by
// moving placed GPU tasks to other nodes: internal/defrag proposes the
// moves, within a budget counted in percent of the tasks placed so far,
// and the replay carries them out on the same Cluster and checks every
// node they touch with scheduler.Fit. The one-pass replay is unchanged and
// always runs first. UpperBound is a ceiling no policy passes, with or
// without moves, computed from the task order alone.
//
// Run is the whole command (flags, worker pool, outputs); the cobra
// wrapper in internal/cli and cmd/gantry-sim only call it.
package sim
