package wasm

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"sync"
	"syscall"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/experimental/sock"
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
	Module    string      `json:"module"` // path of the verified .wasm file
	Name      string      `json:"name"`   // the task's name
	Args      []string    `json:"args"`   // argv, argv[0] included
	Env       []string    `json:"env"`
	Mounts    []mountSpec `json:"mounts"` // pre-opened in this order, from fd 3
	Listeners []listener  `json:"listeners,omitempty"`
	MemoryMax uint64      `json:"memory_max"` // bytes of linear memory
	// ModuleSHA256 is the module's SHA-256 (hex): a spare runner that
	// compiled this module ahead uses what it compiled.
	ModuleSHA256 string `json:"module_sha256,omitempty"`
	// CompiledPath, when set, is created once the module is compiled.
	CompiledPath string `json:"compiled_path,omitempty"`
	CacheDir     string `json:"cache_dir,omitempty"`
	ResultPath   string `json:"result_path"`
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
//
// As a spare (`gantry wasm-run --spare <module> <cache dir> <ready file>`,
// started by a spare executor, see the exec driver's spare.go) it compiles
// the module first, creates the ready file, and then waits for its task:
// its argv, `["<gantry>", "wasm-run", "<spec file>"]`, as one JSON line on
// descriptor 3. A task whose module is another (by its SHA-256) is
// compiled anew.
func RunModule(args []string) int {
	if len(args) == 4 && args[0] == spareFlag {
		return runSpare(args[1], args[2], args[3])
	}
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: gantry wasm-run <spec file> (started by the wasm driver, not by hand)")
		return 2
	}
	r := newRun()
	defer r.cancel()
	return r.finish(args[0], nil)
}

// spareFlag makes the runner a spare.
const spareFlag = "--spare"

func runSpare(module, cacheDir, readyFile string) int {
	r := newRun()
	defer r.cancel()
	bin, err := os.ReadFile(module)
	if err != nil {
		fmt.Fprintf(os.Stderr, "gantry wasm-run: spare: read module: %v\n", err)
		return ExitRunner
	}
	p, msg := r.prepare(bin, module, cacheDir)
	if msg != "" {
		fmt.Fprintln(os.Stderr, "gantry wasm-run: spare: "+msg)
		return ExitRunner
	}
	// What compiling left is garbage: hand it back while nothing waits.
	bin = nil
	debug.FreeOSMemory()
	p.freed = true
	p.memory = premap(p.info.MemoryMinPages * PageSize)
	os.WriteFile(readyFile, nil, 0o600)

	// Wait for the task; a stop (SIGTERM) before it comes ends the spare.
	lines := make(chan []byte, 1)
	go func() {
		line, err := bufio.NewReader(os.NewFile(3, "task")).ReadBytes('\n')
		if err != nil {
			line = nil
		}
		lines <- line
	}()
	var argv []string
	select {
	case <-r.ctx.Done():
		return ExitTerminated
	case line := <-lines:
		if json.Unmarshal(line, &argv) != nil || len(argv) != 3 || argv[1] != RunnerCommand {
			return ExitTerminated // let go before a task came
		}
	}
	return r.finish(argv[2], p)
}

// moduleRun is one run of the runner: its context, ended by SIGTERM or
// SIGINT, and what ended it.
type moduleRun struct {
	ctx       context.Context
	cancel    context.CancelFunc
	stopped   sync.Once
	stoppedBy os.Signal
}

func newRun() *moduleRun {
	r := &moduleRun{}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		s := <-sigs
		r.stopped.Do(func() { r.stoppedBy = s })
		r.cancel()
	}()
	return r
}

// finish reads the spec, runs the module (p, when it was compiled ahead
// and is the spec's module) and leaves the result file.
func (r *moduleRun) finish(specPath string, p *prepared) int {
	var spec runSpec
	b, err := os.ReadFile(specPath)
	if err == nil {
		err = json.Unmarshal(b, &spec)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "gantry wasm-run: read spec: %v\n", err)
		return ExitRunner
	}
	code, msg := r.run(&spec, p)
	if msg != "" {
		fmt.Fprintln(os.Stderr, "gantry: "+msg)
		if b, err := json.Marshal(result{Message: msg}); err == nil {
			os.WriteFile(spec.ResultPath, b, 0o600)
		}
	}
	return code
}

// prepared is a module compiled in a runtime with WASI, ready to be
// instantiated.
type prepared struct {
	sum      string // SHA-256 of the module's bytes, hex
	info     *Module
	rt       wazero.Runtime
	compiled wazero.CompiledModule
	freed    bool         // the garbage of compiling was handed back
	memory   *reservation // a spare's linear memory, reserved ahead (premap); nil: none
	sockets  *socketTable
}

