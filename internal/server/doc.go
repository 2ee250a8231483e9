// Package server owns the control plane of a Gantry server: the /v1 HTTP
// API, leader election, the evaluation broker and worker that turn
// evaluations into plans (reconciler, then scheduler), deciding the next
// evaluation while the last one's plan commits (pipeline.go), the plan applier
// that re-checks each plan against the latest state and commits it in one
// guarded etcd transaction, the node monitor that marks silent nodes down,
// the deployment watcher (evaluations as a rollout's allocations change
// health, automatic rollback), the service catalog behind /v1/services
// and DNS, and garbage collection. Agents reach it over the node stream
// (stream.go: one long-lived request carrying many nodes' allocations,
// reports and heartbeats, resumed from a store revision) or, kept for
// compatibility, the long-poll endpoints (nodes.go); both answer from the
// same store and commit reports through the same batcher (reports.go).
// GPU work is placed by
// Config.GPUPolicy, by default gantry learning the typical tasks from the
// jobs submitted (gpuscore.go). The virtualization monitor (package
// vspheremon), GPU defragmentation (package defragrun), the container
// isolation policy (package isolation: admission of jobs against it, the
// nodes' audit reports), the nodes' usage history (package nodehistory)
// and ACL administration (package acladmin: bootstrap, tokens, policies)
// are components: the server only constructs them with their ports,
// mounts their routes, runs their loops (while it leads, where only the
// leader runs them), and calls them where its own work needs theirs (job
// submissions ask isolation.Admit, heartbeats hand their sample to
// nodehistory.Record).
//
// Authorization stays here (auth.go): every route, a component's and the
// web UI's included, is checked against its rule in routeRules before its
// handler runs, and handlers that authorize against the object they read
// call allow (components get it as a port).
//
// It is the shell around the pure cores: it reads the clock and the store
// and hands their values to the reconciler and scheduler. It must never
// start tasks or talk to a container engine (that is the agent's job), and
// must never write to the store except through the state package. It
// serves the web UI's handlers (internal/ui/web) on its listener when the
// daemon mounts them (Mount, Route, and the read methods of forui.go), but
// must never import the UI.
package server
