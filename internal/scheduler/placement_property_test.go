package scheduler_test

import (
	"fmt"
	"math"
	"reflect"
	"sort"
	"testing"

	"pgregory.net/rapid"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/scheduler"
	. "github.com/gantryhq/gantry/internal/scheduler/schedtest"
)

// spreadShares is the reference for spread targets, computed from the
// job alone: even spread gives every value present on a ready node an
// equal share; targets give each listed value its percentage and, when
// they leave a remainder and ready nodes carry other values, those values
// together the rest; shares are normalized to sum to 1. It returns the
// bucket of each value ("" for the other values).
func spreadShares(nodes []*api.Node, targets map[string]int) map[string]float64 {
	shares := map[string]float64{}
	sum := 0
	for v, pct := range targets {
		shares[v] = float64(pct)
		sum += pct
	}
	for _, n := range nodes {
		v, ok := n.Labels["zone"]
		if !ok || n.Status != api.NodeStatusReady || n.Ineligible {
			continue
		}
		switch {
		case targets == nil:
			shares[v] = 1
		case targets[v] == 0 && sum < 100:
			if _, listed := targets[v]; !listed {
				shares[""] = float64(100 - sum)
			}
		}
	}
	total := 0.0
	for _, s := range shares {
		total += s
	}
	for v := range shares {
		shares[v] /= total
	}
	return shares
}

// TestSpreadWithinOneProperty: with a spread (even or with random
// targets) on fleets where every value has room, each value's replicas
// stay within one of its share (share × replicas placed so far) after
// every single placement, whatever the sampling and the cluster's
// algorithm, over a job placed in one plan or grown over several.
func TestSpreadWithinOneProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		cfg := scheduler.Config{
			Algorithm:  rapid.SampledFrom([]string{"", "spread"}).Draw(t, "alg"),
			SampleSize: rapid.SampledFrom([]int{0, 1, 2, -1}).Draw(t, "sample"),
		}
		h := New(cfg)
		zones := []string{"a", "b", "c", "d", "e"}[:rapid.IntRange(2, 5).Draw(t, "zones")]
		for i := rapid.IntRange(len(zones), 30).Draw(t, "nodes"); i > 0; i-- {
			z := zones[i%len(zones)]
			if rapid.Bool().Draw(t, "random-zone") {
				z = rapid.SampledFrom(zones).Draw(t, "zone")
			}
			opts := []NodeOpt{CPU(rapid.SampledFrom([]int{8000, 16000, 32000}).Draw(t, "cpu")), Memory(65536), Label("zone", z)}
			if i > len(zones) && rapid.IntRange(0, 9).Draw(t, "unlabelled") == 0 {
				opts = opts[:2]
			}
			h.AddNodes(Node(fmt.Sprintf("n%02d", i), opts...))
		}
		present := map[string]bool{}
		for _, n := range h.Nodes {
			if v, ok := n.Labels["zone"]; ok {
				present[v] = true
			}
		}
		var targets map[string]int
		if rapid.Bool().Draw(t, "targets") {
			targets = map[string]int{}
			left := 100
			for _, z := range zones {
				if !present[z] || rapid.IntRange(0, 3).Draw(t, "skip-"+z) == 0 {
					continue
				}
				pct := rapid.IntRange(1, max(1, left)).Draw(t, "pct-"+z)
				if left-pct < 0 {
					break
				}
				targets[z] = pct
				left -= pct
			}
			if len(targets) == 0 {
				targets = nil
			}
		}
		jobType := rapid.SampledFrom([]api.JobType{api.JobService, api.JobBatch}).Draw(t, "type")
		shares := spreadShares(h.Nodes, targets)
		bucket := func(n *api.Node) (string, bool) {
			v, ok := n.Labels["zone"]
			if !ok {
				return "", false
			}
			if _, in := shares[v]; in {
				return v, true
			}
			_, other := shares[""]
			return "", other
		}
		byName := map[string]*api.Node{}
		for _, n := range h.Nodes {
			byName[n.Name] = n
		}
		counts := map[string]int{}
		placed := 0
		count := 0
		for round := rapid.IntRange(1, 3).Draw(t, "rounds"); round > 0; round-- {
			count += rapid.IntRange(1, 25).Draw(t, "more")
			job := Job("web", Type(jobType), Group("g", count, Task("t", 100, 64), Spread("${node.labels.zone}", targets)))
			p, err := h.Run(job)
			if err != nil {
				t.Fatal(err)
			}
			if p.Failed != nil {
				t.Fatalf("unplaced with room everywhere: %v", p.Failed["g"])
			}
			for _, a := range p.Placed {
				b, ok := bucket(byName[a.NodeName])
				if !ok {
					t.Fatalf("replica %d on %s, which carries no value of the spread", placed+1, a.NodeName)
				}
				counts[b]++
				placed++
				for v, s := range shares {
					if d := float64(counts[v]) - s*float64(placed); math.Abs(d) > 1+1e-9 {
						t.Fatalf("after %d replicas value %q holds %d, share %.3f (%.2f): off by %.2f (counts %v)",
							placed, v, counts[v], s, s*float64(placed), d, counts)
					}
				}
			}
		}
	})
}

