package metrics

import (
	"io"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	dto "github.com/prometheus/client_model/go"
)

// Registry is the set of collectors one process serves at /metrics. It
// starts with the Go runtime and process collectors. Other packages add
// theirs with Register (the audit's findings collector, for one).
type Registry struct {
	reg *prometheus.Registry
}

// NewRegistry returns a registry with the Go runtime and process
// collectors.
func NewRegistry() *Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return &Registry{reg: r}
}

// NewBareRegistry returns a registry without the Go runtime and process
// collectors: for the many simulated nodes of one load-generator process,
// whose process series would all be the same.
func NewBareRegistry() *Registry { return &Registry{reg: prometheus.NewRegistry()} }

// Register adds a collector. It fails when the collector's series clash
// with ones already registered (same name with other labels or help).
func (r *Registry) Register(c prometheus.Collector) error { return r.reg.Register(c) }

// MustRegister adds collectors and panics on a clash: for collectors
// registered once at start.
func (r *Registry) MustRegister(cs ...prometheus.Collector) { r.reg.MustRegister(cs...) }

// Gatherer is the registry as client_golang's gatherer, for tests and
// for serving it elsewhere.
func (r *Registry) Gatherer() prometheus.Gatherer { return r.reg }

// Handler serves the registry in the Prometheus exposition formats.
func (r *Registry) Handler() http.Handler {
	return promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// ParseText parses the Prometheus text exposition format into metric
// families by name: what tests and the GPU check read back.
func ParseText(in io.Reader) (map[string]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(in)
}
