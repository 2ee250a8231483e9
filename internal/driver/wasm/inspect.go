package wasm

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Module is what Inspect reads from a WebAssembly binary without compiling
// it: enough to refuse a module that cannot run before anything starts.
type Module struct {
	Imports []Import
	// MemoryMinPages is the initial size of the module's memory (defined
	// or imported) in 64 KiB pages; 0 when it has none.
	MemoryMinPages uint64
	// Start reports an exported _start function (a WASI command).
	Start bool
}

// Import is one import of a module.
type Import struct {
	Module string
	Name   string
	Kind   string // func, table, memory, global, tag
}

func (i Import) String() string { return i.Module + "." + i.Name + " (" + i.Kind + ")" }

// PageSize is the size of a WebAssembly memory page.
const PageSize = 64 << 10

// ErrNotWasm is returned by Inspect for input that is not a WebAssembly
// binary module at all (wrong header, or text format).
var ErrNotWasm = errors.New("not a WebAssembly binary module")

// Inspect decodes the header, the import, memory and export sections of a
// WebAssembly binary. It never panics, whatever the input; a malformed
// module gives an error that says where.
func Inspect(b []byte) (*Module, error) {
	if len(b) < 8 || string(b[:4]) != "\x00asm" {
		return nil, fmt.Errorf("%w: it does not start with the \\0asm header (a .wat text file must be compiled first)", ErrNotWasm)
	}
	if v := uint32(b[4]) | uint32(b[5])<<8 | uint32(b[6])<<16 | uint32(b[7])<<24; v != 1 {
		return nil, fmt.Errorf("%w: binary format version %d, only version 1 is supported (components are not)", ErrNotWasm, v)
	}
	m := &Module{}
	r := &reader{b: b, off: 8}
	for !r.done() {
		id := r.byte()
		size := r.u32()
		if r.err != nil {
			return nil, r.err
		}
		if uint64(size) > uint64(len(r.b)-r.off) {
			return nil, fmt.Errorf("malformed module: section %d at byte %d is %d bytes long, past the end of the file", id, r.off, size)
		}
		sec := &reader{b: r.b[:r.off+int(size)], off: r.off}
		r.off += int(size)
		switch id {
		case 2:
			m.readImports(sec)
		case 5:
			n := sec.u32()
			for i := uint32(0); i < n && sec.err == nil; i++ {
				min := sec.limits()
				if i == 0 && m.MemoryMinPages == 0 {
					m.MemoryMinPages = min
				}
			}
		case 7:
			n := sec.u32()
			for i := uint32(0); i < n && sec.err == nil; i++ {
				name := sec.name()
				kind := sec.byte()
				sec.u32()
				if name == "_start" && kind == 0 {
					m.Start = true
				}
			}
		}
		if sec.err != nil {
			return nil, sec.err
		}
	}
	return m, nil
}

func (m *Module) readImports(r *reader) {
	n := r.u32()
	for i := uint32(0); i < n && r.err == nil; i++ {
		imp := Import{Module: r.name(), Name: r.name()}
		switch kind := r.byte(); kind {
		case 0:
			imp.Kind = "func"
			r.u32()
		case 1:
			imp.Kind = "table"
			r.byte()
			r.limits()
		case 2:
			imp.Kind = "memory"
			if min := r.limits(); m.MemoryMinPages == 0 {
				m.MemoryMinPages = min
			}
		case 3:
			imp.Kind = "global"
			r.byte()
			r.byte()
		case 4:
			imp.Kind = "tag"
			r.byte()
			r.u32()
		default:
			r.fail("import %d has unknown kind %d", i, kind)
		}
		m.Imports = append(m.Imports, imp)
	}
}

// Missing lists the imports of m that provided does not satisfy, as
// "module.name (kind)", sorted. provided holds "module.name" of the host
// functions the runtime gives; any import that is not a function is
// missing, since the runtime provides none.
func (m *Module) Missing(provided map[string]bool) []string {
	var out []string
	for _, imp := range m.Imports {
		if imp.Kind != "func" || !provided[imp.Module+"."+imp.Name] {
			out = append(out, imp.String())
		}
	}
	sort.Strings(out)
	return out
}

// reader decodes the binary format; the first error sticks and every
// later read returns zero.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) done() bool { return r.err != nil || r.off >= len(r.b) }

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("malformed module at byte %d: %s", r.off, fmt.Sprintf(format, args...))
	}
}

func (r *reader) byte() byte {
	if r.err != nil {
		return 0
	}
	if r.off >= len(r.b) {
		r.fail("unexpected end of section")
		return 0
	}
	c := r.b[r.off]
	r.off++
	return c
}

// uleb reads an unsigned LEB128 of at most bits bits.
func (r *reader) uleb(bits uint) uint64 {
	var v uint64
	for shift := uint(0); ; shift += 7 {
		if shift >= bits+7 || shift >= 64 {
			r.fail("integer longer than %d bits", bits)
			return 0
		}
		c := r.byte()
		if r.err != nil {
			return 0
		}
		v |= uint64(c&0x7f) << shift
		if c&0x80 == 0 {
			return v
		}
	}
}

func (r *reader) u32() uint32 { return uint32(r.uleb(32)) }

func (r *reader) name() string {
	n := r.u32()
	if r.err != nil {
		return ""
	}
	if uint64(n) > uint64(len(r.b)-r.off) {
		r.fail("name of %d bytes runs past the end of the section", n)
		return ""
	}
	s := string(r.b[r.off : r.off+int(n)])
	r.off += int(n)
	return strings.ToValidUTF8(s, "\uFFFD")
}

// limits reads a table or memory type's limits and returns the minimum.
func (r *reader) limits() uint64 {
	flags := r.byte()
	if flags > 0x07 {
		r.fail("limits flag 0x%x is not known", flags)
		return 0
	}
	bits := uint(32)
	if flags&0x04 != 0 {
		bits = 64 // memory64
	}
	min := r.uleb(bits)
	if flags&0x01 != 0 {
		r.uleb(bits)
	}
	return min
}
