package e2e

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/metrics"
)

// The qemu driver's end-to-end tests boot the project's own test guest
// (scripts/build-vm-guest.sh: a Debian cloud kernel and an initramfs
// serving HTTP) under software emulation. They need qemu-system-x86_64,
// qemu-img and apt-get with package lists; without them they skip and say
// why, or fail when GANTRY_REQUIRE_QEMU=1 (as CI sets it).

var (
	guestOnce sync.Once
	guestDir  string
	guestErr  error
)

// vmGuest builds (or finds in .cache/vm-guest) the test guest.
func vmGuest(t *testing.T) string {
	t.Helper()
	var missing []string
	for _, bin := range []string{"qemu-system-x86_64", "qemu-img", "apt-get", "dpkg-deb"} {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, bin)
		}
	}
	if len(missing) > 0 {
		msg := "the qemu driver's tests need " + strings.Join(missing, ", ") + " (Debian: apt-get install qemu-system-x86 qemu-utils)"
		if os.Getenv("GANTRY_REQUIRE_QEMU") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg + "; set GANTRY_REQUIRE_QEMU=1 to make this a failure")
	}
	guestOnce.Do(func() {
		cmd := exec.Command(filepath.Join(repoRoot, "scripts", "build-vm-guest.sh"))
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		guestDir, guestErr = strings.TrimSpace(string(out)), err
	})
	if guestErr != nil {
		t.Fatalf("build the test guest with scripts/build-vm-guest.sh: %v", guestErr)
	}
	return guestDir
}

