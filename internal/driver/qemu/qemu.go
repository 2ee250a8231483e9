package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/driver"
	"github.com/gantryhq/gantry/internal/driver/exec"
	"github.com/gantryhq/gantry/internal/vfio"
)

// Name is the driver's name in job specs.
const Name = api.DriverQEMU

// Defaults of Config.
const (
	DefaultKVMPath   = "/dev/kvm"
	DefaultBootWait  = 30 * time.Second
	stderrLinesShown = 5
)

// Config places the driver's files and names its programs.
type Config struct {
	// AllocRoot holds the allocation directories (see exec.Config).
	AllocRoot string
	// ExecutorPath is the gantry binary that runs `gantry executor`.
	// Empty: os.Executable().
	ExecutorPath string
	// QEMU is the qemu-system binary. Empty: qemu-system-x86_64 on PATH.
	QEMU string
	// KVMPath is the KVM device. Empty: DefaultKVMPath.
	KVMPath string
	// BootWait bounds how long Start waits for QEMU's QMP socket.
	BootWait time.Duration
	// SysfsRoot is where the kernel's sysfs is: GPU passthrough discovery
	// and the KVM check read it. Empty: vfio.DefaultRoot (/sys).
	SysfsRoot string
}

// Driver runs tasks as QEMU virtual machines under the exec driver's
// executor.
type Driver struct {
	cfg  Config
	exec *exec.Driver

	mu  sync.Mutex
	sys *System
}

var (
	_ driver.Driver     = (*Driver)(nil)
	_ driver.Logs       = (*Driver)(nil)
	_ driver.Execer     = (*Driver)(nil)
	_ driver.Stats      = (*Driver)(nil)
	_ driver.Attributer = (*Driver)(nil)
)

// New makes a qemu driver.
func New(cfg Config) (*Driver, error) {
	if cfg.KVMPath == "" {
		cfg.KVMPath = DefaultKVMPath
	}
	if cfg.BootWait <= 0 {
		cfg.BootWait = DefaultBootWait
	}
	if cfg.SysfsRoot == "" {
		cfg.SysfsRoot = vfio.DefaultRoot
	}
	ed, err := exec.New(exec.Config{AllocRoot: cfg.AllocRoot, ExecutorPath: cfg.ExecutorPath, Kind: Name})
	if err != nil {
		return nil, fmt.Errorf("qemu driver: %w", err)
	}
	return &Driver{cfg: cfg, exec: ed}, nil
}

// Name implements driver.Driver.
func (d *Driver) Name() string { return Name }

// system probes the node once per Fingerprint; Start uses the last probe.
func (d *Driver) system(ctx context.Context, fresh bool) System {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.sys == nil || fresh {
		s := Probe(ctx, d.cfg.QEMU, d.cfg.KVMPath, d.cfg.SysfsRoot, d.sys)
		d.sys = &s
	}
	return *d.sys
}

// Fingerprint implements driver.Driver.
func (d *Driver) Fingerprint(ctx context.Context) api.DriverInfo {
	if runtime.GOOS != "linux" {
		return api.DriverInfo{Reason: "the qemu driver runs on Linux only"}
	}
	s := d.system(ctx, true)
	if s.QEMU == "" {
		return api.DriverInfo{Reason: "qemu-system-x86_64 is not installed on this node (Debian: apt-get install qemu-system-x86 qemu-utils)"}
	}
	info := api.DriverInfo{Detected: true, Version: s.Version}
	if s.QEMUImg == "" {
		info.Reason = "qemu-img is not installed on this node, so no disk overlay can be made (Debian: apt-get install qemu-utils)"
		return info
	}
	if ei := d.exec.Fingerprint(ctx); !ei.Healthy {
		info.Reason = ei.Reason
		return info
	}
	info.Healthy = true
	accel := "KVM (hardware virtualization)"
	if !s.KVM {
		accel = "software emulation only (TCG): " + s.KVMWhy
	}
	iso := "a virtual machine per task (" + accel + "), user-mode networking with the task's ports forwarded, its disk a copy-on-write overlay of the image; QEMU runs as the agent's user"
	if ok, why := d.exec.LimitsEnforced(); ok {
		iso += fmt.Sprintf("; the QEMU process is limited by a cgroup v2 to the task's cpu and its memory plus %d MiB", Overhead)
	} else {
		iso += "; the QEMU process's cpu and memory are NOT limited by a cgroup (" + why + "), only the guest's vCPUs and RAM are fixed"
	}
	info.Isolation = iso
	return info
}

