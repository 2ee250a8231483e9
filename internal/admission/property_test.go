package admission

import (
	"fmt"
	"net/netip"
	"path"
	"slices"
	"strings"
	"testing"

	"github.com/moby/moby/api/types/system"
	"pgregory.net/rapid"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/audit"
	"github.com/gantryhq/gantry/internal/driver"
	"github.com/gantryhq/gantry/internal/driver/docker"
	"github.com/gantryhq/gantry/internal/jobspec"
)

// Pools the generators draw from: values the default policy admits (some
// of which it warns on), and the unsafe ones it blocks, drawn rarely so
// that about half of the jobs are admitted.
var (
	safeSources      = []string{"/srv/data", "/home/app", "/var/lib/gantry", "/tmp/scratch"}
	sensitiveSources = []string{"/etc", "/etc/ssl", "/usr/share/zoneinfo", "/", "/proc", "/dev", "/sys/fs/cgroup", "/boot", "/lib/modules"}
	socketSources    = []string{"/var/run/docker.sock", "/run/docker.sock", "/run", "/var/run", "/var/run/", "/run/containerd", "/var/run/docker"}
	volumeOptions    = []string{"", ":ro", ":rw", ":ro,rslave", ":rshared", ":rw,private"}
	safeDevices      = []string{"/dev/fuse", "/dev/kvm", "/dev/net/tun:/dev/tun:r"}
	rawDevices       = []string{"/dev/mem", "/dev/kmem:/dev/k", "/dev/port", "/dev/sda:/dev/xvda:r", "/dev/nvme0n1"}
	gpuDevices       = []string{"/dev/nvidia0", "/dev/nvidiactl", "/dev/zero:/dev/nvidia1"}
	safeCaps         = []string{"CHOWN", "NET_BIND_SERVICE", "NET_RAW", "SYS_NICE", "SYS_TIME"}
	dangerousCaps    = []string{"SYS_ADMIN", "NET_ADMIN", "SYS_PTRACE", "SYS_MODULE", "DAC_READ_SEARCH", "ALL", "CAP_SYS_ADMIN"}
	capsToDrop       = []string{"ALL", "NET_RAW", "CHOWN", "SETUID"}
	gpuEnv           = []string{"all", "GPU-other", "0", "void"}
)

// rare is true about one draw in fifty: how often a task asks for one
// particular unsafe setting. (rapid favours the bounds of a range, so the
// rare value is one in the middle.)
func rare(t *rapid.T, label string) bool { return rapid.IntRange(0, 49).Draw(t, label) == 17 }

func optBool(t *rapid.T, label string) *bool {
	switch rapid.IntRange(0, 2).Draw(t, label) {
	case 1:
		b := true
		return &b
	case 2:
		b := false
		return &b
	}
	return nil
}