func (r *moduleRun) prepare(bin []byte, module, cacheDir string) (*prepared, string) {
	info, err := Inspect(bin)
	if err != nil {
		return nil, fmt.Sprintf("module %s: %v", module, err)
	}
	rc := wazero.NewRuntimeConfig().WithCloseOnContextDone(true)
	if cacheDir != "" {
		cache, err := wazero.NewCompilationCacheWithDir(cacheDir)
		if err != nil {
			return nil, fmt.Sprintf("open the compilation cache %s: %v", cacheDir, err)
		}
		rc = rc.WithCompilationCache(cache)
	}
	rt := wazero.NewRuntimeWithConfig(r.ctx, rc)
	sockets, err := newSocketTable()
	if err == nil {
		err = sockets.instantiateWASI(r.ctx, rt)
	}
	if err != nil {
		rt.Close(context.Background())
		return nil, fmt.Sprintf("instantiate WASI: %v", err)
	}
	compiled, err := rt.CompileModule(r.ctx, bin)
	if err != nil {
		rt.Close(context.Background())
		return nil, fmt.Sprintf("compile module %s: %v", module, err)
	}
	sum := sha256.Sum256(bin)
	return &prepared{sum: hex.EncodeToString(sum[:]), info: info, rt: rt, compiled: compiled, sockets: sockets}, ""
}

