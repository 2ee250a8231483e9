package lb

import "github.com/prometheus/client_golang/prometheus"

// Collector exports the manager's per-endpoint series. It registers no
// route: whoever serves /metrics registers it.
//
//	gantry_lb_requests_total{namespace,service,job,group,alloc,endpoint,code}
//	    requests answered, by status class (2xx…5xx), "error" when the
//	    endpoint failed and nothing was retried (TCP: connections, as 2xx)
//	gantry_lb_retries_total{…endpoint labels}       attempts moved elsewhere
//	gantry_lb_request_duration_seconds{…}           time to response headers
//	    (TCP: time to connect), histogram
//	gantry_lb_outstanding_requests{…}               in flight now
//	gantry_lb_endpoint_up{…}                        1 taking requests, 0 draining
//	gantry_lb_no_endpoint_total{namespace,service}  requests with nowhere to go
func (m *Manager) Collector() prometheus.Collector { return collector{m} }

var (
	epLabels    = []string{"namespace", "service", "job", "group", "alloc", "endpoint"}
	descReqs    = prometheus.NewDesc("gantry_lb_requests_total", "Requests (HTTP) or connections (TCP) the load balancer forwarded to an endpoint, by status class; code=\"error\" when the endpoint failed and the request was not retried.", append(epLabels, "code"), nil)
	descRetries = prometheus.NewDesc("gantry_lb_retries_total", "Attempts the load balancer moved from this endpoint to another one (connection refused or broken before an answer).", epLabels, nil)
	descLatency = prometheus.NewDesc("gantry_lb_request_duration_seconds", "Time from forwarding a request until the endpoint's response headers (TCP: until connected).", epLabels, nil)
	descOut     = prometheus.NewDesc("gantry_lb_outstanding_requests", "Requests or connections in flight to the endpoint.", epLabels, nil)
	descUp      = prometheus.NewDesc("gantry_lb_endpoint_up", "1 when the endpoint takes new requests, 0 while it drains.", epLabels, nil)
	descNone    = prometheus.NewDesc("gantry_lb_no_endpoint_total", "Requests that found no healthy endpoint.", []string{"namespace", "service"}, nil)
)

var codeLabels = [6]string{"error", "1xx", "2xx", "3xx", "4xx", "5xx"}

type collector struct{ m *Manager }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descReqs, descRetries, descLatency, descOut, descUp, descNone} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	c.m.mu.Lock()
	type svc struct {
		ns, name string
		p        *pool
	}
	var svcs []svc
	for _, l := range c.m.listeners {
		svcs = append(svcs, svc{l.namespace, l.name, l.pool})
	}
	c.m.mu.Unlock()
	for _, s := range svcs {
		ch <- prometheus.MustNewConstMetric(descNone, prometheus.CounterValue, float64(s.p.noEndpoint.Load()), s.ns, s.name)
		for _, e := range s.p.endpoints() {
			lv := []string{s.ns, s.name, e.job, e.group, e.alloc, e.addr}
			for i, code := range codeLabels {
				if n := e.requests[i].Load(); n > 0 || i == 2 {
					ch <- prometheus.MustNewConstMetric(descReqs, prometheus.CounterValue, float64(n), append(lv, code)...)
				}
			}
			ch <- prometheus.MustNewConstMetric(descRetries, prometheus.CounterValue, float64(e.retries.Load()), lv...)
			cum, n, sum := e.latency.snapshot()
			ch <- prometheus.MustNewConstHistogram(descLatency, n, sum, cum, lv...)
			ch <- prometheus.MustNewConstMetric(descOut, prometheus.GaugeValue, float64(e.outstanding.Load()), lv...)
			up := 1.0
			if e.draining.Load() {
				up = 0
			}
			ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, up, lv...)
		}
	}
}
