package audit

import (
	"encoding/json"
	"fmt"

	"github.com/moby/moby/api/types/swarm"
)

// engineChecks judge the engine's own configuration, in benchmark order.
// They are reported apart from the container findings: they hold for every
// container on the engine.
var engineChecks = []EngineCheck{
	{
		ID: "2.9", Name: "UserNamespaceRemapping",
		Title:       "Enable user namespace support",
		Severity:    SeverityMedium,
		Remediation: "Start the daemon with user-namespace remapping (\"userns-remap\": \"default\" in daemon.json).",
		Run:         checkUsernsRemap,
	},
	{
		ID: "2.14", Name: "DefaultNoNewPrivileges",
		Title:       "Ensure containers are restricted from acquiring new privileges",
		Severity:    SeverityMedium,
		Remediation: "Set \"no-new-privileges\": true in daemon.json.",
		Run:         checkDaemonNoNewPrivileges,
	},
	{
		ID: "2.15", Name: "LiveRestore",
		Title:       "Ensure live restore is enabled",
		Severity:    SeverityLow,
		Remediation: "Set \"live-restore\": true in daemon.json so that containers keep running while the daemon restarts.",
		Run:         checkLiveRestore,
	},
	{
		ID: "2.18", Name: "ExperimentalFeatures",
		Title:       "Ensure that experimental features are not implemented in production",
		Severity:    SeverityLow,
		Remediation: "Run the daemon without --experimental.",
		Run:         checkExperimental,
	},
	{
		ID: "5.1", Name: "SwarmMode",
		Title:       "Ensure swarm mode is not Enabled, if not needed",
		Severity:    SeverityLow,
		Remediation: "Leave the swarm (docker swarm leave) on nodes Gantry manages; Gantry does not use swarm mode.",
		Run:         checkSwarm,
	},
}

// 2.9: the engine reports "name=userns" among its security options when it
// remaps user namespaces.
func checkUsernsRemap(e *Engine) Result {
	if !e.known() {
		return info("engine information unavailable")
	}
	if e.usernsRemapped() {
		return pass("the engine remaps user namespaces")
	}
	if _, ok := e.securityOption("rootless"); ok {
		return pass("the engine runs rootless (security options: %s)", e.securityOptions())
	}
	return fail("the engine does not remap user namespaces (security options: %s)", e.securityOptions())
}

// 2.14: the engine API does not report the daemon's default; only the
// daemon's configuration, when the caller read it, can tell.
func checkDaemonNoNewPrivileges(e *Engine) Result {
	if e == nil || e.Daemon == nil {
		return info("unknown: the engine API does not report the daemon's no-new-privileges default and the daemon's configuration was not read")
	}
	if e.Daemon.NoNewPrivileges != nil && *e.Daemon.NoNewPrivileges {
		return pass("the daemon's configuration sets no-new-privileges by default")
	}
	return fail("the daemon's configuration does not set no-new-privileges by default")
}

// 2.15
func checkLiveRestore(e *Engine) Result {
	if !e.known() {
		return info("engine information unavailable")
	}
	if e.Info.LiveRestoreEnabled {
		return pass("the engine reports live restore enabled")
	}
	return fail("the engine reports live restore disabled")
}

// 2.18
func checkExperimental(e *Engine) Result {
	if !e.known() {
		return info("engine information unavailable")
	}
	if e.Info.ExperimentalBuild {
		return fail("the engine reports experimental features enabled")
	}
	return pass("the engine reports experimental features disabled")
}

// 5.1
func checkSwarm(e *Engine) Result {
	if !e.known() {
		return info("engine information unavailable")
	}
	switch st := e.Info.Swarm.LocalNodeState; st {
	case swarm.LocalNodeStateInactive, "":
		return pass("swarm mode inactive")
	default:
		return fail("swarm mode is %s", st)
	}
}

// ParseDaemonConfig reads the settings the checks need from the daemon's
// configuration file (daemon.json). Unknown keys are ignored.
func ParseDaemonConfig(data []byte) (*DaemonConfig, error) {
	var d DaemonConfig
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, fmt.Errorf("parse daemon configuration: %w", err)
	}
	return &d, nil
}
