// Package versions owns what Gantry knows about the versions of the
// components a node runs on: reading them as real systems print them
// (Parse, Compare, ParseConstraint, on github.com/hashicorp/go-version),
// a version policy (minimums, known-bad ranges with a note and a link,
// end-of-life dates; the starting policy ships as policy/default.yaml),
// the findings of a policy over an inventory (Evaluate, with drift between
// nodes), and an upgrade order in batches (PlanUpgrades) that keeps every
// service at count − max_parallel healthy replicas, never splits a running
// gang and keeps the queues' guaranteed CPU.
//
// Everything here is pure: an inventory, a cluster view and a time value
// in, findings and a plan out. The inventory comes from node attributes
// the agent's fingerprint sets (FromNodes); reading them from the server
// and printing belongs to the CLI (internal/cli/version.go). This package
// must never do I/O or read the clock.
package versions
