package exec

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/gantryhq/gantry/internal/driver"
)

var _ driver.Stats = (*Driver)(nil)

// clockTick is USER_HZ, the unit of /proc/<pid>/stat times: 100 on every
// Linux architecture Gantry runs on.
const clockTick = 100

// Stats implements driver.Stats. A task with its own cgroup (cgroup v2
// hosts) is read from it (cpu.stat usage_usec, memory.current); otherwise
// the processes of its process group are summed from /proc (CPU time
// utime+stime, resident memory), which misses children that left the
// group.
func (d *Driver) Stats(ctx context.Context, h *driver.Handle) (*driver.TaskStats, error) {
	st, err := stateOf(h)
	if err != nil {
		return nil, err
	}
	if !alive(st.Pid, st.PidStart) {
		return nil, fmt.Errorf("exec driver: task %s: %w", h.ID, driver.ErrTaskNotFound)
	}
	if st.Cgroup != "" {
		if s, err := cgroupStats(st.Cgroup); err == nil {
			return s, nil
		}
	}
	return groupStats(st.Pid)
}

func cgroupStats(dir string) (*driver.TaskStats, error) {
	var s driver.TaskStats
	f, err := os.Open(filepath.Join(dir, "cpu.stat"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "usage_usec "); ok {
			us, _ := strconv.ParseUint(v, 10, 64)
			s.CPU = time.Duration(us) * time.Microsecond
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "memory.current"))
	if err != nil {
		return nil, err
	}
	s.MemoryBytes, _ = strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	return &s, nil
}

// groupStats sums the processes whose process group is pgid.
func groupStats(pgid int) (*driver.TaskStats, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	page := uint64(os.Getpagesize())
	var s driver.TaskStats
	var ticks uint64
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := bytes.Fields(b[i+1:])
		// f[0] is field 3 (state): pgrp is field 5, utime 14, stime 15,
		// rss 24 (pages).
		if len(f) < 22 {
			continue
		}
		if g, _ := strconv.Atoi(string(f[2])); g != pgid && pid != pgid {
			continue
		}
		ut, _ := strconv.ParseUint(string(f[11]), 10, 64)
		stt, _ := strconv.ParseUint(string(f[12]), 10, 64)
		rss, _ := strconv.ParseUint(string(f[21]), 10, 64)
		ticks += ut + stt
		s.MemoryBytes += rss * page
	}
	s.CPU = time.Duration(ticks) * time.Second / clockTick
	return &s, nil
}
