package schedtest

import (
	"fmt"

	"github.com/gantryhq/gantry/internal/api"
)

// NodeOpt changes a node under construction.
type NodeOpt func(*api.Node)

// Node builds a ready node with 4 cores, 8 GiB of memory, 100 GiB of disk
// and healthy docker and exec drivers, then applies the options. Its ID is
// "id-<name>".
func Node(name string, opts ...NodeOpt) *api.Node {
	n := &api.Node{
		ID: "id-" + name, Name: name, Address: "10.0.0.1", Status: api.NodeStatusReady,
		Resources: api.NodeResources{CPU: 4000, Cores: 4, Memory: 8192, Disk: 102400},
		Drivers: map[string]api.DriverInfo{
			api.DriverDocker: {Detected: true, Healthy: true},
			api.DriverExec:   {Detected: true, Healthy: true},
		},
	}
	for _, o := range opts {
		o(n)
	}
	return n
}

// Nodes builds count nodes named "<prefix>-<i>" (i from 0, zero-padded to
// four digits) with the same options.
func Nodes(count int, prefix string, opts ...NodeOpt) []*api.Node {
	out := make([]*api.Node, count)
	for i := range out {
		out[i] = Node(fmt.Sprintf("%s-%04d", prefix, i), opts...)
	}
	return out
}

// CPU sets the node's millicores.
func CPU(m int) NodeOpt {
	return func(n *api.Node) { n.Resources.CPU = m; n.Resources.Cores = m / 1000 }
}

// Memory sets the node's memory in MiB.
func Memory(mib int) NodeOpt { return func(n *api.Node) { n.Resources.Memory = mib } }

// Disk sets the node's disk in MiB.
func Disk(mib int) NodeOpt { return func(n *api.Node) { n.Resources.Disk = mib } }

// Reserved reserves cpu and memory for the operating system.
func Reserved(cpu, mem int) NodeOpt {
	return func(n *api.Node) { n.Reserved.CPU, n.Reserved.Memory = cpu, mem }
}

// Label sets a label.
func Label(k, v string) NodeOpt {
	return func(n *api.Node) {
		if n.Labels == nil {
			n.Labels = map[string]string{}
		}
		n.Labels[k] = v
	}
}

// Attr sets an attribute.
func Attr(k, v string) NodeOpt {
	return func(n *api.Node) {
		if n.Attributes == nil {
			n.Attributes = map[string]string{}
		}
		n.Attributes[k] = v
	}
}

// Class sets the node class.
func Class(c string) NodeOpt { return func(n *api.Node) { n.Class = c } }

// Pool sets the node pool.
func Pool(p string) NodeOpt { return func(n *api.Node) { n.Pool = p } }

// Status sets the node status.
func Status(s string) NodeOpt { return func(n *api.Node) { n.Status = s } }

// Ineligible marks the node ineligible for new work.
func Ineligible() NodeOpt { return func(n *api.Node) { n.Ineligible = true } }

// PortRange sets the node's dynamic port range.
func PortRange(min, max int) NodeOpt {
	return func(n *api.Node) { n.PortRange = api.PortRange{Min: min, Max: max} }
}

// NoDriver marks a driver as not detected.
func NoDriver(name string) NodeOpt {
	return func(n *api.Node) { n.Drivers[name] = api.DriverInfo{Reason: "not installed"} }
}

// GPUOpt changes a GPU under construction.
type GPUOpt func(i int, g *api.GPUDevice)

// GPUs adds count GPUs of a model with memory MiB, UUIDs
// "<node>-gpu<i>", compute capability 8.0, half on NUMA node 0 and half on
// 1; NVLinked applies to the whole set unless options say otherwise.
func GPUs(count int, model string, memory int, opts ...GPUOpt) NodeOpt {
	return func(n *api.Node) {
		base := len(n.GPUs)
		for i := 0; i < count; i++ {
			g := api.GPUDevice{
				UUID: fmt.Sprintf("%s-gpu%d", n.Name, base+i), Index: base + i, Model: model,
				Memory: memory, ComputeCapability: "8.0", NUMANode: i * 2 / max(count, 1),
			}
			for _, o := range opts {
				o(i, &g)
			}
			n.GPUs = append(n.GPUs, g)
		}
		for i := base; i < base+count; i++ {
			if len(n.GPUs[i].NVLinkPeers) == 1 && n.GPUs[i].NVLinkPeers[0] == linkAllMarker {
				linkAll(n, base, count)
				break
			}
		}
	}
}

const linkAllMarker = "\x00all"

// NVLinked connects every GPU of the set to every other over NVLink.
func NVLinked() GPUOpt {
	return func(_ int, g *api.GPUDevice) { g.NVLinkPeers = []string{linkAllMarker} }
}

func linkAll(n *api.Node, base, count int) {
	for i := base; i < base+count; i++ {
		n.GPUs[i].NVLinkPeers = nil
		for j := base; j < base+count; j++ {
			if i != j {
				n.GPUs[i].NVLinkPeers = append(n.GPUs[i].NVLinkPeers, n.GPUs[j].UUID)
			}
		}
	}
}

// NVLinkPairs connects GPUs 2k and 2k+1 of the node (call after GPUs).
func NVLinkPairs() NodeOpt {
	return func(n *api.Node) {
		for i := 0; i+1 < len(n.GPUs); i += 2 {
			n.GPUs[i].NVLinkPeers = []string{n.GPUs[i+1].UUID}
			n.GPUs[i+1].NVLinkPeers = []string{n.GPUs[i].UUID}
		}
	}
}

// CC sets the compute capability.
func CC(cc string) GPUOpt { return func(_ int, g *api.GPUDevice) { g.ComputeCapability = cc } }

