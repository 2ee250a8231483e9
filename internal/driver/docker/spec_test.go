package docker

import (
	"net"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/driver"
)

func specTask() *driver.TaskConfig {
	return &driver.TaskConfig{
		NodeID:    "node-1",
		AllocID:   "0123456789abcdef0123456789abcdef",
		Namespace: "default",
		Job:       "web",
		Group:     "frontend",
		Index:     2,
		Task: &api.Task{
			Name:   "server",
			Driver: Name,
			Config: api.TaskConfig{
				Image: "gantry-demo:latest",
				Env:   map[string]string{"B": "2", "A": "1"},
				Ports: []api.PortSpec{{Name: "http", To: 8080}},
			},
			Resources: api.Resources{CPU: 250, Memory: 128},
		},
		Resources: &api.AllocatedResources{
			CPU: 250, Memory: 128,
			Ports: []api.AllocatedPort{{Name: "http", Host: 20001, To: 8080}},
		},
		BindAddress: "10.0.0.5",
	}
}

func TestBuildContainer(t *testing.T) {
	tcpPort := func(n uint16) network.Port { p, _ := network.PortFrom(n, network.TCP); return p }
	tests := []struct {
		name    string
		change  func(*driver.TaskConfig)
		check   func(*testing.T, *ContainerSpec)
		wantErr string
	}{
		{
			name: "defaults",
			check: func(t *testing.T, s *ContainerSpec) {
				if s.Name != "gantry-web-frontend-server-01234567" {
					t.Errorf("name %q", s.Name)
				}
				if s.Config.Image != "gantry-demo:latest" || s.Config.Cmd != nil || s.Config.Entrypoint != nil {
					t.Errorf("image %q cmd %q entrypoint %q: the image's own should be kept", s.Config.Image, s.Config.Cmd, s.Config.Entrypoint)
				}
				if !reflect.DeepEqual(s.Config.Labels, driver.Labels(specTask())) {
					t.Errorf("labels %v", s.Config.Labels)
				}
				if !slices.IsSorted(s.Config.Env) {
					t.Errorf("env not sorted: %v", s.Config.Env)
				}
				for _, kv := range []string{"A=1", "B=2", "GANTRY_ALLOC_ID=0123456789abcdef0123456789abcdef",
					"GANTRY_ALLOC_INDEX=2", "GANTRY_PORT_HTTP=8080", "GANTRY_HOST_PORT_HTTP=20001", "GANTRY_TASK=server"} {
					if !slices.Contains(s.Config.Env, kv) {
						t.Errorf("env lacks %s: %v", kv, s.Config.Env)
					}
				}
				hc := s.HostConfig
				if hc.Memory != 128<<20 || hc.MemorySwap != hc.Memory || hc.CPUShares != 256 {
					t.Errorf("memory %d swap %d cpu shares %d", hc.Memory, hc.MemorySwap, hc.CPUShares)
				}
				if hc.PidsLimit == nil || *hc.PidsLimit != DefaultPidsLimit {
					t.Errorf("pids limit %v", hc.PidsLimit)
				}
				if hc.RestartPolicy.Name != container.RestartPolicyDisabled {
					t.Errorf("restart policy %q", hc.RestartPolicy.Name)
				}
				if hc.LogConfig.Type != "json-file" || hc.LogConfig.Config["max-size"] != "10m" || hc.LogConfig.Config["max-file"] != "3" {
					t.Errorf("log config %+v", hc.LogConfig)
				}
				want := network.PortMap{tcpPort(8080): {{HostIP: netip.MustParseAddr("10.0.0.5"), HostPort: "20001"}}}
				if !reflect.DeepEqual(hc.PortBindings, want) {
					t.Errorf("port bindings %v", hc.PortBindings)
				}
				if _, ok := s.Config.ExposedPorts[tcpPort(8080)]; !ok || len(s.Config.ExposedPorts) != 1 {
					t.Errorf("exposed ports %v", s.Config.ExposedPorts)
				}
				if hc.Privileged || s.Config.User != "" || hc.CapAdd != nil {
					t.Errorf("privileges nobody asked for: privileged %v user %q cap add %v", hc.Privileged, s.Config.User, hc.CapAdd)
				}
				// The hardening defaults (harden.go).
				if !hc.ReadonlyRootfs || !reflect.DeepEqual(hc.Tmpfs, map[string]string{"/tmp": TmpfsOptions}) {
					t.Errorf("read-only root %v, tmpfs %v", hc.ReadonlyRootfs, hc.Tmpfs)
				}
				if !slices.Equal(hc.SecurityOpt, []string{"no-new-privileges=true"}) || !slices.Equal(hc.CapDrop, []string{"NET_RAW"}) {
					t.Errorf("security options %v, cap drop %v", hc.SecurityOpt, hc.CapDrop)
				}
				if !slices.Contains(s.Config.Env, "NVIDIA_VISIBLE_DEVICES=void") {
					t.Errorf("env %v: a task without GPUs must see none", s.Config.Env)
				}
				if _, ok := s.Config.Labels[driver.LabelChecks]; ok {
					t.Errorf("labels %v: no checks, no gantry.checks", s.Config.Labels)
				}
				if hc.DeviceRequests != nil {
					t.Errorf("device requests without GPUs: %v", hc.DeviceRequests)
				}
			},
		},
		{
			name: "command and args replace CMD, entrypoint replaces ENTRYPOINT",
			change: func(c *driver.TaskConfig) {
				c.Task.Config.Command = "/demo-app"
				c.Task.Config.Args = []string{"batch", "--steps", "3"}
				c.Task.Config.Entrypoint = []string{"/bin/tini", "--"}
			},
			check: func(t *testing.T, s *ContainerSpec) {
				if !slices.Equal(s.Config.Cmd, []string{"/demo-app", "batch", "--steps", "3"}) {
					t.Errorf("cmd %q", s.Config.Cmd)
				}
				if !slices.Equal(s.Config.Entrypoint, []string{"/bin/tini", "--"}) {
					t.Errorf("entrypoint %q", s.Config.Entrypoint)
				}
			},
		},
		{
			name:   "args alone replace CMD",
			change: func(c *driver.TaskConfig) { c.Task.Config.Args = []string{"batch"} },
			check: func(t *testing.T, s *ContainerSpec) {
				if !slices.Equal(s.Config.Cmd, []string{"batch"}) {
					t.Errorf("cmd %q", s.Config.Cmd)
				}
			},
		},
		{
			name: "security applied as asked",
			change: func(c *driver.TaskConfig) {
				ro := true
				c.Task.Security = &api.Security{Privileged: true, ReadOnlyRootfs: &ro, User: "65534", CapAdd: []string{"NET_ADMIN"}, CapDrop: []string{"ALL"}}
			},
			check: func(t *testing.T, s *ContainerSpec) {
				hc := s.HostConfig
				if !hc.Privileged || !hc.ReadonlyRootfs || s.Config.User != "65534" ||
					!slices.Equal(hc.CapAdd, []string{"NET_ADMIN"}) || !slices.Equal(hc.CapDrop, []string{"ALL"}) {
					t.Errorf("security %+v user %q", hc, s.Config.User)
				}
			},
		},
		{
			name: "opting out of the hardening defaults",
			change: func(c *driver.TaskConfig) {
				no := false
				c.Task.Security = &api.Security{ReadOnlyRootfs: &no, NoNewPrivileges: &no, CapAdd: []string{"NET_RAW"}}
			},
			check: func(t *testing.T, s *ContainerSpec) {
				hc := s.HostConfig
				if hc.ReadonlyRootfs || hc.Tmpfs != nil || hc.SecurityOpt != nil || hc.CapDrop != nil {
					t.Errorf("read-only %v tmpfs %v security options %v cap drop %v", hc.ReadonlyRootfs, hc.Tmpfs, hc.SecurityOpt, hc.CapDrop)
				}
			},
		},
		{
			name: "a volume on /tmp replaces the tmpfs; cap_drop ALL covers NET_RAW",
			change: func(c *driver.TaskConfig) {
				c.Task.Config.Volumes = []string{"/srv/scratch:/tmp/"}
				c.Task.Security = &api.Security{CapDrop: []string{"ALL"}}
			},
			check: func(t *testing.T, s *ContainerSpec) {
				if s.HostConfig.Tmpfs != nil || !s.HostConfig.ReadonlyRootfs || !slices.Equal(s.HostConfig.CapDrop, []string{"ALL"}) {
					t.Errorf("tmpfs %v read-only %v cap drop %v", s.HostConfig.Tmpfs, s.HostConfig.ReadonlyRootfs, s.HostConfig.CapDrop)
				}
			},
		},
		{
			name: "checks are named in the gantry.checks label",
			change: func(c *driver.TaskConfig) {
				c.Task.Checks = []api.Check{{Type: "http", Port: "http", Path: "/healthz"}, {Type: "tcp", Port: "http"}, {Type: "exec", Command: []string{"x"}}}
			},
			check: func(t *testing.T, s *ContainerSpec) {
				if got := s.Config.Labels[driver.LabelChecks]; got != "http:http/healthz,tcp:http,exec" {
					t.Errorf("gantry.checks %q", got)
				}
			},
		},
		{
			name: "the spec's env cannot widen NVIDIA_VISIBLE_DEVICES",
			change: func(c *driver.TaskConfig) {
				c.Task.Config.Env["NVIDIA_VISIBLE_DEVICES"] = "all"
				c.Resources.GPU = &api.AllocatedGPU{Share: &api.ShareAssignment{GPU: "GPU-a", Milli: 500}}
			},
			check: func(t *testing.T, s *ContainerSpec) {
				var got []string
				for _, kv := range s.Config.Env {
					if strings.HasPrefix(kv, "NVIDIA_VISIBLE_DEVICES=") {
						got = append(got, kv)
					}
				}
				if !slices.Equal(got, []string{"NVIDIA_VISIBLE_DEVICES=GPU-a"}) || !slices.IsSorted(s.Config.Env) {
					t.Errorf("NVIDIA_VISIBLE_DEVICES entries %v (env sorted: %v)", got, slices.IsSorted(s.Config.Env))
				}
			},
		},
		{
			name: "container port defaults to the host port; no bind address binds all",
			change: func(c *driver.TaskConfig) {
				c.BindAddress = ""
				c.Resources.Ports = []api.AllocatedPort{{Name: "http", Host: 20002}}
			},
			check: func(t *testing.T, s *ContainerSpec) {
				want := network.PortMap{tcpPort(20002): {{HostPort: "20002"}}}
				if !reflect.DeepEqual(s.HostConfig.PortBindings, want) {
					t.Errorf("port bindings %v", s.HostConfig.PortBindings)
				}
			},
		},
		{
			name: "spec env cannot override GANTRY variables, agent env adds to them",
			change: func(c *driver.TaskConfig) {
				c.Task.Config.Env["GANTRY_ALLOC_ID"] = "forged"
				c.Env = map[string]string{"GANTRY_PORT_HTTP": "20001", "EXTRA": "x"}
			},
			check: func(t *testing.T, s *ContainerSpec) {
				for _, kv := range []string{"GANTRY_ALLOC_ID=0123456789abcdef0123456789abcdef", "GANTRY_PORT_HTTP=8080", "EXTRA=x"} {
					if !slices.Contains(s.Config.Env, kv) {
						t.Errorf("env lacks %s: %v", kv, s.Config.Env)
					}
				}
			},
		},
		{
			name:   "no allocated resources: the task's own",
			change: func(c *driver.TaskConfig) { c.Resources = nil },
			check: func(t *testing.T, s *ContainerSpec) {
				if s.HostConfig.Memory != 128<<20 || s.HostConfig.CPUShares != 256 || len(s.HostConfig.PortBindings) != 0 {
					t.Errorf("resources %+v", s.HostConfig.Resources)
				}
			},
		},
		{
			name: "whole GPUs by UUID",
			change: func(c *driver.TaskConfig) {
				c.Resources.GPU = &api.AllocatedGPU{Devices: []string{"GPU-a", "GPU-b"}}
			},
			check: func(t *testing.T, s *ContainerSpec) {
				want := []container.DeviceRequest{{Driver: "nvidia", DeviceIDs: []string{"GPU-a", "GPU-b"}, Capabilities: [][]string{{"gpu"}}}}
				if !reflect.DeepEqual(s.HostConfig.DeviceRequests, want) {
					t.Errorf("device requests %+v", s.HostConfig.DeviceRequests)
				}
			},
		},
		{
			name: "isolation keys applied as asked",
			change: func(c *driver.TaskConfig) {
				c.Task.Config.PidMode, c.Task.Config.IpcMode, c.Task.Config.UTSMode = "host", "shareable", "host"
				c.Task.Config.Volumes = []string{"/var/run/docker.sock:/var/run/docker.sock:ro", "/srv:/data:rw,rslave"}
				c.Task.Config.Devices = []string{"/dev/fuse", "/dev/sda:/dev/xvda:r"}
				c.Task.Security = &api.Security{Seccomp: "unconfined", AppArmor: "unconfined"}
			},
			check: func(t *testing.T, s *ContainerSpec) {
				hc := s.HostConfig
				if hc.PidMode != "host" || hc.IpcMode != "shareable" || hc.UTSMode != "host" || hc.NetworkMode != "" {
					t.Errorf("modes pid %q ipc %q uts %q network %q", hc.PidMode, hc.IpcMode, hc.UTSMode, hc.NetworkMode)
				}
				wantMounts := []mount.Mount{
					{Type: mount.TypeBind, Source: "/var/run/docker.sock", Target: "/var/run/docker.sock", ReadOnly: true},
					{Type: mount.TypeBind, Source: "/srv", Target: "/data", BindOptions: &mount.BindOptions{Propagation: mount.PropagationRSlave}},
				}
				if !reflect.DeepEqual(hc.Mounts, wantMounts) || hc.Binds != nil {
					t.Errorf("mounts %+v binds %v", hc.Mounts, hc.Binds)
				}
				wantDevices := []container.DeviceMapping{
					{PathOnHost: "/dev/fuse", PathInContainer: "/dev/fuse", CgroupPermissions: "rwm"},
					{PathOnHost: "/dev/sda", PathInContainer: "/dev/xvda", CgroupPermissions: "r"},
				}
				if !reflect.DeepEqual(hc.Devices, wantDevices) {
					t.Errorf("devices %+v", hc.Devices)
				}
				for _, o := range []string{"seccomp=unconfined", "apparmor=unconfined"} {
					if !slices.Contains(hc.SecurityOpt, o) {
						t.Errorf("security options %v lack %s", hc.SecurityOpt, o)
					}
				}
			},
		},
		{
			name:   "host network publishes nothing; the task listens on the host port",
			change: func(c *driver.TaskConfig) { c.Task.Config.NetworkMode = "host" },
			check: func(t *testing.T, s *ContainerSpec) {
				if s.HostConfig.NetworkMode != "host" || len(s.HostConfig.PortBindings) != 0 || len(s.Config.ExposedPorts) != 0 {
					t.Errorf("network %q bindings %v exposed %v", s.HostConfig.NetworkMode, s.HostConfig.PortBindings, s.Config.ExposedPorts)
				}
				if !slices.Contains(s.Config.Env, "GANTRY_PORT_HTTP=20001") {
					t.Errorf("env %v: the task must listen on the host port", s.Config.Env)
				}
			},
		},
		{
			name: "no network publishes nothing",
			change: func(c *driver.TaskConfig) {
				c.Task.Config.NetworkMode = "none"
				c.Task.Config.Ports, c.Resources.Ports = nil, nil
			},
			check: func(t *testing.T, s *ContainerSpec) {
				if s.HostConfig.NetworkMode != "none" || len(s.HostConfig.PortBindings) != 0 {
					t.Errorf("network %q bindings %v", s.HostConfig.NetworkMode, s.HostConfig.PortBindings)
				}
			},
		},
		{
			name: "working dir, labels, extra hosts and named volumes (Compose services)",
			change: func(c *driver.TaskConfig) {
				c.Task.Config.WorkingDir = "/srv"
				c.Task.Config.Labels = map[string]string{"com.example.team": "web", "gantry.alloc": "forged"}
				c.Task.Config.ExtraHosts = []string{"api:host-gateway"}
				c.Task.Config.DockerVolumes = []string{"shop_data:/data:ro"}
			},
			check: func(t *testing.T, s *ContainerSpec) {
				if s.Config.WorkingDir != "/srv" || s.Config.Labels["com.example.team"] != "web" || s.Config.Labels["gantry.alloc"] == "forged" {
					t.Errorf("working dir %q labels %v", s.Config.WorkingDir, s.Config.Labels)
				}
				if !slices.Equal(s.HostConfig.ExtraHosts, []string{"api:host-gateway"}) {
					t.Errorf("extra hosts %v", s.HostConfig.ExtraHosts)
				}
				want := mount.Mount{Type: mount.TypeVolume, Source: "shop_data", Target: "/data", ReadOnly: true}
				if !slices.Contains(s.HostConfig.Mounts, want) {
					t.Errorf("mounts %+v lack %+v", s.HostConfig.Mounts, want)
				}
			},
		},
		{
			name: "the node's resolver on the default bridge",
			change: func(c *driver.TaskConfig) {
				c.Resolver = &driver.Resolver{Address: "172.17.0.1", Search: []string{"shop.lb.gantry"}}
			},
			check: func(t *testing.T, s *ContainerSpec) {
				if len(s.HostConfig.DNS) != 1 || s.HostConfig.DNS[0].String() != "172.17.0.1" || !slices.Equal(s.HostConfig.DNSSearch, []string{"shop.lb.gantry"}) {
					t.Errorf("dns %v search %v", s.HostConfig.DNS, s.HostConfig.DNSSearch)
				}
			},
		},
		{
			name: "the node's resolver is not given to host networking",
			change: func(c *driver.TaskConfig) {
				c.Task.Config.NetworkMode = "host"
				c.Resolver = &driver.Resolver{Address: "172.17.0.1", Search: []string{"shop.lb.gantry"}}
			},
			check: func(t *testing.T, s *ContainerSpec) {
				if len(s.HostConfig.DNS) != 0 || len(s.HostConfig.DNSSearch) != 0 {
					t.Errorf("dns %v search %v on host networking", s.HostConfig.DNS, s.HostConfig.DNSSearch)
				}
			},
		},
		{name: "bad resolver", change: func(c *driver.TaskConfig) { c.Resolver = &driver.Resolver{Address: "resolver"} }, wantErr: "resolver address"},
		{name: "bad named volume", change: func(c *driver.TaskConfig) { c.Task.Config.DockerVolumes = []string{"/abs:/data"} }, wantErr: "volume name"},
		{name: "bad volume", change: func(c *driver.TaskConfig) { c.Task.Config.Volumes = []string{"data:/data"} }, wantErr: "not absolute"},
		{name: "bad device", change: func(c *driver.TaskConfig) { c.Task.Config.Devices = []string{"/dev/a:/dev/b:x"} }, wantErr: "permissions"},
		{name: "no image", change: func(c *driver.TaskConfig) { c.Task.Config.Image = "" }, wantErr: "no config.image"},
		{name: "no alloc id", change: func(c *driver.TaskConfig) { c.AllocID = "" }, wantErr: "no allocation id"},
		{name: "bad bind address", change: func(c *driver.TaskConfig) { c.BindAddress = "localhost" }, wantErr: "not an IP address"},
		{name: "bad port", change: func(c *driver.TaskConfig) { c.Resources.Ports[0].Host = 70000 }, wantErr: "1..65535"},
		{name: "bad name", change: func(c *driver.TaskConfig) { c.Job = "a/b" }, wantErr: "not valid"},
		{name: "no task", change: func(c *driver.TaskConfig) { c.Task = nil }, wantErr: "no task"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := specTask()
			if tt.change != nil {
				tt.change(cfg)
			}
			s, err := BuildContainer(cfg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, s)
			// Pure: the same input gives the same spec.
			again, _ := BuildContainer(cfg)
			if !reflect.DeepEqual(s, again) {
				t.Errorf("two builds of one config differ")
			}
		})
	}
}

