package server

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/metrics"
	"github.com/gantryhq/gantry/internal/scheduler"
	"github.com/gantryhq/gantry/internal/state"
)

// QueueReport is a queue's usage, what waits for it, and whether it is
// starved: work waits while its usage is under its guarantee.
type QueueReport struct {
	Status  scheduler.QueueStatus
	Waiting int                 // evaluations pending or blocked
	Pending scheduler.Resources // what the waiting jobs still lack
	Starved [3]bool             // by resource, in the order of QueueDims
}

// QueueDims names the resources of a QueueReport's arrays, in order.
var QueueDims = [3]struct{ Name, Unit string }{{"cpu", "millicores"}, {"memory", "MiB"}, {"gpu", "GPUs"}}

// QueueFigures lists limits in the order of QueueDims.
func QueueFigures(l api.QueueLimits) [3]float64 {
	return [3]float64{float64(l.CPU), float64(l.Memory), l.GPU}
}

// IsStarved reports whether the queue is starved of any resource.
func (q QueueReport) IsStarved() bool { return q.Starved[0] || q.Starved[1] || q.Starved[2] }

// QueueReports measures every queue against what waits for it (the
// gantry_queue_* series and the UI's queue views). Several evaluations of
// one job count its missing replicas once.
func (s *Server) QueueReports() []QueueReport {
	qs := s.queueView()
	byName := map[string]*QueueReport{}
	var out []QueueReport
	for _, st := range qs.Status() {
		out = append(out, QueueReport{Status: st})
	}
	for i := range out {
		byName[out[i].Status.Name] = &out[i]
	}
	counted := map[string]bool{}
	for _, e := range s.store.Evals("", "") {
		if e.Status != api.EvalPending && e.Status != api.EvalBlocked {
			continue
		}
		q := byName[qs.QueueOf(e.Namespace)]
		if q == nil {
			continue
		}
		q.Waiting++
		if !counted[e.JobKey()] {
			counted[e.JobKey()] = true
			q.Pending = q.Pending.Add(s.demand(e))
		}
	}
	for i := range out {
		q := &out[i]
		use, g, pend := QueueFigures(q.Status.Usage), QueueFigures(q.Status.Guarantee), QueueFigures(q.Pending.Limits())
		for d := range QueueDims {
			q.Starved[d] = pend[d] > 0 && use[d] < g[d]
		}
	}
	return out
}

// Series the cluster collector publishes (besides those in
// internal/metrics/names.go that the server already had).
const (
	metricNodeReady       = "gantry_node_ready"
	metricAllocations     = "gantry_allocations"
	metricAllocRestarts   = "gantry_alloc_restarts_total"
	metricAllocReschedule = "gantry_alloc_reschedules"
	metricQueueGuarantee  = "gantry_queue_guarantee"
	metricQueueLimit      = "gantry_queue_limit"
	metricQueueUsage      = "gantry_queue_usage"
	metricQueuePending    = "gantry_queue_pending"
	metricQueueWaiting    = "gantry_queue_waiting_evaluations"
	metricQueueStarved    = "gantry_queue_starved"
	metricEtcdDBSize      = "gantry_etcd_db_size_bytes"
	metricEtcdDBInUse     = "gantry_etcd_db_size_in_use_bytes"
	metricEtcdQuota       = "gantry_etcd_quota_bytes"
)

// clusterCollector publishes, at each scrape, what the alert rules and
// dashboards in deploy/ need from the server's view of the store: node
// readiness, allocations by status, task restarts, queues against their
// guarantees, and the size of etcd's database against its quota. Every
// server publishes them; the rules aggregate with max.
type clusterCollector struct {
	s                                                  *Server
	nodeReady, allocs, restarts, reschedules           *prometheus.Desc
	qGuarantee, qLimit, qUsage, qPending, qWait, qStar *prometheus.Desc
	dbSize, dbInUse, quota                             *prometheus.Desc
}

