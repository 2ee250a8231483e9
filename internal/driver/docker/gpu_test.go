package docker

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/gpu/mps"
)

// The engine here has no NVIDIA runtime, so these tests check what the
// driver asks of the engine, not what a GPU container sees: the spec
// BuildContainer makes, and the configuration the engine stored for a
// container created from it (the NVIDIA runtime reads it at start).

func envOf(s *ContainerSpec, key string) (string, bool) {
	for _, kv := range s.Config.Env {
		if k, v, _ := strings.Cut(kv, "="); k == key {
			return v, true
		}
	}
	return "", false
}

func TestGPUAssignmentSpec(t *testing.T) {
	nvidia := func(ids ...string) []container.DeviceRequest {
		return []container.DeviceRequest{{Driver: "nvidia", DeviceIDs: ids, Capabilities: [][]string{{"gpu"}}}}
	}
	share := &api.ShareAssignment{GPU: "GPU-s", Milli: 460, Memory: 8192, Enforce: true}
	for _, c := range []struct {
		name    string
		gpu     *api.AllocatedGPU
		env     map[string]string
		want    []container.DeviceRequest
		gpus    string // GANTRY_GPUS
		ipcHost bool
	}{
		{name: "no GPU: none requested", want: nil},
		{name: "whole GPUs", gpu: &api.AllocatedGPU{Devices: []string{"GPU-a", "GPU-b"}}, want: nvidia("GPU-a", "GPU-b"), gpus: "GPU-a,GPU-b"},
		{name: "MIG instance by its UUID", gpu: &api.AllocatedGPU{MIG: &api.MIGAssignment{GPU: "GPU-p", Profile: "3g.40gb", Start: 4, Size: 4, InstanceUUID: "MIG-1234"}},
			want: nvidia("MIG-1234"), gpus: "MIG-1234"},
		{name: "MIG instance UUID without its prefix", gpu: &api.AllocatedGPU{MIG: &api.MIGAssignment{GPU: "GPU-p", InstanceUUID: "5678"}},
			want: nvidia("MIG-5678"), gpus: "MIG-5678"},
		{name: "MIG instance not created yet: nothing", gpu: &api.AllocatedGPU{MIG: &api.MIGAssignment{GPU: "GPU-p", Create: true}}, want: nil},
		{name: "share without MPS", gpu: &api.AllocatedGPU{Share: share}, want: nvidia("GPU-s"), gpus: "GPU-s"},
		{name: "share with MPS limits", gpu: &api.AllocatedGPU{Share: share}, env: mps.ClientEnv("/run/mps", share),
			want: nvidia("GPU-s"), gpus: "GPU-s", ipcHost: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := specTask()
			cfg.Resources.GPU = c.gpu
			cfg.Env = c.env
			s, err := BuildContainer(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(s.HostConfig.DeviceRequests, c.want) {
				t.Errorf("device requests %+v, want %+v", s.HostConfig.DeviceRequests, c.want)
			}
			if got, ok := envOf(s, "GANTRY_GPUS"); got != c.gpus || ok != (c.gpu != nil) {
				t.Errorf("GANTRY_GPUS=%q (set %v), want %q", got, ok, c.gpus)
			}
			// NVIDIA_VISIBLE_DEVICES names exactly what the device request
			// asks for ("void" for none), whatever the image says: an image
			// built with NVIDIA_VISIBLE_DEVICES=all must not widen it.
			wantVisible := "void"
			if len(c.want) > 0 {
				wantVisible = strings.Join(c.want[0].DeviceIDs, ",")
			}
			if got, _ := envOf(s, "NVIDIA_VISIBLE_DEVICES"); got != wantVisible {
				t.Errorf("NVIDIA_VISIBLE_DEVICES=%q, want %q", got, wantVisible)
			}
			if got := s.HostConfig.IpcMode == container.IPCModeHost; got != c.ipcHost {
				t.Errorf("host IPC %v, want %v", got, c.ipcHost)
			}
			if c.ipcHost {
				if !slices.Contains(s.HostConfig.Binds, "/run/mps:/run/mps") {
					t.Errorf("binds %v lack the MPS pipe directory", s.HostConfig.Binds)
				}
				for k, want := range map[string]string{"CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": "46", "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT": "0=8192M", "CUDA_MPS_PIPE_DIRECTORY": "/run/mps"} {
					if got, _ := envOf(s, k); got != want {
						t.Errorf("%s=%q, want %q", k, got, want)
					}
				}
			} else if len(s.HostConfig.Binds) > 0 {
				t.Errorf("binds %v", s.HostConfig.Binds)
			}
		})
	}
}

// TestGPUDeviceRequestStoredByEngine creates (without starting) a
// container for a task given a MIG instance and one given nothing, and
// reads back what the engine stored.
func TestGPUDeviceRequestStoredByEngine(t *testing.T) {
	d := newDriver(t)
	ctx := testCtx(t)
	for _, c := range []struct {
		name string
		gpu  *api.AllocatedGPU
		want []container.DeviceRequest
	}{
		{"mig", &api.AllocatedGPU{MIG: &api.MIGAssignment{GPU: "GPU-p", Profile: "1g.10gb", InstanceUUID: "MIG-abcd"}},
			[]container.DeviceRequest{{Driver: "nvidia", DeviceIDs: []string{"MIG-abcd"}, Capabilities: [][]string{{"gpu"}}}}},
		{"none", nil, nil},
	} {
		cfg := task(testNode)
		cfg.Resources.GPU = c.gpu
		s, err := BuildContainer(cfg)
		if err != nil {
			t.Fatal(err)
		}
		res, err := d.cli.ContainerCreate(ctx, client.ContainerCreateOptions{Name: s.Name, Config: s.Config, HostConfig: s.HostConfig})
		if err != nil {
			t.Fatalf("%s: create: %v", c.name, err)
		}
		t.Cleanup(func() { d.cli.ContainerRemove(ctx, res.ID, client.ContainerRemoveOptions{Force: true}) })
		in, err := d.cli.ContainerInspect(ctx, res.ID, client.ContainerInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got := in.Container.HostConfig.DeviceRequests
		if len(got) == 0 {
			got = nil
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: engine stored device requests %+v, want %+v", c.name, got, c.want)
		}
	}
}

func TestFingerprintSaysWhatGPUsGet(t *testing.T) {
	info := newDriver(t).Fingerprint(testCtx(t))
	if !strings.Contains(info.Isolation, "GPUs: ") {
		t.Errorf("isolation does not say what GPUs get: %s", info.Isolation)
	}
}
