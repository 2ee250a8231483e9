package wasm

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
)

// goServerModule builds the demo app (a Go HTTP server) for wasip1.
func goServerModule(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "demo-app.wasm")
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, "../../../examples/demo-app")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the demo app for wasip1: %v\n%s", err, b)
	}
	return out
}

// runnerOf is the pid of the runner of the task in allocDir.
func runnerOf(t *testing.T, allocDir string) int {
	t.Helper()
	pid := procWith(func(args []string) bool {
		return len(args) == 3 && args[1] == RunnerCommand && strings.HasPrefix(args[2], allocDir)
	})
	if pid == 0 {
		t.Fatalf("no runner for %s", allocDir)
	}
	return pid
}

// sockets counts the socket descriptors of process pid.
func sockets(pid int) int {
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name())); err == nil && strings.HasPrefix(l, "socket:") {
			n++
		}
	}
	return n
}

// cpuTime is the CPU time process pid used so far.
func cpuTime(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.Atoi(f[11])
	stime, _ := strconv.Atoi(f[12])
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ
}

// TestGoServerSockets: a Go module serving HTTP (every socket of a Go
// module is non-blocking) waits on its sockets instead of spinning while
// idle (wazero's poll_oneoff called such a socket always ready, and an
// idle service used a whole CPU); a connection it closes ends for the
// client (wazero left it open: a response delimited by the connection's
// end never ended) and leaves no socket behind, over many connections,
// one after another and many at once.
func TestGoServerSockets(t *testing.T) {
	r := newRig(t)
	module := goServerModule(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cfg := r.config(api.Task{Config: api.TaskConfig{Module: module}, Resources: api.Resources{CPU: 100, Memory: 64}})
	cfg.Resources = &api.AllocatedResources{CPU: 100, Memory: 64, Ports: []api.AllocatedPort{{Name: "http", Host: port}}}
	ctx := context.Background()
	h, err := r.d.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.d.Destroy(ctx, h)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		resp, err := client.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the module never answered on %s: %v\n%s", addr, err, logOf(t, cfg, "stderr"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	pid := runnerOf(t, cfg.AllocDir)

	// Idle: a module that waits on its sockets uses next to no CPU; one
	// told they are always ready uses a whole CPU.
	before := cpuTime(t, pid)
	time.Sleep(2 * time.Second)
	if used := cpuTime(t, pid) - before; used > 500*time.Millisecond {
		t.Fatalf("the idle module's runner used %v of CPU in 2s: it does not wait on its sockets", used)
	}

	// The module closes the connection after its answer: the client must
	// read to the end of it.
	for i := range 100 {
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(20 * time.Second))
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", addr)
		status, err := bufio.NewReader(c).ReadString('\n')
		if err == nil {
			_, err = io.Copy(io.Discard, c) // to the connection's end
		}
		c.Close()
		if err != nil || !strings.Contains(status, " 200 ") {
			t.Fatalf("request %d on a connection the module closes: status %q, %v", i, status, err)
		}
	}
	// The client closes: the module sees it and closes its side.
	for i := range 100 {
		resp, err := client.Get("http://" + addr + "/healthz")
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		resp.Body.Close()
	}
	// Many connections open at once, kept alive, then closed by the
	// client: each is known to the runner (one it did not know would be
	// left open) and served.
	keep := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 32}}
	errs := make(chan error, 32)
	for range 32 {
		go func() {
			for range 10 {
				resp, err := keep.Get("http://" + addr + "/healthz")
				if err != nil {
					errs <- err
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			errs <- nil
		}()
	}
	for range 32 {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent requests: %v", err)
		}
	}
	keep.CloseIdleConnections()
	var n int
	for range 100 { // the last closes may still be on their way
		if n = sockets(pid); n <= 2 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("after every connection closed the runner holds %d sockets (the listener, and what was not closed)", n)
}
