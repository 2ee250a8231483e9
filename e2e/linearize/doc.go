// Package linearize checks, against a real cluster of three `gantry
// server` processes (each with its embedded etcd member) and two
// null-driver agents, that job registration, update, stop and consistent read stay
// linearizable while the leader is killed with SIGKILL and restarted on
// its data and one of two agents is cut off from every server; the
// recorded history is checked with porcupine, and the allocations at the
// end are counted on the servers and on the agents.
package linearize
