package ui

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
)

// TestBatchJobHasNoRollout (issue 15, defect 6): a finished batch job
// showed "Rollout: 0 of 2 … in progress". Batch jobs have no rollout: the
// page says how many replicas completed instead.
func TestBatchJobHasNoRollout(t *testing.T) {
	job := &api.Job{Name: "report", Namespace: "default", Type: api.JobBatch, SubmitTime: t0,
		Groups: []*api.Group{{Name: "g", Count: 2, Tasks: []*api.Task{{Name: "main", Driver: "exec"}}}}}
	sum := &api.JobSummary{Job: job, Status: api.JobStatusDead, Groups: map[string]*api.GroupSummary{"g": {Desired: 2, Complete: 2}}}
	// What the server computes for it: no live replica on the version.
	p := JobPage{Base: Base{Page: "job", Now: t0}, Summary: sum, Rollout: Rollout{Desired: 2}}
	var b bytes.Buffer
	if err := Render(&b, "job", p); err != nil {
		t.Fatal(err)
	}
	h := b.String()
	for _, bad := range []string{"Rollout", "in progress", "replicas on version"} {
		if strings.Contains(h, bad) {
			t.Errorf("a finished batch job's page says %q", bad)
		}
	}
	if !strings.Contains(h, "2 of 2 replicas complete") {
		t.Errorf("the batch job's page does not say that both replicas completed:\n%s", h)
	}
}

var axisLabel = regexp.MustCompile(`text-anchor="end" fill="[^"]+">([^<]+)</text>`)

// TestChartAxisLabelsDiffer (issue 15, defect 11): an allocation using a
// few millicores drew its CPU axis as "0 cores / 0 cores / 0 cores". The
// axis labels of any chart are distinct and readable.
func TestChartAxisLabelsDiffer(t *testing.T) {
	for _, top := range []float64{0.0004, 0.003, 0.02, 0.25, 1, 3, 2500, 80000} {
		c := Chart{ID: "alloc-cpu", Title: "CPU", Unit: "cores", Series: []Series{{Name: "main", Points: []Point{{t0, top / 2}, {t0.Add(time.Second), top}}}}}
		var labels []string
		for _, m := range axisLabel.FindAllStringSubmatch(string(c.SVG()), -1) {
			if !strings.HasSuffix(m[1], " UTC") {
				labels = append(labels, m[1])
			}
		}
		if len(labels) != 3 {
			t.Fatalf("top %v: axis labels %q, want 3", top, labels)
		}
		seen := map[string]bool{}
		for _, l := range labels {
			if seen[l] {
				t.Errorf("top %v: axis labels repeat: %q", top, labels)
			}
			seen[l] = true
		}
	}
}
