package wasm

import (
	"testing"
	"unsafe"
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

// TestPremappedMemory: a spare runner's memory mapped ahead, its initial
// pages touched, is what the module's first allocation gets, capped at
// the task's resources.memory all the same.
func TestPremappedMemory(t *testing.T) {
	pre := premap(8 * PageSize)
	if pre == nil {
		t.Fatal("premap mapped nothing")
	}
	a := &cappedAllocator{max: 16 << 20, premapped: pre}
	m := a.Allocate(8*PageSize, maxLinearMemory).(*cappedMemory)
	defer m.Free()
	if unsafe.Pointer(&m.whole[0]) != unsafe.Pointer(&pre[0]) || a.premapped != nil {
		t.Fatal("the first allocation did not take the premapped memory")
	}
	if b := m.Reallocate(16 << 20); len(b) != 16<<20 || unsafe.Pointer(&b[0]) != unsafe.Pointer(&pre[0]) {
		t.Fatal("growing to the cap moved or failed")
	}
	if m.Reallocate(17<<20) != nil || a.refused() != 17<<20 {
		t.Fatal("grew past resources.memory")
	}
	if other := a.Allocate(PageSize, maxLinearMemory).(*cappedMemory); other.whole == nil || unsafe.Pointer(&other.whole[0]) == unsafe.Pointer(&pre[0]) {
		t.Fatal("a second allocation got the premapped memory again")
	} else {
		other.Free()
	}
}
