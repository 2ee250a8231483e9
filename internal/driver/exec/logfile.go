package exec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Log files of a task are <dir>/<task>.<stream>.<N>, N counting up from 0;
// the highest N is being written, and at most MaxFiles are kept.

// rotator is an io.Writer over size-rotated files.
type rotator struct {
	dir, base string // base: "<task>.stdout"
	maxBytes  int64
	maxFiles  int

	mu   sync.Mutex
	f    *os.File
	idx  int
	size int64
}

func openRotator(dir, base string, maxBytes int64, maxFiles int) (*rotator, error) {
	r := &rotator{dir: dir, base: base, maxBytes: maxBytes, maxFiles: maxFiles}
	idx := logIndexes(dir, base)
	if len(idx) > 0 {
		r.idx = idx[len(idx)-1]
	}
	if err := r.open(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *rotator) path(i int) string {
	return filepath.Join(r.dir, r.base+"."+strconv.Itoa(i))
}

func (r *rotator) open() error {
	f, err := os.OpenFile(r.path(r.idx), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	r.f, r.size = f, st.Size()
	return nil
}

// Write appends p, rotating when the current file would grow past
// maxBytes. Rotation waits for the end of a line where p has one, so that
// every file but the current one ends with a whole line: the last newline
// that still fits, else the first one (the file then runs a line over).
func (r *rotator) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	written := 0
	for len(p) > 0 {
		if r.size+int64(len(p)) <= r.maxBytes {
			n, err := r.write(p)
			return written + n, err
		}
		cut := -1
		if room := r.maxBytes - r.size; room > 0 {
			cut = bytes.LastIndexByte(p[:min(int64(len(p)), room)], '\n')
		}
		if cut < 0 {
			cut = bytes.IndexByte(p, '\n')
		}
		if cut >= 0 {
			n, err := r.write(p[:cut+1])
			written += n
			if err != nil {
				return written, err
			}
			p = p[cut+1:]
		}
		if r.size > 0 {
			if err := r.rotate(); err != nil {
				return written, err
			}
		}
		if cut < 0 {
			// No line end at all: the line is split across files.
			n, err := r.write(p)
			return written + n, err
		}
	}
	return written, nil
}

func (r *rotator) write(p []byte) (int, error) {
	n, err := r.f.Write(p)
	r.size += int64(n)
	return n, err
}

// rotate closes the current file before creating the next one, so a reader
// that sees file N+1 knows file N is complete.
func (r *rotator) rotate() error {
	if err := r.f.Close(); err != nil {
		return err
	}
	r.idx++
	if err := r.open(); err != nil {
		return err
	}
	for _, i := range logIndexes(r.dir, r.base) {
		if i <= r.idx-r.maxFiles {
			os.Remove(r.path(i))
		}
	}
	return nil
}

func (r *rotator) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.f.Close()
}

// logIndexes lists the N of the files <dir>/<base>.<N>, ascending.
func logIndexes(dir, base string) []int {
	ents, _ := os.ReadDir(dir)
	var out []int
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), base+".")
		if !ok {
			continue
		}
		if i, err := strconv.Atoi(rest); err == nil && i >= 0 {
			out = append(out, i)
		}
	}
	sort.Ints(out)
	return out
}

// logReader reads a stream's files in order from a starting point and,
// when following, waits for more until done reports the writer finished
// and everything written has been read.
type logReader struct {
	ctx    context.Context
	cancel context.CancelFunc
	dir    string
	base   string
	follow bool
	done   func() bool
	poll   time.Duration

	f   *os.File
	idx int
}

func newLogReader(ctx context.Context, dir, base string, tail int, follow bool, done func() bool) (*logReader, error) {
	ctx, cancel := context.WithCancel(ctx)
	r := &logReader{ctx: ctx, cancel: cancel, dir: dir, base: base, follow: follow, done: done, poll: 100 * time.Millisecond, idx: -1}
	idx := logIndexes(dir, base)
	if len(idx) == 0 {
		return r, nil // nothing written yet; Read waits or ends
	}
	start, off := idx[0], int64(0)
	if tail > 0 {
		var err error
		start, off, err = tailStart(dir, base, idx, tail)
		if err != nil {
			cancel()
			return nil, err
		}
	}
	if err := r.openAt(start, off); err != nil {
		cancel()
		return nil, err
	}
	return r, nil
}

func (r *logReader) path(i int) string {
	return filepath.Join(r.dir, r.base+"."+strconv.Itoa(i))
}

func (r *logReader) openAt(i int, off int64) error {
	f, err := os.Open(r.path(i))
	if err != nil {
		return err
	}
	if off > 0 {
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			f.Close()
			return err
		}
	}
	if r.f != nil {
		r.f.Close()
	}
	r.f, r.idx = f, i
	return nil
}

// next moves to the file after the current one (or the first, before any
// was open); false when there is none yet. A file removed by rotation
// before it was read is skipped.
func (r *logReader) next() (bool, error) {
	for _, i := range logIndexes(r.dir, r.base) {
		if i > r.idx {
			err := r.openAt(i, 0)
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return err == nil, err
		}
	}
	return false, nil
}

func (r *logReader) Read(p []byte) (int, error) {
	finished := false
	for {
		if err := r.ctx.Err(); err != nil {
			return 0, err
		}
		if r.f != nil {
			n, err := r.f.Read(p)
			if n > 0 || (err != nil && err != io.EOF) {
				return n, err
			}
		}
		// At the end of the current file. The writer closes a file before
		// it creates the next, so once the next exists this one is
		// complete; read it once more before moving on.
		if ok, err := r.hasNext(); err != nil {
			return 0, err
		} else if ok {
			if r.f != nil {
				if n, err := r.f.Read(p); n > 0 || (err != nil && err != io.EOF) {
					return n, err
				}
			}
			if _, err := r.next(); err != nil {
				return 0, err
			}
			continue
		}
		if !r.follow || finished {
			return 0, io.EOF
		}
		// The writer may still add to this file: wait, unless it is done,
		// in which case one more pass picks up what it wrote last.
		if r.done() {
			finished = true
			continue
		}
		t := time.NewTimer(r.poll)
		select {
		case <-r.ctx.Done():
			t.Stop()
			return 0, r.ctx.Err()
		case <-t.C:
		}
	}
}

func (r *logReader) hasNext() (bool, error) {
	for _, i := range logIndexes(r.dir, r.base) {
		if i > r.idx {
			return true, nil
		}
	}
	return false, nil
}

func (r *logReader) Close() error {
	r.cancel()
	if r.f != nil {
		return r.f.Close()
	}
	return nil
}

// tailStart finds where the last n lines of the stream begin: the file
// and the offset in it. A last line without its newline counts as a line.
func tailStart(dir, base string, idx []int, n int) (int, int64, error) {
	first := true
	for k := len(idx) - 1; k >= 0; k-- {
		b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("%s.%d", base, idx[k])))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0, 0, err
		}
		end := len(b)
		if first && end > 0 {
			first = false
			if b[end-1] == '\n' {
				end-- // the stream's final newline ends the last line, it does not start one
			}
		}
		for i := end - 1; i >= 0; i-- {
			if b[i] == '\n' {
				n--
				if n == 0 {
					return idx[k], int64(i + 1), nil
				}
			}
		}
	}
	return idx[0], 0, nil
}