func genTask(t *rapid.T, name string) *api.Task {
	task := &api.Task{
		Name: name, Driver: api.DriverDocker,
		Config: api.TaskConfig{
			Image: "gantry-demo:latest",
			Env:   map[string]string{},
		},
		Resources: api.Resources{CPU: rapid.IntRange(1, 4000).Draw(t, "cpu"), Memory: rapid.IntRange(1, 4096).Draw(t, "memory")},
	}
	c := &task.Config
	c.NetworkMode = rapid.SampledFrom([]string{"", "bridge", "none"}).Draw(t, "network")
	if rare(t, "host network") {
		c.NetworkMode = "host"
	}
	if rare(t, "host pid") {
		c.PidMode = "host"
	}
	c.IpcMode = rapid.SampledFrom([]string{"", "private", "shareable", "none"}).Draw(t, "ipc")
	if rare(t, "host ipc") {
		c.IpcMode = "host"
	}
	c.UTSMode = rapid.SampledFrom([]string{"", "host"}).Draw(t, "uts")
	if c.NetworkMode != "none" {
		for i := range rapid.IntRange(0, 2).Draw(t, "ports") {
			p := api.PortSpec{Name: fmt.Sprintf("p%d", i)}
			if c.NetworkMode != "host" {
				p.To = rapid.SampledFrom([]int{0, 80, 8080}).Draw(t, "to")
			}
			if rapid.Bool().Draw(t, "static") {
				p.Static = rapid.SampledFrom([]int{80, 443, 8080, 9090}).Draw(t, "static port") + i
			}
			c.Ports = append(c.Ports, p)
		}
	}
	for i := range rapid.IntRange(0, 3).Draw(t, "volumes") {
		src := rapid.SampledFrom(safeSources).Draw(t, "source")
		opt := rapid.SampledFrom(volumeOptions).Draw(t, "options")
		switch {
		case rare(t, "socket"):
			src = rapid.SampledFrom(socketSources).Draw(t, "socket")
		case rare(t, "sensitive rw"):
			src = rapid.SampledFrom(sensitiveSources).Draw(t, "sensitive")
		case rapid.IntRange(0, 3).Draw(t, "sensitive ro") == 0:
			src, opt = rapid.SampledFrom(sensitiveSources).Draw(t, "sensitive"), ":ro"
		}
		dst := fmt.Sprintf("/mnt/v%d", i)
		if rare(t, "socket target") {
			dst = fmt.Sprintf("/v%d/docker.sock", i)
		}
		c.Volumes = append(c.Volumes, src+":"+dst+opt)
	}
	c.Devices = rapid.SliceOfNDistinct(rapid.SampledFrom(safeDevices), 0, 2, rapid.ID[string]).Draw(t, "devices")
	if rare(t, "raw device") {
		c.Devices = append(c.Devices, rapid.SampledFrom(rawDevices).Draw(t, "raw device node"))
	}
	if rare(t, "gpu device") {
		c.Devices = append(c.Devices, rapid.SampledFrom(gpuDevices).Draw(t, "gpu device node"))
	}
	if rapid.Bool().Draw(t, "gpu env") {
		c.Env["NVIDIA_VISIBLE_DEVICES"] = rapid.SampledFrom(gpuEnv).Draw(t, "gpu env value")
	}
	switch rapid.IntRange(0, 3).Draw(t, "gpu") {
	case 1:
		task.Resources.GPU = &api.GPURequest{Count: rapid.IntRange(1, 4).Draw(t, "gpus")}
	case 2:
		task.Resources.GPU = &api.GPURequest{MIG: "1g.10gb"}
	case 3:
		task.Resources.GPU = &api.GPURequest{Share: &api.GPUShare{Milli: rapid.IntRange(1, 1000).Draw(t, "milli")}}
	}
	if len(c.Ports) > 0 && rapid.Bool().Draw(t, "check") {
		task.Checks = []api.Check{{Type: api.CheckHTTP, Port: c.Ports[0].Name, Path: "/healthz"}}
	}
	if rapid.Bool().Draw(t, "security") {
		task.Security = &api.Security{
			Privileged:      rare(t, "privileged"),
			ReadOnlyRootfs:  optBool(t, "read only"),
			User:            rapid.SampledFrom([]string{"", "0", "root", "65534", "app:app"}).Draw(t, "user"),
			CapAdd:          rapid.SliceOfNDistinct(rapid.SampledFrom(safeCaps), 0, 2, rapid.ID[string]).Draw(t, "cap add"),
			CapDrop:         rapid.SliceOfNDistinct(rapid.SampledFrom(capsToDrop), 0, 2, rapid.ID[string]).Draw(t, "cap drop"),
			NoNewPrivileges: optBool(t, "no new privileges"),
			Seccomp:         rapid.SampledFrom([]string{"", "default", "unconfined"}).Draw(t, "seccomp"),
			AppArmor:        rapid.SampledFrom([]string{"", "unconfined", "docker-default"}).Draw(t, "apparmor"),
		}
		if rare(t, "dangerous cap") {
			task.Security.CapAdd = append(task.Security.CapAdd, rapid.SampledFrom(dangerousCaps).Draw(t, "dangerous"))
		}
	}
	return task
}

// genJob draws a valid job: one or two groups of docker tasks (and now and
// then an exec task, which admission does not judge).
func genJob(t *rapid.T) *api.Job {
	job := &api.Job{
		Name:      "job",
		Namespace: rapid.SampledFrom([]string{"default", "team-a"}).Draw(t, "namespace"),
		Type:      api.JobService,
		Priority:  50,
	}
	for gi := range rapid.IntRange(1, 2).Draw(t, "groups") {
		g := &api.Group{Name: fmt.Sprintf("g%d", gi), Count: 1}
		for ti := range rapid.IntRange(1, 2).Draw(t, "tasks") {
			g.Tasks = append(g.Tasks, genTask(t, fmt.Sprintf("t%d", ti)))
		}
		if rapid.IntRange(0, 4).Draw(t, "exec task") == 0 {
			g.Tasks = append(g.Tasks, &api.Task{Name: "exec", Driver: api.DriverExec,
				Config: api.TaskConfig{Command: "/bin/true"}, Resources: api.Resources{CPU: 1, Memory: 1}})
		}
		job.Groups = append(job.Groups, g)
	}
	jobspec.Canonicalize(job)
	// Static ports must differ within a group; drop clashes rather than
	// reject the draw.
	for _, g := range job.Groups {
		seen := map[int]bool{}
		for _, task := range g.Tasks {
			for i := range task.Config.Ports {
				if p := &task.Config.Ports[i]; p.Static != 0 {
					if seen[p.Static] {
						p.Static = 0
					}
					seen[p.Static] = true
				}
			}
		}
	}
	if errs := jobspec.Validate(job); len(errs) > 0 {
		t.Fatalf("the generator drew an invalid job: %v", errs)
	}
	return job
}

