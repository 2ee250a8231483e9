package scheduler_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/scheduler"
	. "github.com/gantryhq/gantry/internal/scheduler/schedtest"
)

func TestGangAllOrNothing(t *testing.T) {
	h := New(scheduler.Config{DisablePreemption: true})
	h.AddNodes(Nodes(4, "g", CPU(64000), Memory(512000), GPUs(8, h100, 81559, NVLinked()))...)
	mustRun(t, h, Job("filler", Group("g", 1, Task("t", 10, 10, WholeGPUs(4, "")))))
	// 4 nodes × 8 GPUs − 4 = 28 free: a gang of 4 × 8 GPUs cannot fit.
	p := mustRun(t, h, Job("train", Group("w", 4, Gang(4), Task("t", 10, 10, WholeGPUs(8, "")))))
	if len(p.Placed) != 0 {
		t.Fatalf("partial gang placed: %d", len(p.Placed))
	}
	ex := p.Failed["w"]
	if ex == nil || ex.Unplaced != 4 || !strings.Contains(ex.String(), "gang min 4 not met: 3 of 4 replicas fit on 3") {
		t.Fatalf("explanation: %v", ex)
	}
	// Nothing stays reserved: a gang of 3 fits.
	p = mustRun(t, h, Job("train3", Group("w", 3, Gang(3), Task("t", 10, 10, WholeGPUs(8, "")))))
	if len(p.Placed) != 3 {
		t.Fatalf("gang of 3: %v", p.Failed)
	}
	// min below count: places what fits once min is met.
	h2 := New(scheduler.Config{DisablePreemption: true})
	h2.AddNodes(Nodes(3, "g", CPU(64000), Memory(512000), GPUs(8, h100, 81559))...)
	p = mustRun(t, h2, Job("t", Group("w", 4, Gang(2), Task("t", 10, 10, WholeGPUs(8, "")))))
	if len(p.Placed) != 3 || p.Failed["w"].Unplaced != 1 {
		t.Fatalf("gang min 2 of 4 on 3 nodes: placed %d", len(p.Placed))
	}
}

func TestPreemptionFewestVictimsLowestPriority(t *testing.T) {
	h := New(scheduler.Config{})
	h.AddNodes(Node("a", CPU(4000), Memory(8192)), Node("b", CPU(4000), Memory(8192)))
	// a: two small low-priority jobs; b: one big job of priority 20.
	mustRun(t, h, Job("lo1", Priority(10), Group("g", 1, Task("t", 2000, 1000)), Placement("binpack")))
	mustRun(t, h, Job("lo2", Priority(10), Group("g", 1, Task("t", 2000, 1000))))
	mustRun(t, h, Job("mid", Priority(20), Group("g", 1, Task("t", 4000, 1000))))
	perNode := h.PerNode("")
	if perNode["a"] != 2 || perNode["b"] != 1 {
		t.Fatalf("setup: %v", perNode)
	}
	p := mustRun(t, h, Job("hi", Priority(80), Group("g", 1, Task("t", 3000, 1000))))
	if len(p.Placed) != 1 || len(p.Preempt) != 1 || p.Placed[0].NodeName != "b" {
		t.Fatalf("want one victim (mid on b), got placed %v preempt %+v", NodeNames(p), p.Preempt)
	}
	if !strings.Contains(p.Preempt[0].Reason, "preempted by default/hi (priority 80)") {
		t.Fatal(p.Preempt[0].Reason)
	}
	// Equal priority never preempts.
	p = mustRun(t, h, Job("peer", Priority(10), Group("g", 1, Task("t", 4000, 1000))))
	if len(p.Preempt) != 0 || p.Failed == nil {
		t.Fatalf("preempted an equal: %+v", p.Preempt)
	}
}

