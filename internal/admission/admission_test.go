package admission

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/audit"
	"github.com/gantryhq/gantry/internal/jobspec"
)

func parse(t *testing.T, spec string) *api.Job {
	t.Helper()
	job, err := jobspec.Parse("t.yaml", []byte(spec))
	if err != nil {
		t.Fatal(err)
	}
	return job
}

const plain = `name: web
groups:
  - name: web
    tasks:
      - name: server
        driver: docker
        config: {image: gantry-demo:latest, ports: [{name: http, to: 8080}]}
        resources: {cpu: 100, memory: 32}
        checks: [{type: http, port: http, path: /healthz}]
      - name: sidecar
        driver: exec
        config: {command: /bin/sleep, args: ["1000"]}
        resources: {cpu: 100, memory: 32}
`

const unsafe = `name: root-everything
groups:
  - name: tools
    tasks:
      - name: agent
        driver: docker
        config:
          image: gantry-demo:latest
          network_mode: host
          volumes: ["/var/run/docker.sock:/var/run/docker.sock"]
        resources: {cpu: 100, memory: 32}
        security: {privileged: true}
`

func TestPlainJobAdmittedWithoutWarnings(t *testing.T) {
	rv, err := Check(audit.DefaultPolicy(), parse(t, plain))
	if err != nil {
		t.Fatal(err)
	}
	if !rv.Admitted() || len(rv.Warning) != 0 {
		t.Fatalf("blocking %v, warnings %v", rv.Blocking, rv.Warnings())
	}
	// Under a policy that blocks every failure, it is still admitted: it
	// fails no check at all.
	if rv, _ := Check(audit.Policy{Default: audit.ActionBlock}, parse(t, plain)); !rv.Admitted() {
		t.Fatalf("a policy blocking everything refuses the plain job: %s", rv.Error())
	}
}

func TestUnsafeJobRefusedWithEveryViolation(t *testing.T) {
	rv, err := Check(audit.DefaultPolicy(), parse(t, unsafe))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, f := range rv.Blocking {
		got[f.CheckID] = true
		if f.Group != "tools" || f.Task != "agent" || f.Path != "groups[0].tasks[0]" || f.Action != audit.ActionBlock {
			t.Errorf("finding %+v", f)
		}
	}
	for _, id := range []string{"5.5", "5.10", "5.32"} {
		if !got[id] {
			t.Errorf("%s not among the blocking findings %v", id, got)
		}
	}
	if len(got) != 3 {
		t.Errorf("blocking %v, want exactly 5.5, 5.10, 5.32", got)
	}
	msg := rv.Error()
	for _, want := range []string{
		`job "root-everything" in namespace "default" is refused`,
		"3 blocking finding(s)",
		"task tools/agent: 5.5 Ensure that privileged containers are not used (critical)",
		"task tools/agent: 5.10 Ensure that the host's network namespace is not shared (high)",
		"task tools/agent: 5.32 Ensure that the Docker socket is not mounted inside any containers (critical): mounts the Docker socket: /var/run/docker.sock -> /var/run/docker.sock",
		"remediation: Do not run the container with --privileged",
		"Nothing was created.",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("refusal lacks %q:\n%s", want, msg)
		}
	}
	// The order is by check: 5.5 before 5.10 before 5.32.
	if i, j, k := strings.Index(msg, " 5.5 "), strings.Index(msg, " 5.10 "), strings.Index(msg, " 5.32 "); !(i < j && j < k) {
		t.Errorf("findings out of order:\n%s", msg)
	}
}

func TestNamespaceExceptions(t *testing.T) {
	p := audit.DefaultPolicy()
	p.Exceptions = []audit.Exception{
		{Namespace: "infra", Check: "5.5", Action: audit.ActionWarn, Reason: "node agents"},
		{Namespace: "infra", Check: "5.10", Action: audit.ActionWarn},
		{Namespace: "infra", Check: "5.32", Action: audit.ActionIgnore},
		{Namespace: "tenants", Check: "5.13", Action: audit.ActionBlock},
	}
	job := parse(t, unsafe)
	job.Namespace = "infra"
	rv, err := Check(p, job)
	if err != nil {
		t.Fatal(err)
	}
	if !rv.Admitted() {
		t.Fatalf("refused in infra: %s", rv.Error())
	}
	if len(rv.Warning) < 2 {
		t.Errorf("warnings %v, want 5.5 and 5.10 at least", rv.Warnings())
	}
	// A tenant namespace that blocks writable roots refuses a job that
	// asks for one, and only there.
	spec := strings.Replace(plain, "checks:", "security: {read_only_rootfs: false}\n        checks:", 1)
	job = parse(t, spec)
	if rv, _ := Check(p, job); !rv.Admitted() {
		t.Errorf("refused in default: %s", rv.Error())
	}
	job.Namespace = "tenants"
	if rv, _ := Check(p, job); rv.Admitted() || rv.Blocking[0].CheckID != "5.13" {
		t.Errorf("admitted in tenants, or not for 5.13: %+v", rv.Blocking)
	}
}

