package driver

import (
	"context"
	"time"
)

// Stats is implemented by drivers that can report what a running task
// uses. The agent samples it for the per-allocation metrics.
type Stats interface {
	Stats(ctx context.Context, h *Handle) (*TaskStats, error)
}

// TaskStats is one reading of a task's usage. CPU is cumulative, so the
// caller derives a rate from two readings.
type TaskStats struct {
	CPU         time.Duration // CPU time used since the task started
	MemoryBytes uint64        // memory in use now (resident, or the cgroup's charge)
}
