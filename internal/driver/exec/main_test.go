package exec

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// The test binary doubles as the executor (and as a short-lived agent for
// the restart test): the driver re-executes it with the hidden
// subcommand, as the gantry binary would be.
const (
	envExecutor = "GANTRY_EXEC_TEST_EXECUTOR"
	envAgent    = "GANTRY_EXEC_TEST_AGENT"
)

var demoApp string // the demo workload, built once

func TestMain(m *testing.M) {
	if os.Getenv(envExecutor) == "1" && len(os.Args) > 1 && os.Args[1] == ExecutorCommand {
		os.Exit(RunExecutor(os.Args[2:]))
	}
	if cfg := os.Getenv(envAgent); cfg != "" {
		os.Exit(shortLivedAgent(cfg))
	}
	os.Setenv(envExecutor, "1")
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "gantry-exec-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if p := os.Getenv("GANTRY_DEMO_APP"); p != "" { // prebuilt, for machines without go
		demoApp = p
		return m.Run()
	}
	demoApp = filepath.Join(dir, "demo-app")
	build := osexec.Command("go", "build", "-o", demoApp, "../../../examples/demo-app")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building the demo app: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// agentRun is what the short-lived agent is asked to start.
type agentRun struct {
	AllocRoot string `json:"alloc_root"`
	Config    []byte `json:"config"` // a driver.TaskConfig
}

// shortLivedAgent starts one task, prints its handle and dies by SIGKILL,
// as an agent killed -9 would.
func shortLivedAgent(arg string) int {
	var ar agentRun
	if err := json.Unmarshal([]byte(arg), &ar); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	d, err := New(Config{AllocRoot: ar.AllocRoot})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cfg, err := decodeTaskConfig(ar.Config)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	h, err := d.Start(context.Background(), cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	json.NewEncoder(os.Stdout).Encode(h)
	os.Stdout.Sync()
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}