func TestPreemptionRespectsGuaranteesAndReclaims(t *testing.T) {
	h := New(scheduler.Config{})
	h.AddNodes(Nodes(2, "n", CPU(4000), Memory(8192))...)
	h.AddQueues(
		&api.Queue{Name: "research", Weight: 1, Guarantee: api.QueueLimits{CPU: 4000}, Namespaces: []string{"research"}},
		&api.Queue{Name: "prod", Weight: 1, Guarantee: api.QueueLimits{CPU: 4000}, Namespaces: []string{"prod"}},
	)
	// research fills the cluster at high priority: it borrows prod's 4000.
	mustRun(t, h, Job("r", Namespace("research"), Priority(90), Group("g", 4, Task("t", 2000, 100))))
	// prod, at low priority but within its guarantee, reclaims 4000 …
	p := mustRun(t, h, Job("p", Namespace("prod"), Priority(10), Group("g", 2, Task("t", 2000, 100))))
	if len(p.Placed) != 2 || len(p.Preempt) != 2 || !strings.Contains(p.Preempt[0].Reason, "reclaimed for queue prod") {
		t.Fatalf("reclaim: placed %d preempt %+v failed %v", len(p.Placed), p.Preempt, p.Failed)
	}
	reclaimed := map[string]bool{p.Preempt[0].AllocID: true, p.Preempt[1].AllocID: true}
	// … and no more: research is back at its guarantee, so even priority
	// 100 only evicts prod's own lower-priority work.
	p = mustRun(t, h, Job("p2", Namespace("prod"), Priority(100), Group("g", 1, Task("t", 2000, 100))))
	if len(p.Preempt) != 1 || reclaimed[p.Preempt[0].AllocID] {
		t.Fatalf("preempt %+v", p.Preempt)
	}
	for _, a := range h.Allocs {
		if a.ID == p.Preempt[0].AllocID && a.Job != "p" {
			t.Fatalf("broke research's guarantee: evicted %s", a.Name())
		}
	}
}

func TestQueueLimitBlocksPlacement(t *testing.T) {
	h := New(scheduler.Config{})
	h.AddNodes(Nodes(2, "n", CPU(4000), Memory(8192), GPUs(2, "T4", 15360))...)
	h.AddQueues(&api.Queue{Name: "small", Weight: 1, Limit: &api.QueueLimits{GPU: 1.5}, Namespaces: []string{"s"}})
	p := mustRun(t, h, Job("x", Namespace("s"), Group("g", 3, Task("t", 10, 10, Share(500, 0, false)))))
	if len(p.Placed) != 3 {
		t.Fatalf("placed %d", len(p.Placed))
	}
	p = mustRun(t, h, Job("y", Namespace("s"), Group("g", 1, Task("t", 10, 10, Share(500, 0, false)))))
	if len(p.Placed) != 0 || p.Failed == nil || !strings.Contains(p.Failed["g"].String(), "queue small gpu limit 1500, in use 1500") {
		t.Fatalf("limit: %v", p.Failed)
	}
}

func TestQueueOrderDRF(t *testing.T) {
	snap := &scheduler.Snapshot{
		Nodes: Nodes(10, "n", CPU(10000), Memory(10000)),
		Queues: []*api.Queue{
			{Name: "a", Weight: 1, Namespaces: []string{"a"}, Guarantee: api.QueueLimits{CPU: 10000}},
			{Name: "b", Weight: 2, Namespaces: []string{"b"}, Limit: &api.QueueLimits{CPU: 30000}},
		},
	}
	// b already holds 20% of cpu, a nothing.
	snap.Allocs = []*api.Allocation{{ID: "x", Namespace: "b", NodeID: "id-n-0000", ClientStatus: api.AllocRunning,
		Resources: map[string]*api.AllocatedResources{"t": {CPU: 20000, Memory: 100}}}}
	q := scheduler.NewQueues(snap)
	pending := []scheduler.Pending{
		{Key: "b1", Namespace: "b", Priority: 50, Demand: scheduler.Resources{CPU: 5000}, Seq: 1},
		{Key: "b2", Namespace: "b", Priority: 90, Demand: scheduler.Resources{CPU: 5000}, Seq: 2},
		{Key: "a1", Namespace: "a", Priority: 10, Demand: scheduler.Resources{CPU: 5000}, Seq: 3},
		{Key: "a2", Namespace: "a", Priority: 10, Demand: scheduler.Resources{CPU: 10000}, Seq: 4},
		{Key: "d1", Namespace: "other", Priority: 10, Demand: scheduler.Resources{CPU: 1000}, Seq: 5},
		{Key: "b3", Namespace: "b", Priority: 10, Demand: scheduler.Resources{CPU: 5000}, Seq: 6},
	}
	ordered, blocked := q.Order(pending)
	var keys []string
	for _, p := range ordered {
		keys = append(keys, p.Key)
	}
	// a1 is within a's guarantee: first. default (share 0) next. Then a2
	// (a at 5%, weight 1) against b (20%/2 = 10%): a2. b2 before b1 by
	// priority; b3 would pass b's limit of 30000.
	want := "a1 d1 a2 b2"
	if got := strings.Join(keys[:4], " "); got != want {
		t.Fatalf("order %v, want prefix %s", keys, want)
	}
	if len(blocked) != 1 || blocked[0].Key != "b3" || !errors.Is(blocked[0].Err, scheduler.ErrQueueLimit) {
		t.Fatalf("blocked %+v (ordered %v)", blocked, keys)
	}
	if err := q.Admit("b", scheduler.Resources{CPU: 10001}); !errors.Is(err, scheduler.ErrQueueLimit) {
		t.Fatalf("admit: %v", err)
	}
	st := q.Status()
	if len(st) != 3 || st[1].Name != "b" || !st[1].Borrowing || st[1].Share != 0.1 {
		t.Fatalf("status %+v", st)
	}
}

