package scheduler_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/scheduler"
	. "github.com/gantryhq/gantry/internal/scheduler/schedtest"
)

// perZone counts a plan's replicas by the zone label of their node.
func perZone(h *Harness, p *scheduler.Plan) map[string]int {
	zone := map[string]string{}
	for _, n := range h.Nodes {
		zone[n.Name] = n.Labels["zone"]
	}
	out := map[string]int{}
	for _, a := range p.Placed {
		out[zone[a.NodeName]]++
	}
	return out
}

func TestReplicasApartByDefault(t *testing.T) {
	fleet := func(cfg scheduler.Config) *Harness {
		h := New(cfg)
		h.AddNodes(Nodes(3, "a", CPU(4000), Memory(8192), Label("zone", "a"))...)
		h.AddNodes(Nodes(3, "b", CPU(4000), Memory(8192), Label("zone", "b"))...)
		return h
	}
	cases := []struct {
		name  string
		cfg   scheduler.Config
		opts  []JobOpt
		nodes int // distinct nodes the 4 replicas use
		zones bool
	}{
		{"service apart over nodes and zones", scheduler.Config{}, nil, 4, true},
		{"spread algorithm also apart", scheduler.Config{Algorithm: api.PlacementSpread}, nil, 4, true},
		{"placement binpack packs", scheduler.Config{}, []JobOpt{Placement(api.PlacementBinpack)}, 1, false},
		{"batch packs", scheduler.Config{}, []JobOpt{Type(api.JobBatch)}, 1, false},
		{"PackReplicas packs", scheduler.Config{PackReplicas: true}, nil, 1, false},
		{"no apart attributes: nodes only", scheduler.Config{ApartAttributes: []string{}}, nil, 4, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := fleet(c.cfg)
			// Another job first, so that binpack has a node it prefers.
			mustRun(t, h, Job("other", Type(api.JobBatch), Group("g", 1, Task("t", 500, 256))))
			p := mustRun(t, h, Job("web", append(c.opts, Group("g", 4, Task("t", 500, 256)))...))
			if got := len(h.PerNode("default/web")); got != c.nodes {
				t.Fatalf("4 replicas on %d nodes, want %d: %v", got, c.nodes, h.PerNode("default/web"))
			}
			if z := perZone(h, p); c.zones && (z["a"] != 2 || z["b"] != 2) {
				t.Fatalf("zones %v, want 2 and 2", z)
			}
		})
	}
}

func TestApartAttributesConfigured(t *testing.T) {
	if !slices.Contains(scheduler.DefaultApartAttributes, "${node.vsphere.host}") ||
		!slices.Contains(scheduler.DefaultApartAttributes, "${node.labels.zone}") {
		t.Fatalf("default apart attributes %v", scheduler.DefaultApartAttributes)
	}
	// Four VMs on two physical hosts (a label here); an unknown reference
	// in the list is ignored.
	h := New(scheduler.Config{ApartAttributes: []string{"${node.labels.host}", "${node.nonsense}"}})
	h.AddNodes(Nodes(2, "h1-vm", CPU(4000), Memory(8192), Label("host", "h1"))...)
	h.AddNodes(Nodes(2, "h2-vm", CPU(4000), Memory(8192), Label("host", "h2"))...)
	p := mustRun(t, h, Job("web", Group("g", 2, Task("t", 500, 256))))
	if len(p.Placed) != 2 || p.Placed[0].NodeName[:2] == p.Placed[1].NodeName[:2] {
		t.Fatalf("2 replicas on the same physical host: %v", NodeNames(p))
	}
}

func TestSpreadNamesValuesWithoutRoom(t *testing.T) {
	h := New(scheduler.Config{})
	h.AddNodes(Node("a1", CPU(1000), Memory(4096), Label("zone", "a")), Node("b1", CPU(1000), Memory(4096), Label("zone", "b")))
	p := mustRun(t, h, Job("web", Group("g", 3, Task("t", 1000, 256), Spread("${node.labels.zone}", nil))))
	ex := p.Failed["g"]
	if len(p.Placed) != 2 || ex == nil || ex.Unplaced != 1 {
		t.Fatalf("placed %v, failed %v", NodeNames(p), p.Failed)
	}
	if s := ex.String(); !strings.Contains(s, "spread ${node.labels.zone}: no room in a, b on 2") || !strings.Contains(s, "cpu exhausted on 2") {
		t.Fatalf("explanation %q", s)
	}
}

// TestRegretMeasured: with a sample of 2, the tightest nodes on cpu are
// looked at first; the node that is tight on cpu and memory (the best
// fit) has a little more cpu free and is missed. MeasureRegret reports
// it, in (0, 1] of the score range; with every node scored, no sample.
func TestRegretMeasured(t *testing.T) {
	for _, sample := range []int{2, -1} {
		h := New(scheduler.Config{SampleSize: sample, MeasureRegret: true})
		h.AddNodes(Nodes(5, "cpu-tight", CPU(4000), Memory(8192))...)
		h.AddNodes(Node("both-tight", CPU(4000), Memory(8192)))
		h.AddNodes(Nodes(4, "empty", CPU(4000), Memory(8192))...)
		for i := 0; i < 5; i++ {
			mustRun(t, h, Job("fill-cpu-"+string(rune('a'+i)), Type(api.JobBatch), Placement(api.PlacementBinpack),
				Group("g", 1, Task("t", 3000, 64), Constraint("${node.name}", "=", fmt.Sprintf("cpu-tight-%04d", i)))))
		}
		mustRun(t, h, Job("fill-both", Type(api.JobBatch), Group("g", 1, Task("t", 2000, 8000), Constraint("${node.name}", "=", "both-tight"))))
		p := mustRun(t, h, Job("probe", Type(api.JobBatch), Group("g", 1, Task("t", 500, 100))))
		switch {
		case sample < 0 && len(p.Regret) != 0:
			t.Fatalf("every node scored, yet regret samples %v", p.Regret)
		case sample < 0:
			if p.Placed[0].NodeName != "both-tight" {
				t.Fatalf("every node scored: chose %s", p.Placed[0].NodeName)
			}
		case len(p.Regret) != 1 || p.Regret[0].Fraction() <= 0 || p.Regret[0].Fraction() > 1 || p.Regret[0].Apart:
			t.Fatalf("sample 2 chose %s; regret %+v", p.Placed[0].NodeName, p.Regret)
		}
	}
}

// TestPlacementsNameTheirRegistration: every placement records the
// version and the submit time of the job it runs, which agents use to
// tell two registrations under one version number apart.
func TestPlacementsNameTheirRegistration(t *testing.T) {
	h := New(scheduler.Config{})
	h.AddNodes(Nodes(2, "a", CPU(4000), Memory(8192))...)
	job := Job("web", Group("g", 3, Task("t", 500, 256)))
	job.Version, job.SubmitTime = 4, time.Date(2026, 12, 8, 1, 2, 3, 4, time.UTC)
	p := mustRun(t, h, job)
	if len(p.Placed) != 3 {
		t.Fatalf("placed %d, want 3", len(p.Placed))
	}
	for _, a := range p.Placed {
		if a.JobVersion != job.Version || !a.JobSubmitTime.Equal(job.SubmitTime) {
			t.Fatalf("placement runs version %d submitted %v, want %d submitted %v", a.JobVersion, a.JobSubmitTime, job.Version, job.SubmitTime)
		}
	}
}