// runtimeConfig is the configuration the agent would give the driver for
// task once placed: a fresh allocation ID, the node's address, host ports
// from the node's range and real-looking GPU identifiers.
func runtimeConfig(t *rapid.T, job *api.Job, g *api.Group, task *api.Task) *driver.TaskConfig {
	res := &api.AllocatedResources{CPU: task.Resources.CPU, Memory: task.Resources.Memory}
	for i, p := range task.Config.Ports {
		host := p.Static
		if host == 0 {
			host = rapid.IntRange(20000, 32000).Draw(t, "host port") + i
		}
		res.Ports = append(res.Ports, api.AllocatedPort{Name: p.Name, Host: host, To: p.To})
	}
	uuid := func(label string) string {
		return fmt.Sprintf("GPU-%08x-%04x", rapid.Uint32().Draw(t, label), rapid.Uint16().Draw(t, label))
	}
	if r := task.Resources.GPU; r != nil {
		switch {
		case r.Count > 0:
			gpu := &api.AllocatedGPU{}
			for range r.Count {
				gpu.Devices = append(gpu.Devices, uuid("gpu"))
			}
			res.GPU = gpu
		case r.MIG != "":
			res.GPU = &api.AllocatedGPU{MIG: &api.MIGAssignment{GPU: uuid("gpu"), Profile: r.MIG, InstanceUUID: strings.TrimPrefix(uuid("mig"), "GPU-")}}
		case r.Share != nil:
			res.GPU = &api.AllocatedGPU{Share: &api.ShareAssignment{GPU: uuid("gpu"), Milli: r.Share.Milli}}
		}
	}
	cfg := &driver.TaskConfig{
		NodeID:    "node-" + rapid.StringMatching(`[a-z0-9]{6}`).Draw(t, "node"),
		AllocID:   fmt.Sprintf("%08x-0000-4000-8000-%012x", rapid.Uint32().Draw(t, "alloc"), rapid.Uint32().Draw(t, "alloc2")),
		Namespace: job.Namespace, Job: job.Name, Group: g.Name,
		Index:       rapid.IntRange(0, 9).Draw(t, "index"),
		Task:        task,
		Resources:   res,
		BindAddress: rapid.SampledFrom([]string{"127.0.0.1", "10.0.3.7", "192.168.1.20"}).Draw(t, "node address"),
	}
	cfg.Env = driver.TaskEnv(cfg, false)
	return cfg
}

// engine is a node where every mechanism the checks rely on exists.
var engine = system.Info{ServerVersion: "20.10.24", MemoryLimit: true, PidsLimit: true, CPUCfsQuota: true,
	SecurityOptions: []string{"name=seccomp,profile=default"}}

// TestAdmittedSpecsPassEveryBlockingCheck is the property of issue 8: any
// job spec the default policy admits produces, once placed anywhere, a
// Docker container config that passes every check the default policy
// marks blocking. The runtime config differs from the one admission judged
// in everything placement decides (allocation, node, ports, GPUs).
func TestAdmittedSpecsPassEveryBlockingCheck(t *testing.T) {
	policy := audit.DefaultPolicy()
	runs, admitted := 0, 0
	rapid.Check(t, func(t *rapid.T) {
		job := genJob(t)
		rv, err := Check(policy, job)
		if err != nil {
			t.Fatalf("admission could not build a container: %v", err)
		}
		runs++
		if !rv.Admitted() {
			return
		}
		admitted++
		for _, g := range job.Groups {
			for _, task := range g.Tasks {
				if task.Driver != api.DriverDocker {
					continue
				}
				cfg := runtimeConfig(t, job, g, task)
				spec, err := docker.BuildContainer(cfg)
				if err != nil {
					t.Fatalf("admitted, but the driver cannot build %s/%s: %v", g.Name, task.Name, err)
				}
				var gpu *api.AllocatedGPU
				if cfg.Resources != nil {
					gpu = cfg.Resources.GPU
				}
				e := &audit.Engine{Info: engine, Allocations: audit.Allocations{
					audit.TaskKey(cfg.AllocID, task.Name): {GPUs: driver.GPUVisibleDevices(gpu), Checks: len(task.Checks)},
				}}
				fs := audit.AuditContainer(audit.FromCreate(spec.Name, spec.Config, spec.HostConfig), e)
				if v := audit.Evaluate(policy, job.Namespace, fs); v.Blocked() {
					t.Fatalf("admitted, but %s/%s fails blocking check %s: %s", g.Name, task.Name, v.Blocking[0].CheckID, v.Blocking[0].Detail)
				}
			}
		}
	})
	// The property says nothing if the generator hardly ever draws an
	// admissible job.
	t.Logf("%d of %d jobs admitted", admitted, runs)
	if admitted*5 < runs {
		t.Errorf("only %d of %d drawn jobs were admitted; the generator is too unsafe to test the property", admitted, runs)
	}
}