func TestSpreadTargetsAndAffinity(t *testing.T) {
	h := New(scheduler.Config{})
	for _, z := range []string{"a", "b", "c"} {
		h.AddNodes(Nodes(3, "z"+z, CPU(16000), Memory(32000), Label("zone", z), Label("rack", "r-"+z))...)
	}
	p := mustRun(t, h, Job("web", Group("g", 10, Task("t", 100, 100),
		Spread("${node.labels.zone}", map[string]int{"a": 50, "b": 30, "c": 20}))))
	zones := map[string]int{}
	for _, a := range p.Placed {
		zones[a.NodeName[:2]]++
	}
	if zones["za"] != 5 || zones["zb"] != 3 || zones["zc"] != 2 {
		t.Fatalf("spread 50/30/20 of 10: %v", zones)
	}
	p = mustRun(t, h, Job("pref", Group("g", 3, Task("t", 100, 100), Affinity("${node.labels.rack}", "=", "r-c", 100))))
	for _, a := range p.Placed {
		if !strings.HasPrefix(a.NodeName, "zc") {
			t.Fatalf("affinity ignored: %v", NodeNames(p))
		}
	}
	p = mustRun(t, h, Job("even", Group("g", 6, Task("t", 100, 100), Spread("${node.labels.zone}", nil))))
	zones = map[string]int{}
	for _, a := range p.Placed {
		zones[a.NodeName[:2]]++
	}
	if zones["za"] != 2 || zones["zb"] != 2 || zones["zc"] != 2 {
		t.Fatalf("even spread: %v", zones)
	}
}

func TestPorts(t *testing.T) {
	h := New(scheduler.Config{})
	h.AddNodes(Node("a", PortRange(30000, 30002)), Node("b", PortRange(30000, 30002)))
	p := mustRun(t, h, Job("x", Group("g", 2, Task("t", 10, 10, Port("http", 8080), Port("dyn", 0)))))
	if len(p.Placed) != 2 || p.Placed[0].NodeName == p.Placed[1].NodeName {
		t.Fatalf("static port 8080 twice on one node: %v", NodeNames(p))
	}
	dyn, _ := p.Placed[0].Resources["t"].Port("dyn")
	if dyn.Host < 30000 || dyn.Host > 30002 || dyn.To != dyn.Host {
		t.Fatalf("dynamic port %+v", dyn)
	}
	p = mustRun(t, h, Job("y", Group("g", 1, Task("t", 10, 10, Port("http", 8080)))))
	if p.Failed == nil || p.Failed["g"].String() != "0/2 nodes fit: port 8080 in use on 2" {
		t.Fatalf("%v", p.Failed)
	}
	p = mustRun(t, h, Job("z", Group("g", 1, Task("t", 10, 10, Port("a", 0), Port("b", 0), Port("c", 0)))))
	if p.Failed == nil || p.Failed["g"].String() != "0/2 nodes fit: dynamic ports exhausted on 2" {
		t.Fatalf("%v", p.Failed)
	}
}

