package docker

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/gantryhq/gantry/internal/driver"
)

var _ driver.Stats = (*Driver)(nil)

// Stats implements driver.Stats with one "one-shot" stats reading of the
// container: total CPU usage and memory usage less the page cache the
// kernel can drop (what `docker stats` shows).
func (d *Driver) Stats(ctx context.Context, h *driver.Handle) (*driver.TaskStats, error) {
	res, err := d.cli.ContainerStats(ctx, h.ID, client.ContainerStatsOptions{})
	if err != nil {
		return nil, fmt.Errorf("docker: stats of container %s: %w", h.ID, err)
	}
	defer res.Body.Close()
	var st container.StatsResponse
	if err := json.NewDecoder(res.Body).Decode(&st); err != nil {
		return nil, fmt.Errorf("docker: decode stats of container %s: %w", h.ID, err)
	}
	return statsOf(&st), nil
}

func statsOf(st *container.StatsResponse) *driver.TaskStats {
	mem := st.MemoryStats.Usage
	// cgroup v2 reports inactive_file, v1 total_inactive_file.
	for _, k := range []string{"inactive_file", "total_inactive_file"} {
		if v, ok := st.MemoryStats.Stats[k]; ok && v < mem {
			mem -= v
			break
		}
	}
	return &driver.TaskStats{CPU: time.Duration(st.CPUStats.CPUUsage.TotalUsage), MemoryBytes: mem}
}
