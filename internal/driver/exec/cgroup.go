package exec

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const cgroup2Magic = 0x63677270 // CGROUP2_SUPER_MAGIC

// cgroupMount is where the unified hierarchy is expected.
const cgroupMount = "/sys/fs/cgroup"

// cgroupSupport says whether the driver can enforce cpu and memory limits
// with cgroup v2 under parent (a directory below cgroupMount), preparing
// parent when it can. When it cannot, why says so in a user's words.
func cgroupSupport(parent string) (ok bool, why string) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(cgroupMount, &st); err != nil {
		return false, fmt.Sprintf("%s cannot be read (%v)", cgroupMount, err)
	}
	if st.Type != cgroup2Magic {
		return false, fmt.Sprintf("%s is not cgroup v2 (this host uses cgroup v1, which the exec driver does not drive)", cgroupMount)
	}
	ctrl, err := os.ReadFile(filepath.Join(cgroupMount, "cgroup.controllers"))
	if err != nil {
		return false, fmt.Sprintf("cgroup v2 controllers cannot be read (%v)", err)
	}
	have := strings.Fields(string(ctrl))
	for _, c := range []string{"cpu", "memory"} {
		if !contains(have, c) {
			return false, fmt.Sprintf("the %s controller is not available in %s", c, cgroupMount)
		}
	}
	if err := prepareCgroupParent(parent); err != nil {
		return false, fmt.Sprintf("cgroup v2 is here but the driver cannot manage %s: %v", parent, err)
	}
	return true, ""
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// prepareCgroupParent creates parent and delegates cpu and memory down to
// it and its children.
func prepareCgroupParent(parent string) error {
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return err
	}
	rel, err := filepath.Rel(cgroupMount, parent)
	if err != nil || strings.HasPrefix(rel, "..") {
		return fmt.Errorf("%s is not below %s", parent, cgroupMount)
	}
	// Enable the controllers on every level from the mount down to parent.
	dir := cgroupMount
	levels := append([]string{""}, strings.Split(rel, string(filepath.Separator))...)
	for i, l := range levels {
		if i > 0 {
			dir = filepath.Join(dir, l)
		}
		if err := enableControllers(dir); err != nil {
			return err
		}
	}
	return nil
}

func enableControllers(dir string) error {
	cur, err := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control"))
	if err != nil {
		return err
	}
	have := strings.Fields(string(cur))
	if contains(have, "cpu") && contains(have, "memory") {
		return nil
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+cpu +memory"), 0o644); err != nil {
		return fmt.Errorf("enable cpu and memory in %s: %w", dir, err)
	}
	return nil
}

// setupCgroup creates a task's cgroup with its limits: memory.max in bytes
// (swap off where the kernel offers memory.swap.max) and cpu.max as a
// quota of millicores per 100 ms.
func setupCgroup(path string, memoryMiB, cpuMilli int) error {
	if err := os.Mkdir(path, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	write := func(file, v string) error {
		if err := os.WriteFile(filepath.Join(path, file), []byte(v), 0o644); err != nil {
			return fmt.Errorf("set %s of %s: %w", file, path, err)
		}
		return nil
	}
	if memoryMiB > 0 {
		if err := write("memory.max", strconv.FormatInt(int64(memoryMiB)<<20, 10)); err != nil {
			return err
		}
		if _, err := os.Stat(filepath.Join(path, "memory.swap.max")); err == nil {
			if err := write("memory.swap.max", "0"); err != nil {
				return err
			}
		}
	}
	if cpuMilli > 0 {
		if err := write("cpu.max", fmt.Sprintf("%d 100000", cpuMilli*100)); err != nil {
			return err
		}
	}
	return nil
}

// cgroupOOMKilled reports whether the kernel's OOM killer ended a process
// of the cgroup.
func cgroupOOMKilled(path string) bool {
	f, err := os.Open(filepath.Join(path, "memory.events"))
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), " ")
		if k == "oom_kill" {
			n, _ := strconv.Atoi(v)
			return n > 0
		}
	}
	return false
}

// removeCgroup kills whatever is left in the cgroup and removes it.
func removeCgroup(path string) error {
	if path == "" {
		return nil
	}
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := os.WriteFile(filepath.Join(path, "cgroup.kill"), []byte("1"), 0o644); err != nil {
		// Kernels before 5.14 have no cgroup.kill.
		if b, err := os.ReadFile(filepath.Join(path, "cgroup.procs")); err == nil {
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil {
					syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
	}
	var err error
	for i := 0; i < 50; i++ {
		if err = os.Remove(path); err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
		time.Sleep(20 * time.Millisecond) // the killed processes are still leaving
	}
	return fmt.Errorf("remove cgroup %s: %w", path, err)
}
