package server

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gantryhq/gantry/internal/versions"
)

// metricComponentInfo is one series per node and component, value 1,
// labelled with the version the node reports: a version change on a node
// ends one series and starts another, and drift is more than one version
// label per component.
const metricComponentInfo = "gantry_component_info"

// componentCollector publishes gantry_component_info from the nodes'
// attributes (package versions reads them).
type componentCollector struct {
	s    *Server
	desc *prometheus.Desc
}

func newComponentCollector(s *Server) *componentCollector {
	return &componentCollector{s: s, desc: prometheus.NewDesc(metricComponentInfo,
		"A component's version on a node (value 1): Gantry, OS, kernel, Docker engine and API, containerd, runc, GPU driver, CUDA, QEMU, wasm runtime, as the node reports them.",
		[]string{"node", "component", "version"}, nil)}
}

func (c *componentCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *componentCollector) Collect(ch chan<- prometheus.Metric) {
	for node, comps := range versions.FromNodes(c.s.store.Nodes()) {
		for comp, v := range comps {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, 1, node, comp, v)
		}
	}
}

// handleVersions answers GET /v1/versions: every node's component
// versions, which components drift, and the findings of the cluster's
// version policy (the shipped starting policy until one is applied).
func (s *Server) handleVersions(w http.ResponseWriter, r *http.Request) error {
	inv := versions.FromNodes(s.store.Nodes())
	p, source, err := s.versionPolicy(r.Context())
	if err != nil {
		return err
	}
	etcd := s.etcdVersions(r.Context())
	all := versions.Inventory{}
	for n, m := range inv {
		all[n] = m
	}
	for ep, v := range etcd {
		all[versions.EtcdMember(ep)] = map[string]string{versions.Etcd: v}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"inventory":     inv,
		"etcd":          etcd,
		"drift":         versions.Drifting(inv),
		"findings":      versions.Evaluate(p, all, s.now()),
		"policy_source": source,
	})
	return nil
}

// etcdVersions asks every etcd endpoint the servers use for its version.
func (s *Server) etcdVersions(ctx context.Context) map[string]string {
	out := map[string]string{}
	for _, ep := range s.store.Endpoints() {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := s.store.EndpointStatus(sctx, ep)
		cancel()
		if err == nil {
			out[ep] = st.Version
		}
	}
	return out
}

// versionPolicy is the applied version policy, else the shipped one.
func (s *Server) versionPolicy(ctx context.Context) (*versions.Policy, string, error) {
	data, err := s.store.VersionPolicy(ctx)
	if err != nil {
		return nil, "", err
	}
	if data == nil {
		p, err := versions.DefaultPolicy()
		return p, "default", err
	}
	p, err := versions.ParsePolicy(data)
	return p, "applied", err
}

// handleVersionPolicyRead answers GET /v1/versions/policy.
func (s *Server) handleVersionPolicyRead(w http.ResponseWriter, r *http.Request) error {
	p, source, err := s.versionPolicy(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"policy": p, "source": source})
	return nil
}

// handleVersionPolicyApply answers PUT /v1/versions/policy: a policy
// (JSON) checked whole, then stored.
func (s *Server) handleVersionPolicyApply(w http.ResponseWriter, r *http.Request) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return badRequest("read the version policy: %v", err)
	}
	p, err := versions.ParsePolicy(body)
	if err != nil {
		return badRequest("%v", err)
	}
	data, err := json.Marshal(p)
	if err != nil {
		return err
	}
	rev, err := s.store.PutVersionPolicy(r.Context(), data)
	if err != nil {
		return err
	}
	s.log.Info("version policy applied", "index", rev, "components", len(p.Components))
	writeJSON(w, http.StatusOK, map[string]any{"policy": p, "source": "applied", "index": rev})
	return nil
}
