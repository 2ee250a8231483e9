package ui

import (
	"bytes"
	"math"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func a100(i int) api.GPUDevice {
	return api.GPUDevice{UUID: "GPU-" + string(rune('a'+i)), Index: i, Model: "NVIDIA A100-SXM4-40GB", Memory: 40960}
}

func gpuAlloc(id, job, node string, g *api.AllocatedGPU) *api.Allocation {
	return &api.Allocation{ID: id, Namespace: "ml", Job: job, Group: "g", NodeID: node, NodeName: "n1",
		ClientStatus: api.AllocRunning, DesiredStatus: api.AllocDesiredRun,
		Resources: map[string]*api.AllocatedResources{"main": {CPU: 100, Memory: 64, GPU: g}}}
}

func testNode() (*api.Node, []*api.Allocation) {
	n := &api.Node{ID: "n1", Name: "n1", Status: api.NodeStatusReady, GPUs: []api.GPUDevice{a100(0), a100(1), a100(2), a100(3)},
		Resources: api.NodeResources{CPU: 8000, Memory: 65536, Disk: 100000},
		Drivers:   map[string]api.DriverInfo{"null": {Detected: true, Healthy: true}}, Labels: map[string]string{"zone": "a"}}
	n.GPUs[0].MIGEnabled = true
	n.GPUs[0].MIGInstances = []api.MIGInstance{{UUID: "MIG-1", Profile: "3g.20gb", Start: 4, Size: 4}, {UUID: "MIG-2", Profile: "1g.5gb", Start: 0, Size: 1}}
	n.GPUs[3].Unhealthy, n.GPUs[3].HealthReason = true, "XID 79: GPU has fallen off the bus"
	done := gpuAlloc("a5", "old", "n1", &api.AllocatedGPU{Devices: []string{"GPU-b"}})
	done.ClientStatus = api.AllocComplete
	return n, []*api.Allocation{
		gpuAlloc("a1", "train", "n1", &api.AllocatedGPU{MIG: &api.MIGAssignment{GPU: "GPU-a", Profile: "3g.20gb", Start: 4, Size: 4, InstanceUUID: "MIG-1"}}),
		gpuAlloc("a2", "tune", "n1", &api.AllocatedGPU{MIG: &api.MIGAssignment{GPU: "GPU-a", Profile: "2g.10gb", Start: 2, Size: 2, Create: true}}),
		gpuAlloc("a3", "nb", "n1", &api.AllocatedGPU{Share: &api.ShareAssignment{GPU: "GPU-c", Milli: 250, Memory: 10240}}),
		gpuAlloc("a4", "render", "n1", &api.AllocatedGPU{Devices: []string{"GPU-b"}}),
		done, // terminal: holds nothing
		gpuAlloc("a6", "elsewhere", "n2", &api.AllocatedGPU{Devices: []string{"GPU-b"}}),
	}
}

func TestGPUMapPieces(t *testing.T) {
	n, allocs := testNode()
	m := BuildGPUMap(n, allocs)
	if len(m) != 4 {
		t.Fatalf("%d GPUs", len(m))
	}
	type p struct {
		kind, job   string
		start, size int
	}
	var got []p
	for _, x := range m[0].Pieces {
		got = append(got, p{x.Kind, x.Job, x.Start, x.Size})
	}
	want := []p{{PieceFreeInstance, "", 0, 1}, {PieceMIG, "tune", 2, 2}, {PieceMIG, "train", 4, 4}}
	if len(got) != len(want) {
		t.Fatalf("GPU 0 pieces %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("GPU 0 piece %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	if len(m[1].Pieces) != 1 || m[1].Pieces[0].Kind != PieceWhole || m[1].Pieces[0].Job != "render" {
		t.Errorf("GPU 1: %+v (the terminal allocation and the other node's must not show)", m[1].Pieces)
	}
	if len(m[2].Pieces) != 1 || m[2].Pieces[0].Milli != 250 || m[2].UsedMilli() != 250 {
		t.Errorf("GPU 2: %+v", m[2].Pieces)
	}
	if !m[3].Unhealthy || len(m[3].Pieces) != 0 {
		t.Errorf("GPU 3: %+v", m[3])
	}
	if m[0].Slices != 8 {
		t.Errorf("A100 MIG slices %d", m[0].Slices)
	}

	svg := string(GPUMapSVG(m[0]))
	for _, s := range []string{`data-kind="mig" data-job="train" data-alloc="a1" data-start="4" data-size="4"`, `data-kind="free-instance"`, `href="/ui/allocations/a2"`} {
		if !strings.Contains(svg, s) {
			t.Errorf("GPU 0 SVG lacks %s", s)
		}
	}
	// The piece at slice 4 is drawn half-way across the GPU.
	x := regexp.MustCompile(`data-alloc="a1"[^>]*><title>[^<]*</title><rect x="([0-9.]+)"`).FindStringSubmatch(svg)
	if x == nil || x[1] != "301.0" { // pad 10 + 4 × 580/8, + 1 of inset
		t.Errorf("slice 4 drawn at x=%v", x)
	}
	if bad := string(GPUMapSVG(m[3])); !strings.Contains(bad, `data-unhealthy="true"`) || !strings.Contains(bad, "UNHEALTHY") {
		t.Error("the unhealthy GPU is not marked")
	}
	if s := string(GPUMapSVG(m[2])); strings.Count(s, `data-kind="share"`) != 2 {
		t.Error("a share is drawn once for compute and once for memory")
	}
	if a, b := JobColour("ml", "train"), JobColour("ml", "train"); a != b {
		t.Error("job colours are not stable")
	}
}

func TestChart(t *testing.T) {
	c := Chart{ID: "c", Title: "CPU", Unit: "cores", Series: []Series{{Name: "busy", Points: []Point{
		{t0, 1}, {t0.Add(time.Second), 2}, {t0.Add(2 * time.Second), math.NaN()}, {t0.Add(3 * time.Second), 3},
	}}}}
	svg := string(c.SVG())
	if strings.Count(svg, "M") < 2 || !strings.Contains(svg, `data-series="busy"`) {
		t.Errorf("a gap must split the line: %s", svg)
	}
	if c.top() != 5 {
		t.Errorf("y axis top %v, want 5 (3 rounded up)", c.top())
	}
	if s := c.Summary(); s != "CPU: busy now 3 cores, highest 3 cores" {
		t.Errorf("summary %q", s)
	}
	empty := Chart{ID: "e", Title: "GPU"}
	if !strings.Contains(string(empty.SVG()), "no samples yet") {
		t.Error("an empty chart does not say so")
	}
	for v, want := range map[float64]float64{0: 1, 0.7: 1, 3: 5, 12: 20, 240: 250, 80000: 100000} {
		if got := niceMax(v); got != want {
			t.Errorf("niceMax(%v) = %v, want %v", v, got, want)
		}
	}
}

func TestNodeAndAllocCharts(t *testing.T) {
	util := 40.0
	cpu := 250
	var samples []api.NodeSample
	for i := 0; i < 3; i++ {
		samples = append(samples, api.NodeSample{Time: t0.Add(time.Duration(i) * time.Second), CPUUsed: 1000, CPUTotal: 4000, MemoryUsed: 2048, MemoryTotal: 8192,
			GPUs: []api.GPUSample{{UUID: "GPU-a", Util: &util, MemoryUsed: 1024, MemoryTotal: 40960}}})
	}
	cs := NodeCharts(samples, []api.GPUDevice{a100(0)})
	if len(cs) != 5 || cs[3].Series[0].Name != "GPU 0" || cs[0].Max != 4 {
		t.Fatalf("node charts %+v", cs)
	}
	ac := AllocCharts(api.AllocMetricsResponse{Samples: []api.AllocMetricSample{{Time: t0, Tasks: []api.AllocSample{{Task: "main", CPUUsed: &cpu, MemoryBytes: 64 << 20}}}}}, nil)
	if len(ac) != 2 || ac[0].Series[0].Points[0].V != 0.25 || ac[1].Series[0].Points[0].V != 64 {
		t.Fatalf("alloc charts %+v", ac)
	}
}

// Every page renders, with no inline style or script (the content
// security policy forbids both) and the attributes the script reads.
func TestPagesRender(t *testing.T) {
	n, allocs := testNode()
	base := func(page string) Base {
		return Base{Page: page, Title: page, Index: 7, Now: t0, Topics: []string{"job"}}
	}
	job := &api.Job{Name: "train", Namespace: "ml", Type: api.JobService, Version: 1, SubmitTime: t0,
		Groups: []*api.Group{{Name: "g", Count: 2, Tasks: []*api.Task{{Name: "main", Driver: "null"}}}}}
	sum := &api.JobSummary{Job: job, Status: api.JobStatusRunning, Groups: map[string]*api.GroupSummary{"g": {Desired: 2, Running: 1}}}
	ex := &api.Explanation{Group: "g", Unplaced: 1, NodesEvaluated: 3, NodesFit: 0, Reasons: []api.ReasonCount{{Reason: "gpu exhausted", Nodes: 3}}}
	pages := map[string]any{
		"overview": Overview{Base: base("overview"), NodesShown: true, QueueShown: true, NodeTotal: 1, Nodes: []Count{{"ready", 1}},
			Capacity: []Usage{{Name: "CPU", Used: 1, Total: 8, Unit: "cores"}},
			Queues:   []QueueView{{Name: "ml", Weight: 1, Starved: true, Dims: []QueueDim{{Name: "cpu", Unit: "millicores", Usage: 1, Guarantee: 2}}}},
			Events:   []EventView{{Index: 7, Time: t0, Topic: "allocation", Type: "AllocationUpdated", Namespace: "ml", Key: "a1", Name: "train.g[0]", Summary: "running"}}},
		"jobs": JobsPage{Base: base("jobs"), Jobs: []*api.JobSummary{sum}},
		"job": JobPage{Base: base("job"), Summary: sum, Allocs: allocs, Versions: []*api.Job{job, {Name: "train", Version: 0, SubmitTime: t0}},
			Failures: []*api.Evaluation{{ID: "e1", Status: api.EvalBlocked, FailedGroups: map[string]*api.Explanation{"g": ex}}},
			HasDiff:  true, DiffFrom: 0, DiffTo: 1, Diff: []api.FieldDiff{{Path: "groups[0].count", Old: "1", New: "2"}}, Rollout: Rollout{Version: 1, Desired: 2, Current: 1}},
		"alloc": AllocPage{Base: base("alloc"), Alloc: allocs[0], Node: n, LogTasks: []string{"main"},
			Tasks: []TaskView{{Name: "main", Resources: allocs[0].Resources["main"], State: &api.TaskState{State: api.TaskRunning, StartedAt: t0}}}},
		"nodes": NodesPage{Base: base("nodes"), Nodes: []NodeRow{{Node: n, GPUs: 4, GPUsBad: 1}}},
		"node":  NodePage{Base: base("node"), Row: NodeRow{Node: n}, GPUs: BuildGPUMap(n, allocs), Allocs: allocs},
	}
	for name, data := range pages {
		var b bytes.Buffer
		if err := Render(&b, name, data); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		h := b.String()
		if strings.Contains(h, " style=") || strings.Contains(h, "<script") {
			t.Errorf("%s: inline style or script", name)
		}
		if !strings.Contains(h, `data-page="`+name+`"`) || !strings.Contains(h, `data-index="7"`) {
			t.Errorf("%s: no page attributes", name)
		}
		for _, want := range map[string][]string{
			"overview": {"starved", "train.g[0]", `href="/ui/allocations/a1"`},
			"job":      {"gpu exhausted", "0/3 nodes fit", "groups[0].count", `href="/ui/jobs/train?diff=0..1&amp;namespace=ml"`},
			"alloc":    {"data-log-output", `<option value="main">`, "MIG 3g.20gb at slices 4–7"},
			"node":     {`data-gpu-uuid="GPU-a"`, "XID 79", "zone"},
		}[name] {
			if !strings.Contains(h, want) {
				t.Errorf("%s: lacks %q", name, want)
			}
		}
	}
	if err := Render(&bytes.Buffer{}, "nonexistent", nil); err == nil {
		t.Error("an unknown page rendered")
	}
}

func TestAssets(t *testing.T) {
	if !bytes.Contains(Shell(), []byte(`<script src="/ui/assets/app.js"`)) {
		t.Error("the shell does not load the script")
	}
	for _, name := range []string{"app.js", "app.css", "palette.css"} {
		if b, ct, ok := Asset(name); !ok || len(b) == 0 || ct == "" {
			t.Errorf("asset %s missing", name)
		}
	}
	for _, name := range []string{"index.html", "../views.go", "nope.js"} {
		if _, _, ok := Asset(name); ok {
			t.Errorf("asset %q served", name)
		}
	}
	css, _, _ := Asset("palette.css")
	if !strings.Contains(string(css), "--text:"+Palette["text"]) {
		t.Error("palette.css does not declare the palette")
	}
}

func TestSummarize(t *testing.T) {
	e := api.Event{Index: 3, Topic: api.TopicAllocation, Type: "AllocationUpdated", Namespace: "ml", Key: "a1",
		Payload: []byte(`{"id":"a1","job":"train","group":"g","index":0,"client_status":"running","health":"healthy","node_name":"n1","desired_status":"run"}`)}
	v := Summarize(e)
	if v.Summary != "running on n1, healthy" || v.Name != "train.g[0]" || v.Link() != "/ui/allocations/a1" {
		t.Errorf("%+v", v)
	}
	j := Summarize(api.Event{Topic: api.TopicJob, Type: "JobStopped", Namespace: "ml", Key: "train", Payload: []byte(`{"version":2,"stop":true}`)})
	if j.Summary != "version 2, stopped" || j.Link() != "/ui/jobs/train?namespace=ml" {
		t.Errorf("%+v", j)
	}
	c := Summarize(api.Event{Topic: api.TopicNode, Type: api.EventComponentVersionChanged, Key: "n1",
		Payload: []byte(`{"node_id":"n1","node":"node-1","component":"docker","old":"24.0.7","new":"25.0.3"}`)})
	if c.Summary != "docker 24.0.7 → 25.0.3" || c.Name != "node-1" || c.Link() != "/ui/nodes/n1" {
		t.Errorf("a component version change: %+v (link %s)", c, c.Link())
	}
	g := Summarize(api.Event{Topic: api.TopicNode, Type: api.EventComponentVersionChanged, Key: "n1",
		Payload: []byte(`{"node_id":"n1","node":"node-1","component":"nvidia-driver","old":"","new":"580.159.04"}`)})
	if g.Summary != "nvidia-driver none → 580.159.04" {
		t.Errorf("a component that appears: %+v", g)
	}
}

// TestGPUMapProposedMoves: a proposed move marks the piece it takes away
// (moving out, to where, why) and the GPU it goes to (moving in, from
// where, why), in the SVG and in the node page's list; a move whose
// replacement is placed marks only its source, and a move of another
// node's allocation does not mark this node's pieces.
func TestGPUMapProposedMoves(t *testing.T) {
	n, allocs := testNode()
	moves := []api.DefragMove{
		{Alloc: "a3", Name: "nb.g[0]", Namespace: "ml", Job: "nb", Group: "g", FromNode: "n1", FromGPUs: []int{2}, ToNode: "n2", ToGPUs: []int{0}, Milli: 250, Reason: "frees n1 GPU 2 for ml/train"},
		{Alloc: "x9", Name: "web.g[1]", Namespace: "ml", Job: "web", Group: "g", FromNode: "n2", FromGPUs: []int{1}, ToNode: "n1", ToGPUs: []int{1}, Milli: 400, Reason: "frees n2 GPU 1 for ml/big"},
		{Alloc: "a4", Name: "render.g[0]", Namespace: "ml", Job: "render", Group: "g", FromNode: "n9", FromGPUs: []int{1}, ToNode: "n3", ToGPUs: []int{0}, Milli: 1000, Reason: "elsewhere"},
	}
	m := BuildGPUMap(n, allocs)
	MarkMoves(m, "n1", moves, nil)
	if pc := m[2].Pieces[0]; pc.MoveTo != "n2 GPU 0" || pc.MoveReason != "frees n1 GPU 2 for ml/train" {
		t.Errorf("the share moving out: %+v", pc)
	}
	if pc := m[1].Pieces[0]; pc.MoveTo != "" {
		t.Errorf("a move from another node marked %+v", pc)
	}
	if len(m[1].Incoming) != 1 || m[1].Incoming[0].AllocName != "web.g[1]" || m[1].Incoming[0].From != "n2 GPU 1" {
		t.Errorf("GPU 1 incoming: %+v", m[1].Incoming)
	}
	out := string(GPUMapSVG(m[2]))
	for _, s := range []string{`data-move="out" data-move-to="n2 GPU 0"`, "moving out to n2 GPU 0: frees n1 GPU 2 for ml/train", "proposed to move to n2 GPU 0"} {
		if !strings.Contains(out, s) {
			t.Errorf("GPU 2 SVG lacks %q", s)
		}
	}
	in := string(GPUMapSVG(m[1]))
	for _, s := range []string{`data-move="in" data-alloc="x9"`, "moving in: web.g[1] (400‰) from n2 GPU 1: frees n2 GPU 1 for ml/big"} {
		if !strings.Contains(in, s) {
			t.Errorf("GPU 1 SVG lacks %q", s)
		}
	}
	// The incoming line makes the GPU taller, and nothing else changes.
	plain := BuildGPUMap(n, allocs)
	height := regexp.MustCompile(`viewBox="0 0 600 (\d+)"`)
	if a, b := height.FindStringSubmatch(in), height.FindStringSubmatch(string(GPUMapSVG(plain[1]))); a == nil || b == nil || a[1] == b[1] {
		t.Errorf("heights with and without an incoming move: %v %v", a, b)
	}
	if strings.Contains(string(GPUMapSVG(plain[2])), "data-move") {
		t.Error("a GPU map without a plan shows a move")
	}

	var b bytes.Buffer
	if err := Render(&b, "node", NodePage{Base: Base{Page: "node", Title: "node", Now: t0}, Row: NodeRow{Node: n}, GPUs: m, Allocs: allocs}); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{`<tr data-move="out" data-move-gpu="2">`, `<tr data-move="in" data-move-gpu="1">`, "to n2 GPU 0", "from n2 GPU 1", "frees n2 GPU 1 for ml/big"} {
		if !strings.Contains(b.String(), s) {
			t.Errorf("node page lacks %q", s)
		}
	}

	// Once the replacement of x9 is placed, its destination shows the
	// replacement itself: no incoming line.
	m = BuildGPUMap(n, allocs)
	MarkMoves(m, "n1", moves, map[string]bool{"x9": true})
	if len(m[1].Incoming) != 0 || len(MoveLines(m)) != 1 {
		t.Errorf("a started move still shows as incoming: %+v", MoveLines(m))
	}
}
