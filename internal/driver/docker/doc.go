// Package docker is Gantry's Docker engine driver: it turns a
// driver.TaskConfig into one container, starts, waits for, stops, removes
// and re-finds it, and streams its logs and runs commands in it.
//
// It owns the mapping from a task to a container create request
// (BuildContainer, a pure function the audit checks property-test), the
// container's labels (driver.Labels, which Recover lists by) and its name
// gantry-<job>-<group>-<task>-<alloc id first 8>.
//
// It must never talk to the state store, never decide placement or host
// ports (the scheduler assigned them; the driver only publishes them), and
// never restart a container itself: restart policy is always "no" and the
// agent decides what happens after an exit.
//
// The engine is found as the docker CLI finds it (DOCKER_HOST, else
// unix:///var/run/docker.sock) unless Config.Host says otherwise; the
// client negotiates the API version down to the engine's (20.10 speaks
// 1.41).
package docker
