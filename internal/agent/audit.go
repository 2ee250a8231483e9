package agent

import (
	"context"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/client"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/audit"
	"github.com/gantryhq/gantry/internal/driver"
)

// The runtime container audit: at start (once registered) and then every
// Config.AuditInterval the agent audits every container of its Docker
// engine, Gantry's and others', with audit.Collector, telling it which
// GPUs and health checks each of Gantry's tasks has. It reports the result
// to the servers (POST /v1/nodes/{id}/audit), which keep each node's latest
// report and publish its changes as events of topic "audit", and it keeps
// the report for the gantry_audit_findings metric (AuditCollector).

// Defaults of the audit.
const (
	DefaultAuditInterval      = time.Minute
	DefaultDockerDaemonConfig = "/etc/docker/daemon.json"
	auditTimeout              = 2 * time.Minute
)

// auditor holds the latest report.
type auditor struct {
	mu     sync.Mutex
	latest *audit.Report
	run    sync.Mutex // one audit at a time: the loop's or one asked for now
}

// dockerEngine is what the audit needs of the docker driver: its client
// (read-only use) and the engine's address.
type dockerEngine interface {
	Client() *client.Client
	Host() string
}

func (a *Agent) auditLoop(ctx context.Context) {
	interval := a.cfg.AuditInterval
	if interval < 0 {
		a.log.Info("container audit disabled (--audit-interval is negative)")
		return
	}
	if interval == 0 {
		interval = DefaultAuditInterval
	}
	eng, ok := a.drivers[api.DriverDocker].(dockerEngine)
	if !ok {
		a.log.Info("no docker driver: container audit off")
		return
	}
	for ctx.Err() == nil {
		a.auditOnce(ctx, eng)
		sleep(ctx, interval)
	}
}

// auditOnce takes one audit, keeps it and reports it.
func (a *Agent) auditOnce(ctx context.Context, eng dockerEngine) {
	ctx, cancel := context.WithTimeout(ctx, auditTimeout)
	defer cancel()
	rep, err := a.takeAudit(ctx, eng)
	if err != nil {
		if ctx.Err() == nil {
			a.log.Warn("container audit failed", "err", err)
		}
		return
	}
	err = a.srv.ReportAudit(ctx, a.nodeID, rep.Compact())
	if err != nil && ctx.Err() == nil {
		a.log.Warn("cannot report the container audit", "err", err)
	}
}

// takeAudit audits every container of the engine now and keeps the
// report as the latest; audits never overlap.
func (a *Agent) takeAudit(ctx context.Context, eng dockerEngine) (audit.Report, error) {
	a.audit.run.Lock()
	defer a.audit.run.Unlock()
	col := audit.Collector{
		Docker: eng.Client(), Node: a.cfg.NodeName,
		Daemon:      a.daemonConfig(eng.Host()),
		Allocations: a.auditAllocations(),
		Host:        eng.Host(),
	}
	rep, err := col.Collect(ctx, time.Now())
	if err != nil {
		return audit.Report{}, err
	}
	a.audit.mu.Lock()
	prev := a.audit.latest
	a.audit.latest = &rep
	a.audit.mu.Unlock()
	added, resolved := diffFailures(prev, &rep)
	a.log.Info("container audit", "containers", rep.Containers, "failing", len(rep.Failures()), "new", len(added), "resolved", len(resolved))
	for _, f := range added {
		a.log.Debug("audit finding", "check", f.CheckID, "severity", f.Severity, "container", f.ContainerName, "namespace", f.Namespace, "job", f.Job, "detail", f.Detail)
	}
	return rep, nil
}

// handleAuditNow audits the node's containers now and answers the report
// as the servers keep it (POST /v1/client/audit): a server asks for it
// when an operator runs `gantry audit --now`, and stores the answer.
func (a *Agent) handleAuditNow(w http.ResponseWriter, r *http.Request) {
	if a.cfg.AuditInterval < 0 {
		writeErr(w, http.StatusConflict, "the container audit is off on node %s (--audit-interval is negative)", a.cfg.NodeName)
		return
	}
	eng, ok := a.drivers[api.DriverDocker].(dockerEngine)
	if !ok {
		writeErr(w, http.StatusNotImplemented, "node %s has no docker driver: it has no containers to audit", a.cfg.NodeName)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), auditTimeout)
	defer cancel()
	rep, err := a.takeAudit(ctx, eng)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, "audit the containers of node %s: %v", a.cfg.NodeName, err)
		return
	}
	writeJSON(w, http.StatusOK, rep.Compact())
}

