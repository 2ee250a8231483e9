package jobspec

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
)

// base is a valid spec; rule cases edit it. Lines 1-8 are fixed, so text
// appended at indentation 0, 4 or 8 starts at line 9 and adds keys to the
// job, the group or the task.
const base = `name: web
groups:
  - name: web
    tasks:
      - name: server
        driver: docker
        config: {image: "demo:1"}
        resources: {cpu: 100, memory: 64}
`

// edit replaces the first occurrence of each old text (pairs) and appends add.
func edit(add string, pairs ...string) string {
	s := base
	for i := 0; i+1 < len(pairs); i += 2 {
		if !strings.Contains(s, pairs[i]) {
			panic("edit: base has no " + pairs[i])
		}
		s = strings.Replace(s, pairs[i], pairs[i+1], 1)
	}
	return s + add
}

const nameRule = "names must match [a-z0-9][a-z0-9-]{0,62}"

var ruleCases = []struct {
	name string
	spec string
	want []string
}{
	// Names.
	{"job name invalid", edit("", "name: web\ngroups", "name: Web\ngroups"),
		[]string{`name: "Web" is not a valid name; ` + nameRule + ` (t.yaml:1)`}},
	{"job name missing", edit("", "name: web\ngroups", "priority: 5\ngroups"),
		[]string{`name: is required; ` + nameRule + ` (t.yaml:1)`}},
	{"namespace invalid", edit("namespace: Prod_1\n"),
		[]string{`namespace: "Prod_1" is not a valid name; ` + nameRule + ` (t.yaml:9)`}},
	{"group name invalid", edit("", "  - name: web", "  - name: -web"),
		[]string{`groups[0].name: "-web" is not a valid name; ` + nameRule + ` (t.yaml:3)`}},
	{"task name too long", edit("", "name: server", "name: "+strings.Repeat("a", 64)),
		[]string{`groups[0].tasks[0].name: "` + strings.Repeat("a", 64) + `" is not a valid name; ` + nameRule + ` (t.yaml:5)`}},
	{"port name invalid", edit("", `config: {image: "demo:1"}`, `config: {image: "demo:1", ports: [{name: HTTP}]}`),
		[]string{`groups[0].tasks[0].config.ports[0].name: "HTTP" is not a valid name; ` + nameRule + ` (t.yaml:7)`}},

	// Job fields.
	{"type unknown", edit("type: cron\n"),
		[]string{`type: "cron" is not a job type; use service or batch (t.yaml:9)`}},
	{"priority too high", edit("priority: 101\n"),
		[]string{`priority: must be between 0 and 100, not 101 (t.yaml:9)`}},
	{"priority negative", edit("priority: -1\n"),
		[]string{`priority: must be between 0 and 100, not -1 (t.yaml:9)`}},
	{"placement unknown", edit("placement: random\n"),
		[]string{`placement: "random" is not a placement algorithm; use binpack or spread, or leave it out for the cluster's default (t.yaml:9)`}},
	{"no groups", "name: web\ngroups: []\n",
		[]string{`groups: must list at least one group (t.yaml:2)`}},
	{"groups missing", "name: web\n",
		[]string{`groups: must list at least one group (t.yaml:1)`}},
	{"null group", "name: web\ngroups:\n  - ~\n",
		[]string{`groups[0]: must be a group, not null (t.yaml:3)`}},
	{"no tasks", "name: web\ngroups:\n  - name: web\n",
		[]string{`groups[0].tasks: must list at least one task (t.yaml:3)`}},
	{"duplicate group", edit("  - name: web\n    tasks:\n      - name: server\n        driver: docker\n        config: {image: \"demo:1\"}\n        resources: {cpu: 100, memory: 64}\n"),
		[]string{`groups[1].name: "web" is already the name of groups[0]; each group needs its own name (t.yaml:9)`}},
	{"duplicate task", edit("      - name: server\n        driver: exec\n        config: {command: /bin/true}\n        resources: {cpu: 100, memory: 64}\n"),
		[]string{`groups[0].tasks[1].name: "server" is already the name of groups[0].tasks[0]; each task needs its own name (t.yaml:9)`}},
	{"duplicate port", edit("", `config: {image: "demo:1"}`, `config: {image: "demo:1", ports: [{name: http}, {name: http}]}`),
		[]string{`groups[0].tasks[0].config.ports[1].name: "http" is already the name of groups[0].tasks[0].config.ports[0]; each port needs its own name (t.yaml:7)`}},

	// Counts.
	{"count too high", edit("    count: 10001\n"),
		[]string{`groups[0].count: must be between 0 and 10000, not 10001 (t.yaml:9)`}},
	{"count negative", edit("    count: -1\n"),
		[]string{`groups[0].count: must be between 0 and 10000, not -1 (t.yaml:9)`}},
	{"gang min zero", edit("    gang: {min: 0}\n"),
		[]string{`groups[0].gang.min: must be at least 1, not 0 (t.yaml:9)`}},
	{"gang min above count", edit("    count: 2\n    gang: {min: 3}\n"),
		[]string{`groups[0].gang.min: must not exceed the group's count (2), not 3 (t.yaml:10)`}},
	{"migrate with a gang", edit("    count: 2\n    gang: {min: 2}\n    migrate: true\n"),
		[]string{`groups[0].migrate: a gang group is never moved (a move would split it); remove migrate or the gang (t.yaml:11)`}},
	{"migrate with a MIG instance", edit("    migrate: true\n", "memory: 64}", "memory: 64, gpu: {mig: 1g.10gb}}"),
		[]string{`groups[0].migrate: task server holds a MIG instance, which is never moved (it is pinned to its slices); remove migrate (t.yaml:9)`}},
	{"disconnect stop_after negative", edit("    disconnect: {stop_after: -5s}\n"),
		[]string{`groups[0].disconnect.stop_after: must not be negative, not -5s; give how long a node cut off from the servers keeps this group running (like 5m), or leave it out to never stop it (t.yaml:9)`}},
	{"disconnect stop_after without a unit", edit("    disconnect: {stop_after: 30}\n"),
		[]string{`groups[0].disconnect.stop_after: must be a duration with a unit, like "10s" or "5m", not 30 (t.yaml:9)`}},
	{"disconnect replace not a bool", edit("    disconnect: {replace: maybe}\n"),
		[]string{`groups[0].disconnect.replace: must be true or false, not "maybe" (t.yaml:9)`}},
	{"disconnect unknown key", edit("    disconnect: {stop_on_client_after: 5m}\n"),
		[]string{`groups[0].disconnect.stop_on_client_after: unknown field; the fields allowed here are replace, stop_after (t.yaml:9)`}},

	// Drivers.
	{"driver unknown", edit("", "driver: docker", "driver: podman"),
		[]string{`groups[0].tasks[0].driver: "podman" is not a driver; use docker, exec, qemu or wasm (t.yaml:6)`}},
	{"driver missing", edit("", "driver: docker", "# no driver"),
		[]string{`groups[0].tasks[0].driver: is required; use docker, exec, qemu or wasm (t.yaml:5)`}},
	{"docker needs image", edit("", `config: {image: "demo:1"}`, `config: {command: /demo}`),
		[]string{`groups[0].tasks[0].config.image: is required by the docker driver (t.yaml:7)`}},
	{"exec needs command", edit("", "driver: docker", "driver: exec", `config: {image: "demo:1"}`, `config: {args: [a]}`),
		[]string{`groups[0].tasks[0].config.command: is required by the exec driver (t.yaml:7)`}},
	{"exec takes no image", edit("", "driver: docker", "driver: exec", `config: {image: "demo:1"}`, `config: {image: "demo:1", command: /x}`),
		[]string{`groups[0].tasks[0].config.image: applies only to the docker driver; the exec driver runs config.command (t.yaml:7)`}},
	{"image with space", edit("", `image: "demo:1"`, `image: "demo 1"`),
		[]string{`groups[0].tasks[0].config.image: "demo 1" is not an image reference: it must not contain white space (t.yaml:7)`}},
	{"env name", edit("", `config: {image: "demo:1"}`, `config: {image: "demo:1", env: {1X: a}}`),
		[]string{`groups[0].tasks[0].config.env["1X"]: "1X" is not a variable name; use letters, digits and _, not starting with a digit, at most 256 bytes (t.yaml:7)`}},

	// Resources.
	{"cpu zero", edit("", "cpu: 100", "cpu: 0"),
		[]string{`groups[0].tasks[0].resources.cpu: must be greater than 0 (millicores), not 0 (t.yaml:8)`}},
	{"cpu enormous", edit("", "cpu: 100", "cpu: 2000000"),
		[]string{`groups[0].tasks[0].resources.cpu: must be at most 1000000 millicores (1000 cores), not 2000000 (t.yaml:8)`}},
	{"memory missing", edit("", "cpu: 100, memory: 64", "cpu: 100"),
		[]string{`groups[0].tasks[0].resources.memory: must be greater than 0 (MiB), not 0 (t.yaml:8)`}},
	{"memory enormous", edit("", "memory: 64", "memory: 9223372036854775807"),
		[]string{`groups[0].tasks[0].resources.memory: must be at most 16777216 MiB (16 TiB), not 9223372036854775807 (t.yaml:8)`}},
	{"disk negative", edit("", "memory: 64", "memory: 64, disk: -1"),
		[]string{`groups[0].tasks[0].resources.disk: must not be negative, not -1 (t.yaml:8)`}},
	{"disk enormous", edit("", "memory: 64", "memory: 64, disk: 1073741825"),
		[]string{`groups[0].tasks[0].resources.disk: must be at most 1073741824 MiB (1 PiB), not 1073741825 (t.yaml:8)`}},

	// Ports.
	{"port to out of range", edit("", `config: {image: "demo:1"}`, `config: {image: "demo:1", ports: [{name: http, to: 65536}]}`),
		[]string{`groups[0].tasks[0].config.ports[0].to: must be a port number between 1 and 65535, not 65536 (t.yaml:7)`}},
	{"port static negative", edit("", `config: {image: "demo:1"}`, `config: {image: "demo:1", ports: [{name: http, static: -80}]}`),
		[]string{`groups[0].tasks[0].config.ports[0].static: must be a port number between 1 and 65535, not -80 (t.yaml:7)`}},
	{"static ports collide", edit("      - name: side\n        driver: exec\n        config:\n          command: /side\n          ports:\n            - {name: admin, static: 8080}\n        resources: {cpu: 100, memory: 64}\n",
		`config: {image: "demo:1"}`, `config: {image: "demo:1", ports: [{name: http, static: 8080}]}`),
		[]string{`groups[0].tasks[1].config.ports[0].static: host port 8080 is already taken by groups[0].tasks[0].config.ports[0].static; the tasks of a group share a node, so their static ports must differ (t.yaml:14)`}},

	// Checks.
	{"check type missing", edit("        checks: [{port: http}]\n"),
		[]string{`groups[0].tasks[0].checks[0].type: is required; use http, tcp or exec (t.yaml:9)`}},
	{"check type unknown", edit("        checks: [{type: grpc}]\n"),
		[]string{`groups[0].tasks[0].checks[0].type: "grpc" is not a check type; use http, tcp or exec (t.yaml:9)`}},
	{"http check needs path and port", edit("        checks:\n          - type: http\n"),
		[]string{
			`groups[0].tasks[0].checks[0].port: is required by http checks; name one of the task's ports (t.yaml:10)`,
			`groups[0].tasks[0].checks[0].path: is required by http checks; give a path like "/healthz" (t.yaml:10)`,
		}},
	{"http check path without slash", edit("        checks: [{type: http, port: http, path: healthz}]\n", `config: {image: "demo:1"}`, `config: {image: "demo:1", ports: [{name: http}]}`),
		[]string{`groups[0].tasks[0].checks[0].path: "healthz" is not a URL path; it must start with "/" and contain no white space (t.yaml:9)`}},
	{"check port undeclared", edit("        checks: [{type: tcp, port: admin}]\n", `config: {image: "demo:1"}`, `config: {image: "demo:1", ports: [{name: http}]}`),
		[]string{`groups[0].tasks[0].checks[0].port: "admin" is not a port of this task; name one declared under config.ports (t.yaml:9)`}},
	{"exec check needs command", edit("        checks: [{type: exec}]\n"),
		[]string{`groups[0].tasks[0].checks[0].command: is required by exec checks; give the program and its arguments, like ["pg_isready"] (t.yaml:9)`}},
	{"check fields of another type", edit("        checks: [{type: exec, command: [x], port: http, path: /}]\n"),
		[]string{
			`groups[0].tasks[0].checks[0].path: applies only to http checks (t.yaml:9)`,
			`groups[0].tasks[0].checks[0].port: applies only to http and tcp checks (t.yaml:9)`,
		}},
	{"check timeout above interval", edit("        checks:\n          - {type: exec, command: [x], interval: 5s, timeout: 6s}\n"),
		[]string{`groups[0].tasks[0].checks[0].timeout: must not be longer than the interval (5s), not 6s (t.yaml:10)`}},
	{"check negative interval and failures", edit("        checks:\n          - type: exec\n            command: [x]\n            interval: -5s\n            failures: -1\n            grace: -1s\n"),
		[]string{
			`groups[0].tasks[0].checks[0].interval: must be longer than 0s, not -5s (t.yaml:12)`,
			`groups[0].tasks[0].checks[0].failures: must be between 1 and 1000, not -1 (t.yaml:13)`,
			`groups[0].tasks[0].checks[0].grace: must not be negative, not -1s (t.yaml:14)`,
		}},

	// Restart policies.
	{"restart rules", edit("    restart:\n      attempts: -1\n      interval: -1m\n      delay: -1s\n      mode: never\n"),
		[]string{
			`groups[0].restart.attempts: must be between 0 and 1000, not -1 (t.yaml:10)`,
			`groups[0].restart.interval: must be longer than 0s, not -1m0s (t.yaml:11)`,
			`groups[0].restart.delay: must not be negative, not -1s (t.yaml:12)`,
			`groups[0].restart.mode: "never" is not a restart mode; use delay or fail (t.yaml:13)`,
		}},

	// GPUs.
	{"gpu none of the forms", edit("", "memory: 64", "memory: 64, gpu: {}"),
		[]string{`groups[0].tasks[0].resources.gpu: must set exactly one of count (whole GPUs), mig (a MIG profile) or share (part of one GPU) (t.yaml:8)`}},
	{"gpu two forms", edit("", "memory: 64", "memory: 64, gpu: {count: 1, mig: 1g.10gb}"),
		[]string{`groups[0].tasks[0].resources.gpu: sets count and mig; set exactly one of count, mig or share (t.yaml:8)`}},
	{"gpu count too high", edit("", "memory: 64", "memory: 64, gpu: {count: 17}"),
		[]string{`groups[0].tasks[0].resources.gpu.count: must be between 1 and 16, not 17 (t.yaml:8)`}},
	{"gpu mig profile", edit("", "memory: 64", "memory: 64, gpu: {mig: 3g40gb}"),
		[]string{`groups[0].tasks[0].resources.gpu.mig: "3g40gb" is not a MIG profile; use a profile name like 1g.10gb or 3g.40gb (t.yaml:8)`}},
	{"gpu share bounds", edit("", "resources: {cpu: 100, memory: 64}\n", "resources:\n          cpu: 100\n          memory: 64\n          gpu:\n            share: {milli: 1001, memory: -1}\n"),
		[]string{
			`groups[0].tasks[0].resources.gpu.share.milli: must be between 1 and 1000 (thousandths of one GPU), not 1001 (t.yaml:12)`,
			`groups[0].tasks[0].resources.gpu.share.memory: must be between 0 and 16777216 MiB, not -1 (t.yaml:12)`,
		}},
	{"gpu share zero", edit("", "memory: 64", "memory: 64, gpu: {share: {milli: 0}}"),
		[]string{`groups[0].tasks[0].resources.gpu.share.milli: must be between 1 and 1000 (thousandths of one GPU), not 0 (t.yaml:8)`}},
	{"gpu qualifiers", edit("", "memory: 64", `memory: 64, gpu: {count: 1, model: "H100[", compute_capability_min: "nine"}`),
		[]string{
			`groups[0].tasks[0].resources.gpu.model: "H100[" is not a valid pattern; use a model name with * and ? wildcards, like "H100*" (t.yaml:8)`,
			`groups[0].tasks[0].resources.gpu.compute_capability_min: "nine" is not a compute capability; write it as major.minor, like "8.0" (t.yaml:8)`,
		}},

	// Constraints, affinities, spread.
	{"constraint operator unknown", edit("    constraints: [{attribute: \"${node.labels.zone}\", operator: \"~\", value: a}]\n"),
		[]string{`groups[0].constraints[0].operator: "~" is not an operator; use one of = != < <= > >= regexp version semver set_contains set_contains_any is_set is_not_set distinct_hosts (t.yaml:9)`}},
	{"constraint attribute form", edit("    constraints: [{attribute: zone, operator: \"=\", value: a}]\n"),
		[]string{`groups[0].constraints[0].attribute: "zone" is not a node property; write it as "${node.…}", like "${node.labels.zone}" (t.yaml:9)`}},
	{"constraint value missing", edit("    constraints: [{attribute: \"${node.labels.zone}\", operator: \"!=\"}]\n"),
		[]string{`groups[0].constraints[0].value: is required by the != operator (t.yaml:9)`}},
	{"constraint regexp invalid", edit("    constraints: [{attribute: \"${node.name}\", operator: regexp, value: \"(\"}]\n"),
		[]string{"groups[0].constraints[0].value: is not a valid regular expression: missing closing ): `(` (t.yaml:9)"}},
	{"distinct_hosts takes no attribute", edit("    constraints:\n      - {attribute: \"${node.name}\", operator: distinct_hosts}\n"),
		[]string{`groups[0].constraints[0].attribute: must be left out: distinct_hosts takes no attribute (t.yaml:10)`}},
	{"is_set takes no value", edit("    constraints: [{attribute: \"${node.labels.gpu}\", operator: is_set, value: x}]\n"),
		[]string{`groups[0].constraints[0].value: must be left out: is_set takes no value (t.yaml:9)`}},
	{"affinity weight zero", edit("    affinities: [{attribute: \"${node.labels.rack}\", operator: \"=\", value: r1}]\n"),
		[]string{`groups[0].affinities[0].weight: must be between -100 and 100 and not 0, not 0 (t.yaml:9)`}},
	{"affinity weight too high", edit("    affinities: [{attribute: \"${node.labels.rack}\", operator: \"=\", value: r1, weight: 101}]\n"),
		[]string{`groups[0].affinities[0].weight: must be between -100 and 100 and not 0, not 101 (t.yaml:9)`}},
	{"affinity distinct_hosts", edit("    affinities: [{operator: distinct_hosts, weight: 10}]\n"),
		[]string{`groups[0].affinities[0].operator: distinct_hosts is a constraint, not an affinity; move it to constraints (t.yaml:9)`}},
	{"spread targets over 100", edit("    spread:\n      - attribute: \"${node.labels.zone}\"\n        targets: {a: 60, b: 60}\n"),
		[]string{`groups[0].spread[0].targets: add up to 120%; the targets may add up to at most 100% (t.yaml:11)`}},
	{"spread target negative", edit("    spread:\n      - attribute: \"${node.labels.zone}\"\n        targets:\n          a: -5\n"),
		[]string{`groups[0].spread[0].targets.a: must be a percentage between 0 and 100, not -5 (t.yaml:12)`}},
	{"spread attribute missing", edit("    spread: [{targets: {a: 50}}]\n"),
		[]string{`groups[0].spread[0].attribute: is required; name a node property like "${node.labels.zone}" (t.yaml:9)`}},

	// Keys of features that are not built yet.
	// Isolation keys: well formed is all Validate asks; the admission
	// policy decides whether they are allowed.
	{"security user with space", edit("        security: {user: \"a b\", cap_add: [sys_admin]}\n"),
		[]string{
			`groups[0].tasks[0].security.user: "a b" is not a user; give a name or uid[:gid] without white space (t.yaml:9)`,
			`groups[0].tasks[0].security.cap_add[0]: "sys_admin" is not a capability; use names like NET_ADMIN or ALL (t.yaml:9)`,
		}},
	{"security seccomp and apparmor", edit("        security: {seccomp: off, apparmor: \"a b\"}\n"),
		[]string{
			`groups[0].tasks[0].security.seccomp: "off" is not a seccomp setting; use default or unconfined (custom profiles are not supported) (t.yaml:9)`,
			`groups[0].tasks[0].security.apparmor: "a b" is not an AppArmor profile name; use a profile loaded on the nodes, or unconfined (t.yaml:9)`,
		}},
	{"security on exec", edit("        security: {user: nobody, privileged: true, read_only_rootfs: false, no_new_privileges: false}\n", "driver: docker\n        config: {image: \"demo:1\"}", "driver: exec\n        config: {command: /bin/true}"),
		[]string{
			`groups[0].tasks[0].security.privileged: applies only to the docker driver; of security the exec driver applies only user (t.yaml:9)`,
			`groups[0].tasks[0].security.read_only_rootfs: applies only to the docker driver; of security the exec driver applies only user (t.yaml:9)`,
			`groups[0].tasks[0].security.no_new_privileges: applies only to the docker driver; of security the exec driver applies only user (t.yaml:9)`,
		}},
	{"isolation keys on exec", edit("", "driver: docker\n        config: {image: \"demo:1\"}", "driver: exec\n        config: {command: /bin/true, network_mode: host, volumes: [\"/a:/b\"]}"),
		[]string{
			`groups[0].tasks[0].config.network_mode: applies only to the docker driver; exec tasks run in the node's own namespaces and filesystem (t.yaml:7)`,
			`groups[0].tasks[0].config.volumes: applies only to the docker driver; exec tasks run in the node's own namespaces and filesystem (t.yaml:7)`,
		}},
	{"namespace modes unknown", edit("", `config: {image: "demo:1"}`, `config: {image: "demo:1", network_mode: container, pid_mode: private, ipc_mode: all, uts_mode: own}`),
		[]string{
			`groups[0].tasks[0].config.network_mode: "container" is not a network mode; use bridge, host or none (t.yaml:7)`,
			`groups[0].tasks[0].config.pid_mode: "private" is not a PID mode; use host, or leave it out for the container's own process namespace (t.yaml:7)`,
			`groups[0].tasks[0].config.ipc_mode: "all" is not an IPC mode; use private, shareable, none or host (t.yaml:7)`,
			`groups[0].tasks[0].config.uts_mode: "own" is not a UTS mode; use host, or leave it out for the container's own (t.yaml:7)`,
		}},
	{"ports without a network", edit("", `config: {image: "demo:1"}`, `config: {image: "demo:1", network_mode: none, ports: [{name: http}]}`),
		[]string{`groups[0].tasks[0].config.ports: cannot be published with network_mode none: the container has no network; remove the ports or the network mode (t.yaml:7)`}},
	{"port to with host network", edit("", `config: {image: "demo:1"}`, `config: {image: "demo:1", network_mode: host, ports: [{name: admin-http, to: 80}]}`),
		[]string{`groups[0].tasks[0].config.ports[0].to: must be left out with network_mode host: the task listens on the host port itself (GANTRY_PORT_ADMIN_HTTP) (t.yaml:7)`}},
	{"volumes malformed", edit("", `config: {image: "demo:1"}`, "config:\n          image: \"demo:1\"\n          volumes:\n            - /data\n            - data:/data\n            - /data:data\n            - /a:/\n            - /a:/b:ro,rw\n            - /a:/b:z\n            - /a/../etc:/c\n            - /x:/d\n            - /y:/d/"),
		[]string{
			`groups[0].tasks[0].config.volumes[0]: "/data" is not a volume; write it as "/host/path:/container/path", optionally followed by ":ro" (t.yaml:10)`,
			`groups[0].tasks[0].config.volumes[1]: "data:/data" has the host path "data", which is not absolute; start it with / (t.yaml:11)`,
			`groups[0].tasks[0].config.volumes[2]: "/data:data" has the container path "data", which is not absolute; start it with / (t.yaml:12)`,
			`groups[0].tasks[0].config.volumes[3]: "/a:/" mounts over the container's root; choose a directory inside it (t.yaml:13)`,
			`groups[0].tasks[0].config.volumes[4]: "/a:/b:ro,rw" gives more than one access mode or propagation mode (t.yaml:14)`,
			`groups[0].tasks[0].config.volumes[5]: "/a:/b:z" has the unknown option "z"; use ro or rw and optionally one of private, rprivate, shared, rshared, slave, rslave (t.yaml:15)`,
			`groups[0].tasks[0].config.volumes[6]: "/a/../etc:/c" has the host path "/a/../etc", which climbs with ..; write the path without it (t.yaml:16)`,
			`groups[0].tasks[0].config.volumes[8]: mounts onto /d, as groups[0].tasks[0].config.volumes[7] already does; each volume needs its own container path (t.yaml:18)`,
		}},
	{"devices malformed", edit("", `config: {image: "demo:1"}`, `config: {image: "demo:1", devices: ["fuse", "/dev/fuse:/dev/fuse:rx", "/a:/b:r:w"]}`),
		[]string{
			`groups[0].tasks[0].config.devices[0]: "fuse" has the device path "fuse", which is not absolute; start it with / (t.yaml:7)`,
			`groups[0].tasks[0].config.devices[1]: "/dev/fuse:/dev/fuse:rx" has permissions "rx"; use a combination of r, w and m, like rw (t.yaml:7)`,
			`groups[0].tasks[0].config.devices[2]: "/a:/b:r:w" is not a device; write it as "/dev/host[:/dev/container[:rwm]]" (t.yaml:7)`,
		}},
	// Services and rolling updates.
	{"service lb port and policy", edit("    services: [{name: web, port: http, lb: {port: 0, policy: random, protocol: udp}}]\n",
		`config: {image: "demo:1"}`, `config: {image: "demo:1", ports: [{name: http}]}`),
		[]string{
			`groups[0].services[0].lb.port: must be a port between 1 and 65535, not 0: load balancers listen on it (t.yaml:9)`,
			`groups[0].services[0].lb.policy: "random" is not a policy; use round_robin, least_outstanding or p2c (t.yaml:9)`,
			`groups[0].services[0].lb.protocol: "udp" is not a protocol; use http or tcp (t.yaml:9)`,
		}},
	{"update on a batch job", edit("    update: {max_parallel: 1}\n", "name: web\n", "name: web\ntype: batch\n"),
		[]string{`groups[0].update: applies only to service jobs; remove it from this batch job (t.yaml:10)`}},
	{"update max_parallel explicitly zero", edit("    update: {max_parallel: 0}\n"),
		[]string{`groups[0].update.max_parallel: must be between 1 and 10000, not 0 (t.yaml:9)`}},
	// Decoding.
	{"unknown field with suggestion", edit("", `config: {image: "demo:1"}`, `config: {imgae: "demo:1"}`),
		[]string{
			`groups[0].tasks[0].config.imgae: unknown field; did you mean "image"? (t.yaml:7)`,
			`groups[0].tasks[0].config.image: is required by the docker driver (t.yaml:7)`,
		}},
	{"unknown field listed", edit("    replicas: 3\n"),
		[]string{`groups[0].replicas: unknown field; the fields allowed here are affinities, constraints, count, disconnect, gang, migrate, name, restart, services, spread, tasks, update (t.yaml:9)`}},
	{"case matters", edit("Name: x\n"),
		[]string{`Name: unknown field; did you mean "name"? (t.yaml:9)`}},
	{"not a number", edit("", "cpu: 100", "cpu: lots"),
		[]string{`groups[0].tasks[0].resources.cpu: must be a whole number, not "lots" (t.yaml:8)`}},
	{"fraction", edit("", "cpu: 100", "cpu: 0.5"),
		[]string{`groups[0].tasks[0].resources.cpu: must be a whole number, not 0.5 (t.yaml:8)`}},
	{"number too large to hold", edit("", "cpu: 100", "cpu: 99999999999999999999"),
		[]string{`groups[0].tasks[0].resources.cpu: must be a whole number of a sensible size, not 99999999999999999999 (t.yaml:8)`}},
	{"duration without unit", edit("    restart: {interval: 300}\n"),
		[]string{`groups[0].restart.interval: must be a duration with a unit, like "10s" or "5m", not 300 (t.yaml:9)`}},
	{"bool expected", edit("        checks: [{type: exec, command: [x]}]\n        resources: {cpu: 100, memory: 64, gpu: {share: {milli: 5, enforce: maybe}}}\n", "        resources: {cpu: 100, memory: 64}\n", ""),
		[]string{`groups[0].tasks[0].resources.gpu.share.enforce: must be true or false, not "maybe" (t.yaml:9)`}},
	{"list expected", edit("", `config: {image: "demo:1"}`, `config: {image: "demo:1", args: "-v --fast"}`),
		[]string{`groups[0].tasks[0].config.args: must be a list, not "-v --fast" (t.yaml:7)`}},
	{"mapping expected", edit("", "resources: {cpu: 100, memory: 64}", "resources: 100"),
		[]string{`groups[0].tasks[0].resources: must be a mapping of keys to values, not 100 (t.yaml:8)`}},
	{"duplicate key", edit("    count: 1\n    count: 2\n"),
		[]string{`groups[0].count: is given twice (first on line 9); give each key once (t.yaml:10)`}},
	{"merge key", edit("    <<: {count: 2}\n"),
		[]string{`groups[0]["<<"]: merge keys (<<) are not supported; write the keys out in full (t.yaml:9)`}},
	{"key not a string", edit("    ? [a, b]\n    : 1\n"),
		[]string{`groups[0]: has a key that is a list; keys must be strings (t.yaml:9)`}},
	{"env not a mapping", edit("", `config: {image: "demo:1"}`, `config: {image: "demo:1", env: [A=1]}`),
		[]string{`groups[0].tasks[0].config.env: must be a mapping of keys to values, not a list (t.yaml:7)`}},
	{"env key quoted in path", edit("", `config: {image: "demo:1"}`, `config: {image: "demo:1", env: {a.b: x}}`),
		[]string{`groups[0].tasks[0].config.env["a.b"]: "a.b" is not a variable name; use letters, digits and _, not starting with a digit, at most 256 bytes (t.yaml:7)`}},
	{"long value clipped in message", edit("", "driver: docker", "driver: "+strings.Repeat("é", 40)),
		[]string{`groups[0].tasks[0].driver: "` + strings.Repeat("é", 32) + `…" is not a driver; use docker, exec, qemu or wasm (t.yaml:6)`}},
	{"alias", "name: &n web\ngroups:\n  - name: *n\n    tasks: []\n",
		[]string{
			`groups[0].name: YAML aliases (*n) are not supported; write the value out in full (t.yaml:3)`,
			`groups[0].tasks: must list at least one task (t.yaml:4)`,
		}},
}

