// Package vsphere watches vCenters (or ESXi hosts) through govmomi: it
// keeps each connection's inventory current with the property
// collector's incremental updates (WaitForUpdatesEx over a container
// view), samples the PerformanceManager's real-time counters of every
// host and VM each round, keeps a bounded history per entity, turns
// inventory changes into events and matches Gantry nodes to their VMs by
// BIOS UUID.
//
// It owns: talking to vCenter (Dial, Collector), the inventory model
// built from property updates, the pure deciders around it (Diff for
// events, Match for node attributes, Backoff for retries) and the
// Prometheus series of what it collected.
//
// It must never: write to the cluster state, drain nodes or read the
// clock inside the pure deciders — the server's leader glue does the
// writing, and the deciders take times as values. It must never print or
// log a connection's password.
package vsphere