// blockedBy is a deliberately plain reference for the default policy,
// written from the spec's keys and the CIS Docker Benchmark's rules rather
// than from the checks: the ids of the checks a docker task must be
// refused for.
func blockedBy(task *api.Task) map[string]bool {
	out := map[string]bool{}
	c, s := task.Config, task.Security
	if s == nil {
		s = &api.Security{}
	}
	if s.Privileged {
		out["5.5"] = true
	}
	if c.NetworkMode == "host" {
		out["5.10"] = true
	}
	if c.PidMode == "host" {
		out["5.16"] = true
	}
	if c.IpcMode == "host" {
		out["5.17"] = true
	}
	for _, cp := range s.CapAdd {
		switch strings.TrimPrefix(cp, "CAP_") {
		case "SYS_ADMIN", "SYS_MODULE", "SYS_PTRACE", "DAC_READ_SEARCH", "NET_ADMIN", "ALL":
			out["5.4"] = true
		}
	}
	for _, v := range c.Volumes {
		parts := strings.Split(v, ":")
		src, dst := parts[0], parts[1]
		ro := len(parts) > 2 && slices.Contains(strings.Split(parts[2], ","), "ro")
		sensitive := src == "/"
		for _, d := range []string{"/boot", "/dev", "/etc", "/lib", "/proc", "/sys", "/usr"} {
			if src == d || strings.HasPrefix(src, d+"/") {
				sensitive = true
			}
		}
		if sensitive && !ro {
			out["5.6"] = true
		}
		if path.Base(src) == "docker.sock" || path.Base(dst) == "docker.sock" {
			out["5.32"] = true
		}
		// A parent of the engine's or containerd's socket is the socket.
		canon := path.Clean(strings.Replace(path.Clean(src), "/var/run", "/run", 1))
		for _, sock := range []string{"/run/docker.sock", "/run/containerd/containerd.sock", "/run/docker/containerd/containerd.sock"} {
			if canon == "/" || canon == sock || strings.HasPrefix(sock, canon+"/") {
				out["5.32"] = true
			}
		}
	}
	for _, d := range c.Devices {
		for _, p := range strings.Split(d, ":")[:min(2, len(strings.Split(d, ":")))] {
			if strings.HasPrefix(p, "/dev/nvidia") {
				out["5.18"] = true
			}
		}
		if slices.Contains(rawDevices, d) {
			out["5.18"] = true
		}
	}
	return out
}

// TestAdmissionMatchesReference: admission under the default policy
// refuses exactly the tasks, for exactly the checks, that the reference
// names. (NVIDIA_VISIBLE_DEVICES in the spec's env never matters: the
// driver overrides it.)
func TestAdmissionMatchesReference(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		job := genJob(t)
		rv, err := Check(audit.DefaultPolicy(), job)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]bool{}
		for _, f := range rv.Blocking {
			got[f.Path+" "+f.CheckID] = true
		}
		want := map[string]bool{}
		for gi, g := range job.Groups {
			for ti, task := range g.Tasks {
				if task.Driver != api.DriverDocker {
					continue
				}
				for id := range blockedBy(task) {
					want[fmt.Sprintf("groups[%d].tasks[%d] %s", gi, ti, id)] = true
				}
			}
		}
		for k := range want {
			if !got[k] {
				t.Errorf("not refused for %s", k)
			}
		}
		for k := range got {
			if !want[k] {
				t.Errorf("refused for %s, which the reference allows", k)
			}
		}
	})
}

// TestAdmissionBindsToTheNode: what admission judges binds ports to an
// address, as the agents do (5.14 passes), and the stand-in address is one
// no node has.
func TestAdmissionBindsToTheNode(t *testing.T) {
	if !netip.MustParseAddr(BindAddress).IsValid() {
		t.Fatal("bad stand-in address")
	}
	job := parse(t, plain)
	fs, err := Audit(TaskConfig(job, job.Groups[0], job.Groups[0].Tasks[0]))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fs {
		if f.CheckID == "5.14" && (f.Failed() || !strings.Contains(f.Detail, "specific address")) {
			t.Errorf("5.14: %s %s", f.Status, f.Detail)
		}
	}
}
