package wasm

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/experimental/sock"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"
	"golang.org/x/sys/unix"
)

// RunnerCommand is the hidden subcommand of the gantry binary that runs
// one module: `gantry wasm-run <spec file>` must call RunModule with the
// arguments after the subcommand. The exec driver's executor supervises
// it like any exec task.
const RunnerCommand = "wasm-run"

// runSpec is what the driver asks the runner to run.
type runSpec struct {
	Module     string      `json:"module"` // path of the verified .wasm file
	Name       string      `json:"name"`   // the task's name
	Args       []string    `json:"args"`   // argv, argv[0] included
	Env        []string    `json:"env"`
	Mounts     []mountSpec `json:"mounts"` // pre-opened in this order, from fd 3
	Listeners  []listener  `json:"listeners,omitempty"`
	MemoryMax  uint64      `json:"memory_max"` // bytes of linear memory
	CacheDir   string      `json:"cache_dir,omitempty"`
	ResultPath string      `json:"result_path"`
}

type mountSpec struct {
	Host     string `json:"host"`
	Guest    string `json:"guest"`
	ReadOnly bool   `json:"read_only,omitempty"`
}

// listener is a TCP listener the runner opens on the host and hands to the
// module as a pre-opened socket, numbered after the mounts.
type listener struct {
	Name string `json:"name"`
	Host string `json:"host"`
	Port int    `json:"port"`
	FD   int    `json:"fd"`
}

// result is what the runner leaves for the driver when the exit code alone
// does not say why the module ended.
type result struct {
	Message string `json:"message"`
}

// RunModule is the runner: it compiles the module (through the node's
// compilation cache), instantiates it with WASI preview 1, its mounts and
// listeners and a capped linear memory, runs _start and exits with the
// module's proc_exit code. A trap exits ExitTrap, a stop (SIGTERM)
// ExitTerminated; both leave a result file saying why.
func RunModule(args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: gantry wasm-run <spec file> (started by the wasm driver, not by hand)")
		return 2
	}
	var spec runSpec
	b, err := os.ReadFile(args[0])
	if err == nil {
		err = json.Unmarshal(b, &spec)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "gantry wasm-run: read spec: %v\n", err)
		return ExitRunner
	}
	code, msg := run(&spec)
	if msg != "" {
		fmt.Fprintln(os.Stderr, "gantry: "+msg)
		if b, err := json.Marshal(result{Message: msg}); err == nil {
			os.WriteFile(spec.ResultPath, b, 0o600)
		}
	}
	return code
}

func run(spec *runSpec) (int, string) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	var stopped sync.Once
	var stoppedBy os.Signal
	go func() {
		s := <-sigs
		stopped.Do(func() { stoppedBy = s })
		cancel()
	}()

	bin, err := os.ReadFile(spec.Module)
	if err != nil {
		return ExitRunner, fmt.Sprintf("read module: %v", err)
	}
	info, err := Inspect(bin)
	if err != nil {
		return ExitRunner, fmt.Sprintf("module %s: %v", spec.Module, err)
	}
	if min := info.MemoryMinPages * PageSize; min > spec.MemoryMax {
		return ExitRunner, memoryTooSmall(min, spec.MemoryMax)
	}

	rc := wazero.NewRuntimeConfig().WithCloseOnContextDone(true)
	if spec.CacheDir != "" {
		cache, err := wazero.NewCompilationCacheWithDir(spec.CacheDir)
		if err != nil {
			return ExitRunner, fmt.Sprintf("open the compilation cache %s: %v", spec.CacheDir, err)
		}
		rc = rc.WithCompilationCache(cache)
	}
	rt := wazero.NewRuntimeWithConfig(ctx, rc)
	defer rt.Close(context.Background())
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		return ExitRunner, fmt.Sprintf("instantiate WASI: %v", err)
	}
	compiled, err := rt.CompileModule(ctx, bin)
	if err != nil {
		return ExitRunner, fmt.Sprintf("compile module %s: %v", spec.Module, err)
	}

	fs := wazero.NewFSConfig()
	for _, m := range spec.Mounts {
		if m.ReadOnly {
			fs = fs.WithReadOnlyDirMount(m.Host, m.Guest)
		} else {
			fs = fs.WithDirMount(m.Host, m.Guest)
		}
	}
	mc := wazero.NewModuleConfig().
		WithName(spec.Name).
		WithArgs(spec.Args...).
		WithStdout(os.Stdout).WithStderr(os.Stderr).
		WithSysWalltime().WithSysNanotime().WithSysNanosleep().
		WithRandSource(rand.Reader).
		WithFSConfig(fs).
		WithStartFunctions() // _start is called below, once the memory is known
	for _, kv := range spec.Env {
		for i := 0; i < len(kv); i++ {
			if kv[i] == '=' {
				mc = mc.WithEnv(kv[:i], kv[i+1:])
				break
			}
		}
	}
	if len(spec.Listeners) > 0 {
		r, w, err := os.Pipe()
		if err != nil {
			return ExitRunner, err.Error()
		}
		defer r.Close()
		defer w.Close()
		mc = mc.WithStdin(r)
		go wakeStdin(ctx, r, w)
		sc := sock.NewConfig()
		for _, l := range spec.Listeners {
			sc = sc.WithTCPListener(l.Host, l.Port)
		}
		ctx = sock.WithConfig(ctx, sc)
	}
	mem := &cappedAllocator{max: spec.MemoryMax}
	ctx = experimental.WithMemoryAllocator(ctx, mem)

	mod, err := rt.InstantiateModule(ctx, compiled, mc)
	if err != nil {
		return ExitRunner, fmt.Sprintf("instantiate module %s: %v", spec.Module, err)
	}
	// Decoding, validating and loading the compiled code left garbage
	// several times the module's size; hand it back before the module
	// runs, for the rest of its life.
	bin, info = nil, nil
	debug.FreeOSMemory()
	start := mod.ExportedFunction("_start")
	if start == nil {
		return ExitRunner, "the module exports no _start function: it is not a WASI command (reactor modules are not supported)"
	}
	_, err = start.Call(ctx)
	var exit *sys.ExitError
	switch {
	case err == nil:
		return 0, ""
	case stoppedBy != nil:
		return ExitTerminated, fmt.Sprintf("stopped by %s", stoppedBy)
	case errors.As(err, &exit):
		code := int(exit.ExitCode() & 0xff)
		if code != 0 {
			if r := mem.refused(); r > 0 {
				return code, fmt.Sprintf("out of memory: the module tried to grow its memory to %s, past its limit of %d MiB (resources.memory)", mib(r), spec.MemoryMax>>20)
			}
		}
		return code, ""
	}
	msg := DescribeTrap(err.Error(), spec.Name)
	if r := mem.refused(); r > 0 {
		msg += fmt.Sprintf(" (after the module tried to grow its memory to %s, past its limit of %d MiB, resources.memory)", mib(r), spec.MemoryMax>>20)
	}
	return ExitTrap, msg
}