// Attributes implements driver.Attributer: kvm ("true" or "false") and
// accelerators ("kvm,tcg" or "tcg"), as driver.qemu.<key>.
func (d *Driver) Attributes(ctx context.Context) map[string]string {
	s := d.system(ctx, false)
	if s.QEMU == "" {
		return nil
	}
	accels := "tcg"
	if s.KVM {
		accels = "kvm,tcg"
	}
	attrs := map[string]string{"kvm": strconv.FormatBool(s.KVM), "accelerators": accels}
	if gpus, err := vfio.Discover(d.cfg.SysfsRoot); err == nil {
		var ready []string
		for _, g := range gpus {
			if g.Ready {
				ready = append(ready, g.Address)
			}
		}
		if len(ready) > 0 {
			attrs["vfio_gpus"] = strings.Join(ready, ",")
		}
	}
	return attrs
}

// taskDir is the VM's working directory.
func taskDir(cfg *driver.TaskConfig) (string, error) {
	allocDir, err := filepath.Abs(cfg.AllocDir)
	if err != nil || cfg.AllocDir == "" {
		return "", fmt.Errorf("qemu driver: task %q has no allocation directory", cfg.Task.Name)
	}
	return filepath.Join(allocDir, cfg.Task.Name), nil
}

// Start implements driver.Driver: it checks the config against the node,
// makes the overlay, starts QEMU under the executor and returns once QMP
// answers query-status. A VM of the same allocation still running from
// an earlier Start is adopted, never booted twice.
func (d *Driver) Start(ctx context.Context, cfg *driver.TaskConfig) (*driver.Handle, error) {
	if cfg == nil || cfg.Task == nil {
		return nil, errors.New("qemu driver: task config has no task")
	}
	t := cfg.Task
	if !api.ValidName(t.Name) {
		return nil, fmt.Errorf("qemu driver: task name %q %s", t.Name, api.NameRule)
	}
	if h := d.exec.Running(cfg); h != nil {
		return h, nil
	}
	s := d.system(ctx, false)
	if s.QEMU == "" {
		return nil, errors.New("qemu driver: qemu-system-x86_64 is not installed on this node")
	}
	plan, err := NewPlan(t, cfg.Resources, cfg.BindAddress, s.KVM)
	if err != nil {
		return nil, fmt.Errorf("qemu driver: task %q: %w", t.Name, err)
	}
	if plan.VFIO, err = d.passthrough(cfg.Resources); err != nil {
		return nil, fmt.Errorf("qemu driver: task %q: %w", t.Name, err)
	}
	for _, f := range []struct{ key, path string }{{"kernel", t.Config.Kernel}, {"initrd", t.Config.Initrd}} {
		if f.path == "" {
			continue
		}
		if fh, err := os.Open(f.path); err != nil {
			return nil, fmt.Errorf("qemu driver: task %q: config.%s %s cannot be read: %w", t.Name, f.key, f.path, err)
		} else {
			fh.Close()
		}
	}
	format := ""
	if t.Config.Image != "" {
		if format, err = imageFormat(t.Config.Image); err != nil {
			return nil, fmt.Errorf("qemu driver: task %q: %w", t.Name, err)
		}
	}
	for _, f := range plan.Forwards {
		if err := portFree(f); err != nil {
			return nil, fmt.Errorf("qemu driver: task %q: %w", t.Name, err)
		}
	}
	dir, err := taskDir(cfg)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("qemu driver: %w", err)
	}
	os.Remove(filepath.Join(dir, QMPFile))
	if err := os.WriteFile(filepath.Join(dir, gracefulFile), []byte(strconv.FormatBool(t.Config.GracefulShutdown == nil || *t.Config.GracefulShutdown)), 0o644); err != nil {
		return nil, fmt.Errorf("qemu driver: %w", err)
	}
	if format != "" {
		if err := makeOverlay(ctx, s.QEMUImg, t.Config.Image, format, filepath.Join(dir, OverlayFile)); err != nil {
			return nil, fmt.Errorf("qemu driver: task %q: %w", t.Name, err)
		}
	}

	// The executor runs QEMU as it runs an exec task: the program, its
	// arguments, and room for QEMU itself on top of the guest's RAM.
	vm := *t
	vm.Driver = api.DriverExec
	vm.Config = api.TaskConfig{Command: s.QEMU, Args: Args(plan)}
	vm.Checks = nil
	ecfg := *cfg
	ecfg.Task = &vm
	vm.Resources.Memory = api.TaskMemory(t)
	if cfg.Resources != nil {
		r := *cfg.Resources
		r.Memory = vm.Resources.Memory
		ecfg.Resources = &r
	}
	var opts exec.StartOptions
	if plan.CountNetwork {
		opts.FrameStreams = NetStreams
	}
	h, err := d.exec.StartWith(ctx, &ecfg, opts)
	if err != nil {
		d.removeFiles(dir)
		return nil, fmt.Errorf("qemu driver: task %q: %w", t.Name, err)
	}
	if err := d.waitQMP(ctx, h, filepath.Join(dir, QMPFile)); err != nil {
		d.exec.Stop(context.Background(), h, 0)
		d.exec.Destroy(context.Background(), h)
		d.removeFiles(dir)
		return nil, fmt.Errorf("qemu driver: task %q: %w", t.Name, err)
	}
	return h, nil
}

