package api

import "time"

// TopicVSphere is the event topic of inventory changes seen in a
// connected vCenter (power on/off, maintenance, vMotion, disconnection).
const TopicVSphere = "vsphere"

// Node attributes the leader sets on a node matched to a vSphere VM by
// BIOS UUID; constraints read them as ${node.vsphere.host} and so on.
const (
	AttrBIOSUUID         = "bios.uuid" // set by the agent from /sys/class/dmi/id/product_uuid
	AttrVSphereVCenter   = "vsphere.vcenter"
	AttrVSphereVM        = "vsphere.vm"
	AttrVSphereHost      = "vsphere.host"
	AttrVSphereCluster   = "vsphere.cluster"
	AttrVSphereDatastore = "vsphere.datastore"
)

// VSphereConnection is a vCenter (or ESXi) connection as the API shows
// it: never with its password.
type VSphereConnection struct {
	Name     string `json:"name"`
	URL      string `json:"url"`
	User     string `json:"user"`
	Insecure bool   `json:"insecure,omitempty"`
	// HasCACert says a CA certificate was given to trust the vCenter's
	// certificate (the PEM itself is not shown either).
	HasCACert          bool      `json:"has_ca_cert,omitempty"`
	DrainOnMaintenance bool      `json:"drain_on_maintenance,omitempty"`
	CreateTime         time.Time `json:"create_time"`
}

// VSphereConnectRequest is the body of PUT /v1/vsphere/connections: the
// one place a password travels, from the CLI to the server.
type VSphereConnectRequest struct {
	Name               string `json:"name"`
	URL                string `json:"url"`
	User               string `json:"user"`
	Password           string `json:"password"`
	CACert             string `json:"ca_cert,omitempty"` // PEM
	Insecure           bool   `json:"insecure,omitempty"`
	DrainOnMaintenance bool   `json:"drain_on_maintenance,omitempty"`
}

// VSphereStatus is one connection's collector state and inventory.
type VSphereStatus struct {
	Connection VSphereConnection `json:"connection"`
	Connected  bool              `json:"connected"`
	// Since is when the collector last connected or, while disconnected,
	// when it lost the vCenter.
	Since     time.Time `json:"since,omitzero"`
	LastError string    `json:"last_error,omitempty"`
	// Retry is when the next connection attempt is due while
	// disconnected.
	Retry time.Time `json:"retry,omitzero"`
	// InventoryTime is when the last inventory update arrived.
	InventoryTime time.Time `json:"inventory_time,omitzero"`
	// FirstInventory is how long the first full inventory took.
	FirstInventory Duration `json:"first_inventory,omitempty"`
	// RoundTime is when the last performance round ended, and
	// RoundDuration how long it took.
	RoundTime     time.Time `json:"round_time,omitzero"`
	RoundDuration Duration  `json:"round_duration,omitempty"`
	Counts        struct {
		Datacenters int `json:"datacenters"`
		Clusters    int `json:"clusters"`
		Hosts       int `json:"hosts"`
		VMs         int `json:"vms"`
		Datastores  int `json:"datastores"`
	} `json:"counts"`
	Datacenters []VSphereDatacenter `json:"datacenters,omitempty"`
	Clusters    []VSphereCluster    `json:"clusters,omitempty"`
	Hosts       []VSphereHost       `json:"hosts,omitempty"`
	VMs         []VSphereVM         `json:"vms,omitempty"`
	Datastores  []VSphereDatastore  `json:"datastores,omitempty"`
	// Conflicts names BIOS UUIDs that match more than one node or VM:
	// those nodes get no vSphere attributes until it is resolved.
	Conflicts []string `json:"conflicts,omitempty"`
}

// VSphereDatacenter is a datacenter of a vCenter.
type VSphereDatacenter struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// VSphereCluster is a compute cluster.
type VSphereCluster struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Datacenter string `json:"datacenter"`
}

// VSphereHost is an ESXi host.
type VSphereHost struct {
	ID              string         `json:"id"` // managed object ID, e.g. host-21
	Name            string         `json:"name"`
	Datacenter      string         `json:"datacenter"`
	Cluster         string         `json:"cluster,omitempty"` // empty for a standalone host
	Vendor          string         `json:"vendor,omitempty"`
	Model           string         `json:"model,omitempty"`
	CPUCores        int            `json:"cpu_cores"`
	CPUMHz          int            `json:"cpu_mhz"`
	MemoryMiB       int64          `json:"memory_mib"`
	Version         string         `json:"version,omitempty"`
	Build           string         `json:"build,omitempty"`
	ConnectionState string         `json:"connection_state"` // connected, disconnected, notResponding
	Maintenance     bool           `json:"maintenance"`
	PowerState      string         `json:"power_state,omitempty"`
	VMs             int            `json:"vms"`
	Latest          *VSphereSample `json:"latest,omitempty"`
}

