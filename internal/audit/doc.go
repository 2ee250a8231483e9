// Package audit judges container isolation on a Docker engine against the
// CIS Docker Benchmark v1.6.0: the container runtime checks of section 5
// (plus 4.1, running as root) over each container's inspected
// configuration, and the engine-level settings of section 2 (user-namespace
// remapping, default no-new-privileges, live restore) over the engine's
// info, reported separately. It also owns the admission policy that says
// which failing checks block and which only warn (with per-namespace
// exceptions), and the renderers of a report: a text table, JSON and
// SARIF 2.1.0.
//
// The package is a pure core with one thin shell:
//
//   - Checks are small functions of (container.InspectResponse, Engine).
//     They never do I/O and never read the clock. A check whose verdict
//     depends on how the host is configured (AppArmor, seccomp, user
//     namespaces, cgroup support, the daemon's defaults) says in its
//     finding's detail what it found on the host instead of guessing.
//   - A Report carries the time it was taken as a value given by the
//     caller; nothing here calls time.Now.
//   - Collector is the only code that talks to the engine: it lists and
//     inspects every container (Gantry's and others') and reads the
//     engine's info, then hands them to the pure checks.
//   - AuditCreate runs the same checks on a container before it exists,
//     from the create request (admission); what only the image can decide
//     (its USER, its HEALTHCHECK) it reports as informational.
//   - Engine.Allocations, when the caller (the agent) knows them, lets
//     5.18 judge every container's GPUs against its allocation and 5.27
//     accept Gantry's own health checks (the gantry.checks label).
//
// The package must never change a container, an image or the engine's
// configuration: it only reads. Acting on findings (refusing a job,
// recording events and metrics, exiting non-zero) belongs to its callers.
package audit
