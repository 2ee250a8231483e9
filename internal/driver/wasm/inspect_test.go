package wasm

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// mod assembles a module from raw sections (id, contents).
func mod(sections ...[]byte) []byte {
	b := []byte("\x00asm\x01\x00\x00\x00")
	for i := 0; i+1 < len(sections); i += 2 {
		b = append(b, sections[i][0], byte(len(sections[i+1])))
		b = append(b, sections[i+1]...)
	}
	return b
}

func name(s string) []byte { return append([]byte{byte(len(s))}, s...) }

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestInspect(t *testing.T) {
	imports := cat([]byte{2},
		name("wasi_snapshot_preview1"), name("fd_write"), []byte{0, 0},
		name("env"), name("memory"), []byte{2, 1, 17, 100})
	exports := cat([]byte{1}, name("_start"), []byte{0, 1})
	for _, tc := range []struct {
		name    string
		in      []byte
		want    *Module
		wantErr string
	}{
		{"empty module", mod(), &Module{}, ""},
		{"imports, memory and _start", mod([]byte{2}, imports, []byte{7}, exports),
			&Module{Imports: []Import{{"wasi_snapshot_preview1", "fd_write", "func"}, {"env", "memory", "memory"}}, MemoryMinPages: 17, Start: true}, ""},
		{"defined memory", mod([]byte{5}, []byte{1, 0, 2}), &Module{MemoryMinPages: 2}, ""},
		{"text format", []byte("(module)"), nil, "does not start with the \\0asm header"},
		{"component", []byte("\x00asm\x0d\x00\x01\x00"), nil, "binary format version"},
		{"section past the end", append(mod(), 2, 50, 1), nil, "past the end of the file"},
		{"unknown import kind", mod([]byte{2}, cat([]byte{1}, name("a"), name("b"), []byte{9})), nil, "unknown kind 9"},
		{"truncated name", mod([]byte{2}, []byte{1, 40, 'a'}), nil, "runs past the end of the section"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Inspect(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
	if _, err := Inspect([]byte("hello world")); !errors.Is(err, ErrNotWasm) {
		t.Fatalf("text file: %v, want ErrNotWasm", err)
	}
}

func TestMissing(t *testing.T) {
	m := &Module{Imports: []Import{{"wasi_snapshot_preview1", "fd_write", "func"}, {"env", "magic", "func"}, {"env", "memory", "memory"}}}
	got := m.Missing(map[string]bool{"wasi_snapshot_preview1.fd_write": true})
	want := []string{"env.magic (func)", "env.memory (memory)"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("missing %v, want %v", got, want)
	}
}

// FuzzInspect: Inspect never panics, and what it accepts starts with the
// header.
func FuzzInspect(f *testing.F) {
	f.Add(mod())
	f.Add(mod([]byte{2}, cat([]byte{1}, name("env"), name("f"), []byte{0, 0}), []byte{5}, []byte{1, 5, 1, 2}))
	f.Add([]byte("(module)"))
	if srcs, _ := filepath.Glob("testdata/*.wasm"); len(srcs) > 0 {
		for _, s := range srcs {
			if b, err := os.ReadFile(s); err == nil {
				f.Add(b)
			}
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Inspect(b)
		if err == nil && (m == nil || !bytes.HasPrefix(b, []byte("\x00asm"))) {
			t.Fatalf("accepted %q as %+v", b, m)
		}
	})
}

func TestDescribeTrap(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"wasm error: unreachable\nwasm stack trace:\n\tmod.crash_here(i32)\n\tmod.__original_main() i32\n\tmod._start()",
			"wasm trap: unreachable, in function crash_here"},
		{"wasm error: out of bounds memory access\nwasm stack trace:\n\tmod.main.(*T).get(i32,i64) (i32,i32)",
			"wasm trap: out of bounds memory access, in function main.(*T).get"},
		{"wasm error: integer divide by zero\nwasm stack trace:\n\tmod.$12()", "wasm trap: integer divide by zero, in function $12"},
		{"wasm error: unreachable", "wasm trap: unreachable"},
	} {
		if got := DescribeTrap(tc.in, "mod"); got != tc.want {
			t.Errorf("DescribeTrap(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestPickEvictions: the cache ends at or under its bound, oldest first,
// and nothing is evicted when it already fits.
func TestPickEvictions(t *testing.T) {
	t0 := time.Unix(1000, 0)
	for seed := int64(1); seed < 200; seed++ {
		var entries []cacheEntry
		var total int64
		for i := int64(0); i < seed%7+1; i++ {
			e := cacheEntry{path: string(rune('a' + i)), size: (seed*31+i*17)%100 + 1, used: t0.Add(time.Duration((seed*i)%11) * time.Second)}
			entries = append(entries, e)
			total += e.size
		}
		max := (seed * 13) % 300
		victims := pickEvictions(entries, total, max)
		left := total
		for _, v := range victims {
			left -= v.size
		}
		if total <= max && len(victims) > 0 {
			t.Fatalf("seed %d: evicted %v although %d fits in %d", seed, victims, total, max)
		}
		if left > max && len(victims) != len(entries) {
			t.Fatalf("seed %d: %d bytes left over the bound %d", seed, left, max)
		}
		for _, v := range victims {
			for _, e := range entries {
				if e.used.Before(v.used) && !contains(victims, e) {
					t.Fatalf("seed %d: evicted %v before the older %v", seed, v, e)
				}
			}
		}
	}
}

func contains(list []cacheEntry, e cacheEntry) bool {
	for _, x := range list {
		if x == e {
			return true
		}
	}
	return false
}

func TestPruneCache(t *testing.T) {
	dir := t.TempDir()
	for i, n := range []int{100, 100, 100} {
		p := filepath.Join(dir, string(rune('a'+i)))
		os.WriteFile(p, make([]byte, n), 0o600)
		os.Chtimes(p, time.Unix(int64(1000+i), 0), time.Unix(int64(1000+i), 0))
	}
	if freed := pruneCache(dir, 150, time.Now()); freed != 200 {
		t.Fatalf("freed %d, want 200", freed)
	}
	if _, err := os.Stat(filepath.Join(dir, "c")); err != nil {
		t.Fatal("the newest entry was removed")
	}
}
