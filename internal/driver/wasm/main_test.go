package wasm

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	execdriver "github.com/gantryhq/gantry/internal/driver/exec"
)

// The test binary doubles as the exec driver's executor and as the wasm
// runner: the driver re-executes it with the hidden subcommands, as it
// would the gantry binary.
const envChild = "GANTRY_WASM_TEST_CHILD"

// modules are the C test programs (testdata/*.c) compiled to wasm32-wasi
// with clang, once; empty when clang cannot build them (see needModules).
var (
	modules    = map[string]string{}
	modulesErr error
)

func TestMain(m *testing.M) {
	if os.Getenv(envChild) == "1" && len(os.Args) > 1 && os.Args[1] == execdriver.ExecutorCommand {
		os.Exit(execdriver.RunExecutor(os.Args[2:]))
	}
	// The runner gets only the task's environment, not ours: it is told
	// by its arguments alone.
	if len(os.Args) >= 3 && os.Args[1] == RunnerCommand {
		os.Exit(RunModule(os.Args[2:]))
	}
	os.Setenv(envChild, "1")
	dir, err := os.MkdirTemp("", "gantry-wasm-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	modulesErr = buildModules(dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func buildModules(dir string) error {
	srcs, _ := filepath.Glob("testdata/*.c")
	for _, src := range srcs {
		name := filepath.Base(src[:len(src)-2])
		out := filepath.Join(dir, name+".wasm")
		cmd := exec.Command("clang", "--target=wasm32-wasi", "-O2", "-o", out, src)
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("clang --target=wasm32-wasi %s: %v\n%s", src, err, b)
		}
		modules[name] = out
	}
	return nil
}

// needModules skips when the C modules could not be built, and fails
// instead under GANTRY_REQUIRE_WASI_CLANG=1 (CI installs clang, lld,
// wasi-libc and libclang-rt-14-dev-wasm32).
func needModules(t *testing.T) {
	t.Helper()
	if modulesErr == nil {
		return
	}
	if os.Getenv("GANTRY_REQUIRE_WASI_CLANG") == "1" {
		t.Fatalf("the C test modules cannot be built: %v", modulesErr)
	}
	t.Skipf("the C test modules cannot be built (install clang lld wasi-libc libclang-rt-14-dev-wasm32): %v", modulesErr)
}
