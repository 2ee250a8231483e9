package vcsim

import (
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"net/url"
	"sync"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

// Config sizes the simulated inventory: in each of Datacenters
// datacenters, Clusters clusters of HostsPerCluster hosts and Standalone
// standalone hosts; each cluster and each standalone host gets VMs
// virtual machines (vcsim spreads a cluster's VMs over its hosts).
type Config struct {
	Addr            string // host:port to listen on; "" picks a free port on 127.0.0.1
	User, Password  string // the only login accepted
	Datacenters     int
	Clusters        int // per datacenter
	HostsPerCluster int
	Standalone      int // standalone hosts per datacenter
	VMs             int // per cluster and per standalone host
	Datastores      int
	// Plain serves http instead of https.
	Plain bool
}

// Default is vcsim's own default inventory: one datacenter, one cluster
// of three hosts and one standalone host, two VMs in each.
func Default() Config {
	return Config{User: "gantry", Password: "simulated", Datacenters: 1, Clusters: 1, HostsPerCluster: 3, Standalone: 1, VMs: 2, Datastores: 1}
}

// Sim is a running simulator.
type Sim struct {
	Model  *simulator.Model
	Server *simulator.Server
	// URL is the SDK URL without credentials.
	URL string
	// CACert is the PEM of the server's (self-signed) certificate, to
	// pass as --ca-cert; empty when Plain.
	CACert string

	stop, done chan struct{}
	once       sync.Once
}

// notifyHostRuntime makes up for a gap of vcsim v0.52.0: its
// EnterMaintenanceMode and ExitMaintenanceMode tasks (and host
// disconnection) set the host's runtime fields without telling the
// property collectors, so WaitForUpdates never reports them — a real
// vCenter does. Every 200 ms it publishes the runtime fields of hosts
// whose values changed, through the simulator's own update path.
func (s *Sim) notifyHostRuntime() {
	defer close(s.done)
	ctx := s.Model.Service.Context
	type rt struct {
		maint bool
		conn  types.HostSystemConnectionState
	}
	seen := map[types.ManagedObjectReference]rt{}
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		for _, e := range ctx.Map.All("HostSystem") {
			h, ok := e.(*simulator.HostSystem)
			if !ok {
				continue
			}
			ctx.WithLock(h, func() {
				cur := rt{h.Runtime.InMaintenanceMode, h.Runtime.ConnectionState}
				old, known := seen[h.Self]
				seen[h.Self] = cur
				if !known || old == cur {
					return
				}
				ctx.Update(h, []types.PropertyChange{
					{Name: "runtime.inMaintenanceMode", Val: cur.maint},
					{Name: "runtime.connectionState", Val: cur.conn},
				})
			})
		}
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
	}
}

// Start builds the inventory and serves it until Close.
func Start(cfg Config) (*Sim, error) {
	m := simulator.VPX()
	m.Datacenter = cfg.Datacenters
	m.Cluster = cfg.Clusters
	m.ClusterHost = cfg.HostsPerCluster
	m.Host = cfg.Standalone
	m.Datastore = max(cfg.Datastores, 1)
	m.Machine = cfg.VMs
	if err := m.Create(); err != nil {
		return nil, fmt.Errorf("build the simulated inventory: %w", err)
	}
	addr := cfg.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	m.Service.Listen = &url.URL{Host: addr, User: url.UserPassword(cfg.User, cfg.Password)}
	if !cfg.Plain {
		m.Service.TLS = new(tls.Config)
	}
	s := m.Service.NewServer()
	u := *s.URL
	u.User = nil
	sim := &Sim{Model: m, Server: s, URL: u.String(), stop: make(chan struct{}), done: make(chan struct{})}
	go sim.notifyHostRuntime()
	if !cfg.Plain {
		sim.CACert = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw}))
	}
	return sim, nil
}

// Close stops the server and removes the model's files; it may be called
// more than once.
func (s *Sim) Close() {
	s.once.Do(func() {
		close(s.stop)
		<-s.done
		s.Server.Close()
		s.Model.Remove()
	})
}

// SetDatastoreFree sets a datastore's free space, as a real vCenter would
// report it after its VMs grew, and tells the property collectors.
func (s *Sim) SetDatastoreFree(name string, free int64) bool {
	ctx := s.Model.Service.Context
	for _, e := range ctx.Map.All("Datastore") {
		if d, ok := e.(*simulator.Datastore); ok && d.Name == name {
			ctx.WithLock(d, func() {
				ctx.Update(d, []types.PropertyChange{{Name: "summary.freeSpace", Val: free}})
			})
			return true
		}
	}
	return false
}
