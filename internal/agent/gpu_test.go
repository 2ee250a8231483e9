//go:build cgo && linux

package agent

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/gpu/nvml"
	"github.com/gantryhq/gantry/internal/gpu/nvml/nvmltest"
)

// These tests drive the agent's GPU side against go-nvml's mock DGX A100
// (internal/gpu/nvml/nvmltest): no GPU needed.

type gpuFixture struct {
	g     *gpuManager
	dgx   *nvmltest.DGX
	lib   *nvml.Library
	kicks *atomic.Int32
	dir   string
}

func newGPUFixture(t *testing.T, cfg GPUConfig) *gpuFixture {
	t.Helper()
	f := &gpuFixture{dgx: nvmltest.NewDGXA100(), kicks: &atomic.Int32{}, dir: t.TempDir()}
	f.lib = nvml.New(f.dgx.Server)
	cfg.Runtime = f.lib
	if cfg.MPSPipeDir == "" {
		cfg.MPSPipeDir = filepath.Join(f.dir, "no-mps")
	}
	if cfg.SysfsRoot == "" {
		cfg.SysfsRoot = filepath.Join(f.dir, "no-sysfs") // not the machine's own GPUs on vfio-pci
	}
	f.g = newGPUManager(cfg, f.dir, slog.New(slog.NewTextHandler(io.Discard, nil)), func() { f.kicks.Add(1) })
	return f
}

func (f *gpuFixture) node() *api.Node {
	n := &api.Node{Attributes: map[string]string{}}
	f.g.fingerprint(n)
	return n
}

func TestGPUFingerprint(t *testing.T) {
	f := newGPUFixture(t, GPUConfig{ManageMIG: []string{"0"}})
	f.dgx.EnableMIG(0)
	n := f.node()
	if len(n.GPUs) != 8 {
		t.Fatalf("%d GPUs", len(n.GPUs))
	}
	want := map[string]string{"gpu.status": "driver 550.54.15 (CUDA 12.4), 8 GPUs", "gpu.count": "8",
		"gpu.driver.version": "550.54.15", "gpu.cuda.version": "12.4", "gpu.nvml.version": "12.550.54.15", "gpu.mig.managed": "0"}
	for k, v := range want {
		if n.Attributes[k] != v {
			t.Errorf("attribute %s = %q, want %q", k, n.Attributes[k], v)
		}
	}
	if !strings.Contains(n.Attributes["gpu.mps"], "NOT enforced") {
		t.Errorf("gpu.mps = %q", n.Attributes["gpu.mps"])
	}
	g0, g1 := n.GPUs[0], n.GPUs[1]
	if !g0.MIGEnabled || !g0.MIGManaged || g1.MIGEnabled || g1.MIGManaged {
		t.Errorf("MIG: GPU 0 %v/%v, GPU 1 %v/%v", g0.MIGEnabled, g0.MIGManaged, g1.MIGEnabled, g1.MIGManaged)
	}
	if len(g0.MIGPlacements) != 7 || !reflect.DeepEqual(g0.MIGPlacements["3g.20gb"], []int{0, 4}) {
		t.Errorf("placements %v", g0.MIGPlacements)
	}
	for _, d := range n.GPUs {
		if d.SharingEnforced || d.Unhealthy || len(d.NVLinkPeers) != 7 {
			t.Errorf("GPU %d: %+v", d.Index, d)
		}
	}
}

func TestGPUNoDriver(t *testing.T) {
	g := newGPUManager(GPUConfig{SysfsRoot: t.TempDir()}, t.TempDir(), slog.New(slog.NewTextHandler(io.Discard, nil)), func() {})
	n := &api.Node{Attributes: map[string]string{}}
	g.fingerprint(n)
	if n.GPUs != nil || n.Attributes["gpu.status"] != "no NVIDIA driver, 0 GPUs" || n.Attributes["gpu.count"] != "0" {
		t.Errorf("GPUs %v, attributes %v", n.GPUs, n.Attributes)
	}
	if _, _, _, err := g.prepare(&api.AllocatedResources{GPU: &api.AllocatedGPU{Devices: []string{"GPU-x"}}}); err == nil {
		t.Error("a GPU task was prepared on a node without GPUs")
	}
}

