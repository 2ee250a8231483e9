package server

import (
	"net/http"

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
// versions, which components drift, and the findings of the starting
// version policy.
func (s *Server) handleVersions(w http.ResponseWriter, r *http.Request) error {
	inv := versions.FromNodes(s.store.Nodes())
	p, err := versions.DefaultPolicy()
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"inventory": inv,
		"drift":     versions.Drifting(inv),
		"findings":  versions.Evaluate(p, inv, s.now()),
	})
	return nil
}
