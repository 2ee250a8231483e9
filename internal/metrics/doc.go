// Package metrics owns Gantry's Prometheus metrics: the registry each
// agent and server serves at GET /metrics (Registry, to which other
// packages add their collectors with Register), the names and labels of
// the series, the collector of an agent's node, GPU and allocation
// readings (NodeCollector; GPU series carry the DCGM exporter's names and
// labels so its dashboards and alerts work unchanged), and the bounded
// per-node history of samples the servers keep (History).
//
// It samples nothing itself: agents read the node, its GPUs and its tasks
// and hand a Snapshot over; servers observe their own work.
package metrics