func TestNodeAndDriverFilters(t *testing.T) {
	h := New(scheduler.Config{})
	h.AddNodes(Node("down", Status(api.NodeStatusDown)), Node("off", Ineligible()), Node("nodock", NoDriver(api.DriverDocker)))
	p := mustRun(t, h, Job("x", Group("g", 1, Task("t", 10, 10))))
	want := "0/3 nodes fit: driver docker unavailable on 1, node ineligible on 1, node not ready on 1"
	if p.Failed == nil || p.Failed["g"].String() != want {
		t.Fatalf("%v", p.Failed)
	}
	p = mustRun(t, h, Job("y", Group("g", 1, Task("t", 10, 10, Driver(api.DriverExec)))))
	if len(p.Placed) != 1 || p.Placed[0].NodeName != "nodock" {
		t.Fatalf("%v", p.Failed)
	}
}

func TestConstraintOperators(t *testing.T) {
	n := Node("n", Label("zone", "eu-1"), Attr("docker.version", "24.0.7"), Attr("gpu.models", "H100,A100"), Attr("cores", "64"), Class("gpu"), Pool("p1"),
		Attr("vsphere.host", "esx-7"))
	cases := []struct {
		attr, op, val string
		ok            bool
	}{
		{"${node.labels.zone}", "=", "eu-1", true},
		{"${node.labels.zone}", "!=", "eu-1", false},
		{"${node.labels.missing}", "!=", "x", true},
		{"${node.labels.zone}", "regexp", "^eu-", true},
		{"${node.attr.docker.version}", "version", ">= 20.10, < 25", true},
		{"${node.attr.docker.version}", "semver", "~> 24.1", false},
		{"${node.attr.gpu.models}", "set_contains", "H100,A100", true},
		{"${node.attr.gpu.models}", "set_contains", "H100,L4", false},
		{"${node.attr.gpu.models}", "set_contains_any", "L4,A100", true},
		{"${node.attr.cores}", ">", "32", true},
		{"${node.attr.cores}", "<=", "8", false},
		{"${node.labels.rack}", "is_not_set", "", true},
		{"${node.labels.zone}", "is_set", "", true},
		{"${node.class}", "=", "gpu", true},
		{"${node.pool}", "=", "p1", true},
		{"${node.name}", "=", "n", true},
		{"${node.id}", "=", "id-n", true},
		{"${node.vsphere.host}", "=", "esx-7", true},
		{"${node.vsphere.host}", "!=", "esx-7", false},
		{"${node.vsphere.cluster}", "is_not_set", "", true},
	}
	for _, c := range cases {
		h := New(scheduler.Config{})
		h.AddNodes(n)
		p := mustRun(t, h, Job("x", Group("g", 1, Task("t", 1, 1), Constraint(c.attr, c.op, c.val))))
		if got := len(p.Placed) == 1; got != c.ok {
			t.Errorf("%s %s %q: placed %v, want %v", c.attr, c.op, c.val, got, c.ok)
		}
	}
}

