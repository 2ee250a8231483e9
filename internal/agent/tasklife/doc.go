// Package tasklife owns the agent's decisions about a task's life, as
// pure functions the agent's runners call and carry out: the restart
// tracker (restart.go: after an exit, restart after a delay, finish, or
// give up, per the group's restart policy and the time it is told), and
// the adoption planner (adopt.go: after an agent restart, what becomes of
// each task the drivers found, given what the servers hold for the node
// and whether their answer is consistent).
//
// It does no I/O, reads no clock and starts no goroutine (internal/archtest
// checks it); the runners in internal/agent read the clock, talk to the
// drivers and report to the servers.
package tasklife
