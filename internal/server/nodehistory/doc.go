// Package nodehistory is the nodes' usage history on a server: the
// samples agents send with their heartbeats (Record), kept in memory, at
// most Config.Size per node and one per Config.Interval, for the nodes
// the store still knows; GET /v1/nodes/{id}/metrics (a node's samples)
// and GET /v1/allocations/{id}/metrics (an allocation's share of its
// node's, AllocMetrics); and, when Config.File is set, the history kept
// across restarts (loaded at start, saved every Config.Save and at
// shutdown).
//
// The history is this server's own: a node's heartbeats reach whichever
// server answers, so each server holds the samples that reached it, and
// answers with them (nothing is forwarded to the leader, nothing is
// written to the store). It reads the nodes through Nodes, resolves the
// objects a request names through the server's lookups, checks the
// caller's capability on an allocation's namespace through Allow (the
// server authorizes every request before a handler runs; the allocation
// route is authorized in the handler, against the allocation's
// namespace) and answers through Front.
//
// It must never put a sample into etcd (every heartbeat brings one: the
// store's history would grow with the cluster's size times its
// heartbeat rate), never hold a heartbeat up on the disk (saves run on
// Run's goroutine, and a save writes a temporary file renamed over the
// old one, so a crash leaves the previous save whole), and never show an
// allocation's GPU readings from before it held the GPUs.
package nodehistory
