// Package tasklife owns the agent's decisions about a task's life, as
// pure functions the agent's runners call and carry out: the task
// lifecycle machine (step.go: Step(state, event, now) returns the next
// state and the effects to carry out — start, wait, checks, a wake-up
// after a restart delay, stop, destroy, the task events to record and
// when to report), the restart tracker (restart.go: after an exit,
// restart after a delay, finish, or give up, per the group's restart
// policy and the time it is told), and the adoption planner (adopt.go:
// after an agent restart, what becomes of each task the drivers found,
// given what the servers hold for the node and whether their answer is
// consistent).
//
// It must never do I/O, read a clock or start a goroutine
// (internal/archtest checks it): the task runner in internal/agent owns
// the timers, talks to the drivers, runs the checks and reports to the
// servers, and feeds what happened back to Step.
package tasklife
