package passthrough

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gantryhq/gantry/e2e/e2ebin"
	"github.com/gantryhq/gantry/internal/api"
	vt "github.com/gantryhq/gantry/internal/vfio/vfiotest"
)

var gantryBin string

func TestMain(m *testing.M) { os.Exit(e2ebin.Main(m, &gantryBin)) }

// The node's fake sysfs: two H100s ready for passthrough, a T4 whose
// audio function is still on the host's sound driver, and a GPU on the
// NVIDIA driver (NVML's, which this machine does not have).
var tree = []vt.Dev{
	{Addr: "0000:01:00.0", Class: vt.Class3D, Driver: "vfio-pci", Group: 12},
	{Addr: "0000:02:00.0", Class: vt.Class3D, Driver: "vfio-pci", Group: 13},
	{Addr: "0000:03:00.0", Class: vt.ClassVGA, Device: "0x1eb8", Driver: "vfio-pci", Group: 14},
	{Addr: "0000:03:00.1", Class: vt.ClassAudio, Driver: "snd_hda_intel", Group: 14},
	{Addr: "0000:04:00.0", Class: vt.Class3D, Driver: "nvidia", Group: 15},
}

type result struct {
	code int
	out  string
}

func gantry(t *testing.T, addr string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, gantryBin, append([]string{"--address", addr}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("gantry %v: %v", args, err)
	}
	return result{code, out.String()}
}

func spec(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func vmSpec(gpu string) string {
	return `name: vm
groups:
  - name: vm
    tasks:
      - name: vm
        driver: qemu
        config: {kernel: /guest/vmlinuz}
        resources: {cpu: 1000, memory: 256, gpu: ` + gpu + `}
`
}

const procSpec = `name: proc
groups:
  - name: proc
    tasks:
      - name: p
        driver: exec
        config: {command: /bin/sleep, args: ["60"]}
        resources: {cpu: 100, memory: 64, gpu: {count: 1}}
`

func TestPassthroughPlacement(t *testing.T) {
	if testing.Short() {
		t.Skip("starts gantry dev (not in -short)")
	}
	root := t.TempDir()
	if err := vt.Write(root, tree); err != nil {
		t.Fatal(err)
	}
	ports := e2ebin.FreePorts(t, 4)
	addr := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	var log bytes.Buffer
	dev := exec.Command(gantryBin, "dev", "--data-dir", t.TempDir(),
		"--http-addr", fmt.Sprintf("127.0.0.1:%d", ports[0]), "--agent-addr", fmt.Sprintf("127.0.0.1:%d", ports[1]),
		"--etcd-client-url", fmt.Sprintf("http://127.0.0.1:%d", ports[2]), "--etcd-peer-url", fmt.Sprintf("http://127.0.0.1:%d", ports[3]),
		"--node-name", "passthrough", "--drivers", "exec,qemu", "--sysfs-root", root, "--log-level", "warn")
	dev.Stdout, dev.Stderr = &log, &log
	if err := dev.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		dev.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { dev.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			dev.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("gantry dev's log:\n%s", log.String())
		}
	})

	var node *api.Node
	deadline := time.Now().Add(90 * time.Second)
	for node == nil {
		if time.Now().After(deadline) {
			t.Fatalf("the node was not ready within 90s")
		}
		time.Sleep(200 * time.Millisecond)
		var nodes []*api.Node
		if getJSON(addr+"/v1/nodes", &nodes) != nil {
			continue
		}
		for _, n := range nodes {
			if n.Status == api.NodeStatusReady {
				var full api.Node
				if getJSON(addr+"/v1/nodes/"+n.ID, &full) == nil {
					node = &full
				}
			}
		}
	}

	// The fingerprint: the three GPUs on vfio-pci, by PCI address with
	// their IOMMU groups; the T4 not ready, saying why; the GPU on the
	// NVIDIA driver only in the summary.
	if len(node.GPUs) != 3 {
		t.Fatalf("node GPUs %+v, want the three on vfio-pci", node.GPUs)
	}
	for i, want := range []struct {
		addr, model string
		group       int
		reason      string
	}{
		{"0000:01:00.0", "NVIDIA H100 80GB HBM3", 12, ""},
		{"0000:02:00.0", "NVIDIA H100 80GB HBM3", 13, ""},
		{"0000:03:00.0", "Tesla T4", 14, "not passthrough-ready: IOMMU group 14 also holds 0000:03:00.1, bound to snd_hda_intel; bind it to vfio-pci too"},
	} {
		g := node.GPUs[i]
		if g.UUID != want.addr || g.PCIBusID != want.addr || !g.Passthrough || g.IOMMUGroup != want.group ||
			g.Model != want.model || g.Unhealthy != (want.reason != "") || g.HealthReason != want.reason {
			t.Errorf("GPU %d: %+v, want %+v", i, g, want)
		}
	}
	if s := node.Attributes["gpu.passthrough"]; !strings.Contains(s, "2 ready: 0000:01:00.0 (IOMMU group 12), 0000:02:00.0 (IOMMU group 13)") ||
		!strings.Contains(s, "0000:04:00.0 bound to nvidia, not vfio-pci") {
		t.Errorf("gpu.passthrough = %q", s)
	}

	// A process never gets a passthrough GPU: the plan says why and
	// exits 2.
	if r := gantry(t, addr, "job", "plan", spec(t, "proc.yaml", procSpec)); r.code != 2 || !strings.Contains(r.out, "GPUs bound to vfio-pci, for VMs only") {
		t.Errorf("job plan of a process asking for a GPU: exit %d\n%s\nwant 2 and the reason", r.code, r.out)
	}

	// VMs: placed on the ready GPUs, and more than those is explained.
	if q := node.Drivers[api.DriverQEMU]; !q.Healthy {
		msg := "the qemu driver is not usable on this machine (" + q.Reason + "), so VM placement cannot be planned"
		if os.Getenv("GANTRY_REQUIRE_QEMU") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg + "; set GANTRY_REQUIRE_QEMU=1 to make this a failure")
	}
	if r := gantry(t, addr, "job", "plan", spec(t, "vm2.yaml", vmSpec("{count: 2, model: \"H100*\"}"))); r.code != 0 {
		t.Errorf("job plan of a VM asking for the two ready GPUs: exit %d\n%s", r.code, r.out)
	}
	for _, tc := range []struct{ gpu, why string }{
		{"{count: 3}", "GPUs exhausted: 3 idle needed"},
		{"{count: 1, model: \"A100*\"}", "no GPU of model A100*"},
	} {
		r := gantry(t, addr, "job", "plan", spec(t, "vm.yaml", vmSpec(tc.gpu)))
		if r.code != 2 || !strings.Contains(r.out, tc.why) {
			t.Errorf("job plan of a VM asking %s: exit %d\n%s\nwant 2 and %q", tc.gpu, r.code, r.out, tc.why)
		}
	}
}

var httpc = &http.Client{Timeout: 5 * time.Second}

func getJSON(url string, v any) error { return e2ebin.GetJSON(url, v) }
