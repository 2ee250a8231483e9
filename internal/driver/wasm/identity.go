package wasm

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"syscall"

	"github.com/gantryhq/gantry/internal/driver"
)

// moduleID is what a start needs to know of a module file: its SHA-256
// (which picks a spare runner and names the module to the runner) and its
// inspection (imports, memory, _start).
type moduleID struct {
	sum  string
	info *Module
}

// fileKey names one version of a file: a file replaced or written to has
// another inode, size or modification time.
type fileKey struct {
	path       string
	dev, ino   uint64
	size, nsec int64
}

func keyOf(path string, st os.FileInfo) (fileKey, bool) {
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return fileKey{}, false
	}
	return fileKey{path: path, dev: uint64(sys.Dev), ino: sys.Ino, size: st.Size(), nsec: st.ModTime().UnixNano()}, true
}

// maxIDs bounds the driver's memory of module files.
const maxIDs = 256

// identify reads, inspects and hashes the module at path, or, when the
// file has not changed since an earlier start, says what it found then:
// reading and hashing a large module is most of what a start with a spare
// runner would otherwise spend on the node. An error is the task's: the
// module is missing, too large or not a module.
func (d *Driver) identify(path string) (moduleID, error) {
	st, err := os.Stat(path)
	key, keyed := fileKey{}, false
	if err == nil {
		key, keyed = keyOf(path, st)
	}
	if keyed {
		d.idMu.Lock()
		id, ok := d.ids[key]
		d.idMu.Unlock()
		if ok {
			return id, nil
		}
	}
	bin, err := readModule(path)
	if err != nil {
		return moduleID{}, err
	}
	info, err := Inspect(bin)
	if err != nil {
		return moduleID{}, fmt.Errorf("%w: module %s: %v", driver.ErrCannotRun, path, err)
	}
	sum := sha256.Sum256(bin)
	id := moduleID{sum: hex.EncodeToString(sum[:]), info: info}
	// Remembered only when the file did not change while it was read.
	if st2, err := os.Stat(path); keyed && err == nil {
		if key2, ok := keyOf(path, st2); ok && key2 == key {
			d.idMu.Lock()
			if len(d.ids) >= maxIDs {
				clear(d.ids)
			}
			d.ids[key] = id
			d.idMu.Unlock()
		}
	}
	return id, nil
}
