package suite

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/gantryhq/gantry/internal/bench/report"
)

// Machine reads the facts of this machine a report carries. version is
// Gantry's; the commit comes from the build's VCS stamp.
func Machine(ctx context.Context, version string) report.Machine {
	m := report.Machine{CPUs: runtime.NumCPU(), OS: runtime.GOOS + "/" + runtime.GOARCH, GoVersion: runtime.Version(), GantryVersion: version}
	modified := false
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				m.GantryCommit = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if modified && m.GantryCommit != "" {
			m.GantryCommit += "+modified"
		}
	}
	if m.GantryCommit == "" {
		m.GantryCommit = checkoutCommit(ctx)
	}
	m.CPUModel = procField("/proc/cpuinfo", "model name")
	if kb := procField("/proc/meminfo", "MemTotal"); kb != "" {
		v, _ := strconv.ParseInt(strings.TrimSuffix(kb, " kB"), 10, 64)
		m.MemoryMiB = v / 1024
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "docker", "version", "--format", "{{.Server.Version}}").Output(); err == nil {
		m.DockerVersion = strings.TrimSpace(string(out))
	}
	return m
}

// procField returns the value of the first "key: value" line of a /proc
// file whose key is key.
func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// checkoutCommit is the commit of the git checkout the binary sits in
// (bin/gantry of a clone), for builds without a VCS stamp (-buildvcs=false),
// with "+modified" when the checkout has changes; "" when it is none.
func checkoutCommit(ctx context.Context) string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	dir := filepath.Dir(exe)
	out, err := exec.CommandContext(ctx, "git", "-C", dir, "rev-parse", "HEAD").Output()
	if err != nil {
		return ""
	}
	commit := strings.TrimSpace(string(out))
	if st, err := exec.CommandContext(ctx, "git", "-C", dir, "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(strings.TrimSpace(string(st))) > 0 {
		commit += "+modified"
	}
	return commit
}
