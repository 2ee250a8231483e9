package server

import (
	"context"
	"runtime/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/metrics"
)

// serverMetrics are the server's own series: how long scheduling takes,
// how many evaluations wait, how many plans the applier turned back, how
// many submissions it refused while overloaded (overload.go).
type serverMetrics struct {
	latency    prometheus.Histogram
	phases     *prometheus.HistogramVec
	rejections *prometheus.CounterVec
	evals      *prometheus.CounterVec
	panics     prometheus.Counter
	refused    prometheus.Counter
	overlapped prometheus.Counter
}

func newServerMetrics(s *Server) *serverMetrics {
	m := &serverMetrics{
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    metrics.SchedulingLatency,
			Help:    "Time the scheduler took to plan the placements of one job, in seconds.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
		phases: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    metrics.EvalPhase,
			Help:    "Time the leader spent in each phase of one evaluation, in seconds: decide (read the job's snapshot, reconcile, schedule), commit (write the plan and the evaluation to etcd), view (wait until this server's view of the store holds the leader's commits where the next evaluation needs them: one of the same job, a rebuild of the scheduler's working cluster, a retry).",
			Buckets: []float64{.0001, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"phase"}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metrics.PlanRejections,
			Help: "Plans the plan applier turned back because the cluster changed under them (reason: recheck, when the latest state no longer fits them; commit, when a node changed before the commit). The evaluation is planned again.",
		}, []string{"reason"}),
		evals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metrics.EvalsProcessed,
			Help: "Evaluations this server processed while it led, by outcome (complete, blocked, failed, error).",
		}, []string{"status"}),
		panics: prometheus.NewCounter(prometheus.CounterOpts{
			Name: metrics.EvalPanics,
			Help: "Evaluations that failed because processing them panicked (a bug in gantry: the log holds the stack).",
		}),
		overlapped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: metrics.EvalsOverlapped,
			Help: "Evaluations the leader decided while the plan of the one before was still being committed, and then committed (the evaluation pipeline).",
		}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: metrics.SubmissionsRefused,
			Help: "Job submissions (register, update, revert) this server answered 429 with a Retry-After because it was overloaded.",
		}),
	}
	for _, r := range []string{"recheck", "commit"} {
		m.rejections.WithLabelValues(r)
	}
	for _, p := range []string{phaseDecide, phaseCommit, phaseView} {
		m.phases.WithLabelValues(p)
	}
	return m
}

func (m *serverMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.latency, m.phases, m.rejections, m.evals, m.panics, m.refused, m.overlapped}
}

// stateCollector publishes, at each scrape, what the server's view of the
// store holds: evaluations waiting by status, nodes by status.
type stateCollector struct {
	s           *Server
	queue, node *prometheus.Desc
}

func newStateCollector(s *Server) *stateCollector {
	return &stateCollector{
		s:     s,
		queue: prometheus.NewDesc(metrics.EvalQueueDepth, "Evaluations waiting to be processed: pending (ready or delayed) and blocked (waiting for capacity).", []string{"status"}, nil),
		node:  prometheus.NewDesc(metrics.Nodes, "Nodes by status.", []string{"status"}, nil),
	}
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.queue; ch <- c.node }

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	q := map[string]int{api.EvalPending: 0, api.EvalBlocked: 0}
	for _, e := range c.s.store.Evals("", "") {
		if _, ok := q[e.Status]; ok {
			q[e.Status]++
		}
	}
	for st, n := range q {
		ch <- prometheus.MustNewConstMetric(c.queue, prometheus.GaugeValue, float64(n), st)
	}
	nodes := map[string]int{api.NodeStatusReady: 0, api.NodeStatusDown: 0, api.NodeStatusInit: 0}
	for _, n := range c.s.store.Nodes() {
		nodes[n.Status]++
	}
	for st, n := range nodes {
		ch <- prometheus.MustNewConstMetric(c.node, prometheus.GaugeValue, float64(n), st)
	}
}

// observeSchedule records one scheduler call.
func (s *Server) observeSchedule(d time.Duration) { s.met.latency.Observe(d.Seconds()) }

// The phases of an evaluation (metrics.EvalPhase).
const (
	phaseDecide = "decide"
	phaseCommit = "commit"
	phaseView   = "view"
)

// observePhase records how long one phase of an evaluation took, from
// start, and returns now as the next phase's start.
func (s *Server) observePhase(phase string, start time.Time) time.Time {
	now := time.Now()
	s.met.phases.WithLabelValues(phase).Observe(now.Sub(start).Seconds())
	return now
}

// labelPhase tags the calling goroutine's CPU samples with the
// evaluation phase it enters ("eval_phase" in a CPU profile: go tool
// pprof -tagfocus eval_phase=commit), on top of ctx's labels.
func labelPhase(ctx context.Context, phase string) {
	pprof.SetGoroutineLabels(pprof.WithLabels(ctx, pprof.Labels("eval_phase", phase)))
}

// planRejected counts a plan the applier turned back.
func (s *Server) planRejected(reason string) { s.met.rejections.WithLabelValues(reason).Inc() }

// evalPanicked counts an evaluation failed by a recovered panic.
func (s *Server) evalPanicked() { s.met.panics.Inc() }

// evalDone counts a processed evaluation by outcome.
func (s *Server) evalDone(status string) { s.met.evals.WithLabelValues(status).Inc() }

// Metrics is the registry the server serves at /metrics; others add their
// collectors to it with Register.
func (s *Server) Metrics() *metrics.Registry { return s.registry }
