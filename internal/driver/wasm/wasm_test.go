package wasm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/driver"
)

type rig struct {
	d    *Driver
	root string
}

func newRig(t *testing.T) *rig {
	t.Helper()
	needModules(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	d, err := New(Config{AllocRoot: filepath.Join(root, "allocs"), CacheDir: filepath.Join(root, "cache"), RunnerPath: self})
	if err != nil {
		t.Fatal(err)
	}
	return &rig{d: d, root: root}
}

var allocSeq int

func (r *rig) config(task api.Task) *driver.TaskConfig {
	allocSeq++
	id := "alloc-" + strconv.Itoa(allocSeq)
	if task.Name == "" {
		task.Name = "mod"
	}
	task.Driver = Name
	if task.Resources.Memory == 0 {
		task.Resources = api.Resources{CPU: 100, Memory: 32}
	}
	return &driver.TaskConfig{NodeID: "node-1", AllocID: id, Namespace: "default", Job: "j", Group: "g",
		Task: &task, AllocDir: filepath.Join(r.d.cfg.AllocRoot, id)}
}

// run starts a task and waits for it, with a generous deadline.
func (r *rig) run(t *testing.T, cfg *driver.TaskConfig) *driver.ExitResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	h, err := r.d.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	res, err := r.d.Wait(ctx, h)
	if err != nil {
		t.Fatalf("wait: %v", err)
	}
	return res
}

func logOf(t *testing.T, cfg *driver.TaskConfig, stream string) string {
	t.Helper()
	b, _ := os.ReadFile(filepath.Join(cfg.AllocDir, "logs", cfg.Task.Name+"."+stream+".0"))
	return string(b)
}

// ioTask is a task of the C module io: its argument hello, GREETING=hi
// in its environment, and a file in.txt in the directory mounted at /data.
func (r *rig) ioTask(t *testing.T) *driver.TaskConfig {
	t.Helper()
	cfg := r.config(api.Task{Config: api.TaskConfig{
		Module: modules["io"], Args: []string{"hello"}, Env: map[string]string{"GREETING": "hi"},
		Mounts: []api.WasmMount{{Source: "local", Target: "/data"}},
	}})
	data := filepath.Join(cfg.AllocDir, cfg.Task.Name, "local")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "in.txt"), []byte("from the node\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg.Env = driver.TaskEnv(cfg, true)
	return cfg
}

// checkIO fails unless the ioTask read its argument, environment and file
// and wrote its result into the mount.
func checkIO(t *testing.T, cfg *driver.TaskConfig) {
	t.Helper()
	got, err := os.ReadFile(filepath.Join(cfg.AllocDir, cfg.Task.Name, "local", "out.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "arg=hello greeting=hi file=from the node\n"; string(got) != want {
		t.Fatalf("out.txt = %q, want %q", got, want)
	}
	if out := logOf(t, cfg, "stdout"); !strings.Contains(out, "wrote /data/out.txt") {
		t.Fatalf("stdout log: %q", out)
	}
}

// TestCModuleArgsEnvMount: a C program compiled with clang to wasm32-wasi
// reads its argument, its environment and a file from its mount, and
// writes a result file into the mount; a second start of the same module
// is served from the compilation cache.
func TestCModuleArgsEnvMount(t *testing.T) {
	r := newRig(t)
	for i := 0; i < 2; i++ {
		cfg := r.ioTask(t)
		res := r.run(t, cfg)
		if !res.Successful() {
			t.Fatalf("run %d: %+v\nstderr: %s", i, res, logOf(t, cfg, "stderr"))
		}
		checkIO(t, cfg)
	}
	entries, _ := filepath.Glob(filepath.Join(r.root, "cache", "*", "*"))
	if len(entries) != 1 {
		t.Fatalf("want one compiled module in the cache after two runs of one module, got %v", entries)
	}
}

// TestMemoryCap: a module that allocates until malloc fails is held to
// resources.memory, and its exit says so.
func TestMemoryCap(t *testing.T) {
	r := newRig(t)
	cfg := r.config(api.Task{Config: api.TaskConfig{Module: modules["grow"]}, Resources: api.Resources{CPU: 100, Memory: 16}})
	res := r.run(t, cfg)
	if res.ExitCode != 12 {
		t.Fatalf("exit %+v, want 12 (malloc failed)\nstderr: %s", res, logOf(t, cfg, "stderr"))
	}
	if !strings.Contains(res.Message, "past its limit of 16 MiB (resources.memory)") {
		t.Fatalf("message %q does not say the memory limit was hit", res.Message)
	}
	// malloc failed at the limit: what it reached is under 16 MiB.
	if !strings.Contains(logOf(t, cfg, "stderr"), "malloc failed after 1") {
		t.Fatalf("stderr: %s", logOf(t, cfg, "stderr"))
	}
}

// TestRefusals: a module importing a host function the runtime does not
// provide, a file that is not a module, and a host path mount the node
// does not allow are each refused at start, naming the problem.
func TestRefusals(t *testing.T) {
	r := newRig(t)
	notWasm := filepath.Join(r.root, "notes.txt")
	os.WriteFile(notWasm, []byte("(module)"), 0o644)
	for _, tc := range []struct {
		name string
		cfg  api.TaskConfig
		want string
	}{
		{"missing import", api.TaskConfig{Module: modules["hostcall"]}, "does not provide: env.gantry_magic (func)"},
		{"not wasm", api.TaskConfig{Module: notWasm}, "not a WebAssembly binary module"},
		{"host mount", api.TaskConfig{Module: modules["io"], Mounts: []api.WasmMount{{Source: "/etc", Target: "/etc"}}}, "is a host path this node does not allow"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := r.d.Start(context.Background(), r.config(api.Task{Config: tc.cfg}))
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, driver.ErrCannotRun) {
				t.Fatalf("start: %v, want a refusal saying %q", err, tc.want)
			}
		})
	}
}