// VSphereVM is a virtual machine.
type VSphereVM struct {
	ID          string   `json:"id"` // managed object ID, e.g. vm-42
	Name        string   `json:"name"`
	Datacenter  string   `json:"datacenter"`
	Cluster     string   `json:"cluster,omitempty"`
	Host        string   `json:"host"`
	PowerState  string   `json:"power_state"` // poweredOn, poweredOff, suspended
	VCPU        int      `json:"vcpu"`
	MemoryMiB   int      `json:"memory_mib"`
	GuestOS     string   `json:"guest_os,omitempty"`
	ToolsStatus string   `json:"tools_status,omitempty"`
	UUID        string   `json:"uuid,omitempty"` // BIOS UUID
	Datastores  []string `json:"datastores,omitempty"`
	Template    bool     `json:"template,omitempty"`
	// Node is the Gantry node running inside this VM, if one matched.
	Node   string         `json:"node,omitempty"`
	Latest *VSphereSample `json:"latest,omitempty"`
	// Gantry says which allocation runs the VM when it is one of
	// Gantry's own (a qemu task, listed under the connection name
	// "gantry"); nil for a vCenter's VM.
	Gantry *VSphereGantryTask `json:"gantry,omitempty"`
}

// VSphereGantryTask is the allocation and task behind one of Gantry's own
// VMs; its Host is the node's name, NodeID the node's ID.
type VSphereGantryTask struct {
	Namespace string `json:"namespace"`
	Job       string `json:"job"`
	Group     string `json:"group"`
	Alloc     string `json:"alloc"`
	Task      string `json:"task"`
	NodeID    string `json:"node_id"`
}

// VSphereDatastore is a datastore.
type VSphereDatastore struct {
	ID            string  `json:"id"`
	Name          string  `json:"name"`
	Datacenter    string  `json:"datacenter"`
	Type          string  `json:"type,omitempty"`
	CapacityBytes int64   `json:"capacity_bytes"`
	FreeBytes     int64   `json:"free_bytes"`
	UsedPercent   float64 `json:"used_percent"`
}

// VSphereSample is one performance sample of a host or VM (real-time,
// 20 s), or of a datastore's fill.
type VSphereSample struct {
	Time          time.Time `json:"time"`
	CPUUsage      float32   `json:"cpu_usage_percent"`
	CPUReady      float32   `json:"cpu_ready_percent"`
	MemUsage      float32   `json:"memory_usage_percent"`
	BalloonMiB    float32   `json:"memory_ballooned_mib"`
	SwappedMiB    float32   `json:"memory_swapped_mib"`
	DiskLatencyMs float32   `json:"disk_latency_ms"`
	NetKBps       float32   `json:"network_kbps"`
	// DatastoreUsed is a datastore's fill in percent (datastores only).
	DatastoreUsed float32 `json:"datastore_used_percent,omitempty"`
}

// VSphereHistory is the kept history of one entity.
type VSphereHistory struct {
	VCenter string          `json:"vcenter"`
	Kind    string          `json:"kind"` // host, vm, datastore
	ID      string          `json:"id"`
	Name    string          `json:"name"`
	Samples []VSphereSample `json:"samples"`
}

// VSphereChange is one inventory change: the payload of a vsphere event.
type VSphereChange struct {
	VCenter string    `json:"vcenter"`
	Kind    string    `json:"kind"` // vcenter, host, vm, node
	ID      string    `json:"id,omitempty"`
	Name    string    `json:"name"`
	Type    string    `json:"type"` // VMPoweredOff, HostEnteredMaintenance, …
	From    string    `json:"from,omitempty"`
	To      string    `json:"to,omitempty"`
	Message string    `json:"message"`
	Time    time.Time `json:"modify_time"`
}

// Types of vsphere events.
const (
	VSphereVCenterConnected    = "VCenterConnected"
	VSphereVCenterDisconnected = "VCenterDisconnected"
	VSphereVMAdded             = "VMAdded"
	VSphereVMRemoved           = "VMRemoved"
	VSphereVMPoweredOn         = "VMPoweredOn"
	VSphereVMPoweredOff        = "VMPoweredOff"
	VSphereVMSuspended         = "VMSuspended"
	VSphereVMMigrated          = "VMMigrated"
	VSphereHostAdded           = "HostAdded"
	VSphereHostRemoved         = "HostRemoved"
	VSphereHostEnteredMaint    = "HostEnteredMaintenance"
	VSphereHostExitedMaint     = "HostExitedMaintenance"
	VSphereHostDisconnected    = "HostDisconnected"
	VSphereHostConnected       = "HostConnected"
	VSphereNodeMatched         = "NodeMatched"
	VSphereNodeAmbiguous       = "NodeMatchAmbiguous"
	VSphereNodeDrained         = "NodeDrained"
)
