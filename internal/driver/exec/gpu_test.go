package exec

import (
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/driver"
	"github.com/gantryhq/gantry/internal/gpu/mps"
)

// TestGPUEnvironment runs tasks given whole GPUs, a MIG instance, an
// MPS-enforced share and nothing, and reads the environment each process
// actually got.
func TestGPUEnvironment(t *testing.T) {
	root := t.TempDir()
	d := newDriver(t, root)
	share := &api.ShareAssignment{GPU: "GPU-s", Milli: 250, Memory: 4096, Enforce: true}
	for _, c := range []struct {
		name string
		gpu  *api.AllocatedGPU
		env  map[string]string
		want string
	}{
		{"none", nil, nil, "cuda=[] gantry=[unset] mps=[unset]"},
		{"whole", &api.AllocatedGPU{Devices: []string{"GPU-a", "GPU-b"}}, nil, "cuda=[GPU-a,GPU-b] gantry=[GPU-a,GPU-b] mps=[unset]"},
		{"mig", &api.AllocatedGPU{MIG: &api.MIGAssignment{GPU: "GPU-p", Profile: "1g.10gb", InstanceUUID: "MIG-77"}}, nil, "cuda=[MIG-77] gantry=[MIG-77] mps=[unset]"},
		{"share", &api.AllocatedGPU{Share: share}, mps.ClientEnv("/run/mps", share), "cuda=[GPU-s] gantry=[GPU-s] mps=[25 0=4096M /run/mps]"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := task(root, "n1", "sh", "-c", `echo "cuda=[${CUDA_VISIBLE_DEVICES-unset}] gantry=[${GANTRY_GPUS-unset}] mps=[${CUDA_MPS_ACTIVE_THREAD_PERCENTAGE-unset}${CUDA_MPS_PINNED_DEVICE_MEM_LIMIT+ $CUDA_MPS_PINNED_DEVICE_MEM_LIMIT $CUDA_MPS_PIPE_DIRECTORY}]"`)
			cfg.Resources.GPU = c.gpu
			cfg.Env = c.env
			cfg.DenyGPUMinors = []int{0, 1}
			h := start(t, d, cfg)
			if res := wait(t, d, h); !res.Successful() {
				t.Fatalf("exit %+v", res)
			}
			if got := strings.TrimSpace(logs(t, d, h, driver.LogOptions{})); got != c.want {
				t.Errorf("environment %q, want %q", got, c.want)
			}
		})
	}
}

// runFilter interprets the device program the way the kernel would, for
// the few instructions deviceFilter emits.
func runFilter(t *testing.T, p []bpfInsn, devType, major, minor uint32) bool {
	t.Helper()
	ctx := [3]uint32{devType | 7<<16, major, minor}
	var r [11]uint64
	for pc := 0; pc < len(p); pc++ {
		in := p[pc]
		dst, src := in.regs&0xf, in.regs>>4
		switch in.code {
		case opLdxW:
			if src != 1 || in.off%4 != 0 || in.off < 0 || in.off > 8 {
				t.Fatalf("pc %d: load outside the context", pc)
			}
			r[dst] = uint64(ctx[in.off/4])
		case opAndK:
			r[dst] = uint64(uint32(r[dst]) & uint32(in.imm))
		case opJneK:
			if r[dst] != uint64(in.imm) {
				pc += int(in.off)
			}
		case opJeqK:
			if r[dst] == uint64(in.imm) {
				pc += int(in.off)
			}
		case opMov64K:
			r[dst] = uint64(in.imm)
		case opExit:
			return r[0] == 1
		default:
			t.Fatalf("pc %d: unknown opcode %#x", pc, in.code)
		}
	}
	t.Fatal("program ran off its end")
	return false
}

func TestDeviceFilterProgram(t *testing.T) {
	p := deviceFilter([]int{0, 2, 5})
	const char, block = unix.BPF_DEVCG_DEV_CHAR, unix.BPF_DEVCG_DEV_BLOCK
	for _, c := range []struct {
		typ, major, minor uint32
		allow             bool
	}{
		{char, 195, 0, false}, {char, 195, 2, false}, {char, 195, 5, false},
		{char, 195, 1, true}, {char, 195, 3, true}, {char, 195, 255, true}, {char, 195, 254, true},
		{block, 195, 0, true}, {char, 1, 0, true}, {char, 510, 0, true},
	} {
		if got := runFilter(t, p, c.typ, c.major, c.minor); got != c.allow {
			t.Errorf("type %d %d:%d allowed %v, want %v", c.typ, c.major, c.minor, got, c.allow)
		}
	}
	if !runFilter(t, deviceFilter(nil), char, 195, 0) {
		t.Error("an empty deny list denies")
	}
}

// TestDeviceFilterVerifier loads the program into the kernel, whose
// verifier checks it, where this process may load BPF programs.
func TestDeviceFilterVerifier(t *testing.T) {
	fd, err := loadDeviceFilter([]int{0, 1, 2, 3, 4, 5, 6, 7})
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOSYS) {
		t.Skipf("this process may not load BPF programs: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
}

func TestFingerprintSaysWhatGPUsGet(t *testing.T) {
	d := newDriver(t, t.TempDir())
	iso := d.Fingerprint(testCtx(t)).Isolation
	if !strings.Contains(iso, "GPUs: CUDA_VISIBLE_DEVICES") {
		t.Errorf("isolation: %s", iso)
	}
	if d.limits != d.devices && d.devWhy == "" {
		t.Errorf("device restriction off without a reason")
	}
	if !d.devices && !strings.Contains(iso, "NOT restricted") {
		t.Errorf("isolation hides that /dev/nvidia* stay reachable: %s", iso)
	}
}

func TestStats(t *testing.T) {
	root := t.TempDir()
	d := newDriver(t, root)
	h := start(t, d, task(root, "n1", "sh", "-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; sleep 30"))
	// Right after the start the process group may still be between fork
	// and exec, with nothing resident yet: sample until it shows memory.
	var s *driver.TaskStats
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var err error
		if s, err = d.Stats(testCtx(t), h); err != nil {
			t.Fatal(err)
		}
		if s.MemoryBytes > 0 || time.Now().After(deadline) {
			break
		}
	}
	if s.MemoryBytes == 0 {
		t.Errorf("stats %+v", s)
	}
	if err := d.Stop(testCtx(t), h, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Stats(testCtx(t), h); !errors.Is(err, driver.ErrTaskNotFound) {
		t.Errorf("stats of a stopped task: %v", err)
	}
}
