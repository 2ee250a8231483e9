package exec

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gantryhq/gantry/internal/driver"
)

// Frame streams: a task may be handed pipes on which it writes a copy of
// every frame it moves, each a 4-byte big-endian length and then that
// many bytes (the format of QEMU's filter-mirror). The executor counts the
// frames and bytes of each stream and keeps the totals in
// <state dir>/<task>.frames.json, so that they count while no agent runs
// and survive the agent's restarts. Only the lengths are read; the bytes
// are dropped.

// StartOptions are what a driver built on this one may ask of Start
// beyond the task config.
type StartOptions struct {
	// FrameStreams names the frame streams to count: the task gets the
	// write end of the i-th on file descriptor 3+i.
	FrameStreams []string
	// Spare, when set, is a spare executor (spare.go) already running the
	// task's program: the task takes it instead of starting a new one.
	Spare *Spare
}

// FrameCount is one stream's totals since the task started.
type FrameCount struct {
	Frames uint64 `json:"frames"`
	Bytes  uint64 `json:"bytes"`
}

const (
	framesSuffix = ".frames.json"
	// maxFrameStreams bounds the descriptors a task is handed.
	maxFrameStreams = 8
	// maxFrame bounds one frame: a longer length means the stream is not
	// frames, and counting it stops rather than read garbage as lengths.
	maxFrame = 1 << 20
	// framePipeBytes is the pipe size asked for, so that the task rarely
	// waits on a busy executor.
	framePipeBytes = 1 << 20
	// framesEvery is how often the totals are written while they change.
	framesEvery = time.Second
)

// checkFrameStreams rejects names a stream file could not hold.
func checkFrameStreams(names []string) error {
	if len(names) > maxFrameStreams {
		return fmt.Errorf("%d frame streams asked for, at most %d", len(names), maxFrameStreams)
	}
	seen := map[string]bool{}
	for _, n := range names {
		if n == "" || seen[n] {
			return fmt.Errorf("frame stream names %q must be distinct and not empty", names)
		}
		seen[n] = true
	}
	return nil
}

// frameCounter holds one stream's running totals.
type frameCounter struct {
	frames, bytes atomic.Uint64
}

// countFrames reads a frame stream until it ends, adding each whole frame
// to c. It returns nil at the end of the stream between frames, and an
// error for a frame cut short or a length past maxFrame.
func countFrames(r io.Reader, c *frameCounter) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var hdr [4]byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("frame length: %w", err)
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n > maxFrame {
			return fmt.Errorf("frame of %d bytes is longer than %d: the stream is not length-prefixed frames", n, maxFrame)
		}
		if m, err := br.Discard(int(n)); err != nil {
			return fmt.Errorf("frame of %d bytes cut short after %d: %w", n, m, err)
		}
		c.frames.Add(1)
		c.bytes.Add(uint64(n))
	}
}

// frameStreams are the executor's side of a task's frame streams.
type frameStreams struct {
	names    []string
	readers  []*os.File
	writers  []*os.File // the task's ends; closed once it has them
	counters []frameCounter
	path     string
	done     sync.WaitGroup
}

// openFrameStreams makes one pipe per stream; the write ends go to the
// task's user when it runs as another one.
func openFrameStreams(spec *executorSpec) (*frameStreams, error) {
	fs := &frameStreams{names: spec.FrameStreams, counters: make([]frameCounter, len(spec.FrameStreams)), path: spec.FramesPath}
	for _, name := range spec.FrameStreams {
		r, w, err := os.Pipe()
		if err != nil {
			fs.close()
			return nil, fmt.Errorf("frame stream %s: %w", name, err)
		}
		fs.readers, fs.writers = append(fs.readers, r), append(fs.writers, w)
		// Best effort: the default 64 KiB works, only sooner full.
		_, _ = unix.FcntlInt(w.Fd(), unix.F_SETPIPE_SZ, framePipeBytes)
		if spec.UID != nil {
			if err := w.Chown(int(*spec.UID), int(*spec.GID)); err != nil {
				fs.close()
				return nil, fmt.Errorf("frame stream %s: give it to the task's user: %w", name, err)
			}
		}
	}
	return fs, nil
}

// started closes the executor's copies of the write ends (the task holds
// them now), counts every stream, and writes the totals every framesEvery
// while they change, until stop is closed.
func (fs *frameStreams) started(stop <-chan struct{}, warn func(msg string, args ...any)) {
	for _, w := range fs.writers {
		w.Close()
	}
	fs.writers = nil
	for i, r := range fs.readers {
		fs.done.Add(1)
		go func() {
			defer fs.done.Done()
			if err := countFrames(r, &fs.counters[i]); err != nil {
				warn("executor: frame stream no longer counted", "stream", fs.names[i], "err", err)
				// Keep the task's writes from blocking on a full pipe.
				io.Copy(io.Discard, r)
			}
		}()
	}
	fs.done.Add(1)
	go func() {
		defer fs.done.Done()
		t := time.NewTicker(framesEvery)
		defer t.Stop()
		var last map[string]FrameCount
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			if now := fs.totals(); !sameCounts(now, last) {
				if err := fs.write(now); err != nil {
					warn("executor: cannot record the frame counts", "err", err)
				}
				last = now
			}
		}
	}()
}

func (fs *frameStreams) totals() map[string]FrameCount {
	m := make(map[string]FrameCount, len(fs.names))
	for i, n := range fs.names {
		m[n] = FrameCount{Frames: fs.counters[i].frames.Load(), Bytes: fs.counters[i].bytes.Load()}
	}
	return m
}

func sameCounts(a, b map[string]FrameCount) bool {
	if a == nil || b == nil || len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// write replaces the totals file. It is not synced: the totals are
// statistics, and the next write brings them back after a crash.
func (fs *frameStreams) write(m map[string]FrameCount) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return replaceFile(fs.path, b, false)
}

// finish waits up to limit for the streams to end (the task and what it
// left running have closed them), then writes the final totals.
func (fs *frameStreams) finish(stop chan<- struct{}, limit time.Duration) error {
	drained := make(chan struct{})
	go func() {
		// The readers end at the task's exit; the writer at stop.
		close(stop)
		fs.done.Wait()
		close(drained)
	}()
	select {
	case <-drained:
	case <-time.After(limit):
	}
	err := fs.write(fs.totals())
	fs.close()
	return err
}

func (fs *frameStreams) close() {
	for _, f := range append(fs.readers, fs.writers...) {
		f.Close()
	}
}

// FrameCounts reads the totals of the frame streams of the task h names:
// nil without any (a task started without streams, or before their first
// write).
func FrameCounts(h *driver.Handle) (map[string]FrameCount, error) {
	st, err := stateOf(h)
	if err != nil {
		return nil, err
	}
	var m map[string]FrameCount
	if err := readJSON(statePaths(st).frames, &m); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("exec driver: frame counts of %s: %w", h.ID, err)
	}
	return m, nil
}