// passthrough reads sysfs again at start and returns the PCI devices
// QEMU takes for the task's GPUs: each GPU and the other vfio-pci devices
// of its IOMMU group. A GPU that is no longer bound to vfio-pci, or whose
// group no longer can go to a VM, is an error that says why, so that
// QEMU never starts half-configured.
func (d *Driver) passthrough(res *api.AllocatedResources) ([]string, error) {
	if res == nil || res.GPU == nil {
		return nil, nil
	}
	if res.GPU.MIG != nil || res.GPU.Share != nil {
		return nil, errors.New("a VM can only be given whole GPUs, passed through with VFIO; this allocation holds a MIG instance or a share")
	}
	if len(res.GPU.Devices) == 0 {
		return nil, nil
	}
	gpus, err := vfio.Discover(d.cfg.SysfsRoot)
	if err != nil {
		return nil, fmt.Errorf("GPU passthrough: %w", err)
	}
	return vfio.QEMUDevices(res.GPU.Devices, gpus)
}

// portFree checks that a forwarded host port can be bound, so that a port
// in use is one clear sentence rather than QEMU's exit.
func portFree(f Forward) error {
	ln, err := net.Listen("tcp", net.JoinHostPort(f.Addr, strconv.Itoa(f.Host)))
	if err != nil {
		addr := f.Addr
		if addr == "" {
			addr = "all addresses"
		}
		return fmt.Errorf("host port %d on %s is in use, so it cannot be forwarded to guest port %d", f.Host, addr, f.Guest)
	}
	return ln.Close()
}

// waitQMP waits until QMP answers query-status, or QEMU exits (the error
// then carries the last lines of its stderr).
func (d *Driver) waitQMP(ctx context.Context, h *driver.Handle, sock string) error {
	deadline := time.Now().Add(d.cfg.BootWait)
	exited := make(chan *driver.ExitResult, 1)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		if res, err := d.exec.Wait(wctx, h); err == nil {
			exited <- res
		}
	}()
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case res := <-exited:
			return fmt.Errorf("QEMU exited at start (%s): %s", exitWords(res), d.stderrTail(ctx, h))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if _, err := os.Stat(sock); err != nil {
			lastErr = err
			continue
		}
		st, err := queryStatus(ctx, sock)
		if err == nil && (st == "running" || st == "prelaunch") {
			return nil
		}
		lastErr = fmt.Errorf("VM status %q, %v", st, err)
	}
	return fmt.Errorf("QEMU's QMP socket did not answer within %s (%v): %s", d.cfg.BootWait, lastErr, d.stderrTail(ctx, h))
}

func exitWords(res *driver.ExitResult) string {
	if res.Signal != 0 {
		return "signal " + strconv.Itoa(res.Signal)
	}
	return "exit code " + strconv.Itoa(res.ExitCode)
}

// stderrTail is the last lines QEMU wrote to stderr, joined for one line.
func (d *Driver) stderrTail(ctx context.Context, h *driver.Handle) string {
	rc, err := d.exec.Logs(ctx, h, driver.LogOptions{Stderr: true, Tail: stderrLinesShown})
	if err != nil {
		return "no stderr"
	}
	defer rc.Close()
	b, _ := io.ReadAll(io.LimitReader(rc, 4096))
	s := strings.Join(strings.Fields(strings.ReplaceAll(string(b), "\n", " | ")), " ")
	s = strings.Trim(s, " |")
	if s == "" {
		return "it wrote nothing to stderr"
	}
	return "stderr: " + s
}

// Wait implements driver.Driver.
func (d *Driver) Wait(ctx context.Context, h *driver.Handle) (*driver.ExitResult, error) {
	return d.exec.Wait(ctx, h)
}

// taskDirOf is the working directory of a handle's VM, AllocDir/<task>:
// the executor's state directory is AllocDir/.qemu.
func taskDirOf(h *driver.Handle) string {
	var st struct {
		StateDir string `json:"state_dir"`
	}
	if h == nil || json.Unmarshal([]byte(h.Internal), &st) != nil || st.StateDir == "" {
		return ""
	}
	return filepath.Join(filepath.Dir(st.StateDir), h.Task)
}

// qmpPath is the QMP socket of a handle's VM.
func qmpPath(h *driver.Handle) string {
	return filepath.Join(taskDirOf(h), QMPFile)
}

