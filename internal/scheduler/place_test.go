package scheduler_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/scheduler"
	. "github.com/gantryhq/gantry/internal/scheduler/schedtest"
)

func mustRun(t *testing.T, h *Harness, j *api.Job) *scheduler.Plan {
	t.Helper()
	p, err := h.Run(j)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Check(); err != nil {
		t.Fatalf("over-allocated after plan: %v", err)
	}
	return p
}

func TestPlacesCPUWorkAndExplainsFailure(t *testing.T) {
	h := New(scheduler.Config{})
	h.AddNodes(Nodes(3, "n", CPU(4000), Memory(8192))...)
	p := mustRun(t, h, Job("web", Group("web", 6, Task("srv", 1000, 1024))))
	if len(p.Placed) != 6 || p.Failed != nil {
		t.Fatalf("placed %d, failed %v", len(p.Placed), p.Failed)
	}
	// Replicas of a service spread over nodes (anti-affinity): 2+2+2.
	if got := h.PerNode("default/web"); len(got) != 3 {
		t.Fatalf("service replicas not spread: %v", got)
	}
	p = mustRun(t, h, Job("big", Group("big", 2, Task("srv", 3000, 512))))
	ex := p.Failed["big"]
	if len(p.Placed) != 0 || ex == nil || ex.Unplaced != 2 {
		t.Fatalf("want 0 placed 2 failed, got %d placed, %+v", len(p.Placed), ex)
	}
	if got := ex.String(); got != "0/3 nodes fit: cpu exhausted on 3" {
		t.Fatalf("explanation %q", got)
	}
}

func TestBinpackFillsBeforeSpreading(t *testing.T) {
	h := New(scheduler.Config{})
	h.AddNodes(Nodes(4, "n", CPU(4000), Memory(8192))...)
	for i := 0; i < 4; i++ {
		mustRun(t, h, Job("j"+string(rune('a'+i)), Group("g", 1, Task("t", 1000, 1024))))
	}
	if n := len(h.PerNode("")); n != 1 {
		t.Fatalf("binpack used %d nodes for 4 single replicas that fit one: %v", n, h.PerNode(""))
	}
	s := New(scheduler.Config{Algorithm: api.PlacementSpread})
	s.AddNodes(Nodes(4, "n", CPU(4000), Memory(8192))...)
	for i := 0; i < 4; i++ {
		mustRun(t, s, Job("j"+string(rune('a'+i)), Group("g", 1, Task("t", 1000, 1024))))
	}
	if n := len(s.PerNode("")); n != 4 {
		t.Fatalf("spread used %d nodes: %v", n, s.PerNode(""))
	}
}

func TestConstraintsAndExplanation(t *testing.T) {
	h := New(scheduler.Config{})
	h.AddNodes(Nodes(4, "cpu", Class("cpu"))...)
	h.AddNodes(Nodes(1, "gpu", Class("gpu"), Label("zone", "b"), Attr("kernel.version", "6.1.0"))...)
	p := mustRun(t, h, Job("x", Group("g", 2, Task("t", 100, 100), Constraint("${node.class}", "=", "gpu"), Constraint("${node.attr.kernel.version}", "version", ">= 5.15"))))
	if len(p.Placed) != 2 || p.Placed[0].NodeName != "gpu-0000" || p.Placed[1].NodeName != "gpu-0000" {
		t.Fatalf("placed %v", NodeNames(p))
	}
	// 2nd replica fits the gpu node too (no distinct_hosts): both there.
	p = mustRun(t, h, Job("y", Group("g", 2, Task("t", 100, 100), Constraint("${node.class}", "=", "gpu"), Constraint("", "distinct_hosts", ""))))
	ex := p.Failed["g"]
	if ex == nil || !strings.Contains(ex.String(), "constraint ${node.class} = gpu on 4") || !strings.Contains(ex.String(), "distinct_hosts on 1") {
		t.Fatalf("explanation: %v", ex)
	}
}

func TestInvalidRequest(t *testing.T) {
	h := New(scheduler.Config{})
	h.AddNodes(Node("a"))
	_, err := h.Schedule(Job("x", Group("g", 1, Task("t", 1, 1), Constraint("${node.bogus}", "=", "1"))))
	if !errors.Is(err, scheduler.ErrInvalid) {
		t.Fatalf("want ErrInvalid, got %v", err)
	}
	var ve *scheduler.ValidationError
	if !errors.As(err, &ve) || ve.Field != "groups[0].constraints[0]" {
		t.Fatalf("want located error, got %#v", err)
	}
}
