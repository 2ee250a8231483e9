// Package cli owns the gantry command line: the daemons (dev, server,
// agent), every verb users type (job, alloc, node, eval), their flags,
// configuration precedence (flags, then GANTRY_* environment, then a
// config file), output (tables, --json) and exit codes (0 ok, 1 error,
// 2 cannot be placed).
//
// It must never decide anything itself: verbs talk to the server's HTTP
// API, and the daemons only wire the state, server and agent packages
// together.
package cli
