// Package linearize checks, against a real cluster of three `gantry
// server` processes (each with its embedded etcd member) and a null-driver
// agent, that job registration, update, stop and consistent read stay
// linearizable while the leader is killed with SIGKILL and restarted on
// its data; the recorded history is checked with porcupine.
package linearize