func (r *moduleRun) run(spec *runSpec, p *prepared) (int, string) {
	ctx := r.ctx
	if p == nil || spec.ModuleSHA256 == "" || p.sum != spec.ModuleSHA256 {
		if p != nil {
			p.rt.Close(context.Background())
			p.memory.free()
		}
		bin, err := os.ReadFile(spec.Module)
		if err != nil {
			return ExitRunner, fmt.Sprintf("read module: %v", err)
		}
		var msg string
		if p, msg = r.prepare(bin, spec.Module, spec.CacheDir); msg != "" {
			return ExitRunner, msg
		}
	}
	defer p.rt.Close(context.Background())
	if spec.CompiledPath != "" {
		os.WriteFile(spec.CompiledPath, nil, 0o600)
	}
	if min := p.info.MemoryMinPages * PageSize; min > spec.MemoryMax {
		return ExitRunner, memoryTooSmall(min, spec.MemoryMax)
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
		sc := sock.NewConfig()
		for _, l := range spec.Listeners {
			sc = sc.WithTCPListener(l.Host, l.Port)
		}
		ctx = sock.WithConfig(ctx, sc)
	}
	mem := &cappedAllocator{max: spec.MemoryMax, premapped: p.memory}
	p.memory = nil
	ctx = experimental.WithMemoryAllocator(ctx, mem)

	mod, err := p.rt.InstantiateModule(ctx, p.compiled, mc)
	if err != nil {
		return ExitRunner, fmt.Sprintf("instantiate module %s: %v", spec.Module, err)
	}
	p.sockets.addListeners(spec.Listeners)
	p.sockets.wakeOnDone(ctx)
	if !p.freed {
		// Decoding, validating and loading the compiled code left garbage
		// several times the module's size; hand it back before the module
		// runs, for the rest of its life.
		p.freed = true
		debug.FreeOSMemory()
	}
	start := mod.ExportedFunction("_start")
	if start == nil {
		return ExitRunner, "the module exports no _start function: it is not a WASI command (reactor modules are not supported)"
	}
	_, err = start.Call(ctx)
	var exit *sys.ExitError
	switch {
	case err == nil:
		return 0, ""
	case r.stoppedBy != nil:
		return ExitTerminated, fmt.Sprintf("stopped by %s", r.stoppedBy)
	case errors.As(err, &exit):
		code := int(exit.ExitCode() & 0xff)
		if code != 0 {
			if n := mem.refused(); n > 0 {
				return code, fmt.Sprintf("out of memory: the module tried to grow its memory to %s, past its limit of %d MiB (resources.memory)", mib(n), spec.MemoryMax>>20)
			}
			if err := mem.refusedBy(); err != nil {
				return code, fmt.Sprintf("out of memory: the node refused the module's memory (%v): free memory on the node or lower its commitments", err)
			}
		}
		return code, ""
	}
	msg := DescribeTrap(err.Error(), spec.Name)
	if n := mem.refused(); n > 0 {
		msg += fmt.Sprintf(" (after the module tried to grow its memory to %s, past its limit of %d MiB, resources.memory)", mib(n), spec.MemoryMax>>20)
	} else if err := mem.refusedBy(); err != nil {
		msg += fmt.Sprintf(" (after the node refused the module's memory: %v)", err)
	}
	return ExitTrap, msg
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func memoryTooSmall(min, max uint64) string {
	return fmt.Sprintf("the module needs %d MiB of memory to start, more than its limit of %d MiB (resources.memory); raise resources.memory", (min+(1<<20)-1)>>20, max>>20)
}

// cappedAllocator backs a module's linear memory and refuses to grow it
// past max, remembering the size asked for so the runner can say why the
// module failed. The memory is one reservation of address space of the
// most it may grow to, made writable as the module grows it: a page costs
// only once the module touches it, the node's commit limit (strict
// overcommit, vm.overcommit_memory=2) is charged only for what was made
// writable, and growing never copies (growing a Go slice would copy the
// whole memory each time it doubles, which made a Go module's start ten
// times slower). Where the reservation cannot be made, it grows a Go
// slice.
type cappedAllocator struct {
	max       uint64
	premapped *reservation // made ahead (premap), used by the first Allocate
	mu        sync.Mutex
	refusal   uint64
	hostErr   error // the node refused to make memory writable
}

// maxLinearMemory is the most a 32-bit WebAssembly memory holds.
const maxLinearMemory = 1 << 32

// reservation is address space mapped for a linear memory: inaccessible
// (PROT_NONE), so it costs nothing and is charged to no commit limit, but
// for its first rw bytes, made writable as the memory grows.
type reservation struct {
	whole []byte
	rw    uint64
}

func reserve(n uint64) (*reservation, error) {
	b, err := unix.Mmap(-1, 0, int(n), unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, err
	}
	return &reservation{whole: b}, nil
}

// mprotect is unix.Mprotect; a test makes it fail as a node out of
// commit would.
var mprotect = unix.Mprotect

// writable makes the reservation's first n bytes (rounded up to a page)
// readable and writable.
func (r *reservation) writable(n uint64) error {
	n = min((n+4095)&^4095, uint64(len(r.whole)))
	if n <= r.rw {
		return nil
	}
	if err := mprotect(r.whole[r.rw:n], unix.PROT_READ|unix.PROT_WRITE); err != nil {
		return fmt.Errorf("make %s of linear memory writable: %w", mib(n), err)
	}
	r.rw = n
	return nil
}

func (r *reservation) free() {
	if r != nil && r.whole != nil {
		unix.Munmap(r.whole)
		r.whole, r.rw = nil, 0
	}
}

// premap reserves the most a module's memory may grow to ahead of its
// task, its first initial bytes made writable and touched, so a spare
// runner's module starts on memory that is already there (copying its
// data segments into fresh pages took most of the instantiation). Nil
// when it cannot be made.
func premap(initial uint64) *reservation {
	r, err := reserve(maxLinearMemory)
	if err != nil {
		return nil
	}
	if err := r.writable(initial); err != nil {
		r.free()
		return nil
	}
	for i := uint64(0); i < r.rw; i += 4096 {
		r.whole[i] = 0
	}
	return r
}

func (a *cappedAllocator) Allocate(capacity, maxBytes uint64) experimental.LinearMemory {
	limit := a.max
	if maxBytes > 0 {
		limit = min(limit, maxBytes)
	}
	if pre := a.premapped; pre != nil && limit <= uint64(len(pre.whole)) {
		a.premapped = nil
		return &cappedMemory{a: a, buf: pre.whole[:0], mapped: pre.whole[:limit], res: pre}
	}
	if limit > 0 {
		if r, err := reserve(limit); err == nil {
			return &cappedMemory{a: a, buf: r.whole[:0], mapped: r.whole, res: r}
		}
	}
	return &cappedMemory{a: a, buf: make([]byte, 0, min(capacity, a.max))}
}

func (a *cappedAllocator) refused() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.refusal
}

// refusedBy is the node's refusal to make memory writable, if any.
func (a *cappedAllocator) refusedBy() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.hostErr
}

type cappedMemory struct {
	a      *cappedAllocator
	buf    []byte
	mapped []byte       // what of the reservation the module may use; nil: buf is a Go slice
	res    *reservation // the whole reservation, freed by Free
}

func (m *cappedMemory) Reallocate(size uint64) []byte {
	if size > m.a.max || (m.mapped != nil && size > uint64(len(m.mapped))) {
		m.a.mu.Lock()
		m.a.refusal = max(m.a.refusal, size)
		m.a.mu.Unlock()
		return nil
	}
	if m.mapped != nil {
		if err := m.res.writable(size); err != nil {
			m.a.mu.Lock()
			m.a.hostErr = err
			m.a.mu.Unlock()
			return nil
		}
		m.buf = m.mapped[:size]
		return m.buf
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

func (m *cappedMemory) Free() {
	m.res.free()
	m.res, m.mapped, m.buf = nil, nil, nil
}
