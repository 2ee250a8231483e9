// Package disconnect checks, against a real `gantry server` process and a
// null-driver `gantry agent` on loopback, that an agent cut off from every
// server stops the allocations of a group with disconnect.stop_after
// itself, and reports them failed because the node was disconnected once
// a server answers again.
package disconnect
