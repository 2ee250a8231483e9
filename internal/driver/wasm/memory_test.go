package wasm

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestCappedMemoryGrowsInPlace: the linear memory is one mapping of the
// most it may grow to, so growing never moves (copies) it and keeps what
// was written; growing past the cap is refused and remembered for the
// runner's message.
func TestCappedMemoryGrowsInPlace(t *testing.T) {
	const max = 64 << 20
	a := &cappedAllocator{max: max}
	m := a.Allocate(PageSize, 4<<30).(*cappedMemory)
	defer m.Free()
	if m.mapped == nil {
		t.Fatal("the memory is not a mapping")
	}
	b := m.Reallocate(PageSize)
	if len(b) != PageSize {
		t.Fatalf("len %d after the first allocation", len(b))
	}
	b[PageSize-1] = 42
	first := unsafe.Pointer(&b[0])
	for _, size := range []uint64{2 * PageSize, 10 << 20, 33 << 20, max} {
		b = m.Reallocate(size)
		if uint64(len(b)) != size {
			t.Fatalf("grow to %d: len %d", size, len(b))
		}
		if unsafe.Pointer(&b[0]) != first {
			t.Fatalf("grow to %d moved the memory", size)
		}
		if b[PageSize-1] != 42 {
			t.Fatalf("grow to %d lost what was written", size)
		}
	}
	if b := m.Reallocate(max + PageSize); b != nil {
		t.Fatal("grew past the cap")
	}
	if got := a.refused(); got != max+PageSize {
		t.Fatalf("refusal %d, want %d", got, max+PageSize)
	}

	// A module whose own maximum is below the cap maps only that much.
	small := a.Allocate(PageSize, 2<<20).(*cappedMemory)
	defer small.Free()
	if len(small.mapped) != 2<<20 || small.Reallocate(3<<20) != nil {
		t.Fatalf("mapped %d bytes for a module of at most 2 MiB", len(small.mapped))
	}
}

// TestPremappedMemory: a spare runner's memory reserved ahead, its
// initial pages writable and touched, is what the module's first
// allocation gets, capped at the task's resources.memory all the same.
func TestPremappedMemory(t *testing.T) {
	pre := premap(8 * PageSize)
	if pre == nil {
		t.Fatal("premap reserved nothing")
	}
	a := &cappedAllocator{max: 16 << 20, premapped: pre}
	m := a.Allocate(8*PageSize, maxLinearMemory).(*cappedMemory)
	defer m.Free()
	if m.res != pre || a.premapped != nil {
		t.Fatal("the first allocation did not take the premapped memory")
	}
	base := unsafe.Pointer(&pre.whole[0])
	if b := m.Reallocate(16 << 20); len(b) != 16<<20 || unsafe.Pointer(&b[0]) != base {
		t.Fatal("growing to the cap moved or failed")
	}
	if m.Reallocate(17<<20) != nil || a.refused() != 17<<20 {
		t.Fatal("grew past resources.memory")
	}
	if other := a.Allocate(PageSize, maxLinearMemory).(*cappedMemory); other.res == nil || other.res == pre {
		t.Fatal("a second allocation got the premapped memory again")
	} else {
		other.Free()
	}
}

// TestReservationWritableAsItGrows: of a linear memory's reservation only
// what the module grew into is writable (and so charged to a strict
// overcommit limit); the rest stays inaccessible address space, as
// /proc/self/maps shows.
func TestReservationWritableAsItGrows(t *testing.T) {
	pre := premap(2 * PageSize)
	if pre == nil {
		t.Fatal("premap reserved nothing")
	}
	a := &cappedAllocator{max: 64 << 20, premapped: pre}
	m := a.Allocate(2*PageSize, maxLinearMemory).(*cappedMemory)
	defer m.Free()
	check := func(rw uint64) {
		t.Helper()
		start := uintptr(unsafe.Pointer(&pre.whole[0]))
		if got := protections(t, start, start+uintptr(len(pre.whole))); !reflect.DeepEqual(got, []string{
			fmt.Sprintf("%x-%x rw", start, start+uintptr(rw)),
			fmt.Sprintf("%x-%x --", start+uintptr(rw), start+uintptr(len(pre.whole))),
		}) {
			t.Fatalf("after growing to %d bytes the reservation's protections are %v", rw, got)
		}
	}
	check(2 * PageSize)
	b := m.Reallocate(5 * PageSize)
	b[5*PageSize-1] = 7
	check(5 * PageSize)
	m.Reallocate(3 * PageSize) // no shrinking: what was writable stays
	check(5 * PageSize)
}

// protections lists the mappings of /proc/self/maps within [from, to) as
// "start-end rw" or "start-end --" (read and write bits).
func protections(t *testing.T, from, to uintptr) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		lo, hi, _ := strings.Cut(f[0], "-")
		l, _ := strconv.ParseUint(lo, 16, 64)
		h, _ := strconv.ParseUint(hi, 16, 64)
		if uintptr(l) >= to || uintptr(h) <= from {
			continue
		}
		out = append(out, fmt.Sprintf("%x-%x %s", max(uintptr(l), from), min(uintptr(h), to), f[1][:2]))
	}
	return out
}

// TestNodeRefusalIsRemembered: where the node refuses to make more of the
// memory writable (mprotect fails with ENOMEM, as it does past a strict
// overcommit limit; here a stand-in for mprotect refuses, since the limit
// is the whole machine's), growing answers nil and the refusal is kept for
// the runner's message, apart from a refusal by the cap.
func TestNodeRefusalIsRemembered(t *testing.T) {
	a := &cappedAllocator{max: 64 << 20}
	m := a.Allocate(PageSize, 64<<20).(*cappedMemory)
	defer m.Free()
	if m.Reallocate(PageSize) == nil {
		t.Fatal("the first page was refused")
	}
	real := mprotect
	mprotect = func([]byte, int) error { return unix.ENOMEM }
	defer func() { mprotect = real }()
	if b := m.Reallocate(40 << 20); b != nil {
		t.Fatal("grew though the node refused")
	}
	if err := a.refusedBy(); !errors.Is(err, unix.ENOMEM) {
		t.Fatalf("the node's refusal was not kept: %v", err)
	}
	if a.refused() != 0 {
		t.Fatalf("a node's refusal counted as the cap's: %d", a.refused())
	}
	mprotect = real
	if b := m.Reallocate(40 << 20); len(b) != 40<<20 {
		t.Fatal("growing failed once the node had the memory")
	}
}
