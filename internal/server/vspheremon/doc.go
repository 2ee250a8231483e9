// Package vspheremon is the virtualization monitor. While its server
// leads it runs one vsphere.Collector per vCenter connection stored,
// records the changes they report as events of topic vsphere, keeps the
// vsphere.* attributes of the nodes matched to VMs by BIOS UUID current,
// and drains a matched node whose ESXi host enters maintenance mode when
// the connection asks for it (once per maintenance: an operator who
// re-enables the node is not overruled); internal/server/vspheredrain
// decides both, this package carries the decision out. It serves /v1/vsphere/*
// (connections, status, history) and lists Gantry's own VMs, the qemu
// tasks of live allocations, under the name "gantry".
//
// It owns the collectors and the node matches, nothing else. It reads
// through View and Connections, changes nodes only through NodeWriter
// with the leader's fence, asks for evaluations through
// Ports.EvalJobsOnNode, and sits on the server's API through Front (the
// server authorizes every request before a handler runs, and a follower
// forwards what only the leader holds).
//
// It must never let a vCenter hold anything else up: collectors run in
// their own goroutines and only hand changes over through a queue, so a
// slow or hung vCenter delays its own collector and never the broker or a
// store write of the scheduler. It must never change a node without the
// leader's fence, never answer on a follower what only the leader holds
// (the collectors, their status and history), and never store a
// connection it could not log in to.
package vspheremon
