// Package driver declares the small contract between the agent and the
// runtimes that start tasks (docker, exec, wasm): start, wait, stop, destroy and
// recover, with logs and exec as optional capabilities found by type
// assertion.
//
// It owns the contract and the helpers every driver shares (labels, task
// environment). It must never import the agent or the server, and the
// runtimes under it must never talk to the state store.
package driver