// vmSpec is the example job with the guest's directory filled in.
func vmSpec(t *testing.T, guest string, lbPort int) string {
	t.Helper()
	b, err := os.ReadFile(specFile("vm.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	s := strings.ReplaceAll(string(b), "/GUEST", guest)
	s = strings.ReplaceAll(s, "port: 18180", "port: "+strconv.Itoa(lbPort))
	return WriteSpec(t, "vm.yaml", s)
}

// qemuProcs maps the QEMU processes of a cluster, found by their working
// directory (AllocDir/<task>) under its data dir, to that directory.
func qemuProcs(t *testing.T, dataDir string) map[int]string {
	t.Helper()
	out := map[int]string{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		exe, _ := os.Readlink("/proc/" + e.Name() + "/exe")
		if !strings.Contains(filepath.Base(exe), "qemu-system") {
			continue
		}
		cwd, _ := os.Readlink("/proc/" + e.Name() + "/cwd")
		if strings.HasPrefix(cwd, dataDir+"/") {
			out[pid] = cwd
		}
	}
	return out
}

// killVMs kills what a failed test left of its QEMU processes (by pid).
func killVMs(t *testing.T, dataDir string) {
	for pid := range qemuProcs(t, dataDir) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

func pids(m map[int]string) []int {
	var out []int
	for p := range m {
		out = append(out, p)
	}
	sort.Ints(out)
	return out
}

func fileSum(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	io.Copy(h, f)
	return fmt.Sprintf("%x", h.Sum(nil))
}

func getBody(url string) (string, error) {
	c := http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", url, resp.Status)
	}
	return string(b), err
}

// TestQEMUServiceLifecycle runs examples/vm.yaml (two VM replicas behind
// the load balancer) and then: kill -9 of gantry dev and a restart keep
// the same QEMU processes; a QEMU killed by pid is replaced per the
// restart policy; job stop leaves no QEMU process, overlay or QMP socket,
// and the base image is unchanged. On the way, a VM's disk counters (QMP
// query-blockstats) grow in the history and in the agent's
// gantry_alloc_disk_* series when its guest reads its disk.
func TestQEMUServiceLifecycle(t *testing.T) {
	guest := vmGuest(t)
	base := filepath.Join(guest, "disk.qcow2")
	baseSum := fileSum(t, base)
	lbPort := freePort(t)
	c := StartDev(t, "--lb", "--sample-interval", "2s")
	t.Cleanup(func() { killVMs(t, c.DataDir) })

	r := c.Gantry("job", "run", vmSpec(t, guest, lbPort))
	if r.Code != 0 {
		t.Fatalf("job run: %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if !strings.Contains(r.Stdout, "successful: every replica of version 0 is healthy") {
		t.Fatalf("job run did not report both VMs healthy:\n%s", r.Stdout)
	}
	procs := qemuProcs(t, c.DataDir)
	if len(procs) != 2 {
		t.Fatalf("want 2 QEMU processes under %s, found %v", c.DataDir, procs)
	}
	for _, as := range c.Allocs("vm") {
		for _, f := range []string{"disk.qcow2", "qmp.sock"} {
			if _, err := os.Stat(filepath.Join(c.DataDir, "agent", "allocs", as.ID, "guest", f)); err != nil {
				t.Errorf("allocation %s: %v", as.ShortID(), err)
			}
		}
	}
	lb := fmt.Sprintf("http://127.0.0.1:%d/", lbPort)
	c.Eventually(30*time.Second, "the load balancer to answer from a VM", func() bool {
		body, err := getBody(lb)
		return err == nil && strings.Contains(body, `"kind":"vm"`)
	})

	counted := c.Allocs("vm")[0]
	checkVMDiskCounters(t, c, counted)
	netSeen := checkVMNetworkCounters(t, c, counted)

	// The serial console is the task's log.
	id := c.Allocs("vm")[0].ID
	if r := c.Gantry("alloc", "logs", id); r.Code != 0 || !strings.Contains(r.Stdout, "serving HTTP on port 8080") {
		t.Errorf("alloc logs: %d, want the guest's console line:\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if r := c.Gantry("alloc", "exec", id, "true"); r.Code == 0 || !strings.Contains(r.Stderr, "virtual machine") {
		t.Errorf("alloc exec on a VM: %d, want one sentence saying it is a VM:\n%s%s", r.Code, r.Stdout, r.Stderr)
	}

	// kill -9 of the whole dev process, then a restart: same QEMUs.
	before := pids(procs)
	c.Kill9()
	c.Start()
	c.Eventually(60*time.Second, "both VMs re-attached and healthy", func() bool {
		n := 0
		for _, a := range c.Allocs("vm") {
			if ts := a.TaskStates["guest"]; a.ClientStatus == api.AllocRunning && ts != nil && ts.Health == api.HealthHealthy {
				n++
			}
		}
		return n == 2
	})
	if after := pids(qemuProcs(t, c.DataDir)); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("QEMU processes after kill -9 and restart: %v, want the same as before: %v", after, before)
	}
	c.Eventually(60*time.Second, "the load balancer to answer from a VM after the restart", func() bool {
		_, err := getBody(lb)
		return err == nil
	})
	if after := pids(qemuProcs(t, c.DataDir)); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("QEMU processes once the restarted agent serves them: %v, want the same as before: %v", after, before)
	}
	// The executor counted the VM's traffic through the restart: the
	// restarted agent's series go on from the figures before it.
	c.Eventually(30*time.Second, "the restarted agent's network series to go on from before the kill", func() bool {
		return vmSeries(t, c, counted.ID, "vm", metrics.AllocNetReceiveBytes, "net0") >= float64(netSeen.RxBytes)
	})

	// A QEMU killed by pid is restarted in its allocation (restart policy).
	victim := before[0]
	victimDir := procs[victim]
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	c.Eventually(90*time.Second, "the killed VM to be restarted", func() bool {
		for pid, dir := range qemuProcs(t, c.DataDir) {
			if dir == victimDir && pid != victim {
				return true
			}
		}
		return false
	})
	c.Eventually(90*time.Second, "the restarted VM healthy", func() bool {
		n, restarts := 0, 0
		for _, a := range c.Allocs("vm") {
			if ts := a.TaskStates["guest"]; a.ClientStatus == api.AllocRunning && ts != nil && ts.Health == api.HealthHealthy {
				n++
				restarts += ts.Restarts
			}
		}
		return n == 2 && restarts >= 1
	})
	if got := len(qemuProcs(t, c.DataDir)); got != 2 {
		t.Fatalf("%d QEMU processes after the restart, want 2", got)
	}

	// job stop: nothing of the VMs is left.
	if r := c.Gantry("job", "stop", "vm"); r.Code != 0 {
		t.Fatalf("job stop: %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	c.Eventually(60*time.Second, "every QEMU process gone", func() bool { return len(qemuProcs(t, c.DataDir)) == 0 })
	var left []string
	filepath.Walk(filepath.Join(c.DataDir, "agent", "allocs"), func(p string, info os.FileInfo, err error) error {
		if err == nil && (info.Name() == "disk.qcow2" || info.Name() == "qmp.sock") {
			left = append(left, p)
		}
		return nil
	})
	if len(left) > 0 {
		t.Errorf("files left after job stop: %v", left)
	}
	if got := fileSum(t, base); got != baseSum {
		t.Errorf("base image %s changed: sha256 %s, was %s", base, got, baseSum)
	}
}

// TestQEMUMixedGroup runs a container, a process and a VM as three tasks
// of one group.
func TestQEMUMixedGroup(t *testing.T) {
	guest := vmGuest(t)
	c := StartDev(t)
	t.Cleanup(func() { killVMs(t, c.DataDir) })
	spec := WriteSpec(t, "mixed.yaml", fmt.Sprintf(`name: mixed
type: service
groups:
  - name: g
    restart: {attempts: 3, interval: 5m, delay: 1s, mode: fail}
    tasks:
      - name: web
        driver: docker
        config: {image: %s, ports: [{name: web, to: 8080}]}
        resources: {cpu: 100, memory: 32}
        checks: [{type: http, port: web, path: /healthz, interval: 1s, timeout: 1s, failures: 30}]
      - name: proc
        driver: exec
        config: {command: /bin/sh, args: [-c, "sleep 600"]}
        resources: {cpu: 50, memory: 16}
      - name: vm
        driver: qemu
        config:
          kernel: %s/vmlinuz
          initrd: %s/initrd.img
          append: "console=ttyS0 quiet panic=-1"
          ports: [{name: guest, to: 8080}]
        resources: {cpu: 500, memory: 256}
        checks: [{type: http, port: guest, path: /healthz, interval: 1s, timeout: 1s, failures: 60}]
`, DemoImage, guest, guest))
	if r := c.Gantry("job", "run", spec); r.Code != 0 {
		t.Fatalf("job run: %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	as := c.Allocs("mixed")
	if len(as) != 1 {
		t.Fatalf("%d allocations, want 1", len(as))
	}
	for _, task := range []string{"web", "proc", "vm"} {
		if ts := as[0].TaskStates[task]; ts == nil || ts.State != api.TaskRunning {
			t.Errorf("task %s: %+v, want running", task, ts)
		}
	}
	if n := len(qemuProcs(t, c.DataDir)); n != 1 {
		t.Errorf("%d QEMU processes, want 1", n)
	}
	if r := c.Gantry("job", "stop", "mixed"); r.Code != 0 {
		t.Fatalf("job stop: %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	c.Eventually(60*time.Second, "the VM gone", func() bool { return len(qemuProcs(t, c.DataDir)) == 0 })
}

// vmSample is the last history sample of an allocation's task guest,
// nil before the first.
func vmSample(c *Cluster, alloc string) *api.AllocSample {
	var m api.AllocMetricsResponse
	if err := c.GetJSON("/v1/allocations/"+alloc+"/metrics", &m); err != nil {
		return nil
	}
	for i := len(m.Samples) - 1; i >= 0; i-- {
		for _, ts := range m.Samples[i].Tasks {
			if ts.Task == "guest" {
				return &ts
			}
		}
	}
	return nil
}

// vmDisk is the last history sample of an allocation's virtual disk
// virtio0 (its image's overlay), nil before the first.
func vmDisk(c *Cluster, alloc string) *api.DiskSample {
	if s := vmSample(c, alloc); s != nil {
		for _, d := range s.Disks {
			if d.Device == "virtio0" {
				return &d
			}
		}
	}
	return nil
}

// vmNet is the last history sample of an allocation's network interface
// net0, nil before the first.
func vmNet(c *Cluster, alloc string) *api.NetworkSample {
	if s := vmSample(c, alloc); s != nil {
		for _, n := range s.Networks {
			if n.Device == "net0" {
				return &n
			}
		}
	}
	return nil
}

// vmURL is path on the allocation's guest, through its forwarded http
// port.
func vmURL(t *testing.T, a *api.Allocation, path string) string {
	t.Helper()
	p, ok := a.Resources["guest"].Port("http")
	if !ok {
		t.Fatalf("allocation %s has no http port: %+v", a.ShortID(), a.Resources["guest"])
	}
	return fmt.Sprintf("http://127.0.0.1:%d%s", p.Host, path)
}

// vmSeries is the value of an agent's series name for the allocation's
// guest and device, -1 when it has none.
func vmSeries(t *testing.T, c *Cluster, alloc, job, name, device string) float64 {
	var n api.Node
	if err := c.GetJSON("/v1/nodes/"+c.NodeID, &n); err != nil {
		return -1
	}
	fams := scrapeMetrics(t, "http://"+n.HTTPAddr+"/metrics")
	for _, m := range fams[name].GetMetric() {
		l := labelsOf(m)
		if l["alloc"] == alloc && l["task"] == "guest" && l["device"] == device && l["job"] == job {
			return m.GetCounter().GetValue()
		}
	}
	return -1
}

// checkVMNetworkCounters sends 2 MiB to a VM's guest and has it answer
// 3 MiB (the test guest's /net endpoint, through its forwarded port), and
// waits for net0's counters to grow by at least that much, first in the
// server's history, then in the agent's gantry_alloc_network_* series.
// It returns the counters it saw last.
func checkVMNetworkCounters(t *testing.T, c *Cluster, a *api.Allocation) api.NetworkSample {
	t.Helper()
	var before *api.NetworkSample
	c.Eventually(30*time.Second, "the VM's network counters in the allocation's history", func() bool {
		before = vmNet(c, a.ID)
		return before != nil
	})
	if before.RxPackets == 0 || before.TxPackets == 0 {
		t.Errorf("network counters after the health checks: %+v, want their packets counted both ways", before)
	}
	url := vmURL(t, a, "/net")
	resp, err := http.Post(url, "application/octet-stream", bytes.NewReader(make([]byte, 2<<20)))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"received":2097152`) {
		t.Fatalf("POST %s: %s %s", url, resp.Status, body)
	}
	resp, err = http.Get(url + "?bytes=3145728")
	if err != nil {
		t.Fatal(err)
	}
	n, _ := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if n != 3<<20 {
		t.Fatalf("GET %s?bytes=3145728: %d bytes", url, n)
	}
	var after *api.NetworkSample
	c.Eventually(30*time.Second, "net0's counters to count the 2 MiB the guest received and the 3 MiB it sent", func() bool {
		after = vmNet(c, a.ID)
		return after != nil && after.RxBytes >= before.RxBytes+2<<20 && after.TxBytes >= before.TxBytes+3<<20 &&
			after.RxPackets > before.RxPackets && after.TxPackets > before.TxPackets
	})
	t.Logf("VM %s net0: before %+v, after %+v", a.ShortID(), *before, *after)
	c.Eventually(30*time.Second, "the agent's gantry_alloc_network_* series of the VM", func() bool {
		for name, least := range map[string]int64{metrics.AllocNetReceiveBytes: after.RxBytes, metrics.AllocNetTransmitBytes: after.TxBytes,
			metrics.AllocNetReceivePackets: after.RxPackets, metrics.AllocNetTransmitPackets: after.TxPackets} {
			if vmSeries(t, c, a.ID, "vm", name, "net0") < float64(least) {
				return false
			}
		}
		return true
	})
	return *after
}

// checkVMDiskCounters makes a VM's guest read 1 MiB of its disk and write
// 64 KiB (the test guest's /disk endpoint, through its forwarded port) and
// waits for the counters to grow by at least that much, first in the
// server's history, then in the agent's Prometheus series.
func checkVMDiskCounters(t *testing.T, c *Cluster, a *api.Allocation) {
	t.Helper()
	var before *api.DiskSample
	c.Eventually(30*time.Second, "the VM's disk counters in the allocation's history", func() bool {
		before = vmDisk(c, a.ID)
		return before != nil
	})
	if before.ReadBytes == 0 || before.ReadOps == 0 {
		t.Errorf("disk counters before any request: %+v, want the boot's reads (the kernel reads the partition table)", before)
	}
	disk := vmURL(t, a, "/disk")
	if body, err := getBody(disk); err != nil || !strings.Contains(body, `"read":1048576`) {
		t.Fatalf("GET %s: %q %v", disk, body, err)
	}
	resp, err := http.Post(disk+"?bytes=65536", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %s", disk, resp.Status)
	}
	var after *api.DiskSample
	c.Eventually(30*time.Second, "the disk counters to count the guest's 1 MiB read and 64 KiB write", func() bool {
		after = vmDisk(c, a.ID)
		return after != nil && after.ReadBytes >= before.ReadBytes+1<<20 && after.ReadOps > before.ReadOps &&
			after.WriteBytes >= before.WriteBytes+64<<10 && after.WriteOps > before.WriteOps
	})
	t.Logf("VM %s disk virtio0: before %+v, after %+v", a.ShortID(), *before, *after)

	c.Eventually(30*time.Second, "the agent's gantry_alloc_disk_* series of the VM", func() bool {
		for name, least := range map[string]int64{metrics.AllocDiskReadBytes: after.ReadBytes, metrics.AllocDiskWrittenBytes: after.WriteBytes,
			metrics.AllocDiskReads: after.ReadOps, metrics.AllocDiskWrites: after.WriteOps} {
			if vmSeries(t, c, a.ID, "vm", name, "virtio0") < float64(least) {
				return false
			}
		}
		return true
	})
}