// MIGMode enables MIG; managed lets the agent create instances.
func MIGMode(managed bool) GPUOpt {
	return func(_ int, g *api.GPUDevice) { g.MIGEnabled, g.MIGManaged = true, managed }
}

// Passthrough marks the set as GPUs bound to vfio-pci, which only VMs
// (driver qemu) are given, each in its own IOMMU group from 10 on.
func Passthrough() GPUOpt {
	return func(i int, g *api.GPUDevice) { g.Passthrough, g.IOMMUGroup = true, 10+i }
}

// Enforced marks shares as enforced (MPS).
func Enforced() GPUOpt { return func(_ int, g *api.GPUDevice) { g.SharingEnforced = true } }

// Unhealthy marks the i-th GPU of the set unhealthy.
func Unhealthy(which int) GPUOpt {
	return func(i int, g *api.GPUDevice) {
		if i == which {
			g.Unhealthy, g.HealthReason = true, "XID 79"
		}
	}
}

// Instances gives every GPU of the set these existing MIG instances (UUIDs
// made unique per GPU).
func Instances(ins ...api.MIGInstance) GPUOpt {
	return func(i int, g *api.GPUDevice) {
		for k, in := range ins {
			in.UUID = fmt.Sprintf("MIG-%s-%d", g.UUID, k)
			g.MIGInstances = append(g.MIGInstances, in)
		}
	}
}

// JobOpt changes a job under construction.
type JobOpt func(*api.Job)

// Job builds a service job in the default namespace at the default
// priority.
func Job(name string, opts ...JobOpt) *api.Job {
	j := &api.Job{Name: name, Namespace: api.DefaultNamespace, Type: api.JobService, Priority: api.DefaultPriority, Version: 1}
	for _, o := range opts {
		o(j)
	}
	return j
}

// Priority sets the job priority.
func Priority(p int) JobOpt { return func(j *api.Job) { j.Priority = p } }

// Namespace sets the job namespace.
func Namespace(ns string) JobOpt { return func(j *api.Job) { j.Namespace = ns } }

// Placement sets the job's algorithm (binpack or spread).
func Placement(alg string) JobOpt { return func(j *api.Job) { j.Placement = alg } }

// GroupOpt changes a group under construction.
type GroupOpt func(*api.Group)

// Group adds a group of count replicas.
func Group(name string, count int, opts ...GroupOpt) JobOpt {
	return func(j *api.Job) {
		g := &api.Group{Name: name, Count: count}
		for _, o := range opts {
			o(g)
		}
		j.Groups = append(j.Groups, g)
	}
}

// Gang asks for all-or-nothing placement of at least min replicas.
func Gang(min int) GroupOpt { return func(g *api.Group) { g.Gang = &api.Gang{Min: min} } }

// Constraint adds a constraint.
func Constraint(attr, op, value string) GroupOpt {
	return func(g *api.Group) {
		g.Constraints = append(g.Constraints, api.Constraint{Attribute: attr, Operator: op, Value: value})
	}
}

// Affinity adds an affinity.
func Affinity(attr, op, value string, weight int) GroupOpt {
	return func(g *api.Group) {
		g.Affinities = append(g.Affinities, api.Affinity{Attribute: attr, Operator: op, Value: value, Weight: weight})
	}
}

// Spread adds a spread over attr with optional targets (value → percent).
func Spread(attr string, targets map[string]int) GroupOpt {
	return func(g *api.Group) { g.Spread = append(g.Spread, api.Spread{Attribute: attr, Targets: targets}) }
}

// TaskOpt changes a task under construction.
type TaskOpt func(*api.Task)

// Task adds a docker task with cpu millicores and mem MiB.
func Task(name string, cpu, mem int, opts ...TaskOpt) GroupOpt {
	return func(g *api.Group) {
		t := &api.Task{Name: name, Driver: api.DriverDocker, Config: api.TaskConfig{Image: "app:1"},
			Resources: api.Resources{CPU: cpu, Memory: mem}}
		for _, o := range opts {
			o(t)
		}
		g.Tasks = append(g.Tasks, t)
	}
}

// Driver sets the task's driver.
func Driver(d string) TaskOpt { return func(t *api.Task) { t.Driver = d } }

// DiskMiB sets the task's disk.
func DiskMiB(mib int) TaskOpt { return func(t *api.Task) { t.Resources.Disk = mib } }

// Port adds a named port: static 0 asks for a dynamic host port.
func Port(name string, static int) TaskOpt {
	return func(t *api.Task) { t.Config.Ports = append(t.Config.Ports, api.PortSpec{Name: name, Static: static}) }
}

// WholeGPUs asks for count whole GPUs of a model glob ("" any).
func WholeGPUs(count int, model string) TaskOpt {
	return func(t *api.Task) { t.Resources.GPU = &api.GPURequest{Count: count, Model: model} }
}

// MIG asks for one MIG instance of a profile.
func MIG(profile string) TaskOpt {
	return func(t *api.Task) { t.Resources.GPU = &api.GPURequest{MIG: profile} }
}

// Share asks for milli thousandths of one GPU and memory MiB (0: the same
// fraction of the GPU's memory).
func Share(milli, memory int, enforce bool) TaskOpt {
	return func(t *api.Task) {
		t.Resources.GPU = &api.GPURequest{Share: &api.GPUShare{Milli: milli, Memory: memory, Enforce: enforce}}
	}
}

// GPUReq sets the task's GPU request as given.
func GPUReq(r api.GPURequest) TaskOpt {
	return func(t *api.Task) { t.Resources.GPU = &r }
}
