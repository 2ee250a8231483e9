package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/metrics"
)

func scrapeMetrics(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	fams, err := metrics.ParseText(resp.Body)
	if err != nil {
		t.Fatalf("%s is not Prometheus text: %v", url, err)
	}
	return fams
}

func labelsOf(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// TestMetricsAndGPUFingerprint checks, on this machine (no GPU in CI),
// that the node says why it has no GPUs, that both drivers say what GPU
// isolation they give, that the agent and the server serve /metrics with
// node, allocation and scheduling series, and that the server keeps the
// node's usage history that `gantry node status` draws.
func TestMetricsAndGPUFingerprint(t *testing.T) {
	c := StartDev(t, "--sample-interval", "300ms")
	var n api.Node
	if err := c.GetJSON("/v1/nodes/"+c.NodeID, &n); err != nil {
		t.Fatal(err)
	}
	status := n.Attributes["gpu.status"]
	if len(n.GPUs) == 0 && status != "no NVIDIA driver, 0 GPUs" {
		t.Errorf("gpu.status %q on a node without GPUs", status)
	}
	if !strings.Contains(c.log.String(), "summary=\""+status+"\"") {
		t.Errorf("the agent's log does not say %q", status)
	}
	for _, d := range []string{api.DriverDocker, api.DriverExec} {
		if iso := n.Drivers[d].Isolation; !strings.Contains(iso, "GPUs: ") {
			t.Errorf("%s driver isolation does not say what GPUs get: %q", d, iso)
		}
	}

	spec := WriteSpec(t, "sleep.yaml", `name: sleeper
type: batch
groups:
  - name: g
    tasks:
      - name: t
        driver: exec
        config: {command: /bin/sh, args: [-c, "sleep 30"]}
        resources: {cpu: 100, memory: 32}
`)
	if r := c.Gantry("job", "run", "-d", spec); r.Code != 0 {
		t.Fatalf("job run: %d %s %s", r.Code, r.Stdout, r.Stderr)
	}
	var alloc *api.Allocation
	c.Eventually(30*time.Second, "the task to run", func() bool {
		as := c.Allocs("sleeper")
		if len(as) == 1 && as[0].ClientStatus == api.AllocRunning {
			alloc = as[0]
		}
		return alloc != nil
	})

	agentURL := "http://" + n.HTTPAddr + "/metrics"
	c.Eventually(20*time.Second, "the task's usage in the agent's metrics", func() bool {
		f := scrapeMetrics(t, agentURL)[metrics.AllocMemoryUsed]
		if f == nil {
			return false
		}
		for _, m := range f.Metric {
			l := labelsOf(m)
			if l["alloc"] == alloc.ID && l["job"] == "sleeper" && l["namespace"] == "default" && l["group"] == "g" && l["task"] == "t" {
				return m.GetGauge().GetValue() > 0
			}
		}
		return false
	})
	fams := scrapeMetrics(t, agentURL)
	for _, name := range []string{metrics.NodeCPUUsed, metrics.NodeCPUTotal, metrics.NodeMemoryUsed, metrics.NodeMemoryTotal,
		metrics.NodeDiskUsed, metrics.NodeDiskTotal, metrics.NodeGPUs} {
		f := fams[name]
		if f == nil || len(f.Metric) != 1 || labelsOf(f.Metric[0])["node"] != n.Name {
			t.Errorf("agent metric %s: %v", name, f)
		}
	}
	if f := fams[metrics.NodeGPUs]; f != nil && int(f.Metric[0].GetGauge().GetValue()) != len(n.GPUs) {
		t.Errorf("%s = %v, node has %d GPUs", metrics.NodeGPUs, f.Metric[0].GetGauge().GetValue(), len(n.GPUs))
	}

	srv := scrapeMetrics(t, c.Addr+"/metrics")
	if f := srv[metrics.SchedulingLatency]; f == nil || f.GetType() != dto.MetricType_HISTOGRAM || f.Metric[0].GetHistogram().GetSampleCount() == 0 {
		t.Errorf("%s: %v", metrics.SchedulingLatency, f)
	}
	phases := map[string]uint64{}
	for _, m := range srv[metrics.EvalPhase].GetMetric() {
		phases[labelsOf(m)["phase"]] = m.GetHistogram().GetSampleCount()
	}
	// The view phase is only timed where the leader waits for its view
	// (the same job again, a rebuild, a retry): it is published, perhaps
	// without samples yet.
	if _, ok := phases["view"]; !ok {
		t.Errorf("%s{phase=\"view\"} is not published: %v", metrics.EvalPhase, phases)
	}
	for _, p := range []string{"decide", "commit"} {
		if phases[p] == 0 {
			t.Errorf("%s{phase=%q} has no samples after a job was placed: %v", metrics.EvalPhase, p, phases)
		}
	}
	for _, name := range []string{metrics.EvalQueueDepth, metrics.PlanRejections, metrics.EvalsProcessed, metrics.EvalsOverlapped, metrics.Nodes} {
		if srv[name] == nil {
			t.Errorf("server lacks %s", name)
		}
	}
	for _, m := range srv[metrics.Nodes].GetMetric() {
		if labelsOf(m)["status"] == api.NodeStatusReady && m.GetGauge().GetValue() != 1 {
			t.Errorf("ready nodes %v", m.GetGauge().GetValue())
		}
	}

	var hist api.NodeMetricsResponse
	c.Eventually(20*time.Second, "two usage samples in the server's history", func() bool {
		return c.GetJSON("/v1/nodes/"+c.NodeID+"/metrics", &hist) == nil && len(hist.Samples) >= 2
	})
	last := hist.Samples[len(hist.Samples)-1]
	if last.CPUTotal <= 0 || last.MemoryTotal <= 0 || last.MemoryUsed <= 0 || last.DiskTotal <= 0 {
		t.Errorf("sample %+v", last)
	}
	r := c.Gantry("node", "status", c.NodeID)
	if r.Code != 0 || !strings.Contains(r.Stdout, "Usage (last") || !strings.Contains(r.Stdout, "gpu.status") {
		t.Errorf("node status: %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	c.Gantry("job", "stop", "sleeper")
}
