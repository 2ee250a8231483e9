package ui

import (
	"bytes"
	"fmt"
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

// TestGroupEvals (issue 15, defect 7, the UI's part): a run of retries
// that placed nothing is one row with its count, apart from the
// evaluations that did something; the newest group comes first.
func TestGroupEvals(t *testing.T) {
	var evals []*api.Evaluation
	evals = append(evals, &api.Evaluation{ID: "reg", Namespace: "default", Job: "web", TriggeredBy: api.TriggerJobRegister, Status: api.EvalComplete, Placed: 3, ModifyIndex: 1, CreateTime: t0})
	for i := 0; i < 30; i++ {
		evals = append(evals, &api.Evaluation{ID: fmt.Sprint("retry", i), Namespace: "default", Job: "web", TriggeredBy: api.TriggerRetry, Status: api.EvalComplete,
			ModifyIndex: int64(2 + i), CreateTime: t0.Add(time.Duration(i) * time.Second)})
	}
	evals = append(evals, &api.Evaluation{ID: "fix", Namespace: "default", Job: "web", TriggeredBy: api.TriggerRetry, Status: api.EvalComplete, Placed: 1, ModifyIndex: 40, CreateTime: t0})
	gs := GroupEvals(evals)
	type row struct {
		trigger     string
		count       int
		placed      int
		nothingDone bool
		latest      string
	}
	want := []row{
		{api.TriggerRetry, 1, 1, false, "fix"},
		{api.TriggerRetry, 30, 0, true, "retry29"},
		{api.TriggerJobRegister, 1, 3, false, "reg"},
	}
	if len(gs) != len(want) {
		t.Fatalf("%d groups, want %d: %+v", len(gs), len(want), gs)
	}
	for i, w := range want {
		g := gs[i]
		if got := (row{g.Trigger, g.Count, g.Placed, g.NothingDone, g.Latest.ID}); got != w {
			t.Errorf("group %d: %+v, want %+v", i, got, w)
		}
	}
	if !gs[1].First.Equal(t0) {
		t.Errorf("the retries' group starts %v, want %v", gs[1].First, t0)
	}
}

// Every new page renders, with no inline style or script, and shows its
// key content.
func TestListPagesRender(t *testing.T) {
	n, allocs := testNode()
	base := func(page string) Base { return Base{Page: page, Title: page, Index: 9, Now: t0} }
	ev := &api.Evaluation{ID: "e1", Namespace: "default", Job: "web", TriggeredBy: api.TriggerRetry, Status: api.EvalBlocked, ModifyIndex: 3,
		FailedGroups: map[string]*api.Explanation{"g": {Group: "g", Unplaced: 1, NodesEvaluated: 2, Reasons: []api.ReasonCount{{Reason: "cpu exhausted", Nodes: 2}}}}}
	v0 := uint64(0)
	dep := &api.Deployment{ID: "d1", Namespace: "default", Job: "web", JobVersion: 1, Status: api.DeploymentRunning, CreateTime: t0,
		Groups: map[string]*api.DeploymentGroup{"web": {Desired: 3, DesiredCanaries: 1, HealthyCanaries: 1, Healthy: 1, Placed: 1}}}
	svc := &api.ServiceInfo{Name: "web", Namespace: "default", Jobs: []string{"web"}, LB: &api.ServiceLB{Port: 8000},
		Endpoints: []api.ServiceEndpoint{{AllocID: "a1", Address: "127.0.0.1", Port: 20001, NodeName: "n1"}}}
	pages := map[string]struct {
		data any
		want []string
	}{
		"allocations": {AllocsPage{Base: base("allocations"), Allocs: allocs, Total: 9, Jobs: []Option{{"train", "train"}}, Job: "train"}, []string{`<option value="train" selected>`, `data-alloc-total="`}},
		"evaluations": {EvalsPage{Base: base("evaluations"), Grouped: true, Groups: GroupEvals([]*api.Evaluation{ev}), Matching: 1, Total: 1}, []string{`data-eval-group="web/retry/blocked"`, "cpu exhausted"}},
		"deployments": {DeploymentsPage{Base: base("deployments"), Deployments: []DeploymentView{{D: dep, Groups: []DeploymentGroupView{{"web", dep.Groups["web"]}}, Latest: true, CanWrite: true, Promotable: true, RevertTo: &v0}}},
			[]string{`data-action="promote"`, `data-action="revert" data-version="0"`, "1/1 healthy"}},
		"services": {ServicesPage{Base: base("services"), Services: []ServiceView{{ServiceInfo: svc, LB: &LBFigures{Requests: 12}, ByAddr: map[string]LBEndpoint{"127.0.0.1:20001": {Requests: 12}}}}},
			[]string{`data-endpoint="127.0.0.1:20001"`, `data-lb-requests="12"`, "port 8000"}},
		"eventsPage": {EventsPage{Base: base("events"), Topics: []string{"job"}, Selected: map[string]bool{"job": true}, Key: "web", Events: []EventView{{Index: 5, Topic: "job", Key: "web", Type: "JobRegistered"}}, Last: 5},
			[]string{`href="/ui/events?index=5&amp;key=web&amp;topic=job"`, "JobRegistered", `value="job" checked`}},
		"queues":    {QueuesPage{Base: base("queues"), Queues: []QueueView{{Name: "ml", Dims: []QueueDim{{Name: "cpu"}}}}, Waiting: []QueuedEval{{"ml", ev}}}, []string{`data-queue="ml"`, `data-waiting="web"`}},
		"auditPage": {AuditPage{Base: base("audit"), CanScan: true, Nodes: []AuditNode{{NodeID: "n1", NodeName: "n1"}}}, []string{`id="audit-scan"`, `data-audit-node="n1"`}},
		"topology":  {TopologyPage{Base: base("topology"), Nodes: []TopoNode{BuildTopoNode(n, allocs)}}, []string{`data-topo-node="n1"`, `class="topo-gpu"`, `a href="/ui/allocations/`}},
	}
	for name, p := range pages {
		var b bytes.Buffer
		if err := Render(&b, name, p.data); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		h := b.String()
		if strings.Contains(h, " style=") || strings.Contains(h, "<script") {
			t.Errorf("%s: inline style or script", name)
		}
		for _, w := range p.want {
			if !strings.Contains(h, w) {
				t.Errorf("%s: lacks %q", name, w)
			}
		}
	}
}

// TestReplacedUnhealthyReplicaReadsFailedChecks (issue 15, defect 2): a
// replica replaced because it failed its health checks showed as a green
// "complete" with health "unknown". Its page and the job's allocation
// table say it failed its checks, in the failure style.
func TestReplacedUnhealthyReplicaReadsFailedChecks(t *testing.T) {
	a := &api.Allocation{ID: "0123456789abcdef", Namespace: "default", Job: "web", Group: "web", NodeID: "n1", NodeName: "n1",
		DesiredStatus: api.AllocDesiredStop, DesiredReason: "replaced by job version 2", ClientStatus: api.AllocComplete,
		Health: api.HealthUnhealthy, CreateTime: t0}
	var b bytes.Buffer
	if err := Render(&b, "alloc", AllocPage{Base: Base{Page: "alloc", Now: t0}, Alloc: a}); err != nil {
		t.Fatal(err)
	}
	if h := b.String(); !strings.Contains(h, `<span class="badge bad" data-alloc-status="complete">complete, failed its checks</span>`) {
		t.Errorf("the allocation's page does not show it failed its checks:\n%s", h)
	}
	if got := AllocStatus(a); got.Class != "bad" || !strings.Contains(got.Label, "failed its checks") {
		t.Errorf("AllocStatus = %+v", got)
	}
	a.Health = ""
	if got := AllocStatus(a); got.Class != "ok" || got.Label != api.AllocComplete {
		t.Errorf("a replica stopped while healthy: AllocStatus = %+v, want a plain complete", got)
	}
}
