// Package admission decides whether a job may run under the cluster's
// isolation policy, before anything is created.
//
// For every docker task of a job it builds the container create request
// the Docker driver would send (docker.BuildContainer, over a TaskConfig
// that stands in for the allocation: same ports, resources and GPU form)
// and judges it with the container checks of internal/audit, the very
// checks the agents' runtime audit runs on the containers the engine
// reports. The policy (audit.Policy, with per-namespace exceptions) then
// says which failures block and which only warn.
//
// The package is pure: no I/O, no clock. The server calls Review from the
// register and plan handlers and refuses the job with every blocking
// finding when it is not admitted.
package admission
