package e2e

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestDemoStopStopsItsJobs (issue 15): `scripts/demo.sh stop` stopped
// the cluster and left every container of the demo running, three of them
// serving. Stopping the demo stops its jobs first, then the cluster, and
// says what it leaves behind; no container of the demo runs afterwards.
func TestDemoStopStopsItsJobs(t *testing.T) {
	dir := t.TempDir()
	port := freePorts(t, 4)
	env := append(os.Environ(), "GANTRY_BIN="+gantryBin, "GANTRY_DEMO_DIR="+dir, "GANTRY_DEMO_PORT="+strconv.Itoa(port), "GANTRY_ADDRESS=")
	script := func(args ...string) (string, error) {
		cmd := exec.Command(filepath.Join(repoRoot, "scripts", "demo.sh"), args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	nodeID := func() string {
		b, _ := os.ReadFile(filepath.Join(dir, "agent", "node-id"))
		return strings.TrimSpace(string(b))
	}
	t.Cleanup(func() {
		// Whatever the outcome, nothing of this demo outlives the test.
		if b, err := os.ReadFile(filepath.Join(dir, "dev.pid")); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		if id := nodeID(); id != "" {
			if ids := Containers(t, id, true); len(ids) > 0 {
				exec.Command("docker", append([]string{"rm", "-f"}, ids...)...).Run()
			}
		}
	})

	out, err := script()
	if err != nil {
		t.Fatalf("scripts/demo.sh: %v\n%s\n%s", err, out, devLog(dir))
	}
	id := nodeID()
	if id == "" {
		t.Fatalf("no node ID in %s after the demo started:\n%s", dir, out)
	}
	if n := len(Containers(t, id, false)); n != 3 {
		t.Fatalf("the demo runs %d containers, want 3:\n%s", n, out)
	}

	out, err = script("stop")
	if err != nil {
		t.Fatalf("scripts/demo.sh stop: %v\n%s", err, out)
	}
	for _, want := range []string{"stopping job web", "stopped gantry dev", "Left behind:", "no running container of the demo"} {
		if !strings.Contains(out, want) {
			t.Errorf("scripts/demo.sh stop does not say %q:\n%s", want, out)
		}
	}
	if left := Containers(t, id, false); len(left) != 0 {
		t.Fatalf("%d container(s) of the demo still run after scripts/demo.sh stop:\n%s", len(left), out)
	}
	if _, err := os.Stat(filepath.Join(dir, "dev.pid")); !os.IsNotExist(err) {
		t.Fatalf("dev.pid is still there after the stop: %v", err)
	}
}

// freePorts finds n consecutive free ports and returns the first.
func freePorts(t *testing.T, n int) int {
	t.Helper()
	for range 50 {
		base := 20000 + rand.IntN(20000)
		var ls []net.Listener
		for i := range n {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+i))
			if err != nil {
				break
			}
			ls = append(ls, l)
		}
		for _, l := range ls {
			l.Close()
		}
		if len(ls) == n {
			return base
		}
	}
	t.Fatalf("no %d consecutive free ports", n)
	return 0
}

func devLog(dir string) string {
	b, _ := os.ReadFile(filepath.Join(dir, "dev.log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// TestDevFailsWhenItsAgentCannotStart: `gantry dev` whose agent cannot
// listen (its port taken) exits 1 with the reason, not 0 with "stopped"
// as if it had been told to stop.
func TestDevFailsWhenItsAgentCannotStart(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	args := []string{"dev", "--data-dir", t.TempDir(), "--node-name", "n1",
		"--http-addr", fmt.Sprintf("127.0.0.1:%d", freePort(t)), "--agent-addr", taken.Addr().String(),
		"--etcd-client-url", fmt.Sprintf("http://127.0.0.1:%d", freePort(t)), "--etcd-peer-url", fmt.Sprintf("http://127.0.0.1:%d", freePort(t))}
	r := runGantry(t, args...)
	if r.Code != 1 || !strings.Contains(r.Stderr, "listen for the agent API on "+taken.Addr().String()) || strings.Contains(r.Stderr, "stopped; running tasks keep running") {
		t.Fatalf("gantry dev with its agent port taken: exit %d, want 1 with the reason\nstdout: %s\nstderr: %s", r.Code, r.Stdout, r.Stderr)
	}
}
