package versions

import (
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/gantryhq/gantry/internal/api"
)

// attributeComponents maps node attributes (set by the agent's
// fingerprint) to component names.
var attributeComponents = map[string]string{
	"gantry.version":        Gantry,
	"os.release":            OS,
	"kernel.version":        Kernel,
	"driver.docker.version": Docker,
	"component.docker-api":  DockerAPI,
	"component.containerd":  Containerd,
	"component.runc":        Runc,
	"gpu.driver.version":    NVIDIA,
	"gpu.cuda.version":      CUDA,
	"gpu.nvml.version":      NVML,
	"driver.qemu.version":   QEMU,
	"driver.wasm.version":   Wasm,
}

// FromNodes is the inventory the nodes report through their attributes,
// by node name; nodes that are down still count (their last report).
func FromNodes(nodes []*api.Node) Inventory {
	inv := Inventory{}
	for _, n := range nodes {
		inv[n.Name] = OfNode(n)
	}
	return inv
}

// OfNode is one node's component versions, by component, as its
// attributes report them.
func OfNode(n *api.Node) map[string]string {
	m := map[string]string{}
	for attr, comp := range attributeComponents {
		if v := n.Attributes[attr]; v != "" {
			m[comp] = v
		}
	}
	return m
}

// Changes lists the components whose version differs between two reports
// of the same node, sorted by component; a component present in only one
// of them has "" on the other side.
func Changes(old, cur *api.Node) []api.ComponentVersionChange {
	a, b := OfNode(old), OfNode(cur)
	var out []api.ComponentVersionChange
	for _, c := range slices.Sorted(maps.Keys(unionKeys(a, b))) {
		if a[c] != b[c] {
			out = append(out, api.ComponentVersionChange{NodeID: cur.ID, Node: cur.Name, Component: c, Old: a[c], New: b[c]})
		}
	}
	return out
}

func unionKeys(ms ...map[string]string) map[string]bool {
	set := map[string]bool{}
	for _, m := range ms {
		for c := range m {
			set[c] = true
		}
	}
	return set
}

// ClusterFrom builds the planner's view from the cluster's state: node
// CPU, healthy replicas of every running service group by node (with its
// update strategy's max_parallel, 1 when it has none, as a drain moves one
// at a time), the nodes of every running gang, and the queues'
// guaranteed CPU.
func ClusterFrom(nodes []*api.Node, jobs []*api.Job, allocs []*api.Allocation, queues []*api.Queue) Cluster {
	var c Cluster
	names := map[string]string{}
	for _, n := range nodes {
		c.Nodes = append(c.Nodes, PlanNode{Name: n.Name, CPU: n.Resources.CPU})
		names[n.ID] = n.Name
	}
	sort.Slice(c.Nodes, func(i, j int) bool { return c.Nodes[i].Name < c.Nodes[j].Name })
	byGroup := map[string][]*api.Allocation{}
	for _, a := range allocs {
		if a.DesiredStatus == api.AllocDesiredRun && !a.ClientTerminal() {
			k := a.JobKey() + "." + a.Group
			byGroup[k] = append(byGroup[k], a)
		}
	}
	for _, j := range jobs {
		if j.Stop {
			continue
		}
		for _, g := range j.Groups {
			k := j.Key() + "." + g.Name
			live := byGroup[k]
			if g.Gang != nil && len(live) > 0 {
				seen := map[string]bool{}
				gang := PlanGang{Name: k}
				for _, a := range live {
					if n := names[a.NodeID]; n != "" && !seen[n] {
						seen[n] = true
						gang.Nodes = append(gang.Nodes, n)
					}
				}
				sort.Strings(gang.Nodes)
				c.Gangs = append(c.Gangs, gang)
			}
			if j.Type != api.JobService {
				continue
			}
			s := PlanService{Name: k, Count: g.Count, MaxParallel: 1, Healthy: map[string]int{}}
			if g.Update != nil {
				s.MaxParallel = g.Update.MaxParallel
			}
			for _, a := range live {
				if a.ClientStatus == api.AllocRunning && a.Health == api.HealthHealthy {
					s.Healthy[names[a.NodeID]]++
				}
			}
			c.Services = append(c.Services, s)
		}
	}
	sort.Slice(c.Services, func(i, j int) bool { return c.Services[i].Name < c.Services[j].Name })
	sort.Slice(c.Gangs, func(i, j int) bool { return c.Gangs[i].Name < c.Gangs[j].Name })
	for _, q := range queues {
		c.Guaranteed += q.Guarantee.CPU
	}
	return c
}

// EtcdMember is the inventory name of an etcd endpoint, which reports
// only the etcd component; the upgrade planner leaves it out (etcd members
// are upgraded one at a time by their own procedure).
func EtcdMember(endpoint string) string { return "etcd " + endpoint }

// IsEtcdMember reports whether an inventory name is an etcd endpoint.
func IsEtcdMember(name string) bool { return strings.HasPrefix(name, "etcd ") }
