package api

import "time"

// NodeSample is one reading of a node's usage, taken by its agent and
// sent with its heartbeats; the servers keep a short history of them per
// node (GET /v1/nodes/{id}/metrics) for `gantry node status` and the UI.
type NodeSample struct {
	Time        time.Time   `json:"time"`
	CPUUsed     int         `json:"cpu_used"`  // millicores busy over the last interval
	CPUTotal    int         `json:"cpu_total"` // millicores
	MemoryUsed  int         `json:"memory_used"`
	MemoryTotal int         `json:"memory_total"` // MiB
	DiskUsed    int         `json:"disk_used"`
	DiskTotal   int         `json:"disk_total"` // MiB, of the agent's data directory
	GPUs        []GPUSample `json:"gpus,omitempty"`
	// Allocs are the node's running tasks, for the per-allocation history.
	Allocs []AllocSample `json:"allocs,omitempty"`
}

// AllocSample is one reading of one running task of an allocation.
type AllocSample struct {
	Alloc       string `json:"alloc"`
	Task        string `json:"task"`
	CPUUsed     *int   `json:"cpu_used,omitempty"` // millicores over the last interval; absent on a task's first reading
	MemoryBytes int64  `json:"memory_bytes"`
	// Disks are a VM's virtual disks (qemu tasks); absent for tasks
	// without any.
	Disks []DiskSample `json:"disks,omitempty"`
	// Networks are a VM's network interfaces (qemu tasks); absent for
	// tasks whose traffic is not counted.
	Networks []NetworkSample `json:"networks,omitempty"`
}

// NetworkSample is one network interface of a VM: the frames and bytes
// the guest received and sent since the VM started (counted by the
// task's executor from QEMU's filter-mirror). The counters only grow
// while the VM runs; a restarted VM starts at 0.
type NetworkSample struct {
	Device    string `json:"device"` // QEMU's name for it, "net0"
	RxBytes   int64  `json:"rx_bytes"`
	TxBytes   int64  `json:"tx_bytes"`
	RxPackets int64  `json:"rx_packets"`
	TxPackets int64  `json:"tx_packets"`
}

// DiskSample is one virtual disk of a VM: the guest's reads and writes
// since the VM started, as QEMU counts them (QMP query-blockstats). The
// counters only grow while the VM runs; a restarted VM starts at 0.
type DiskSample struct {
	Device     string `json:"device"` // QEMU's name for it, "virtio0"
	ReadBytes  int64  `json:"read_bytes"`
	WriteBytes int64  `json:"write_bytes"`
	ReadOps    int64  `json:"read_ops"`
	WriteOps   int64  `json:"write_ops"`
}

// GPUSample is one reading of one GPU. A figure the GPU does not report
// (utilisation of a GPU in MIG mode, power on some boards) is absent.
type GPUSample struct {
	UUID        string   `json:"uuid"`
	Util        *float64 `json:"util,omitempty"`  // percent
	MemoryUsed  int      `json:"memory_used"`     // MiB
	MemoryTotal int      `json:"memory_total"`    // MiB
	Power       *float64 `json:"power,omitempty"` // W
	Temp        *float64 `json:"temp,omitempty"`  // °C
}

// NodeMetricsResponse answers GET /v1/nodes/{id}/metrics: the samples the
// answering server holds for the node, oldest first. Each server keeps
// the samples of the heartbeats it received, so after an agent moved
// between servers the history starts again.
type NodeMetricsResponse struct {
	NodeID  string       `json:"node_id"`
	Samples []NodeSample `json:"samples"`
}

// AllocMetricsResponse answers GET /v1/allocations/{id}/metrics: the
// allocation's share of its node's history, oldest first: its tasks'
// usage and the readings of the GPUs it holds (a GPU shared with other
// allocations, or split into MIG instances, is read whole).
type AllocMetricsResponse struct {
	AllocID string              `json:"alloc_id"`
	NodeID  string              `json:"node_id"`
	GPUs    []string            `json:"gpus,omitempty"` // UUIDs of the physical GPUs it holds a part of
	Samples []AllocMetricSample `json:"samples"`
}

// AllocMetricSample is one point of an allocation's history.
type AllocMetricSample struct {
	Time  time.Time     `json:"time"`
	Tasks []AllocSample `json:"tasks"`
	GPUs  []GPUSample   `json:"gpus,omitempty"`
}