// wakeStdin works around how wazero's poll_oneoff waits: it treats a
// socket subscription as blocking and waits only on the module's stdin
// (with the poll's timeout, or forever), so a Go module waiting in netpoll
// for a connection would never see it, or spin when stdin is always
// readable. A module with listeners therefore gets a pipe as stdin, and
// this watcher makes it readable (one byte) while any socket of the
// process (the module's listeners and connections; the runner has no
// others) has something to read, and empties it once none has. The module
// then looks at its sockets exactly when there is something to see.
func wakeStdin(ctx context.Context, r, w *os.File) {
	rfd := int(r.Fd())
	unix.SetNonblock(rfd, true)
	signaled := false
	var buf [64]byte
	for ctx.Err() == nil {
		fds := socketFDs()
		pfds := make([]unix.PollFd, len(fds))
		for i, fd := range fds {
			pfds[i] = unix.PollFd{Fd: int32(fd), Events: unix.POLLIN}
		}
		n, err := unix.Poll(pfds, 20)
		switch {
		case err != nil && err != unix.EINTR:
			time.Sleep(20 * time.Millisecond)
		case n > 0 && !signaled:
			w.Write([]byte{0})
			signaled = true
		case n > 0:
			time.Sleep(time.Millisecond) // the module has yet to take it
		case signaled:
			for {
				if k, err := unix.Read(rfd, buf[:]); k <= 0 || err != nil {
					break
				}
			}
			signaled = false
		}
	}
}

// socketFDs lists the descriptors of this process that are sockets.
func socketFDs() []int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd <= 2 {
			continue
		}
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(l, "socket:") {
			out = append(out, fd)
		}
	}
	return out
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func memoryTooSmall(min, max uint64) string {
	return fmt.Sprintf("the module needs %d MiB of memory to start, more than its limit of %d MiB (resources.memory); raise resources.memory", (min+(1<<20)-1)>>20, max>>20)
}

// cappedAllocator backs a module's linear memory and refuses to grow it
// past max, remembering the size asked for so the runner can say why the
// module failed.
type cappedAllocator struct {
	max     uint64
	mu      sync.Mutex
	refusal uint64
}

func (a *cappedAllocator) Allocate(capacity, _ uint64) experimental.LinearMemory {
	return &cappedMemory{a: a, buf: make([]byte, 0, min(capacity, a.max))}
}

func (a *cappedAllocator) refused() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.refusal
}

type cappedMemory struct {
	a   *cappedAllocator
	buf []byte
}

func (m *cappedMemory) Reallocate(size uint64) []byte {
	if size > m.a.max {
		m.a.mu.Lock()
		m.a.refusal = max(m.a.refusal, size)
		m.a.mu.Unlock()
		return nil
	}
	if size <= uint64(cap(m.buf)) {
		m.buf = m.buf[:size]
		return m.buf
	}
	grown := make([]byte, size, min(max(size, 2*uint64(cap(m.buf))), m.a.max))
	copy(grown, m.buf)
	m.buf = grown
	return m.buf
}

func (m *cappedMemory) Free() { m.buf = nil }