// Stop implements driver.Driver. With graceful_shutdown (the default) it
// sends an ACPI power-down over QMP and gives the guest grace to power
// off; then (or at once without it) it tells QEMU to quit over QMP, and
// signals it only if QMP does not answer.
func (d *Driver) Stop(ctx context.Context, h *driver.Handle, grace time.Duration) error {
	sock := qmpPath(h)
	wait := func(limit time.Duration) bool {
		wctx, cancel := context.WithTimeout(ctx, limit)
		defer cancel()
		_, err := d.exec.Wait(wctx, h)
		return err == nil
	}
	if d.graceful(h) && grace > 0 {
		if _, err := qmpDo(ctx, sock, "system_powerdown"); err == nil && wait(grace) {
			return nil
		}
	}
	if _, err := qmpDo(ctx, sock, "quit"); err == nil && wait(10*time.Second) {
		return nil
	}
	return d.exec.Stop(ctx, h, 5*time.Second)
}

// DescribeStop implements driver.StopDescriber, saying what Stop does.
func (d *Driver) DescribeStop(h *driver.Handle, grace time.Duration) string {
	if d.graceful(h) && grace > 0 {
		return fmt.Sprintf("sent an ACPI power-down through QMP; QEMU is told to quit if the guest is still up after %s", grace)
	}
	return "told QEMU to quit through QMP (graceful_shutdown is false)"
}

// graceful reads graceful_shutdown from the task spec the driver kept
// beside the handle; true when unknown.
func (d *Driver) graceful(h *driver.Handle) bool {
	b, err := os.ReadFile(filepath.Join(taskDirOf(h), gracefulFile))
	return err != nil || strings.TrimSpace(string(b)) != "false"
}

const gracefulFile = "graceful_shutdown"

// removeFiles removes what the driver made in the task directory.
func (d *Driver) removeFiles(dir string) error {
	var errs []error
	for _, f := range []string{OverlayFile, QMPFile, gracefulFile} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Destroy implements driver.Driver: QEMU and its executor go, then the
// overlay and the QMP socket.
func (d *Driver) Destroy(ctx context.Context, h *driver.Handle) error {
	err := d.exec.Destroy(ctx, h)
	if dir := taskDirOf(h); dir != "" {
		err = errors.Join(err, d.removeFiles(dir))
	}
	if err != nil {
		return fmt.Errorf("qemu driver: %w", err)
	}
	return nil
}

// Recover implements driver.Driver.
func (d *Driver) Recover(ctx context.Context, nodeID string) ([]*driver.Handle, error) {
	return d.exec.Recover(ctx, nodeID)
}

// Logs implements driver.Logs: stdout is the guest's serial console,
// stderr QEMU's own messages.
func (d *Driver) Logs(ctx context.Context, h *driver.Handle, opts driver.LogOptions) (io.ReadCloser, error) {
	return d.exec.Logs(ctx, h, opts)
}

// Stats implements driver.Stats: the QEMU process's CPU time and memory,
// each virtual disk's counters from QMP query-blockstats, and net0's
// frames and bytes as the executor counted them from QEMU's filter-mirror
// (with user-mode networking QEMU counts no bytes anywhere QMP can read).
// A QMP that does not answer leaves the disks out rather than the whole
// reading; a VM started without counting has no network figures.
func (d *Driver) Stats(ctx context.Context, h *driver.Handle) (*driver.TaskStats, error) {
	st, err := d.exec.Stats(ctx, h)
	if err != nil {
		return nil, err
	}
	if disks, err := queryBlockStats(ctx, qmpPath(h)); err == nil && len(disks) > 0 {
		st.Disks = disks
	}
	if counts, err := exec.FrameCounts(h); err == nil {
		st.Networks = networkStats(counts)
	}
	return st, nil
}

// networkStats turns the executor's frame counts into net0's counters;
// nil when the VM's network was not counted.
func networkStats(counts map[string]exec.FrameCount) []driver.NetworkStats {
	sent, okS := counts[StreamSent]
	recv, okR := counts[StreamReceived]
	if !okS || !okR {
		return nil
	}
	return []driver.NetworkStats{{Device: NetDevice, RxBytes: recv.Bytes, TxBytes: sent.Bytes, RxPackets: recv.Frames, TxPackets: sent.Frames}}
}

// ErrNoExec is Exec's answer: a VM has no agent to run commands in.
var ErrNoExec = errors.New("this task is a virtual machine and Gantry has no agent inside the guest, so alloc exec cannot run commands in it; read its serial console with gantry alloc logs, or reach it over its forwarded ports")

// Exec implements driver.Execer with ErrNoExec.
func (d *Driver) Exec(ctx context.Context, h *driver.Handle, req *driver.ExecRequest) (int, error) {
	return -1, ErrNoExec
}
