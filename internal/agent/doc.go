// Package agent owns what happens on one node: its fingerprint and
// registration, heartbeats, following the allocations the servers assign
// to it, running their tasks through drivers (restarts per policy, health
// checks), reporting every transition, re-attaching to its tasks after a
// restart, serving their logs and exec sessions, auditing every
// container of its Docker engine for isolation (audit.go), and, with --lb,
// a load balancer for the cluster's services that drains an allocation's
// endpoints before its tasks are stopped (proxy.go). It also owns the node
// side of GPUs (gpu.go: discovery through a GPURuntime, MIG instances
// created before a task starts and destroyed once idle on managed GPUs,
// XID/ECC health, MPS limits for shares; docs/gpu.md) and the sampling of
// node, GPU and task usage for /metrics and the servers' history
// (sampler.go).
//
// A task's life is decided by internal/agent/tasklife (Step, the restart
// tracker, the adoption planner); the task runner (taskrunner.go) is the
// shell that feeds it events and carries out its effects through a small
// port (taskport.go), with an injected clock. The runner must never decide
// a task's next step inline. A runner has a goroutine of its own, except,
// with Config.EventTasks, for tasks of drivers whose calls return at once
// (the null driver, for the load tool's simulated nodes): those are
// stepped from the agent's task loop (taskloop.go), one queue of events
// per agent, with no goroutine per task.
//
// It must never decide placement or desired state, and never talk to the
// state store: everything goes through the servers' HTTP API.
package agent
