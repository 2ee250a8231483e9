package agent

import (
	"context"
	"time"

	"github.com/gantryhq/gantry/internal/lb"
	"github.com/prometheus/client_golang/prometheus"
)

// LBConfig turns on the agent's load balancer: a listener on this node for
// every service with an lb block, routing to the healthy replicas in the
// whole cluster (see package lb).
type LBConfig struct {
	Enabled bool
	// Address is the IP the service listeners bind (default 127.0.0.1).
	Address string
	// AccessLog logs one line per request or connection.
	AccessLog bool
	// DrainTimeout bounds how long a stopping allocation's requests in
	// flight through this balancer may take before its tasks get SIGTERM
	// (default 10s).
	DrainTimeout time.Duration
}

// startLB starts the load balancer and its catalog follower when enabled.
func (a *Agent) startLB(ctx context.Context) {
	c := a.cfg.LB
	if !c.Enabled {
		return
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = 10 * time.Second
	}
	a.cfg.LB = c
	log := a.log.With("component", "lb")
	cfg := lb.Config{Address: c.Address, Log: log}
	if c.AccessLog {
		cfg.AccessLog = a.log.With("component", "lb-access")
	}
	m := lb.NewManager(cfg)
	a.lbMu.Lock()
	a.lb = m
	a.lbMu.Unlock()
	// The agent's /metrics carries the load balancer's figures (the UI's
	// services page reads them there).
	if err := a.metrics.Register(m.Collector()); err != nil {
		log.Warn("the load balancer's metrics are not exported", "err", err)
	}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		// The catalog comes from the servers the agent speaks to, with its
		// TLS and token.
		lb.Follow(ctx, a.srv, m, log)
		m.Close()
	}()
}

func (a *Agent) loadBalancer() *lb.Manager {
	a.lbMu.Lock()
	defer a.lbMu.Unlock()
	return a.lb
}

// LBCollector exports the load balancer's per-endpoint metrics, or nil
// when the agent runs none. The agent registers no /metrics route itself.
func (a *Agent) LBCollector() prometheus.Collector {
	if m := a.loadBalancer(); m != nil {
		return m.Collector()
	}
	return nil
}

// drainEndpoints runs before an allocation's tasks are stopped: the load
// balancer sends its endpoints no new requests, and the requests already
// in flight get up to the drain timeout to finish.
func (a *Agent) drainEndpoints(ctx context.Context, allocID string) {
	m := a.loadBalancer()
	if m == nil {
		return
	}
	start := time.Now()
	busy := m.Outstanding(allocID)
	left := m.WaitDrained(ctx, allocID, a.cfg.LB.DrainTimeout)
	switch {
	case left > 0:
		a.log.Warn("drain timed out; stopping with requests in flight", "alloc", allocID[:min(8, len(allocID))],
			"in_flight", left, "timeout", a.cfg.LB.DrainTimeout)
	case busy > 0:
		a.log.Info("drained before stop", "alloc", allocID[:min(8, len(allocID))],
			"requests", busy, "took", time.Since(start).Round(time.Millisecond))
	}
}
