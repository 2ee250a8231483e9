// Package e2ebin is the shared start-up of the end-to-end test packages
// that run beside e2e (linearize, disconnect): it builds the gantry binary
// once per package and hands out free loopback ports. It starts no
// cluster and asserts nothing.
package e2ebin

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// Main builds ./cmd/gantry into a temporary folder, stores its path in
// *bin, runs the package's tests and returns their exit code, for
// TestMain: os.Exit(e2ebin.Main(m, &gantryBin)).
func Main(m *testing.M, bin *string) int {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Dir(filepath.Dir(filepath.Dir(file)))
	dir, err := os.MkdirTemp("", "gantry-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	*bin = filepath.Join(dir, "gantry")
	build := exec.Command("go", "build", "-o", *bin, "./cmd/gantry")
	build.Dir = root
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build gantry:", err)
		return 1
	}
	return m.Run()
}

// FreePorts returns n loopback ports that were free a moment ago, all
// held at once while they are picked so that none repeats.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	var ls []net.Listener
	var out []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return out
}