// TestReplicasApartProperty: the replicas of a service's group never
// share a node when, at that step, a feasible node holds none of them —
// whatever the sampling and the cluster's algorithm; batch jobs and jobs
// that ask for binpack may pack. Feasibility is judged independently with
// scheduler.Fit on the node's allocations at that step.
func TestReplicasApartProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		cfg := scheduler.Config{
			Algorithm:  rapid.SampledFrom([]string{"", "spread"}).Draw(t, "alg"),
			SampleSize: rapid.SampledFrom([]int{0, 1, 2, -1}).Draw(t, "sample"),
		}
		h := New(cfg)
		for i := rapid.IntRange(1, 12).Draw(t, "nodes"); i > 0; i-- {
			opts := []NodeOpt{CPU(rapid.SampledFrom([]int{1000, 2000, 4000, 8000}).Draw(t, "cpu")),
				Memory(rapid.SampledFrom([]int{1024, 4096, 16384}).Draw(t, "mem")),
				Label("zone", rapid.SampledFrom([]string{"a", "b"}).Draw(t, "zone"))}
			switch rapid.IntRange(0, 9).Draw(t, "status") {
			case 0:
				opts = append(opts, Status(api.NodeStatusDown))
			case 1:
				opts = append(opts, Ineligible())
			}
			h.AddNodes(Node(fmt.Sprintf("n%02d", i), opts...))
		}
		for j := rapid.IntRange(0, 4).Draw(t, "background"); j > 0; j-- {
			if _, err := h.Run(Job(fmt.Sprintf("bg%d", j), Type(api.JobBatch),
				Group("g", rapid.IntRange(1, 6).Draw(t, "bg-count"), Task("t", rapid.IntRange(100, 1500).Draw(t, "bg-cpu"), 256)))); err != nil {
				t.Fatal(err)
			}
		}
		placement := rapid.SampledFrom([]string{"", "spread", "binpack"}).Draw(t, "placement")
		jobType := rapid.SampledFrom([]api.JobType{api.JobService, api.JobService, api.JobBatch}).Draw(t, "type")
		count := rapid.IntRange(1, 15).Draw(t, "count")
		job := Job("svc", Type(jobType), Placement(placement), Group("g", count,
			Task("t", rapid.IntRange(100, 2000).Draw(t, "cpu"), rapid.IntRange(64, 2048).Draw(t, "mem"))))
		snap := h.Snapshot()
		plan, err := h.Sched.Schedule(snap, h.Request(job), h.Now)
		if err != nil {
			t.Fatal(err)
		}
		if jobType == api.JobBatch || placement == "binpack" {
			return
		}
		onNode := map[string][]*api.Allocation{}
		for _, a := range snap.Allocs {
			onNode[a.NodeID] = append(onNode[a.NodeID], a)
		}
		mine := map[string]int{}
		names := make([]string, 0, len(snap.Nodes))
		byID := map[string]*api.Node{}
		for _, n := range snap.Nodes {
			names = append(names, n.ID)
			byID[n.ID] = n
		}
		sort.Strings(names)
		for step, a := range plan.Placed {
			if mine[a.NodeID] > 0 {
				for _, id := range names {
					n := byID[id]
					if mine[id] > 0 || !n.Schedulable() {
						continue
					}
					c := *a
					c.NodeID, c.NodeName = id, n.Name
					if scheduler.Fit(n, append(append([]*api.Allocation(nil), onNode[id]...), &c)) == nil {
						t.Fatalf("replica %d went to %s, which holds %d of the group, while %s holds none and fits",
							step+1, a.NodeName, mine[a.NodeID], n.Name)
					}
				}
			}
			mine[a.NodeID]++
			onNode[a.NodeID] = append(onNode[a.NodeID], a)
		}
	})
}

