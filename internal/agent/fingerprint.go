package agent

import (
	"bufio"
	"context"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/driver"
)

// hostFacts are what cannot change while the agent runs (a new kernel or
// OS release needs a reboot): read once, not on every fingerprint.
var hostFacts = sync.OnceValues(func() (kernel, release string) {
	return readTrim("/proc/sys/kernel/osrelease"), osRelease()
})

// fingerprint describes this machine: capacity, OS, drivers and labels.
func (a *Agent) fingerprint(ctx context.Context) *api.Node {
	cores := runtime.NumCPU()
	kernel, release := hostFacts()
	memory := a.cfg.MemoryOverride
	if memory <= 0 {
		memory = memTotalMiB()
	}
	n := &api.Node{
		ID:       a.nodeID,
		Name:     a.cfg.NodeName,
		Address:  a.cfg.NodeAddress,
		HTTPAddr: a.httpAddr,
		Class:    a.cfg.Class,
		Pool:     a.cfg.Pool,
		Labels:   a.cfg.Labels,
		Attributes: map[string]string{
			"os.name":        runtime.GOOS,
			"cpu.arch":       runtime.GOARCH,
			"cpu.cores":      strconv.Itoa(cores),
			"kernel.version": kernel,
			"os.release":     release,
			"gantry.version": a.cfg.Version,
		},
		Resources: api.NodeResources{
			CPU:    cores * 1000,
			Cores:  cores,
			Memory: memory,
			Disk:   diskMiB(a.cfg.DataDir),
		},
		Reserved:  a.cfg.Reserved,
		PortRange: a.cfg.PortRange,
		Drivers:   map[string]api.DriverInfo{},
	}
	if a.cfg.CPUOverride > 0 {
		n.Resources.CPU = a.cfg.CPUOverride
	}
	uuidFile := a.cfg.BIOSUUIDFile
	if uuidFile == "" {
		uuidFile = "/sys/class/dmi/id/product_uuid" // readable by root only
	}
	if u := readTrim(uuidFile); u != "" {
		n.Attributes[api.AttrBIOSUUID] = u
	}
	a.gpus.fingerprint(n)
	for _, d := range a.drivers {
		info := d.Fingerprint(ctx)
		n.Drivers[d.Name()] = info
		if info.Version != "" {
			n.Attributes["driver."+d.Name()+".version"] = info.Version
		}
		if at, ok := d.(driver.Attributer); ok {
			for k, v := range at.Attributes(ctx) {
				n.Attributes["driver."+d.Name()+"."+k] = v
			}
		}
		for name, v := range info.Components {
			n.Attributes["component."+name] = v
		}
	}
	// For tests only: pretend the Docker engine has another version, so
	// that an end-to-end test can see a version change on a node without
	// upgrading the machine's engine.
	if v := os.Getenv(TestDockerVersionEnv); v != "" {
		n.Attributes["driver.docker.version"] = v
	}
	return n
}

// TestDockerVersionEnv overrides the Docker engine version the node
// reports; tests only.
const TestDockerVersionEnv = "GANTRY_TEST_DOCKER_VERSION"

func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// osRelease is PRETTY_NAME from /etc/os-release.
func osRelease() string {
	f, err := os.Open("/etc/os-release")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "PRETTY_NAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return ""
}

func memTotalMiB() int {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return kb / 1024
		}
	}
	return 0
}

func diskMiB(dir string) int {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0
	}
	return int(st.Bavail * uint64(st.Bsize) >> 20)
}