func TestGPUHealthTransitions(t *testing.T) {
	f := newGPUFixture(t, GPUConfig{})
	f.node()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.g.watchXID(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	f.dgx.InjectXID(3, 13, -1) // an application's fault: the GPU stays healthy
	f.dgx.InjectXID(6, 79, -1)
	deadline := time.Now().Add(10 * time.Second)
	var n *api.Node
	for time.Now().Before(deadline) {
		if n = f.node(); n.GPUs[6].Unhealthy {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !n.GPUs[6].Unhealthy || n.GPUs[6].HealthReason != "XID 79: GPU has fallen off the bus" {
		t.Fatalf("GPU 6 after XID 79: %v %q", n.GPUs[6].Unhealthy, n.GPUs[6].HealthReason)
	}
	if n.GPUs[3].Unhealthy {
		t.Errorf("GPU 3 unhealthy after an application XID: %q", n.GPUs[3].HealthReason)
	}
	if f.kicks.Load() == 0 {
		t.Error("an XID did not ask for a new fingerprint")
	}
	if f.g.lastXID[f.dgx.UUID(3)] != 13 || f.g.lastXID[f.dgx.UUID(6)] != 79 {
		t.Errorf("last XIDs %v", f.g.lastXID)
	}

	// Polled counters: unhealthy while they say so.
	f.dgx.SetECC(2, 4)
	f.dgx.SetRetiredPagesPending(5, true)
	n = f.node()
	if !n.GPUs[2].Unhealthy || !strings.Contains(n.GPUs[2].HealthReason, "4 uncorrected ECC errors") ||
		!n.GPUs[5].Unhealthy || !strings.Contains(n.GPUs[5].HealthReason, "retired pages pending") {
		t.Errorf("GPU 2: %q, GPU 5: %q", n.GPUs[2].HealthReason, n.GPUs[5].HealthReason)
	}
	f.dgx.SetECC(2, 0)
	n = f.node()
	if n.GPUs[2].Unhealthy || !n.GPUs[6].Unhealthy {
		t.Errorf("after the ECC count cleared: GPU 2 %v, GPU 6 (XID, sticky) %v", n.GPUs[2].Unhealthy, n.GPUs[6].Unhealthy)
	}
}

func migRes(gpu string, create bool, uuid string) *api.AllocatedResources {
	return &api.AllocatedResources{CPU: 100, Memory: 64, GPU: &api.AllocatedGPU{MIG: &api.MIGAssignment{
		GPU: gpu, Profile: "3g.20gb", Start: 4, Size: 4, Create: create, InstanceUUID: uuid}}}
}

func TestMIGCreateBeforeStartAndIdleDestroy(t *testing.T) {
	f := newGPUFixture(t, GPUConfig{ManageMIG: []string{"all"}, MIGIdle: time.Minute})
	f.dgx.EnableMIG(0)
	f.node()
	gpu := f.dgx.UUID(0)

	in := migRes(gpu, true, "")
	out, _, created, err := f.g.prepare(in)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(created, "MIG-") || out.GPU.MIG.InstanceUUID != created || out.GPU.MIG.Create {
		t.Fatalf("created %q, resources %+v", created, out.GPU.MIG)
	}
	if in.GPU.MIG.InstanceUUID != "" || !in.GPU.MIG.Create {
		t.Error("prepare changed the allocation's own resources")
	}
	if f.kicks.Load() == 0 {
		t.Error("creating an instance did not ask for a new fingerprint")
	}
	n := f.node()
	if got := n.GPUs[0].MIGInstances; len(got) != 1 || got[0].UUID != created || got[0].Start != 4 || got[0].Size != 4 || got[0].Profile != "3g.20gb" {
		t.Fatalf("instances reported: %+v", got)
	}
	// The server merged the UUID: the next start uses the instance.
	if _, _, again, err := f.g.prepare(migRes(gpu, false, created)); err != nil || again != "" {
		t.Fatalf("prepare of the existing instance: %q, %v", again, err)
	}

	// An instance the operator made is never the agent's to destroy.
	theirs, err := f.lib.CreateMIG(gpu, "1g.5gb", 0, 1)
	if err != nil {
		t.Fatal(err)
	}

	t0 := time.Now()
	f.g.reap(t0, map[string]bool{created: true})
	f.g.reap(t0.Add(time.Hour), map[string]bool{created: true})
	if got := f.node().GPUs[0].MIGInstances; len(got) != 2 {
		t.Fatalf("an instance in use was destroyed: %+v", got)
	}
	f.g.reap(t0.Add(2*time.Hour), map[string]bool{}) // idle from now
	f.g.reap(t0.Add(2*time.Hour+59*time.Second), map[string]bool{})
	if got := f.node().GPUs[0].MIGInstances; len(got) != 2 {
		t.Fatalf("destroyed before the idle time: %+v", got)
	}

	// A restarted agent still knows the instance is its own.
	var saved map[string]createdMIG
	b, _ := os.ReadFile(filepath.Join(f.dir, "gpu-mig-created.json"))
	if err := json.Unmarshal(b, &saved); err != nil || saved[created].GPU != gpu {
		t.Fatalf("created instances file: %s (%v)", b, err)
	}
	g2 := newGPUManager(f.g.cfg, f.dir, f.g.log, func() {})
	g2.fingerprint(&api.Node{Attributes: map[string]string{}})
	g2.reap(t0.Add(3*time.Hour), map[string]bool{})
	got := f.node().GPUs[0].MIGInstances
	if len(got) != 1 || got[0].UUID != theirs {
		t.Fatalf("after the idle time: %+v, want only the operator's %s", got, theirs)
	}
	if len(g2.createdInstances()) != 0 {
		t.Errorf("still recorded: %v", g2.createdInstances())
	}

	// Removed under a placement that named it: created again where planned.
	out, _, again, err := g2.prepare(migRes(gpu, false, created))
	if err != nil || again == "" || again == created || out.GPU.MIG.InstanceUUID != again {
		t.Fatalf("re-create of a destroyed instance: %q, %v", again, err)
	}
}

func TestMIGNeverByDefault(t *testing.T) {
	f := newGPUFixture(t, GPUConfig{})
	f.dgx.EnableMIG(0)
	f.dgx.EnableMIG(1)
	n := f.node()
	if n.GPUs[0].MIGManaged || n.Attributes["gpu.mig.managed"] != "none" {
		t.Errorf("managed without --gpu-manage-mig: %v %q", n.GPUs[0].MIGManaged, n.Attributes["gpu.mig.managed"])
	}
	_, _, _, err := f.g.prepare(migRes(f.dgx.UUID(0), true, ""))
	if err == nil || !strings.Contains(err.Error(), "--gpu-manage-mig") {
		t.Errorf("create on an unmanaged GPU: %v", err)
	}
	// An instance the operator made is used as planned.
	theirs, err := f.lib.CreateMIG(f.dgx.UUID(1), "3g.20gb", 4, 4)
	if err != nil {
		t.Fatal(err)
	}
	f.node()
	out, _, found, err := f.g.prepare(migRes(f.dgx.UUID(1), false, ""))
	if err != nil || found != theirs || out.GPU.MIG.InstanceUUID != theirs {
		t.Errorf("existing instance: %q, %v", found, err)
	}
	f.g.reap(time.Now().Add(24*time.Hour), nil)
	if len(f.node().GPUs[1].MIGInstances) != 1 {
		t.Error("an operator's instance was destroyed")
	}
	if _, _, _, err := f.g.prepare(migRes(f.dgx.UUID(2), true, "")); err == nil || !strings.Contains(err.Error(), "not in MIG mode") {
		t.Errorf("MIG on a GPU not in MIG mode: %v", err)
	}
}

func TestShareLimits(t *testing.T) {
	pipe := filepath.Join(t.TempDir(), "mps")
	f := newGPUFixture(t, GPUConfig{MPSPipeDir: pipe})
	f.node()
	share := func(enforce bool) *api.AllocatedResources {
		return &api.AllocatedResources{GPU: &api.AllocatedGPU{Share: &api.ShareAssignment{GPU: f.dgx.UUID(1), Milli: 300, Memory: 4096, Enforce: enforce}}}
	}
	if _, _, _, err := f.g.prepare(share(true)); err == nil || !strings.Contains(err.Error(), "NOT enforced") {
		t.Errorf("enforced share without MPS: %v", err)
	}
	_, env, _, err := f.g.prepare(share(false))
	if err != nil || env["GANTRY_GPU_SHARE_ENFORCED"] != "no" || env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] != "" {
		t.Errorf("share without MPS: %v %v", env, err)
	}

	// An MPS control daemon: its pipe, and its process.
	if err := os.MkdirAll(pipe, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(pipe, "control"), 0o600); err != nil {
		t.Fatal(err)
	}
	n := f.node()
	if n.GPUs[1].SharingEnforced {
		t.Error("enforced with a control pipe but no daemon process")
	}
	f.g.running = func(p string) bool { return p == "nvidia-cuda-mps" }
	n = f.node()
	if !n.GPUs[1].SharingEnforced || !strings.HasPrefix(n.Attributes["gpu.mps"], "running") {
		t.Fatalf("MPS running: enforced %v, %q", n.GPUs[1].SharingEnforced, n.Attributes["gpu.mps"])
	}
	_, env, _, err = f.g.prepare(share(true))
	want := map[string]string{"CUDA_MPS_PIPE_DIRECTORY": pipe, "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": "30",
		"CUDA_MPS_PINNED_DEVICE_MEM_LIMIT": "0=4096M", "GANTRY_GPU_SHARE_ENFORCED": "mps"}
	if err != nil || !reflect.DeepEqual(env, want) {
		t.Errorf("share with MPS: %v %v", env, err)
	}
}

func TestDenyMinors(t *testing.T) {
	f := newGPUFixture(t, GPUConfig{})
	f.node()
	if got := f.g.denyMinors(nil); !reflect.DeepEqual(got, []int{0, 1, 2, 3, 4, 5, 6, 7}) {
		t.Errorf("no GPU: deny %v", got)
	}
	res := &api.AllocatedResources{GPU: &api.AllocatedGPU{Devices: []string{f.dgx.UUID(3), f.dgx.UUID(5)}}}
	if got := f.g.denyMinors(res); !reflect.DeepEqual(got, []int{0, 1, 2, 4, 6, 7}) {
		t.Errorf("GPUs 3 and 5: deny %v", got)
	}
	res = &api.AllocatedResources{GPU: &api.AllocatedGPU{MIG: &api.MIGAssignment{GPU: f.dgx.UUID(0), InstanceUUID: "MIG-x"}}}
	if got := f.g.denyMinors(res); !reflect.DeepEqual(got, []int{1, 2, 3, 4, 5, 6, 7}) {
		t.Errorf("MIG on GPU 0: deny %v", got)
	}
}