func TestFitCatchesEveryDimension(t *testing.T) {
	n := Node("n", CPU(1000), Memory(1000), GPUs(1, h100, 81559), GPUs(1, h100, 81559, MIGMode(true)))
	alloc := func(id string, r *api.AllocatedResources) *api.Allocation {
		return &api.Allocation{ID: id, NodeID: n.ID, ClientStatus: api.AllocRunning, Resources: map[string]*api.AllocatedResources{"t": r}}
	}
	cases := map[string][]*api.Allocation{
		"cpu over": {alloc("a", &api.AllocatedResources{CPU: 600}), alloc("b", &api.AllocatedResources{CPU: 600})},
		"port twice": {alloc("a", &api.AllocatedResources{Ports: []api.AllocatedPort{{Host: 80}}}),
			alloc("b", &api.AllocatedResources{Ports: []api.AllocatedPort{{Host: 80}}})},
		"whole twice": {alloc("a", &api.AllocatedResources{GPU: &api.AllocatedGPU{Devices: []string{"n-gpu0"}}}),
			alloc("b", &api.AllocatedResources{GPU: &api.AllocatedGPU{Devices: []string{"n-gpu0"}}})},
		"mixed forms": {alloc("a", &api.AllocatedResources{GPU: &api.AllocatedGPU{Devices: []string{"n-gpu0"}}}),
			alloc("b", &api.AllocatedResources{GPU: &api.AllocatedGPU{Share: &api.ShareAssignment{GPU: "n-gpu0", Milli: 1}}})},
		"share over milli": {alloc("a", &api.AllocatedResources{GPU: &api.AllocatedGPU{Share: &api.ShareAssignment{GPU: "n-gpu0", Milli: 600}}}),
			alloc("b", &api.AllocatedResources{GPU: &api.AllocatedGPU{Share: &api.ShareAssignment{GPU: "n-gpu0", Milli: 600}}})},
		"share over memory": {alloc("a", &api.AllocatedResources{GPU: &api.AllocatedGPU{Share: &api.ShareAssignment{GPU: "n-gpu0", Milli: 1, Memory: 90000}}})},
		"mig illegal start": {alloc("a", &api.AllocatedResources{GPU: &api.AllocatedGPU{MIG: &api.MIGAssignment{GPU: "n-gpu1", Profile: "3g.40gb", Start: 2, Size: 4, Create: true}}})},
		"mig overlap": {alloc("a", &api.AllocatedResources{GPU: &api.AllocatedGPU{MIG: &api.MIGAssignment{GPU: "n-gpu1", Profile: "3g.40gb", Start: 4, Size: 4, Create: true}}}),
			alloc("b", &api.AllocatedResources{GPU: &api.AllocatedGPU{MIG: &api.MIGAssignment{GPU: "n-gpu1", Profile: "2g.20gb", Start: 4, Size: 2, Create: true}}})},
		"mig on non-mig": {alloc("a", &api.AllocatedResources{GPU: &api.AllocatedGPU{MIG: &api.MIGAssignment{GPU: "n-gpu0", Profile: "1g.10gb", Start: 0, Size: 1}}})},
		"whole on mig":   {alloc("a", &api.AllocatedResources{GPU: &api.AllocatedGPU{Devices: []string{"n-gpu1"}}})},
		"unknown gpu":    {alloc("a", &api.AllocatedResources{GPU: &api.AllocatedGPU{Devices: []string{"nope"}}})},
	}
	for name, allocs := range cases {
		if err := scheduler.Fit(n, allocs); err == nil {
			t.Errorf("%s: Fit accepted", name)
		}
	}
	ok := []*api.Allocation{
		alloc("a", &api.AllocatedResources{CPU: 500, GPU: &api.AllocatedGPU{Share: &api.ShareAssignment{GPU: "n-gpu0", Milli: 500, Memory: 40000}}}),
		alloc("b", &api.AllocatedResources{CPU: 500, GPU: &api.AllocatedGPU{Share: &api.ShareAssignment{GPU: "n-gpu0", Milli: 500, Memory: 40000}}}),
		alloc("c", &api.AllocatedResources{GPU: &api.AllocatedGPU{MIG: &api.MIGAssignment{GPU: "n-gpu1", Profile: "3g.40gb", Start: 4, Size: 4, Create: true}}}),
		alloc("d", &api.AllocatedResources{GPU: &api.AllocatedGPU{MIG: &api.MIGAssignment{GPU: "n-gpu1", Profile: "4g.40gb", Start: 0, Size: 4, Create: true}}}),
	}
	if err := scheduler.Fit(n, ok); err != nil {
		t.Fatal(err)
	}
}

// TestTooSmallIsNotExhausted (issue 15): an empty node that simply cannot
// hold the replica is "too small", not "cpu exhausted"; a node filled by
// other work is exhausted.
func TestTooSmallIsNotExhausted(t *testing.T) {
	h := New(scheduler.Config{})
	h.AddNodes(Node("a"))
	p := mustRun(t, h, Job("big", Group("g", 1, Task("t", 100000, 10))))
	if p.Failed == nil || !strings.Contains(p.Failed["g"].String(), "node too small: needs 100000 millicores of cpu") ||
		strings.Contains(p.Failed["g"].String(), "exhausted") {
		t.Fatalf("cpu beyond an empty node: %v", p.Failed)
	}
	p = mustRun(t, h, Job("mem", Group("g", 1, Task("t", 10, 1<<30))))
	if p.Failed == nil || !strings.Contains(p.Failed["g"].String(), "node too small: needs 1073741824 MiB of memory") {
		t.Fatalf("memory beyond an empty node: %v", p.Failed)
	}
	cap := h.Nodes[0].Resources.CPU
	p = mustRun(t, h, Job("fill", Group("g", 2, Task("t", cap/2+1, 10))))
	if p.Failed == nil || !strings.Contains(p.Failed["g"].String(), "cpu exhausted") {
		t.Fatalf("cpu taken by the first replica: %v", p.Failed)
	}
}
