package driver

import (
	"context"
	"time"
)

// Stats is implemented by drivers that can report what a running task
// uses. The agent samples it for the per-allocation metrics.
type Stats interface {
	Stats(ctx context.Context, h *Handle) (*TaskStats, error)
}

// TaskStats is one reading of a task's usage. CPU is cumulative, so the
// caller derives a rate from two readings.
type TaskStats struct {
	CPU         time.Duration // CPU time used since the task started
	MemoryBytes uint64        // memory in use now (resident, or the cgroup's charge)
	// Disks are a VM's virtual disks (the qemu driver); nil for drivers
	// whose tasks have none.
	Disks []DiskStats
	// Networks are a VM's network interfaces (the qemu driver); nil for
	// drivers that do not count their tasks' traffic.
	Networks []NetworkStats
}

// DiskStats is one virtual disk's counters since the VM started, as its
// emulator counts the guest's requests (QEMU: QMP query-blockstats). They
// only grow, so the caller derives rates from two readings.
type DiskStats struct {
	Device     string // the emulator's name for the disk ("virtio0")
	ReadBytes  uint64
	WriteBytes uint64
	ReadOps    uint64
	WriteOps   uint64
}

// NetworkStats is one virtual network interface's counters since the VM
// started, from the guest's side: Rx is what the guest received, Tx what
// it sent. Bytes are whole Ethernet frames. They only grow.
type NetworkStats struct {
	Device    string // the emulator's name for the interface ("net0")
	RxBytes   uint64
	TxBytes   uint64
	RxPackets uint64
	TxPackets uint64
}
