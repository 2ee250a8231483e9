package wasm

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	execdriver "github.com/gantryhq/gantry/internal/driver/exec"
)

// Spare runners (Config.Spares): a runner started ahead of its task, with
// the module compiled, under a spare executor (the exec driver's
// spare.go). A start of that module takes it and skips the runner's
// process start and its compile, even from the cache, which for a large
// module is most of a warm start.
//
// After a task of a module starts, and a second after its runner has
// compiled the module (so the spare reads it from the cache and competes
// with neither the compile nor the task's start), the driver starts one
// spare for that module. It keeps at most
// Config.Spares, for the modules started most recently, and lets each go
// after Config.SpareIdle unused. A spare is idle but not free: it holds
// the compiled code and the runtime (about what a running instance of the
// module holds, less its linear memory), counted against no task. Tasks
// that run as another user (security.user) never take one. A spare whose
// runner ended is not offered; one that fails when taken is passed over
// and the task starts anew. A spare is not started while the node's
// available memory is short of what spareRoom asks: it would take memory
// from the tasks.

// DefaultSpareIdle is how long an unused spare is kept when
// Config.SpareIdle is 0.
const DefaultSpareIdle = 10 * time.Minute

// spareCompileWait bounds how long a refill waits for the task's runner
// to compile the module before it gives up; spareDelay is how long after
// that it starts the spare, which loads the module from the cache, so as
// not to compete with the task's own start.
const (
	spareCompileWait = 10 * time.Minute
	spareDelay       = time.Second
)

// spareFloor is the available memory a node keeps beside a new spare, and
// sparePerByte what a spare is reckoned to hold per byte of its module
// (the demo's 11 MB Go module: about 87 MiB of its own, runner and
// executor together, so 8 bytes per byte with room to spare).
const (
	spareFloor   = 1 << 30
	sparePerByte = 8
)

// spareRoom says whether a node with available bytes of memory free has
// room for a spare of a module of moduleSize bytes.
func spareRoom(available uint64, moduleSize int64) bool {
	return moduleSize >= 0 && available >= spareFloor+sparePerByte*uint64(moduleSize)
}

type spare struct {
	ex    *execdriver.Spare
	ready string // created by the runner once the module is compiled
	made  time.Time
	timer *time.Timer
}

type sparePool struct {
	seq     atomic.Uint64 // names the spares' ready files
	mu      sync.Mutex
	spares  map[string]*spare // by the module's SHA-256
	filling map[string]bool   // a refill waits or starts for the module
}

// takeSpare returns the spare for the module, if one runs, and forgets it.
func (d *Driver) takeSpare(sum string) *execdriver.Spare {
	if d.cfg.Spares <= 0 {
		return nil
	}
	d.pool.mu.Lock()
	defer d.pool.mu.Unlock()
	s := d.pool.spares[sum]
	if s == nil {
		return nil
	}
	delete(d.pool.spares, sum)
	s.timer.Stop()
	os.Remove(s.ready)
	if !s.ex.Alive() {
		return nil
	}
	return s.ex
}

// refill starts a spare for the module at modPath once compiled exists
// (the task's runner compiled it), unless one runs or is on its way.
func (d *Driver) refill(sum, modPath, compiled string) {
	if d.cfg.Spares <= 0 {
		return
	}
	d.pool.mu.Lock()
	if s := d.pool.spares[sum]; (s != nil && s.ex.Alive()) || d.pool.filling[sum] {
		d.pool.mu.Unlock()
		return
	}
	d.pool.filling[sum] = true
	d.pool.mu.Unlock()
	go func() {
		defer func() {
			d.pool.mu.Lock()
			delete(d.pool.filling, sum)
			d.pool.mu.Unlock()
		}()
		for deadline := time.Now().Add(spareCompileWait); ; time.Sleep(50 * time.Millisecond) {
			if _, err := os.Stat(compiled); err == nil {
				break
			}
			if time.Now().After(deadline) {
				return
			}
		}
		time.Sleep(spareDelay)
		d.startSpare(sum, modPath)
	}()
}

func (d *Driver) startSpare(sum, modPath string) {
	if d.cfg.MemAvailable != nil {
		fi, err := os.Stat(modPath)
		if err != nil {
			return
		}
		if avail, ok := d.cfg.MemAvailable(); !ok || !spareRoom(avail, fi.Size()) {
			return
		}
	}
	if err := os.MkdirAll(d.cfg.SpareDir, 0o700); err != nil {
		return
	}
	// Each spare has a ready file of its own, gone once it is taken (a
	// taken spare keeps its command line).
	ready := filepath.Join(d.cfg.SpareDir, fmt.Sprintf("%s.%d.ready", sum, d.pool.seq.Add(1)))
	ex, err := d.exec.StartSpare(d.cfg.RunnerPath,
		[]string{d.cfg.RunnerPath, RunnerCommand, spareFlag, modPath, d.cfg.CacheDir, ready},
		filepath.Join(d.cfg.SpareDir, "spares.log"))
	if err != nil {
		return
	}
	s := &spare{ex: ex, ready: ready, made: time.Now()}
	d.pool.mu.Lock()
	defer d.pool.mu.Unlock()
	if old := d.pool.spares[sum]; old != nil {
		old.timer.Stop()
		old.ex.Close()
	}
	for len(d.pool.spares) >= d.cfg.Spares {
		d.evictOldest()
	}
	idle := d.cfg.SpareIdle
	if idle <= 0 {
		idle = DefaultSpareIdle
	}
	s.timer = time.AfterFunc(idle, func() {
		d.pool.mu.Lock()
		defer d.pool.mu.Unlock()
		if d.pool.spares[sum] == s {
			delete(d.pool.spares, sum)
			os.Remove(s.ready)
			s.ex.Close()
		}
	})
	d.pool.spares[sum] = s
}

// evictOldest lets the oldest spare go; the pool's lock is held.
func (d *Driver) evictOldest() {
	var oldest string
	for sum, s := range d.pool.spares {
		if oldest == "" || s.made.Before(d.pool.spares[oldest].made) {
			oldest = sum
		}
	}
	if s := d.pool.spares[oldest]; s != nil {
		delete(d.pool.spares, oldest)
		s.timer.Stop()
		os.Remove(s.ready)
		s.ex.Close()
	}
}

// Close lets every spare go.
func (d *Driver) Close() {
	d.pool.mu.Lock()
	defer d.pool.mu.Unlock()
	for sum, s := range d.pool.spares {
		delete(d.pool.spares, sum)
		s.timer.Stop()
		os.Remove(s.ready)
		s.ex.Close()
	}
}