// TestGatewayIn: the bridge interface's address in the network's subnet
// is its gateway (an engine that reports only the subnet).
func TestGatewayIn(t *testing.T) {
	addr := func(s string) net.Addr {
		ip, n, err := net.ParseCIDR(s)
		if err != nil {
			t.Fatal(err)
		}
		n.IP = ip
		return n
	}
	subnet := netip.MustParsePrefix("172.17.0.0/16")
	for _, tc := range []struct {
		name    string
		addrs   []net.Addr
		subnets []netip.Prefix
		want    string
	}{
		{"the address in the subnet", []net.Addr{addr("fe80::1/64"), addr("10.1.0.5/24"), addr("172.17.0.1/16")}, []netip.Prefix{subnet}, "172.17.0.1"},
		{"no address in the subnet", []net.Addr{addr("10.1.0.5/24")}, []netip.Prefix{subnet}, ""},
		{"no subnet known: the first IPv4 address", []net.Addr{addr("fe80::1/64"), addr("10.1.0.5/24")}, nil, "10.1.0.5"},
		{"IPv6 only", []net.Addr{addr("fe80::1/64")}, nil, ""},
	} {
		got, ok := gatewayIn(tc.addrs, tc.subnets)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("%s: %q %v, want %q", tc.name, got, ok, tc.want)
		}
	}
}
