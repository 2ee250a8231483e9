// Package wasm is Gantry's wasm driver: it runs WebAssembly modules that
// target WASI preview 1 (a Go GOOS=wasip1 program, C built with
// clang --target=wasm32-wasi, ...) on wazero, pure Go, no cgo.
//
// Each task runs in its own runner process, the gantry binary re-executed
// as `gantry wasm-run <spec>` (RunModule), started and supervised by the
// exec driver's executor exactly like an exec task: it survives the agent,
// is found again by Recover after a restart (never started twice), gets
// the node's cgroup treatment of exec tasks, and its stdout and stderr go
// to the same rotated files (AllocDir/logs/<task>.stdout.N). The runner's
// files live in AllocDir/.wasm/, apart from exec tasks'.
//
// Before anything runs, Start resolves the module (config.module on the
// node, or config.artifact downloaded into the allocation directory and
// verified against its sha256 checksum) and refuses, with one sentence, a
// file that is not a module, a module whose imports the runtime does not
// provide (listed), and one whose initial memory exceeds
// resources.memory. The runner caps the module's linear memory at
// resources.memory and says so when the module tried to grow past it,
// hands the task directory (at /) and config.mounts as pre-opened
// directories, opens a TCP listener on each allocated host port and hands
// it over as a pre-opened socket (its descriptor in GANTRY_LISTEN_FD_<NAME>;
// a Go module calls syscall.SetNonblock(fd, true) and net.FileListener),
// and exits with the module's proc_exit code. A trap exits 134 with the
// trap's message and the function where it happened, which Wait returns
// as ExitResult.Message. Compiled modules are cached in Config.CacheDir
// (see cache.go); with Config.Spares the driver also keeps spare runners
// with recently started modules compiled, which a start of the module
// takes instead of starting a runner (see spares.go).
//
// The package owns the runner, its files and the spare runners. It must
// never talk to the state store, never decide placement or ports, and
// never restart a task: the agent decides that.
package wasm
