// Package e2ebin is the shared start-up of the end-to-end test packages
// that run beside e2e (linearize, disconnect, passthrough): it builds the
// gantry binary once per package, hands out free loopback ports and reads
// JSON from an API. It starts no cluster and asserts nothing.
package e2ebin

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"
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

// httpc is the client of GetJSON: a request without an answer in 5 s
// fails, as a cut-off or killed server would make it.
var httpc = &http.Client{Timeout: 5 * time.Second}

// GetJSON reads url into v; an answer other than 200 is an error naming
// the URL and the status.
func GetJSON(url string, v any) error {
	resp, err := httpc.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