// TestArtifactChecksum serves a module from an HTTP server on loopback:
// the wrong checksum is refused before anything runs, the right one runs.
func TestArtifactChecksum(t *testing.T) {
	r := newRig(t)
	bin, err := os.ReadFile(modules["trap"])
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) { w.Write(bin) }))
	defer srv.Close()
	sum := sha256.Sum256(bin)
	wrong := "sha256:" + strings.Repeat("ab", 32)

	cfg := r.config(api.Task{Config: api.TaskConfig{Artifact: &api.Artifact{Source: srv.URL + "/trap.wasm", Checksum: wrong}}})
	_, err = r.d.Start(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "has checksum sha256:"+hex.EncodeToString(sum[:])) || !errors.Is(err, driver.ErrCannotRun) {
		t.Fatalf("start with a wrong checksum: %v", err)
	}
	if _, err := os.Stat(filepath.Join(cfg.AllocDir, stateDir, "mod.wasm")); err == nil {
		t.Fatal("a module with the wrong checksum was kept")
	}
	if _, err := os.Stat(filepath.Join(cfg.AllocDir, "logs")); err == nil {
		t.Fatal("something ran although the checksum was wrong")
	}

	cfg = r.config(api.Task{Config: api.TaskConfig{Artifact: &api.Artifact{Source: srv.URL + "/trap.wasm", Checksum: "sha256:" + hex.EncodeToString(sum[:])}}})
	res := r.run(t, cfg)
	// The downloaded module runs: it is the trap module, so this also
	// checks that a trap names its message and function.
	if res.ExitCode != ExitTrap || !strings.Contains(res.Message, "unreachable") || !strings.Contains(res.Message, "crash_here") {
		t.Fatalf("exit %+v, want %d with the trap and its function", res, ExitTrap)
	}

	srv.Close()
	cfg = r.config(api.Task{Config: api.TaskConfig{Artifact: &api.Artifact{Source: srv.URL + "/trap.wasm", Checksum: "sha256:" + hex.EncodeToString(sum[:])}}})
	if _, err := r.d.Start(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "check that the URL is reachable") {
		t.Fatalf("start with an unreachable artifact: %v", err)
	}
}

// TestInfiniteLoopStopped: a module that never ends is stopped by Stop,
// within the kill timeout, and its runner is gone.
func TestInfiniteLoopStopped(t *testing.T) {
	r := newRig(t)
	cfg := r.config(api.Task{Config: api.TaskConfig{Module: modules["loop"]}})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	h, err := r.d.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(logOf(t, cfg, "stdout"), "looping") {
		if time.Now().After(deadline) {
			t.Fatal("the module never started looping")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := r.d.Stop(ctx, h, 5*time.Second); err != nil {
		t.Fatalf("stop: %v", err)
	}
	res, err := r.d.Wait(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	if res.Successful() {
		t.Fatalf("a stopped loop reported success: %+v", res)
	}
	if _, err := os.Stat("/proc/" + strconv.Itoa(h.Pid)); err == nil {
		if b, _ := os.ReadFile("/proc/" + strconv.Itoa(h.Pid) + "/stat"); !strings.Contains(string(b), ") Z") {
			t.Fatalf("runner pid %d still alive after Stop", h.Pid)
		}
	}
	if err := r.d.Destroy(ctx, h); err != nil {
		t.Fatal(err)
	}
}

// TestRecoverAdopts: a second driver (as after an agent restart) finds
// the running module, and Start of the same allocation adopts it instead
// of starting a second instance.
func TestRecoverAdopts(t *testing.T) {
	r := newRig(t)
	cfg := r.config(api.Task{Config: api.TaskConfig{Module: modules["loop"]}})
	ctx := context.Background()
	h, err := r.d.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.d.Destroy(ctx, h)
	d2, err := New(r.d.cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs, err := d2.Recover(ctx, "node-1")
	if err != nil || len(hs) != 1 || !hs[0].Running || hs[0].Driver != Name || hs[0].Pid != h.Pid {
		t.Fatalf("recover: %v %+v", err, hs)
	}
	h2, err := d2.Start(ctx, cfg)
	if err != nil || h2.Pid != h.Pid {
		t.Fatalf("second start: %v, pid %d, want the running pid %d adopted", err, h2.Pid, h.Pid)
	}
	if err := d2.Stop(ctx, hs[0], 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestFingerprint(t *testing.T) {
	r := newRig(t)
	info := r.d.Fingerprint(context.Background())
	if !info.Detected || !info.Healthy || !strings.HasPrefix(info.Version, "wazero ") {
		t.Fatalf("fingerprint: %+v", info)
	}
}
