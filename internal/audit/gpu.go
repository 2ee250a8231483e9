package audit

import (
	"fmt"
	"slices"
	"strings"

	"github.com/moby/moby/api/types/container"
)

// GPU isolation beyond 5.18's generic rules: when the node's allocations
// are known, a container may see only the GPUs its task was allocated.
// What a container sees is read from the two ways the NVIDIA stack hands
// out GPUs: device requests (docker run --gpus, which Gantry's driver
// uses, by UUID) and NVIDIA_VISIBLE_DEVICES in its environment (which the
// NVIDIA runtime honours, and which CUDA base images set to "all").
// Indexes ("0,1") are compared as written: Gantry names GPUs by UUID, so an
// index never matches an allocation and is reported.

// gpuBeyondAllocation describes every way the container sees GPUs beyond
// its allocation; nil when it sees none of them, or when the node's
// allocations are not known.
func gpuBeyondAllocation(c *container.InspectResponse, e *Engine) []string {
	if e == nil || e.Allocations == nil {
		return nil
	}
	l := c.Config.Labels
	var allowed []string
	holds := "it was not started by Gantry, so it holds no GPUs"
	if alloc, task := l[LabelAlloc], l[LabelTask]; alloc != "" {
		if ta, ok := e.Allocations[TaskKey(alloc, task)]; ok {
			allowed = ta.GPUs
			holds = fmt.Sprintf("allocation %s task %q holds %s", shortID(alloc), task, gpuList(allowed))
		} else {
			holds = fmt.Sprintf("allocation %s task %q does not run on this node, so it holds no GPUs", shortID(alloc), task)
		}
	}
	seen, unpinned := visibleGPUs(c)
	var extra []string
	for _, id := range seen {
		if !slices.Contains(allowed, id) {
			extra = append(extra, id)
		}
	}
	var out []string
	if len(extra) > 0 {
		out = append(out, fmt.Sprintf("sees GPUs %s beyond its allocation (%s)", strings.Join(extra, ","), holds))
	}
	if unpinned > 0 {
		out = append(out, fmt.Sprintf("asks the engine for %d GPU(s) without naming them, so it may be given GPUs allocated to other tasks (%s)", unpinned, holds))
	}
	return out
}

// visibleGPUs returns the GPU identifiers a container names (device
// requests, then NVIDIA_VISIBLE_DEVICES), without duplicates, and how many
// GPUs it requests without naming them. Requests for all GPUs and
// NVIDIA_VISIBLE_DEVICES=all are left to checkDevices, which reports them
// whatever the allocation.
func visibleGPUs(c *container.InspectResponse) (ids []string, unpinned int) {
	add := func(id string) {
		if id = strings.TrimSpace(id); id != "" && !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	for _, r := range c.HostConfig.DeviceRequests {
		if !isGPURequest(r) || r.Count < 0 {
			continue
		}
		for _, id := range r.DeviceIDs {
			add(id)
		}
		if len(r.DeviceIDs) == 0 && r.Count > 0 {
			unpinned += r.Count
		}
	}
	env := ""
	for _, kv := range c.Config.Env {
		if k, v, _ := strings.Cut(kv, "="); k == "NVIDIA_VISIBLE_DEVICES" {
			env = v // the last one wins, as in the process environment
		}
	}
	switch v := strings.ToLower(strings.TrimSpace(env)); v {
	case "", "void", "none", "all":
	default:
		for _, id := range strings.Split(env, ",") {
			add(id)
		}
	}
	return ids, unpinned
}

func isGPURequest(r container.DeviceRequest) bool {
	if r.Driver == "nvidia" {
		return true
	}
	for _, caps := range r.Capabilities {
		if slices.Contains(caps, "gpu") {
			return true
		}
	}
	return false
}

func gpuList(ids []string) string {
	if len(ids) == 0 {
		return "no GPUs"
	}
	return strings.Join(ids, ",")
}

func shortID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}
