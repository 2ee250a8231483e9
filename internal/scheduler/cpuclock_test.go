package scheduler_test

import (
	"syscall"
	"testing"
	"time"
)

// cpuClock adds up the process's CPU time (user + system) over the timed
// parts of a benchmark, beside the wall clock: on a shared machine the
// wall clock also counts the time other work held the core, CPU time does
// not. With -cpu 1 the process's CPU time is the scheduler's (and its
// garbage collection's).
type cpuClock struct {
	total time.Duration
	start time.Duration
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func (c *cpuClock) Start(b *testing.B) {
	b.StartTimer()
	c.start = processCPU()
}

func (c *cpuClock) Stop(b *testing.B) {
	c.total += processCPU() - c.start
	b.StopTimer()
}

// report adds placements per CPU second.
func (c *cpuClock) report(b *testing.B, placed int) {
	if c.total > 0 {
		b.ReportMetric(float64(placed)/c.total.Seconds(), "placements/cpu-s")
	}
}