// TestGPUIndexFeasibilityProperty: looking at GPU nodes through the GPU
// index (a small sample, so the index decides the candidates even on
// small clusters) never changes whether a GPU replica can be placed:
// against the same state, a one-replica GPU job is placed by the indexed
// engine exactly when it is placed by an engine that scores every node
// (GPUSampleSize −1). The indexed engine's plans are applied, so the
// clusters drift through many states.
func TestGPUIndexFeasibilityProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		sample := rapid.SampledFrom([]int{1, 2, 4}).Draw(t, "gpu-sample")
		alg := rapid.SampledFrom([]string{"", "spread"}).Draw(t, "alg")
		indexed := New(scheduler.Config{Algorithm: alg, GPUSampleSize: sample, DisablePreemption: true})
		full := scheduler.New(scheduler.Config{Algorithm: alg, GPUSampleSize: -1, DisablePreemption: true})
		for i := rapid.IntRange(1, 12).Draw(t, "nodes"); i > 0; i-- {
			indexed.AddNodes(drawNode(t, i))
		}
		for i := rapid.IntRange(1, 25).Draw(t, "jobs"); i > 0; i-- {
			job := Job(fmt.Sprintf("j%d", i), Type(api.JobBatch), Group("g", 1, drawGPUTask(t)))
			if scheduler.Validate(job) != nil {
				continue
			}
			snap := indexed.Snapshot()
			req := indexed.Request(job)
			a, err := indexed.Sched.Schedule(snap, req, indexed.Now)
			if err != nil {
				t.Fatal(err)
			}
			b, err := full.Schedule(snap, req, indexed.Now)
			if err != nil {
				t.Fatal(err)
			}
			if len(a.Placed) != len(b.Placed) {
				t.Fatalf("job %d: indexed placed %d, every node %d (indexed %v, every node %v)",
					i, len(a.Placed), len(b.Placed), a.Failed, b.Failed)
			}
			indexed.Apply(a)
			if err := indexed.Check(); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// TestFreeIndexFeasibilityProperty: looking at nodes through the
// free-cpu index (a small sample, so the index decides the candidates
// even on small clusters: nodes in use tightest first, empty nodes apart)
// never changes whether a replica without GPUs can be placed: against the
// same state, a job is placed by the indexed engine exactly as far as by
// an engine that scores every node (SampleSize −1). The indexed engine's
// plans are applied and some jobs stopped again, so the clusters drift
// through many states, nodes emptying included.
func TestFreeIndexFeasibilityProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		sample := rapid.SampledFrom([]int{1, 2, 4}).Draw(t, "sample")
		alg := rapid.SampledFrom([]string{"", "spread"}).Draw(t, "alg")
		indexed := New(scheduler.Config{Algorithm: alg, SampleSize: sample, DisablePreemption: true})
		full := scheduler.New(scheduler.Config{Algorithm: alg, SampleSize: -1, DisablePreemption: true})
		for i := rapid.IntRange(1, 12).Draw(t, "nodes"); i > 0; i-- {
			indexed.AddNodes(drawNode(t, i))
		}
		var placed []string // jobs placed and not stopped
		for i := rapid.IntRange(1, 25).Draw(t, "jobs"); i > 0; i-- {
			if len(placed) > 0 && rapid.IntRange(0, 3).Draw(t, "stop") == 0 {
				k := rapid.IntRange(0, len(placed)-1).Draw(t, "which")
				for _, a := range indexed.Allocs {
					if a.Job == placed[k] {
						a.DesiredStatus, a.ClientStatus = api.AllocDesiredStop, api.AllocComplete
					}
				}
				placed = append(placed[:k], placed[k+1:]...)
				continue
			}
			typ := rapid.SampledFrom([]api.JobType{api.JobService, api.JobBatch}).Draw(t, "type")
			var opts []TaskOpt
			if rapid.IntRange(0, 3).Draw(t, "port") == 0 {
				opts = append(opts, Port("http", 0))
			}
			task := Task("t", rapid.IntRange(0, 6000).Draw(t, "cpu"), rapid.IntRange(0, 8000).Draw(t, "mem"), opts...)
			job := Job(fmt.Sprintf("j%d", i), Type(typ), Group("g", rapid.IntRange(1, 3).Draw(t, "count"), task))
			if scheduler.Validate(job) != nil {
				continue
			}
			snap := indexed.Snapshot()
			req := indexed.Request(job)
			a, err := indexed.Sched.Schedule(snap, req, indexed.Now)
			if err != nil {
				t.Fatal(err)
			}
			b, err := full.Schedule(snap, req, indexed.Now)
			if err != nil {
				t.Fatal(err)
			}
			if len(a.Placed) != len(b.Placed) {
				t.Fatalf("job %d: indexed placed %d, every node %d (indexed %v, every node %v)",
					i, len(a.Placed), len(b.Placed), a.Failed, b.Failed)
			}
			indexed.Apply(a)
			placed = append(placed, job.Name)
			if err := indexed.Check(); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// drawGPUTask draws a task that asks for GPUs in one of the three forms.
func drawGPUTask(t *rapid.T) GroupOpt {
	var g TaskOpt
	switch rapid.IntRange(0, 2).Draw(t, "form") {
	case 0:
		g = WholeGPUs(rapid.IntRange(1, 8).Draw(t, "count"), rapid.SampledFrom([]string{"", "", "H100*", "*T4|A30"}).Draw(t, "model"))
	case 1:
		g = MIG(rapid.SampledFrom(profiles).Draw(t, "profile"))
	default:
		g = Share(rapid.IntRange(1, 1000).Draw(t, "milli"), rapid.SampledFrom([]int{0, 0, 4096}).Draw(t, "smem"), rapid.IntRange(0, 3).Draw(t, "enforce") == 0)
	}
	return Task("t", rapid.IntRange(0, 3000).Draw(t, "cpu"), rapid.IntRange(0, 4000).Draw(t, "mem"), g)
}

// TestEvolvingClusterExplainsAsSnapshot: planning jobs one after another
// against one evolving Cluster (where failures are explained with the
// remembered reasons of nodes that did not change) gives the same plans,
// explanations included, as planning each against a fresh Cluster built
// from the same nodes and allocations. Every node is scored, so the
// order in which the indexes hold nodes plays no part.
func TestEvolvingClusterExplainsAsSnapshot(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		eng := scheduler.New(scheduler.Config{SampleSize: -1, GPUSampleSize: -1, DisablePreemption: true,
			Algorithm: rapid.SampledFrom([]string{"", "spread"}).Draw(t, "alg")})
		var nodes []*api.Node
		for i := rapid.IntRange(1, 10).Draw(t, "nodes"); i > 0; i-- {
			nodes = append(nodes, drawNode(t, i))
		}
		c := eng.NewCluster(&scheduler.Snapshot{Nodes: nodes})
		var allocs []*api.Allocation
		// A few job shapes, each submitted many times: the same demands
		// fail again after the cluster changed.
		var shapes []*api.Job
		for k := rapid.IntRange(1, 3).Draw(t, "shapes"); k > 0; k-- {
			shapes = append(shapes, drawJob(t, k))
		}
		for i := rapid.IntRange(1, 20).Draw(t, "jobs"); i > 0; i-- {
			shape := *rapid.SampledFrom(shapes).Draw(t, "shape")
			job := &shape
			job.Name = fmt.Sprintf("job%d", i)
			if scheduler.Validate(job) != nil {
				continue
			}
			fresh, err := eng.Schedule(&scheduler.Snapshot{Nodes: nodes, Allocs: allocs}, Request(job), testNow)
			if err != nil {
				t.Fatal(err)
			}
			plan, err := eng.Plan(c, Request(job))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(plan, fresh) {
				t.Fatalf("job %d: evolving cluster planned %v / %v, a fresh one %v / %v",
					i, NodeNames(plan), plan.Failed, NodeNames(fresh), fresh.Failed)
			}
			allocs = append(allocs, plan.Placed...)
		}
	})
}
