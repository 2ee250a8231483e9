package metrics

// GPU series, named as NVIDIA's DCGM exporter names them (its default
// counters), so its Grafana dashboard and alert rules apply unchanged.
const (
	DCGMGPUUtil    = "DCGM_FI_DEV_GPU_UTIL"    // GPU utilisation, percent
	DCGMFBUsed     = "DCGM_FI_DEV_FB_USED"     // framebuffer memory used, MiB
	DCGMFBFree     = "DCGM_FI_DEV_FB_FREE"     // framebuffer memory free, MiB
	DCGMPowerUsage = "DCGM_FI_DEV_POWER_USAGE" // power draw, W
	DCGMGPUTemp    = "DCGM_FI_DEV_GPU_TEMP"    // GPU temperature, °C
	DCGMXIDErrors  = "DCGM_FI_DEV_XID_ERRORS"  // value of the last XID error, 0 when none
)

// GPULabels are the labels of every GPU series: DCGM's (gpu, UUID,
// device, modelName, Hostname, pci_bus_id; GPU_I_PROFILE and GPU_I_ID for
// a MIG instance, empty for a whole GPU) and the allocation holding the
// device (empty when none does).
var GPULabels = []string{"gpu", "UUID", "device", "modelName", "Hostname", "pci_bus_id", "GPU_I_PROFILE", "GPU_I_ID",
	"namespace", "job", "group", "alloc"}

// Node series (label node).
const (
	NodeCPUUsed     = "gantry_node_cpu_used_millicores"
	NodeCPUTotal    = "gantry_node_cpu_capacity_millicores"
	NodeMemoryUsed  = "gantry_node_memory_used_bytes"
	NodeMemoryTotal = "gantry_node_memory_capacity_bytes"
	NodeDiskUsed    = "gantry_node_disk_used_bytes"
	NodeDiskTotal   = "gantry_node_disk_capacity_bytes"
	NodeGPUs        = "gantry_node_gpus"
	NodeGPUHealth   = "gantry_node_gpu_unhealthy" // 1 per unhealthy GPU, with its reason
)

// Per-allocation series (labels namespace, job, group, alloc, task).
const (
	AllocCPUUsed    = "gantry_alloc_cpu_used_millicores"
	AllocMemoryUsed = "gantry_alloc_memory_used_bytes"

	// A VM's virtual disks (qemu tasks), counters since the VM started,
	// labelled AllocDiskLabels.
	AllocDiskReadBytes    = "gantry_alloc_disk_read_bytes_total"
	AllocDiskWrittenBytes = "gantry_alloc_disk_written_bytes_total"
	AllocDiskReads        = "gantry_alloc_disk_reads_total"
	AllocDiskWrites       = "gantry_alloc_disk_writes_total"

	// A VM's network interfaces (qemu tasks), counters since the VM
	// started from the guest's side, labelled AllocDiskLabels (the
	// device is the interface).
	AllocNetReceiveBytes    = "gantry_alloc_network_receive_bytes_total"
	AllocNetTransmitBytes   = "gantry_alloc_network_transmit_bytes_total"
	AllocNetReceivePackets  = "gantry_alloc_network_receive_packets_total"
	AllocNetTransmitPackets = "gantry_alloc_network_transmit_packets_total"
)

// AllocLabels are the labels of the per-allocation series.
var AllocLabels = []string{"namespace", "job", "group", "alloc", "task"}

// AllocDiskLabels are the labels of a VM's disk and network series:
// AllocLabels and the disk's or interface's device name.
var AllocDiskLabels = append(append([]string(nil), AllocLabels...), "device")

// Server series.
const (
	SchedulingLatency = "gantry_scheduling_latency_seconds"
	EvalPhase         = "gantry_eval_phase_seconds"
	EvalsOverlapped   = "gantry_evals_overlapped_total"
	EvalQueueDepth    = "gantry_eval_queue_depth"
	PlanRejections    = "gantry_plan_rejections_total"
	EvalsProcessed    = "gantry_evals_processed_total"
	EvalPanics        = "gantry_eval_panics_total"
	Nodes             = "gantry_nodes"

	// Backpressure (the server's overload level and what it changes).
	OverloadLevel       = "gantry_overload_level"
	OverloadPressure    = "gantry_overload_pressure"
	OverloadSparedNodes = "gantry_overload_spared_nodes"
	SubmissionsRefused  = "gantry_submissions_refused_total"
	HeartbeatTTL        = "gantry_heartbeat_ttl_seconds"
)