func TestGPUJobsAdmitted(t *testing.T) {
	for _, gpu := range []string{"{count: 2}", "{mig: 1g.10gb}", "{share: {milli: 250}}"} {
		spec := strings.Replace(plain, "resources: {cpu: 100, memory: 32}\n        checks", "resources: {cpu: 100, memory: 32, gpu: "+gpu+"}\n        checks", 1)
		rv, err := Check(audit.DefaultPolicy(), parse(t, spec))
		if err != nil {
			t.Fatal(err)
		}
		if !rv.Admitted() || len(rv.Warning) != 0 {
			t.Errorf("gpu %s: blocking %v warnings %v", gpu, rv.Blocking, rv.Warnings())
		}
	}
	// Raw GPU device nodes go around the allocation and are refused.
	spec := strings.Replace(plain, "image: gantry-demo:latest,", "image: gantry-demo:latest, devices: [/dev/nvidia0],", 1)
	rv, _ := Check(audit.DefaultPolicy(), parse(t, spec))
	if rv.Admitted() || rv.Blocking[0].CheckID != "5.18" {
		t.Errorf("raw /dev/nvidia0 admitted: %+v", rv)
	}
}

// TestParentDirectoryOfTheSocketRefused (issue 15): a bind mount of the
// host's /run or /var/run holds the engine's socket; with user 0:0 the
// container would be root on the host. It is refused like the socket
// itself, read-only or not, and so is a symlink that leads there.
func TestParentDirectoryOfTheSocketRefused(t *testing.T) {
	dir := t.TempDir()
	link := filepath.Join(dir, "run-link")
	if err := os.Symlink("/run", link); err != nil {
		t.Fatal(err)
	}
	for _, vol := range []string{"/run:/host-run", "/var/run:/host-run:ro", "/run/containerd:/c", link + ":/r"} {
		job := parse(t, strings.Replace(plain, "ports: [{name: http, to: 8080}]}", `ports: [{name: http, to: 8080}], volumes: ["`+vol+`"]}
        security: {user: "0:0"}`, 1))
		host := &Host{HostPaths: audit.ResolveHostPaths(HostPaths(job))}
		rv, err := CheckOn(audit.DefaultPolicy(), job, host)
		if err != nil {
			t.Fatal(err)
		}
		if rv.Admitted() {
			t.Errorf("%s admitted (warnings %v)", vol, rv.Warnings())
			continue
		}
		if f := rv.Blocking[0]; f.CheckID != "5.32" || !strings.Contains(f.Detail, ".sock") {
			t.Errorf("%s: blocked by %s %q, want 5.32 naming the socket", vol, f.CheckID, f.Detail)
		}
	}
}

// TestRawDevicesRefused (issue 15): devices that give raw access to
// memory, the kernel, I/O ports or disks block by default; other devices
// only warn.
func TestRawDevicesRefused(t *testing.T) {
	for dev, blocked := range map[string]bool{"/dev/mem": true, "/dev/kmem": true, "/dev/port": true, "/dev/sda": true, "/dev/nvme0n1:/dev/disk0": true, "/dev/fuse": false} {
		job := parse(t, strings.Replace(plain, "ports: [{name: http, to: 8080}]}", `ports: [{name: http, to: 8080}], devices: ["`+dev+`"]}`, 1))
		rv, err := Check(audit.DefaultPolicy(), job)
		if err != nil {
			t.Fatal(err)
		}
		if rv.Admitted() == blocked {
			t.Errorf("%s: admitted %v, want %v (blocking %v, warnings %v)", dev, rv.Admitted(), !blocked, rv.Blocking, rv.Warnings())
		}
	}
}