func TestRules(t *testing.T) {
	for _, tc := range ruleCases {
		t.Run(tc.name, func(t *testing.T) {
			job, err := Parse("t.yaml", []byte(tc.spec))
			if err == nil {
				t.Fatalf("accepted:\n%s", tc.spec)
			}
			if job != nil {
				t.Errorf("returned a job with the error")
			}
			var errs *Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error is %T, not *Errors", err)
			}
			got := strings.Split(err.Error(), "\n")
			if !slices.Equal(got, tc.want) {
				t.Errorf("spec:\n%s\ngot:\n  %s\nwant:\n  %s", tc.spec, strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
		})
	}
}

// TestValidateMatchesParse checks the server's path: a job decoded from
// JSON by encoding/json, then Canonicalize and Validate, gets the problems
// Parse reports, by path and message.
func TestValidateMatchesParse(t *testing.T) {
	for _, tc := range ruleCases {
		root, perr := parseYAML([]byte(tc.spec))
		if perr != nil {
			t.Fatalf("%s: %v", tc.name, perr)
		}
		job, d := decode(root)
		if len(d.errs) > 0 {
			continue // the server's JSON decoder reports those its own way
		}
		body, err := json.Marshal(job)
		if err != nil {
			t.Fatal(err)
		}
		var server api.Job
		if err := json.Unmarshal(body, &server); err != nil {
			t.Fatal(err)
		}
		Canonicalize(&server)
		got := Validate(&server)

		_, perr2 := Parse("t.yaml", []byte(tc.spec))
		var want []FieldError
		for _, f := range perr2.(*Errors).Fields {
			want = append(want, FieldError{Path: f.Path, Message: f.Message})
		}
		sortByPath := func(fs []FieldError) {
			slices.SortStableFunc(fs, func(a, b FieldError) int { return strings.Compare(a.Path+a.Message, b.Path+b.Message) })
		}
		sortByPath(got)
		sortByPath(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s: Validate gave\n  %v\nParse gave\n  %v", tc.name, got, want)
		}
	}
}

// listLimits names the bound Validate enforces on every list and map of a
// job spec. The decoder reads at most maxList entries of a list, so a list
// without a bound here would be silently cut short.
var listLimits = map[string]int{
	"groups":                                 MaxGroups,
	"groups[].constraints":                   MaxConstraints,
	"groups[].affinities":                    MaxConstraints,
	"groups[].spread":                        MaxSpreads,
	"groups[].spread[].targets":              MaxTargets,
	"groups[].services":                      MaxServices,
	"groups[].tasks":                         MaxTasks,
	"groups[].tasks[].config.args":           MaxArgs,
	"groups[].tasks[].config.entrypoint":     MaxArgs,
	"groups[].tasks[].config.env":            MaxEnv,
	"groups[].tasks[].config.ports":          MaxPorts,
	"groups[].tasks[].config.volumes":        MaxVolumes,
	"groups[].tasks[].config.devices":        MaxDevices,
	"groups[].tasks[].config.labels":         MaxEnv,
	"groups[].tasks[].config.extra_hosts":    MaxVolumes,
	"groups[].tasks[].config.docker_volumes": MaxVolumes,
	"groups[].tasks[].config.mounts":         MaxMounts,
	"groups[].tasks[].checks":                MaxChecks,
	"groups[].tasks[].checks[].command":      MaxArgs,
	"groups[].tasks[].security.cap_add":      MaxCapabilities,
	"groups[].tasks[].security.cap_drop":     MaxCapabilities,
}

// TestEveryListIsBounded walks the api types reachable from api.Job and
// fails on a list or map field that listLimits does not bound.
func TestEveryListIsBounded(t *testing.T) {
	seen := map[string]bool{}
	var walk func(reflect.Type, string)
	walk = func(typ reflect.Type, path string) {
		for typ.Kind() == reflect.Pointer {
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct || typ == reflect.TypeFor[time.Time]() {
			return
		}
		byName, _ := fieldsOf(typ)
		for name, i := range byName {
			if i < 0 {
				continue
			}
			f := typ.Field(i)
			p := name
			if path != "" {
				p = path + "." + name
			}
			switch f.Type.Kind() {
			case reflect.Slice, reflect.Map:
				seen[p] = true
				limit, ok := listLimits[p]
				if !ok {
					t.Errorf("%s is a list with no bound in listLimits (and in Validate)", p)
				} else if limit > maxList {
					t.Errorf("%s allows %d entries, but the decoder reads only %d", p, limit, maxList)
				}
				if f.Type.Kind() == reflect.Slice {
					walk(f.Type.Elem(), p+"[]")
				}
			default:
				walk(f.Type, p)
			}
		}
	}
	walk(reflect.TypeFor[api.Job](), "")
	for p := range listLimits {
		if !seen[p] {
			t.Errorf("listLimits names %s, which is not a list of the spec", p)
		}
	}
}
