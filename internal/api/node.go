package api

import "time"

// Node statuses.
const (
	NodeStatusInit  = "initializing"
	NodeStatusReady = "ready"
	NodeStatusDown  = "down"
)

// Node is a machine that runs allocations, as its agent fingerprinted it.
type Node struct {
	ID         string            `json:"id"`
	Name       string            `json:"name"`
	Address    string            `json:"address"`   // IP that task ports bind to and checks dial
	HTTPAddr   string            `json:"http_addr"` // agent endpoint for logs and exec
	Class      string            `json:"class,omitempty"`
	Pool       string            `json:"pool,omitempty"`
	Labels     map[string]string `json:"labels,omitempty"`
	Attributes map[string]string `json:"attributes,omitempty"` // os.name, kernel.version, cpu.cores, driver.docker.version …

	Resources NodeResources         `json:"resources"`
	Reserved  NodeResources         `json:"reserved"`
	PortRange PortRange             `json:"port_range"`
	Drivers   map[string]DriverInfo `json:"drivers"`
	GPUs      []GPUDevice           `json:"gpus,omitempty"`

	Status        string    `json:"status"`
	StatusReason  string    `json:"status_reason,omitempty"`
	StatusChanged time.Time `json:"status_changed,omitzero"` // when Status last changed
	Ineligible    bool      `json:"ineligible,omitempty"`    // no new placements
	Drain         *Drain    `json:"drain,omitempty"`
	LastHeartbeat time.Time `json:"last_heartbeat"`
	RegisterTime  time.Time `json:"register_time"`
	ModifyIndex   int64     `json:"modify_index"`
}

// Schedulable reports whether new work may be placed on the node.
func (n *Node) Schedulable() bool {
	return n.Status == NodeStatusReady && !n.Ineligible && n.Drain == nil
}

// Allocatable is the node's capacity minus what the operator reserved.
func (n *Node) Allocatable() NodeResources {
	return NodeResources{
		CPU:    n.Resources.CPU - n.Reserved.CPU,
		Cores:  n.Resources.Cores,
		Memory: n.Resources.Memory - n.Reserved.Memory,
		Disk:   n.Resources.Disk - n.Reserved.Disk,
	}
}

// NodeResources is capacity: CPU in millicores, Memory and Disk in MiB.
type NodeResources struct {
	CPU    int `json:"cpu"`
	Cores  int `json:"cores,omitempty"`
	Memory int `json:"memory"`
	Disk   int `json:"disk"`
}

// PortRange bounds the host ports the scheduler may assign dynamically.
type PortRange struct {
	Min int `json:"min"`
	Max int `json:"max"`
}

// DefaultPortRange is used when a node reports none.
var DefaultPortRange = PortRange{Min: 20000, Max: 32000}

// DriverInfo is a driver's fingerprint on a node.
type DriverInfo struct {
	Detected  bool   `json:"detected"`
	Healthy   bool   `json:"healthy"`
	Version   string `json:"version,omitempty"`
	Reason    string `json:"reason,omitempty"`    // why it is unhealthy or undetected
	Isolation string `json:"isolation,omitempty"` // what limits and isolation it gives, in words
	// Components are the versions of what the driver runs on, as they
	// report them (docker: docker-api, containerd, runc); the agent
	// publishes each as the node attribute component.<name>.
	Components map[string]string `json:"components,omitempty"`
}

// Drain moves work off a node before a deadline.
type Drain struct {
	Deadline  time.Time `json:"deadline"`
	StartedAt time.Time `json:"started_at"`
}

// GPUDevice is one physical GPU of a node.
type GPUDevice struct {
	UUID              string   `json:"uuid"`
	Index             int      `json:"index"`
	Model             string   `json:"model"`
	Memory            int      `json:"memory"` // MiB
	ComputeCapability string   `json:"compute_capability,omitempty"`
	PCIBusID          string   `json:"pci_bus_id,omitempty"`
	NUMANode          int      `json:"numa_node"`
	NVLinkPeers       []string `json:"nvlink_peers,omitempty"` // UUIDs

	MIGEnabled    bool             `json:"mig_enabled,omitempty"`
	MIGManaged    bool             `json:"mig_managed,omitempty"` // the agent may create and destroy instances
	MIGInstances  []MIGInstance    `json:"mig_instances,omitempty"`
	MIGPlacements map[string][]int `json:"mig_placements,omitempty"` // profile → legal start slots, as the node reports them

	SharingEnforced bool   `json:"sharing_enforced,omitempty"` // an MPS daemon enforces share limits
	Unhealthy       bool   `json:"unhealthy,omitempty"`
	HealthReason    string `json:"health_reason,omitempty"`

	// Passthrough marks a GPU bound to vfio-pci, which the node offers
	// whole to virtual machines (qemu tasks) only, never to containers or
	// processes; its UUID is its PCI address and IOMMUGroup its IOMMU
	// group. NVML-managed GPUs are never passthrough.
	Passthrough bool `json:"passthrough,omitempty"`
	IOMMUGroup  int  `json:"iommu_group,omitempty"`
}

// MIGInstance is a GPU instance (with its compute instance) that exists on
// a MIG-enabled GPU.
type MIGInstance struct {
	UUID    string `json:"uuid"`
	Profile string `json:"profile"`
	Start   int    `json:"start"` // first memory slice
	Size    int    `json:"size"`  // memory slices
}

// EventComponentVersionChanged is the type of the node-topic event that
// the event stream adds to a node update which changes the version of one
// of the node's components (an upgrade, a downgrade, a component that
// appears or goes away): one event per component, its payload a
// ComponentVersionChange, its key the node's ID.
const EventComponentVersionChanged = "ComponentVersionChanged"

// ComponentVersionChange is what a ComponentVersionChanged event says:
// which node, which component (as `gantry version inventory` names it),
// the version before and after ("" when there was none, or is none now).
type ComponentVersionChange struct {
	NodeID    string `json:"node_id"`
	Node      string `json:"node"`
	Component string `json:"component"`
	Old       string `json:"old"`
	New       string `json:"new"`
}
