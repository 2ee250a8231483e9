package versions

import (
	"fmt"
	"reflect"
	"sort"
	"testing"

	"pgregory.net/rapid"
)

func TestPlanUpgradesTable(t *testing.T) {
	nodes := []PlanNode{{"a", 1000}, {"b", 1000}, {"c", 1000}, {"d", 1000}}
	cases := []struct {
		name string
		c    Cluster
		up   []string
		want []Batch
	}{
		{
			name: "nothing runs: one batch",
			c:    Cluster{Nodes: nodes},
			up:   []string{"b", "a"},
			want: []Batch{{Nodes: []string{"a", "b"}, Reason: "no service replica or gang runs on these nodes"}},
		},
		{
			name: "a service of 3 with max_parallel 1 takes one node at a time",
			c:    Cluster{Nodes: nodes, Services: []PlanService{{Name: "web", Count: 3, MaxParallel: 1, Healthy: map[string]int{"a": 1, "b": 1, "c": 1}}}},
			up:   []string{"a", "b", "c"},
			want: []Batch{
				{Nodes: []string{"a"}, Reason: "web loses 1 of max_parallel 1"},
				{Nodes: []string{"b"}, Reason: "web loses 1 of max_parallel 1"},
				{Nodes: []string{"c"}, Reason: "web loses 1 of max_parallel 1"},
			},
		},
		{
			name: "a gang is never split",
			c:    Cluster{Nodes: nodes, Gangs: []PlanGang{{Name: "train", Nodes: []string{"a", "c"}}}, Services: []PlanService{{Name: "web", Count: 2, MaxParallel: 1, Healthy: map[string]int{"b": 1, "d": 1}}}},
			up:   []string{"a", "b", "c", "d"},
			want: []Batch{
				{Nodes: []string{"a", "c", "b"}, Reason: "web loses 1 of max_parallel 1; gang train drains whole"},
				{Nodes: []string{"d"}, Reason: "web loses 1 of max_parallel 1"},
			},
		},
		{
			name: "queue guarantees bound the batch",
			c:    Cluster{Nodes: nodes, Guaranteed: 2500},
			up:   []string{"a", "b", "c"},
			want: []Batch{{Nodes: []string{"a"}, Reason: "no service replica or gang runs on these nodes"}, {Nodes: []string{"b"}, Reason: "no service replica or gang runs on these nodes"}, {Nodes: []string{"c"}, Reason: "no service replica or gang runs on these nodes"}},
		},
		{
			name: "a node that breaks a rule alone is forced, with the rule",
			c:    Cluster{Nodes: nodes, Services: []PlanService{{Name: "db", Count: 2, MaxParallel: 0, Healthy: map[string]int{"a": 1, "b": 1}}}},
			up:   []string{"a"},
			want: []Batch{{Nodes: []string{"a"}, Reason: "alone, and still: service db would keep 1 healthy replica(s), below count 2 − max_parallel 0", Forced: true}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := PlanUpgrades(tc.c, tc.up)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("plan:\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// TestPlanUpgradesProperties: on random clusters, every node to upgrade
// is in exactly one batch; no gang is split; every batch not marked
// forced keeps each service at count − max_parallel healthy replicas and
// the queues' guarantees; a forced batch is one gang unit; and the same
// input gives the same plan.
func TestPlanUpgradesProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(1, 10).Draw(t, "nodes")
		var c Cluster
		total := 0
		for i := 0; i < n; i++ {
			cpu := rapid.IntRange(0, 4000).Draw(t, "cpu")
			c.Nodes = append(c.Nodes, PlanNode{Name: fmt.Sprintf("n%d", i), CPU: cpu})
			total += cpu
		}
		name := func(label string) string { return fmt.Sprintf("n%d", rapid.IntRange(0, n-1).Draw(t, label)) }
		for s := rapid.IntRange(0, 4).Draw(t, "services"); s > 0; s-- {
			svc := PlanService{Name: fmt.Sprintf("svc%d", s), Healthy: map[string]int{}}
			svc.Count = rapid.IntRange(1, 6).Draw(t, "count")
			svc.MaxParallel = rapid.IntRange(0, svc.Count).Draw(t, "max_parallel")
			for r := rapid.IntRange(0, svc.Count).Draw(t, "healthy"); r > 0; r-- {
				svc.Healthy[name("replica")]++
			}
			c.Services = append(c.Services, svc)
		}
		for g := rapid.IntRange(0, 2).Draw(t, "gangs"); g > 0; g-- {
			gang := PlanGang{Name: fmt.Sprintf("gang%d", g)}
			for k := rapid.IntRange(1, 3).Draw(t, "gang size"); k > 0; k-- {
				gang.Nodes = append(gang.Nodes, name("gang node"))
			}
			c.Gangs = append(c.Gangs, gang)
		}
		c.Guaranteed = rapid.IntRange(0, total).Draw(t, "guaranteed")
		var up []string
		for _, nd := range c.Nodes {
			if rapid.Bool().Draw(t, "upgrade "+nd.Name) {
				up = append(up, nd.Name)
			}
		}

		plan := PlanUpgrades(c, up)
		if again := PlanUpgrades(c, up); !reflect.DeepEqual(plan, again) {
			t.Fatalf("same input, different plans:\n%+v\n%+v", plan, again)
		}
		seen := map[string]int{}
		for i, b := range plan {
			for _, nd := range b.Nodes {
				if _, dup := seen[nd]; dup {
					t.Fatalf("node %s in two batches: %+v", nd, plan)
				}
				seen[nd] = i
			}
			if !b.Forced {
				if why := violation(c, b.Nodes); why != "" {
					t.Fatalf("batch %d %v breaks a rule: %s", i, b.Nodes, why)
				}
				checkFloors(t, c, b.Nodes)
			}
		}
		var wantNodes, gotNodes []string
		wantNodes = append(wantNodes, up...)
		for nd := range seen {
			gotNodes = append(gotNodes, nd)
		}
		sort.Strings(wantNodes)
		sort.Strings(gotNodes)
		if !reflect.DeepEqual(wantNodes, gotNodes) && !(len(wantNodes) == 0 && len(gotNodes) == 0) {
			t.Fatalf("planned %v, asked %v", gotNodes, wantNodes)
		}
		upgrading := map[string]bool{}
		for _, nd := range up {
			upgrading[nd] = true
		}
		for _, g := range c.Gangs {
			batch := -1
			for _, nd := range g.Nodes {
				if !upgrading[nd] {
					continue
				}
				if batch >= 0 && seen[nd] != batch {
					t.Fatalf("gang %s split over batches %d and %d: %+v", g.Name, batch, seen[nd], plan)
				}
				batch = seen[nd]
			}
		}
	})
}

// checkFloors recomputes the rules without violation(), as a dumb
// reference: healthy replicas left per service, CPU left.
func checkFloors(t *rapid.T, c Cluster, batch []string) {
	in := map[string]bool{}
	for _, n := range batch {
		in[n] = true
	}
	for _, s := range c.Services {
		left, lost := 0, 0
		for node, h := range s.Healthy {
			if in[node] {
				lost += h
			} else {
				left += h
			}
		}
		if lost > 0 && left < s.Count-s.MaxParallel {
			t.Fatalf("batch %v leaves %s with %d healthy, below %d", batch, s.Name, left, s.Count-s.MaxParallel)
		}
	}
	cpu := 0
	for _, n := range c.Nodes {
		if !in[n.Name] {
			cpu += n.CPU
		}
	}
	if c.Guaranteed > 0 && cpu < c.Guaranteed {
		t.Fatalf("batch %v leaves %d millicores, below the guarantees %d", batch, cpu, c.Guaranteed)
	}
}
