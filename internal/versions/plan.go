package versions

import (
	"fmt"
	"sort"
	"strings"
)

// Cluster is what the upgrade planner needs to know about the cluster: its
// nodes and capacity, the service groups with where their healthy
// replicas run, the running gangs, and the queues' guarantees.
type Cluster struct {
	Nodes    []PlanNode
	Services []PlanService
	Gangs    []PlanGang
	// Guaranteed is the CPU (millicores) the queues' guarantees add up
	// to: the nodes left serving while a batch drains must hold at least
	// this much.
	Guaranteed int
}

// PlanNode is one node: its name and CPU capacity (millicores).
type PlanNode struct {
	Name string
	CPU  int
}

// PlanService is one service group: its count, its update strategy's
// max_parallel, and how many healthy replicas run on each node.
type PlanService struct {
	Name        string // namespace/job.group
	Count       int
	MaxParallel int
	Healthy     map[string]int // node → healthy replicas
}

// PlanGang is a running gang: the nodes its replicas hold.
type PlanGang struct {
	Name  string
	Nodes []string
}

// Batch is a set of nodes to drain and upgrade together, and why they
// may go together (or, when Forced, why even this node alone breaks a
// rule: the operator must accept it).
type Batch struct {
	Nodes  []string `json:"nodes"`
	Reason string   `json:"reason"`
	Forced bool     `json:"forced,omitempty"`
}

// PlanUpgrades orders the nodes to upgrade into batches such that draining
// a batch keeps every service at or above count − max_parallel healthy
// replicas, never splits a running gang (a gang's nodes go in one batch),
// and leaves nodes holding at least the queues' guaranteed CPU. Nodes that
// share a gang form one unit; units are taken in name order and added to
// the current batch while the rules hold, else they start a new one. A
// unit that breaks a rule even alone gets a batch of its own, marked
// Forced, with the rule it breaks. It is pure: the same cluster and nodes
// give the same plan.
func PlanUpgrades(c Cluster, upgrade []string) []Batch {
	want := map[string]bool{}
	for _, n := range upgrade {
		want[n] = true
	}
	units := gangUnits(c, want)
	var out []Batch
	var cur []string
	flush := func() {
		if len(cur) > 0 {
			out = append(out, Batch{Nodes: cur, Reason: reasonFor(c, cur)})
			cur = nil
		}
	}
	for _, u := range units {
		if why := violation(c, u); why != "" {
			flush()
			out = append(out, Batch{Nodes: u, Reason: "alone, and still: " + why, Forced: true})
			continue
		}
		if len(cur) > 0 && violation(c, append(append([]string(nil), cur...), u...)) != "" {
			flush()
		}
		cur = append(cur, u...)
	}
	flush()
	return out
}

// gangUnits groups the nodes to upgrade into units that must drain
// together: nodes joined by a running gang (a gang that reaches a node not
// being upgraded still pulls every node of it that is). Units are sorted,
// and sorted by their first node.
func gangUnits(c Cluster, want map[string]bool) [][]string {
	parent := map[string]string{}
	var find func(string) string
	find = func(x string) string {
		if parent[x] == "" || parent[x] == x {
			parent[x] = x
			return x
		}
		parent[x] = find(parent[x])
		return parent[x]
	}
	for n := range want {
		find(n)
	}
	for _, g := range c.Gangs {
		var first string
		for _, n := range g.Nodes {
			if !want[n] {
				continue
			}
			if first == "" {
				first = n
				continue
			}
			a, b := find(first), find(n)
			if a != b {
				if a < b {
					parent[b] = a
				} else {
					parent[a] = b
				}
			}
		}
	}
	groups := map[string][]string{}
	for n := range want {
		r := find(n)
		groups[r] = append(groups[r], n)
	}
	var out [][]string
	for _, g := range groups {
		sort.Strings(g)
		out = append(out, g)
	}
	sort.Slice(out, func(i, j int) bool { return out[i][0] < out[j][0] })
	return out
}

// violation says which rule draining these nodes together breaks, or "".
func violation(c Cluster, batch []string) string {
	in := map[string]bool{}
	for _, n := range batch {
		in[n] = true
	}
	for _, s := range c.Services {
		total, lost := 0, 0
		for node, h := range s.Healthy {
			total += h
			if in[node] {
				lost += h
			}
		}
		floor := s.Count - max(s.MaxParallel, 0)
		if lost > 0 && total-lost < floor {
			return fmt.Sprintf("service %s would keep %d healthy replica(s), below count %d − max_parallel %d", s.Name, total-lost, s.Count, s.MaxParallel)
		}
	}
	left := 0
	for _, n := range c.Nodes {
		if !in[n.Name] {
			left += n.CPU
		}
	}
	if c.Guaranteed > 0 && left < c.Guaranteed {
		return fmt.Sprintf("the nodes left would hold %d millicores, below the queues' guarantees of %d", left, c.Guaranteed)
	}
	return ""
}

// reasonFor says why a batch is safe.
func reasonFor(c Cluster, batch []string) string {
	in := map[string]bool{}
	for _, n := range batch {
		in[n] = true
	}
	var parts []string
	for _, s := range c.Services {
		lost := 0
		for node, h := range s.Healthy {
			if in[node] {
				lost += h
			}
		}
		if lost > 0 {
			parts = append(parts, fmt.Sprintf("%s loses %d of max_parallel %d", s.Name, lost, s.MaxParallel))
		}
	}
	for _, g := range c.Gangs {
		for _, n := range g.Nodes {
			if in[n] {
				parts = append(parts, "gang "+g.Name+" drains whole")
				break
			}
		}
	}
	if len(parts) == 0 {
		return "no service replica or gang runs on these nodes"
	}
	return strings.Join(parts, "; ")
}
