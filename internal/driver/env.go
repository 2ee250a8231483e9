package driver

import (
	"strconv"
	"strings"

	"github.com/gantryhq/gantry/internal/api"
)

// Labels Gantry puts on everything a driver creates, so the agent can find
// its tasks again after a restart.
const (
	LabelManaged   = "gantry.managed"
	LabelNode      = "gantry.node"
	LabelAlloc     = "gantry.alloc"
	LabelTask      = "gantry.task"
	LabelNamespace = "gantry.namespace"
	LabelJob       = "gantry.job"
	LabelGroup     = "gantry.group"
	// LabelChecks lists the health checks the agent runs against a task
	// ("http:http/healthz,tcp:db"); absent when it runs none. The
	// container audit (CIS 5.27) reads it: Gantry checks health itself
	// instead of through an engine HEALTHCHECK.
	LabelChecks = "gantry.checks"
)

// Labels returns the identifying labels of a task.
func Labels(cfg *TaskConfig) map[string]string {
	return map[string]string{
		LabelManaged:   "true",
		LabelNode:      cfg.NodeID,
		LabelAlloc:     cfg.AllocID,
		LabelTask:      cfg.Task.Name,
		LabelNamespace: cfg.Namespace,
		LabelJob:       cfg.Job,
		LabelGroup:     cfg.Group,
	}
}

// TaskEnv builds a task's environment: the spec's env, then GANTRY_*
// variables describing the allocation and its ports. For each named port
// it sets GANTRY_PORT_<NAME> (the port the task listens on: the container
// port for docker, the host port for exec) and GANTRY_HOST_PORT_<NAME>.
func TaskEnv(cfg *TaskConfig, hostNetwork bool) map[string]string {
	env := make(map[string]string, len(cfg.Task.Config.Env)+8)
	for k, v := range cfg.Task.Config.Env {
		env[k] = v
	}
	env["GANTRY_ALLOC_ID"] = cfg.AllocID
	env["GANTRY_ALLOC_INDEX"] = strconv.Itoa(cfg.Index)
	env["GANTRY_NAMESPACE"] = cfg.Namespace
	env["GANTRY_JOB"] = cfg.Job
	env["GANTRY_GROUP"] = cfg.Group
	env["GANTRY_TASK"] = cfg.Task.Name
	env["GANTRY_NODE_ID"] = cfg.NodeID
	if cfg.Resources != nil {
		for _, p := range cfg.Resources.Ports {
			name := envName(p.Name)
			listen := p.To
			if hostNetwork || listen == 0 {
				listen = p.Host
			}
			env["GANTRY_PORT_"+name] = strconv.Itoa(listen)
			env["GANTRY_HOST_PORT_"+name] = strconv.Itoa(p.Host)
		}
		if g := cfg.Resources.GPU; g != nil {
			env["GANTRY_GPUS"] = strings.Join(GPUVisibleDevices(g), ",")
		}
	}
	return env
}

// GPUVisibleDevices lists the device identifiers a task may see, in the
// form CUDA_VISIBLE_DEVICES and NVIDIA_VISIBLE_DEVICES accept.
func GPUVisibleDevices(g *api.AllocatedGPU) []string {
	switch {
	case g == nil:
		return nil
	case len(g.Devices) > 0:
		return append([]string(nil), g.Devices...)
	case g.MIG != nil && g.MIG.InstanceUUID != "":
		id := g.MIG.InstanceUUID
		if !strings.HasPrefix(id, "MIG-") {
			id = "MIG-" + id
		}
		return []string{id}
	case g.Share != nil:
		return []string{g.Share.GPU}
	}
	return nil
}

func envName(s string) string {
	return strings.ToUpper(strings.ReplaceAll(s, "-", "_"))
}