func newClusterCollector(s *Server) *clusterCollector {
	q := []string{"queue", "resource", "unit"}
	return &clusterCollector{
		s:           s,
		nodeReady:   prometheus.NewDesc(metricNodeReady, "1 when the node is ready, 0 when it is down or initializing.", []string{"node", "id", "status"}, nil),
		allocs:      prometheus.NewDesc(metricAllocations, "Allocations the store keeps, by job and client status.", []string{"namespace", "job", "status"}, nil),
		restarts:    prometheus.NewDesc(metricAllocRestarts, "Restarts in place of each task of a live allocation (tasks that restarted at least once).", metrics.AllocLabels, nil),
		reschedules: prometheus.NewDesc(metricAllocReschedule, "How many replacements led to each live allocation (a failed allocation's replacement counts one more; replacements only).", []string{"namespace", "job", "group", "alloc"}, nil),
		qGuarantee:  prometheus.NewDesc(metricQueueGuarantee, "What the queue is guaranteed.", q, nil),
		qLimit:      prometheus.NewDesc(metricQueueLimit, "The most the queue may hold (only queues with a limit).", q, nil),
		qUsage:      prometheus.NewDesc(metricQueueUsage, "What the queue's live allocations hold.", q, nil),
		qPending:    prometheus.NewDesc(metricQueuePending, "What the queue's waiting jobs still lack.", q, nil),
		qWait:       prometheus.NewDesc(metricQueueWaiting, "Evaluations of the queue's namespaces that wait (pending or blocked).", []string{"queue"}, nil),
		qStar:       prometheus.NewDesc(metricQueueStarved, "1 when work of the queue waits for a resource while its usage of that resource is under its guarantee.", q, nil),
		dbSize:      prometheus.NewDesc(metricEtcdDBSize, "Size of etcd's database file, as the endpoint the server uses reports it.", nil, nil),
		dbInUse:     prometheus.NewDesc(metricEtcdDBInUse, "Part of etcd's database file in use (the rest is freed by defragmentation).", nil, nil),
		quota:       prometheus.NewDesc(metricEtcdQuota, "etcd's backend quota: past it, etcd refuses writes (alarm NOSPACE).", nil, nil),
	}
}

func (c *clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.nodeReady, c.allocs, c.restarts, c.reschedules, c.qGuarantee, c.qLimit, c.qUsage,
		c.qPending, c.qWait, c.qStar, c.dbSize, c.dbInUse, c.quota} {
		ch <- d
	}
}

func (c *clusterCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	gauge := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	for _, n := range s.store.Nodes() {
		v := 0.0
		if n.Status == api.NodeStatusReady {
			v = 1
		}
		gauge(c.nodeReady, v, n.Name, n.ID, n.Status)
	}
	type jobStatus struct{ ns, job, status string }
	counts := map[jobStatus]int{}
	for _, a := range s.store.Allocs(state.AllocFilter{}) {
		counts[jobStatus{a.Namespace, a.Job, a.ClientStatus}]++
		if a.ClientTerminal() {
			continue
		}
		// Only troubled allocations get series: a cluster of 100,000 healthy
		// allocations adds none.
		if a.Reschedules > 0 {
			gauge(c.reschedules, float64(a.Reschedules), a.Namespace, a.Job, a.Group, a.ID)
		}
		for task, ts := range a.TaskStates {
			if ts.Restarts > 0 {
				ch <- prometheus.MustNewConstMetric(c.restarts, prometheus.CounterValue, float64(ts.Restarts), a.Namespace, a.Job, a.Group, a.ID, task)
			}
		}
	}
	for k, n := range counts {
		gauge(c.allocs, float64(n), k.ns, k.job, k.status)
	}
	for _, q := range s.QueueReports() {
		use, g, pend := QueueFigures(q.Status.Usage), QueueFigures(q.Status.Guarantee), QueueFigures(q.Pending.Limits())
		var lim [3]float64
		if q.Status.Limit != nil {
			lim = QueueFigures(*q.Status.Limit)
		}
		for i, d := range QueueDims {
			l := []string{q.Status.Name, d.Name, d.Unit}
			gauge(c.qGuarantee, g[i], l...)
			gauge(c.qUsage, use[i], l...)
			gauge(c.qPending, pend[i], l...)
			if q.Status.Limit != nil {
				gauge(c.qLimit, lim[i], l...)
			}
			v := 0.0
			if q.Starved[i] {
				v = 1
			}
			gauge(c.qStar, v, l...)
		}
		gauge(c.qWait, float64(q.Waiting), q.Status.Name)
	}
	if eps := s.store.Endpoints(); len(eps) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if st, err := s.store.EndpointStatus(ctx, eps[0]); err == nil {
			gauge(c.dbSize, float64(st.DBSize))
			gauge(c.dbInUse, float64(st.DBInUse))
			if st.Quota > 0 {
				gauge(c.quota, float64(st.Quota))
			}
		} else {
			s.log.Debug("etcd status for metrics", "err", err)
		}
	}
}
