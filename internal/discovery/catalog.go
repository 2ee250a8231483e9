package discovery

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"sort"

	"github.com/gantryhq/gantry/internal/api"
)

// Catalog is every published service at one store index.
type Catalog struct {
	Index    int64
	Hash     string // of the services' content: equal hashes, equal catalogs
	Services []*api.ServiceInfo
	byKey    map[string]*api.ServiceInfo
}

// Lookup returns a service by namespace and name.
func (c *Catalog) Lookup(namespace, name string) (*api.ServiceInfo, bool) {
	s, ok := c.byKey[api.JobKey(namespace, name)]
	return s, ok
}

// Wire is the catalog as the API sends it.
func (c *Catalog) Wire() *api.ServiceCatalog {
	return &api.ServiceCatalog{Hash: c.Hash, Index: c.Index, Services: c.Services}
}

// FromWire rebuilds a catalog received from the API.
func FromWire(w *api.ServiceCatalog) *Catalog {
	c := &Catalog{Index: w.Index, Hash: w.Hash, Services: w.Services, byKey: map[string]*api.ServiceInfo{}}
	for _, s := range c.Services {
		c.byKey[api.JobKey(s.Namespace, s.Name)] = s
	}
	return c
}

// Build derives the catalog from jobs, their allocations and the nodes.
// Services of the same name in one namespace, published by several jobs or
// groups, share one entry; its lb block is the first one found in job
// order.
func Build(index int64, jobs []*api.Job, allocs []*api.Allocation, nodes map[string]*api.Node) *Catalog {
	byJob := map[string][]*api.Allocation{}
	for _, a := range allocs {
		byJob[a.JobKey()] = append(byJob[a.JobKey()], a)
	}
	jobs = append([]*api.Job(nil), jobs...)
	sort.Slice(jobs, func(i, j int) bool { return jobs[i].Key() < jobs[j].Key() })
	c := &Catalog{Index: index, byKey: map[string]*api.ServiceInfo{}}
	for _, j := range jobs {
		if j.Stop {
			continue
		}
		for _, g := range j.Groups {
			for _, svc := range g.Services {
				key := api.JobKey(j.Namespace, svc.Name)
				info := c.byKey[key]
				if info == nil {
					info = &api.ServiceInfo{Name: svc.Name, Namespace: j.Namespace, Endpoints: []api.ServiceEndpoint{}}
					c.byKey[key] = info
					c.Services = append(c.Services, info)
				}
				if info.LB == nil && svc.LB != nil {
					lb := *svc.LB
					info.LB = &lb
				}
				if n := len(info.Jobs); n == 0 || info.Jobs[n-1] != j.Name {
					info.Jobs = append(info.Jobs, j.Name)
				}
				task := portTask(g, svc.Port)
				for _, a := range byJob[j.Key()] {
					if a.Group != g.Name || a.DesiredStatus != api.AllocDesiredRun || a.ClientTerminal() {
						continue
					}
					ep, ok := endpoint(a, task, svc.Port, nodes)
					if !ok {
						info.Unhealthy++
						continue
					}
					info.Endpoints = append(info.Endpoints, ep)
				}
			}
		}
	}
	sort.Slice(c.Services, func(i, k int) bool {
		a, b := c.Services[i], c.Services[k]
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
	for _, s := range c.Services {
		sort.Slice(s.Endpoints, func(i, k int) bool {
			a, b := s.Endpoints[i], s.Endpoints[k]
			if a.Job != b.Job {
				return a.Job < b.Job
			}
			if a.Group != b.Group {
				return a.Group < b.Group
			}
			if a.Index != b.Index {
				return a.Index < b.Index
			}
			return a.AllocID < b.AllocID
		})
	}
	c.Hash = hash(c.Services)
	return c
}

// portTask names the task of the group that declares the port.
func portTask(g *api.Group, port string) string {
	for _, t := range g.Tasks {
		for _, p := range t.Config.Ports {
			if p.Name == port {
				return t.Name
			}
		}
	}
	return ""
}

// endpoint returns where a serving allocation publishes the port; ok is
// false when the allocation should not receive traffic.
func endpoint(a *api.Allocation, task, port string, nodes map[string]*api.Node) (api.ServiceEndpoint, bool) {
	if a.ClientStatus != api.AllocRunning || a.Health != api.HealthHealthy {
		return api.ServiceEndpoint{}, false
	}
	n := nodes[a.NodeID]
	if n == nil || n.Status == api.NodeStatusDown {
		return api.ServiceEndpoint{}, false
	}
	r := a.Resources[task]
	if r == nil {
		return api.ServiceEndpoint{}, false
	}
	p, ok := r.Port(port)
	if !ok || p.Host <= 0 {
		return api.ServiceEndpoint{}, false
	}
	return api.ServiceEndpoint{
		AllocID: a.ID, Job: a.Job, Group: a.Group, Index: a.Index, JobVersion: a.JobVersion,
		NodeID: a.NodeID, NodeName: a.NodeName, Address: NodeAddress(n), Port: p.Host,
	}, true
}

// NodeAddress is the address other machines reach a node's task ports
// on: its address, or loopback when it binds every interface.
func NodeAddress(n *api.Node) string {
	switch n.Address {
	case "", "0.0.0.0", "::":
		return "127.0.0.1"
	}
	return n.Address
}

func hash(services []*api.ServiceInfo) string {
	b, _ := json.Marshal(services)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:12])
}
