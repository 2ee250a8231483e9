// Package validate owns the semantic checks of a job: the questions the
// spec's own rules (package jobspec) cannot answer field by field, and
// the question "can this job ever run on this cluster, and if not, why?".
//
//   - Rules internal to a job: an update strategy that can never make
//     progress (canaries beyond the group's count, a healthy_deadline no
//     replica can meet after its checks' grace), load-balancer ports that
//     collide with each other or with the job's static host ports.
//   - Rules against the cluster's state: a load-balancer port another
//     job's service already holds, a namespace nobody knows (advice only:
//     namespaces are created by use and served by queue default).
//   - Rules against the cluster's shape: resources no node could hold
//     even when empty, GPU models, memory, compute capability, MIG
//     profiles or shares no node offers, constraints no node satisfies
//     (with the near misses), gangs and counts larger than the empty
//     cluster holds at once, queue limits smaller than one replica.
//
// Rules runs the quick checks (the job's own and its conflicts with what
// the cluster holds), Shape the checks against the cluster's shape (about
// the cost of placing the job once), Job both.
//
// Each problem has a Class: Invalid problems make the server reject the
// job whole; Unplaceable ones (the cluster as it is cannot run it, but
// nodes may join and limits change) and Advice are returned as warnings
// on submit. `gantry job validate` exits 1 for Invalid, 2 when the only
// problems are Unplaceable.
//
// It is pure: its input is a job that jobspec accepted and a snapshot of
// the cluster (nodes, queues, jobs), its output the problems located by
// path. It must never do I/O, read the clock or keep state; callers attach
// file lines (jobspec.Locator). It never decides itself whether work fits
// a node or a queue: it asks the scheduler (Engine.Feasibility,
// Queues.Admit), so that validation and placement cannot disagree. What
// it computes is only the wording: the largest node, the values that
// exist, the closest misses.
package validate
