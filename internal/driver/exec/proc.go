package exec

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"syscall"
)

// procStart reads a process's start time (clock ticks after boot, field
// 22 of /proc/<pid>/stat) and whether it is a zombie. Together with the
// pid it names one process for good: a pid reused by a later process has
// a different start time.
func procStart(pid int) (start uint64, zombie bool, err error) {
	if pid <= 0 {
		return 0, false, fmt.Errorf("no pid")
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false, err
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is field 3 (state), so field 22 is f[19].
	if len(f) < 20 {
		return 0, false, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	start, err = strconv.ParseUint(string(f[19]), 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("malformed /proc/%d/stat: %w", pid, err)
	}
	return start, string(f[0]) == "Z", nil
}

// alive reports whether the process pid that started at start still runs.
func alive(pid int, start uint64) bool {
	s, zombie, err := procStart(pid)
	return err == nil && s == start && !zombie
}

// killGroup signals the process group led by pid, if that leader is still
// the process that started at start or the group still has members.
func killGroup(pid int, sig syscall.Signal) error {
	if pid <= 1 {
		return fmt.Errorf("refusing to signal process group %d", pid)
	}
	err := syscall.Kill(-pid, sig)
	if err == syscall.ESRCH {
		return nil
	}
	return err
}