// AuditReport returns the node's latest audit, or nil before the first.
func (a *Agent) AuditReport() *audit.Report {
	a.audit.mu.Lock()
	defer a.audit.mu.Unlock()
	return a.audit.latest
}

// daemonConfig reads the settings of the engine's daemon.json that its API
// does not report, when the engine is this machine's (a unix socket). A
// missing file means the daemon runs with its built-in defaults; a file
// that cannot be read leaves them unknown, and the checks say so.
func (a *Agent) daemonConfig(host string) *audit.DaemonConfig {
	if !strings.HasPrefix(host, "unix://") {
		return nil
	}
	path := a.cfg.DockerDaemonConfig
	if path == "" {
		path = DefaultDockerDaemonConfig
	}
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return &audit.DaemonConfig{}
	case err != nil:
		a.log.Debug("cannot read the docker daemon's configuration", "path", path, "err", err)
		return nil
	}
	d, err := audit.ParseDaemonConfig(data)
	if err != nil {
		a.log.Warn("the docker daemon's configuration is not valid JSON", "path", path, "err", err)
		return nil
	}
	return d
}

// auditAllocations is what this node runs, by task: the GPUs each task was
// allocated and the health checks the agent runs against it. A task whose
// job is still loading (just after a restart) counts as checked: its
// checks are not known yet, and its label is trusted until the next audit.
func (a *Agent) auditAllocations() audit.Allocations {
	a.mu.Lock()
	runners := make([]*allocRunner, 0, len(a.runners))
	for _, r := range a.runners {
		runners = append(runners, r)
	}
	a.mu.Unlock()
	out := audit.Allocations{}
	for _, r := range runners {
		r.mu.Lock()
		al := r.alloc
		for name, res := range al.Resources {
			ta := audit.TaskAllocation{Checks: 1}
			if res != nil {
				ta.GPUs = driver.GPUVisibleDevices(res.GPU)
			}
			if tr := r.tasks[name]; tr != nil {
				ta.Checks = len(tr.task.Checks)
			}
			out[audit.TaskKey(al.ID, name)] = ta
		}
		for name, tr := range r.tasks {
			if _, ok := al.Resources[name]; !ok {
				out[audit.TaskKey(al.ID, name)] = audit.TaskAllocation{Checks: len(tr.task.Checks)}
			}
		}
		r.mu.Unlock()
	}
	return out
}

// findingKey identifies a failure across audits.
func findingKey(f audit.Finding) string {
	return f.CheckID + "\x00" + f.ContainerID + "\x00" + f.Detail
}

// diffFailures returns the failures of cur that prev did not have, and
// those of prev that cur no longer has.
func diffFailures(prev, cur *audit.Report) (added, resolved []audit.Finding) {
	before, now := map[string]audit.Finding{}, map[string]audit.Finding{}
	if prev != nil {
		for _, f := range prev.Failures() {
			before[findingKey(f)] = f
		}
	}
	for _, f := range cur.Failures() {
		now[findingKey(f)] = f
		if _, ok := before[findingKey(f)]; !ok {
			added = append(added, f)
		}
	}
	for k, f := range before {
		if _, ok := now[k]; !ok {
			resolved = append(resolved, f)
		}
	}
	return added, resolved
}

// findingsDesc describes gantry_audit_findings.
var findingsDesc = prometheus.NewDesc(
	"gantry_audit_findings",
	"Failing container isolation findings (CIS Docker Benchmark v1.6.0) in the node's latest audit, by check id, severity, and the Gantry namespace and job of the container (empty for containers Gantry did not start and for engine findings).",
	[]string{"check", "severity", "namespace", "job"}, nil,
)

// AuditCollector is the prometheus.Collector of gantry_audit_findings: a
// gauge per (check, severity, namespace, job) counting the failures of the
// node's latest audit. It reads the latest report at each scrape, so a
// finding that goes away takes its series with it. Register it on the
// registry that serves /metrics; the agent does not serve metrics itself.
func (a *Agent) AuditCollector() prometheus.Collector { return auditCollector{a} }

type auditCollector struct{ a *Agent }

func (c auditCollector) Describe(ch chan<- *prometheus.Desc) { ch <- findingsDesc }

func (c auditCollector) Collect(ch chan<- prometheus.Metric) {
	rep := c.a.AuditReport()
	if rep == nil {
		return
	}
	type key struct{ check, severity, namespace, job string }
	counts := map[key]int{}
	for _, f := range rep.Failures() {
		counts[key{f.CheckID, string(f.Severity), f.Namespace, f.Job}]++
	}
	for k, n := range counts {
		ch <- prometheus.MustNewConstMetric(findingsDesc, prometheus.GaugeValue, float64(n), k.check, k.severity, k.namespace, k.job)
	}
}
