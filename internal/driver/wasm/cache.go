package wasm

import (
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// The compilation cache is wazero's file cache in Config.CacheDir: one
// file per compiled module, named by a hash of the module's bytes and the
// runtime's version and settings, written to a temporary file and renamed
// into place, so two tasks compiling the same module at once both end with
// a whole file. What bounds it is prune, run before each start.

type cacheEntry struct {
	path string
	size int64
	used time.Time
}

// pruneCache removes the least recently written entries of dir until what
// is left holds at most maxBytes, and temporary files older than an hour
// (a compile that was killed). It returns the bytes removed. An entry a
// runner has open stays readable until it closes it.
func pruneCache(dir string, maxBytes int64, now time.Time) int64 {
	var entries []cacheEntry
	var total int64
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		if strings.HasSuffix(p, ".tmp") {
			if now.Sub(info.ModTime()) > time.Hour {
				os.Remove(p)
			}
			return nil
		}
		entries = append(entries, cacheEntry{path: p, size: info.Size(), used: info.ModTime()})
		total += info.Size()
		return nil
	})
	victims := pickEvictions(entries, total, maxBytes)
	var freed int64
	for _, e := range victims {
		if os.Remove(e.path) == nil {
			freed += e.size
		}
	}
	return freed
}

// pickEvictions chooses the oldest entries to remove so that total falls
// to at most maxBytes. Pure, for the property test.
func pickEvictions(entries []cacheEntry, total, maxBytes int64) []cacheEntry {
	if total <= maxBytes {
		return nil
	}
	sorted := append([]cacheEntry(nil), entries...)
	sort.Slice(sorted, func(i, j int) bool {
		if !sorted[i].used.Equal(sorted[j].used) {
			return sorted[i].used.Before(sorted[j].used)
		}
		return sorted[i].path < sorted[j].path
	})
	var out []cacheEntry
	for _, e := range sorted {
		if total <= maxBytes {
			break
		}
		out = append(out, e)
		total -= e.size
	}
	return out
}
