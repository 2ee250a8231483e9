package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/google/uuid"
)

// shareSpec is a service of one replica holding milli of one GPU, on the
// fake nodes' null driver, that allows GPU defragmentation to move it.
func shareSpec(name string, milli int) string {
	return fmt.Sprintf(`name: %s
type: service
groups:
  - name: g
    count: 1
    migrate: true
    tasks:
      - name: main
        driver: "null"
        resources: {cpu: 200, memory: 256, gpu: {share: {milli: %d}}}
`, name, milli)
}

const trainSpec = `name: train
type: service
groups:
  - name: g
    count: 1
    tasks:
      - name: main
        driver: "null"
        resources: {cpu: 200, memory: 256, gpu: {count: 1}}
`

func plainGPUNode(name string) api.Node {
	n := api.Node{ID: uuid.NewString(), Name: name, Labels: map[string]string{"gpu": "a100"},
		Attributes: map[string]string{"os.name": "linux"},
		Resources:  api.NodeResources{CPU: 16000, Cores: 16, Memory: 64 * 1024, Disk: 1 << 20}, PortRange: api.DefaultPortRange}
	n.GPUs = []api.GPUDevice{A100(name, 0)}
	return n
}

// TestGPUDefragPlanAndApply drives `gantry gpu defrag` on `gantry dev`
// with two fake nodes of one A100 each: a share of 300 milli on one and
// of 600 on the other leave no whole GPU, so a job asking for one waits.
// `job plan` says it would fit after one move; `gpu defrag plan` proposes
// that move; `apply` places the replacement, waits until it is healthy,
// stops the old replica (its reason says why) and the job is placed. Bad
// input gets one sentence and exit 1.
func TestGPUDefragPlanAndApply(t *testing.T) {
	c := StartDev(t)
	a := StartFakeNode(t, c, plainGPUNode("gpu-a"))
	b := StartFakeNode(t, c, plainGPUNode("gpu-b"))
	eligible := func(n *FakeNode, yes bool) { t.Helper(); setEligible(t, c, n, yes) }
	run := func(name, spec string) {
		t.Helper()
		if r := c.Gantry("job", "run", "-d", WriteSpec(t, name+".yaml", spec)); r.Code != 0 {
			t.Fatalf("job run %s: %d %s%s", name, r.Code, r.Stdout, r.Stderr)
		}
	}
	running := func(job, node string) *api.Allocation { t.Helper(); return runningOn(c, job, node, 60*time.Second) }
	// One share on each node: placement itself would pack them onto one
	// GPU, so each node takes work in turn.
	eligible(b, false)
	run("small", shareSpec("small", 300))
	old := running("small", "gpu-a")
	eligible(b, true)
	eligible(a, false)
	run("big", shareSpec("big", 600))
	running("big", "gpu-b")
	eligible(a, true)

	trainFile := WriteSpec(t, "train.yaml", trainSpec)
	if r := c.Gantry("job", "run", "-d", trainFile); r.Code != 0 && r.Code != 2 {
		t.Fatalf("job run train: %d %s%s", r.Code, r.Stdout, r.Stderr)
	}
	c.Eventually(30*time.Second, "train blocked", func() bool {
		var evals []*api.Evaluation
		if c.GetJSON("/v1/jobs/train/evaluations", &evals) != nil {
			return false
		}
		for _, e := range evals {
			if e.Status == api.EvalBlocked {
				return true
			}
		}
		return false
	})

	r := c.Gantry("job", "plan", trainFile)
	t.Logf("job plan train:\n%s%s", r.Stdout, r.Stderr)
	want := "would fit after moving 1 replica of small/g from gpu-a GPU 0 to gpu-b GPU 0 (gantry gpu defrag apply --for train)"
	if r.Code != 2 || !strings.Contains(r.Stdout, want) {
		t.Fatalf("job plan: exit %d, want 2 and %q in:\n%s%s", r.Code, want, r.Stdout, r.Stderr)
	}

	r = c.Gantry("gpu", "defrag", "plan", "--for", "train", "--json")
	var p api.DefragPlan
	if r.Code != 0 || json.Unmarshal([]byte(r.Stdout), &p) != nil {
		t.Fatalf("gpu defrag plan --json: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if !p.Fits || len(p.Moves) != 1 || p.Moves[0].Alloc != old.ID || p.Moves[0].ToNode != "gpu-b" || p.Moves[0].Reason == "" {
		t.Fatalf("plan: %+v", p)
	}
	r = c.Gantry("gpu", "defrag", "plan", "--for", "train")
	t.Logf("gpu defrag plan --for train:\n%s", r.Stdout)
	if r.Code != 0 || !strings.Contains(r.Stdout, "small.g[0]") {
		t.Fatalf("gpu defrag plan: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}

	for _, bad := range []struct {
		args []string
		want string
	}{
		{[]string{"gpu", "defrag", "plan", "--for", "nosuch"}, `job "nosuch" not found in namespace "default"`},
		{[]string{"gpu", "defrag", "plan", "--for", "small"}, "is not waiting for GPUs"},
		{[]string{"gpu", "defrag", "apply"}, "apply needs --for <job>"},
	} {
		r := c.Gantry(bad.args...)
		if r.Code != 1 || !strings.Contains(r.Stderr, bad.want) || strings.Count(strings.TrimSpace(r.Stderr), "\n") > 0 {
			t.Errorf("gantry %v: exit %d, stderr %q; want exit 1 and one line with %q", bad.args, r.Code, r.Stderr, bad.want)
		}
	}

	r = c.Gantry("gpu", "defrag", "apply", "--for", "train", "--timeout", "2m")
	t.Logf("gpu defrag apply --for train:\n%s%s", r.Stdout, r.Stderr)
	if r.Code != 0 || !strings.Contains(r.Stdout, "placed:") || !strings.Contains(r.Stdout, "moved:") || !strings.Contains(r.Stdout, "done:") {
		t.Fatalf("gpu defrag apply: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	running("train", "gpu-a")
	moved := running("small", "gpu-b")
	if moved.PreviousAlloc != old.ID || !strings.Contains(moved.Move, "from gpu-a GPU [0] to gpu-b GPU [0]") {
		t.Errorf("replacement: previous %s, move %q", moved.PreviousAlloc, moved.Move)
	}
	var was api.Allocation
	if err := c.GetJSON("/v1/allocations/"+old.ID, &was); err != nil {
		t.Fatal(err)
	}
	if was.DesiredStatus != api.AllocDesiredStop || !strings.Contains(was.DesiredReason, "moved by GPU defragmentation") {
		t.Errorf("old replica: %s, reason %q", was.DesiredStatus, was.DesiredReason)
	}
	// apply's proposal and its move's steps are defrag events.
	var seen []string
	for _, e := range readEvents(t, c, "topic=defrag&index=1", func(e api.Event) bool { return e.Type == api.DefragEventCompleted }) {
		var r api.DefragRecord
		if json.Unmarshal(e.Payload, &r) != nil || r.Source != api.DefragByApply || r.Reason == "" && r.Plan == nil {
			t.Errorf("event %s: %s", e.Type, e.Payload)
		}
		seen = append(seen, e.Type)
	}
	if got, want := strings.Join(seen, " "), strings.Join([]string{api.DefragEventProposed, api.DefragEventStarted, api.DefragEventHealthy, api.DefragEventCompleted}, " "); got != want {
		t.Errorf("apply's defrag events %s, want %s", got, want)
	}
	// Exactly one replica of small runs: the move never left it with
	// fewer, and the reconciler kept neither a duplicate nor a third.
	c.Eventually(30*time.Second, "one replica of small", func() bool {
		n := 0
		for _, al := range c.Allocs("small") {
			if al.DesiredStatus == api.AllocDesiredRun && !al.Terminal() {
				n++
			}
		}
		return n == 1
	})
}

// TestGPUDefragBackground runs `gantry dev` with the background
// defragmenter on (one round a second, at most one move an hour) and the
// fragmented pair of fake A100 nodes of TestGPUDefragPlanAndApply, where
// only small allows migration. Nobody calls apply: the defragmenter
// proposes the move of small, then makes it, and the waiting job train is
// placed in the room it made. The defrag topic of /v1/events carries the
// proposal and the move's steps, in order, each saying why; big, without
// migrate, never moves.
func TestGPUDefragBackground(t *testing.T) {
	c := StartDev(t, "--gpu-defrag-interval", "1s", "--gpu-defrag-moves-per-hour", "1")
	a := StartFakeNode(t, c, plainGPUNode("gpu-a"))
	b := StartFakeNode(t, c, plainGPUNode("gpu-b"))
	eligible := func(n *FakeNode, yes bool) { t.Helper(); setEligible(t, c, n, yes) }
	run := func(name, spec string) {
		t.Helper()
		if r := c.Gantry("job", "run", "-d", WriteSpec(t, name+".yaml", spec)); r.Code != 0 && r.Code != 2 {
			t.Fatalf("job run %s: %d %s%s", name, r.Code, r.Stdout, r.Stderr)
		}
	}
	running := func(job, node string) *api.Allocation { t.Helper(); return runningOn(c, job, node, 90*time.Second) }
	// Only one node takes work at a time while the cluster is set up, so
	// the defragmenter (which moves work only between nodes that take
	// work) has nothing to consolidate before train waits.
	eligible(b, false)
	run("small", shareSpec("small", 300))
	old := running("small", "gpu-a")
	eligible(b, true)
	eligible(a, false)
	run("big", strings.Replace(shareSpec("big", 600), "migrate: true", "migrate: false", 1))
	bigAlloc := running("big", "gpu-b")
	run("train", trainSpec)
	c.Eventually(30*time.Second, "train blocked", func() bool {
		var evals []*api.Evaluation
		if c.GetJSON("/v1/jobs/train/evaluations", &evals) != nil {
			return false
		}
		for _, e := range evals {
			if e.Status == api.EvalBlocked {
				return true
			}
		}
		return false
	})
	eligible(a, true)

	// By itself: small moves to gpu-b and train takes gpu-a.
	running("train", "gpu-a")
	moved := running("small", "gpu-b")
	if moved.PreviousAlloc != old.ID || !strings.Contains(moved.Move, "for train/g") {
		t.Errorf("replacement: previous %s, move %q", moved.PreviousAlloc, moved.Move)
	}
	for _, al := range c.Allocs("big") {
		if al.ID != bigAlloc.ID || al.Move != "" || al.NodeName != "gpu-b" {
			t.Errorf("big, without migrate, was touched: %+v", al)
		}
	}

	events := readEvents(t, c, "topic=defrag&index=1", func(e api.Event) bool { return e.Type == api.DefragEventCompleted })
	var types []string
	for _, e := range events {
		var r api.DefragRecord
		if err := json.Unmarshal(e.Payload, &r); err != nil {
			t.Fatalf("event %s: %v", e.Type, err)
		}
		t.Logf("%d %s %s key=%s reason=%q", e.Index, e.Type, r.Source, e.Key, r.Reason)
		if r.Source != api.DefragByBackground || e.Topic != api.TopicDefrag {
			t.Errorf("%s: source %q, topic %q", e.Type, r.Source, e.Topic)
		}
		switch e.Type {
		case api.DefragEventProposed:
			if r.Plan == nil || len(r.Plan.Moves) == 0 || e.Key != "train" {
				continue // an empty proposal (nothing to move yet) is allowed
			}
			if len(r.Plan.Moves) != 1 || r.Plan.Moves[0].Alloc != old.ID || !strings.Contains(r.Plan.Moves[0].Reason, "for train/g") {
				t.Errorf("proposal: %+v", r.Plan)
			}
		default:
			if e.Key != "small" || r.Move == nil || r.Move.Alloc != old.ID || r.Reason == "" {
				t.Errorf("%s: key %q, move %+v, reason %q", e.Type, e.Key, r.Move, r.Reason)
			}
		}
		if len(types) == 0 || types[len(types)-1] != e.Type {
			types = append(types, e.Type)
		}
	}
	want := []string{api.DefragEventProposed, api.DefragEventStarted, api.DefragEventHealthy, api.DefragEventCompleted}
	if strings.Join(types, " ") != strings.Join(want, " ") {
		t.Errorf("defrag events %v, want %v", types, want)
	}

	// The same fragmentation on two more nodes: the defragmenter proposes
	// moving small2, but its one move of the hour is spent, so the
	// proposal stays a proposal, and the UI's GPU map shows it: small2's
	// piece on gpu-c moving out to gpu-d, gpu-d's GPU with small2 moving
	// in, each with the reason.
	d := StartFakeNode(t, c, plainGPUNode("gpu-d"))
	eligible(d, false)
	cn := StartFakeNode(t, c, plainGPUNode("gpu-c"))
	run("small2", shareSpec("small2", 300))
	running("small2", "gpu-c")
	eligible(d, true)
	eligible(cn, false)
	run("big2", strings.Replace(shareSpec("big2", 600), "migrate: true", "migrate: false", 1))
	running("big2", "gpu-d")
	run("train2", strings.Replace(trainSpec, "name: train", "name: train2", 1))
	eligible(cn, true)
	// The first proposal for train2 may come before gpu-c takes work
	// again, and move nothing: wait for the one that moves small2.
	readEvents(t, c, "topic=defrag&key=train2&index=1", func(e api.Event) bool {
		var r api.DefragRecord
		return e.Type == api.DefragEventProposed && json.Unmarshal(e.Payload, &r) == nil && r.Plan != nil && len(r.Plan.Moves) > 0
	})
	page := func(n *FakeNode) string {
		resp, err := http.Get(c.Addr + "/ui/fragments/nodes/" + n.Node.ID)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return string(body)
	}
	from, to := page(cn), page(d)
	for _, want := range []string{`data-move="out" data-move-to="gpu-d GPU 0"`, "frees gpu-c GPU 0 for train2/g", `<tr data-move="out"`} {
		if !strings.Contains(from, want) {
			t.Errorf("gpu-c's page lacks %q", want)
		}
	}
	for _, want := range []string{`data-move="in"`, "moving in: small2.g[0] (300‰) from gpu-c GPU 0", `<tr data-move="in"`} {
		if !strings.Contains(to, want) {
			t.Errorf("gpu-d's page lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("gpu-c's page:\n%s", from)
	}
	for _, al := range c.Allocs("small2") {
		if al.Move != "" {
			t.Errorf("small2 moved beyond the rate limit: %+v", al)
		}
	}
}

// setEligible turns a node's scheduling eligibility on or off.
func setEligible(t *testing.T, c *Cluster, n *FakeNode, yes bool) {
	t.Helper()
	flag := "--disable"
	if yes {
		flag = "--enable"
	}
	if r := c.Gantry("node", "eligibility", n.Node.ID, flag); r.Code != 0 {
		t.Fatalf("node eligibility %s %s: %d %s%s", n.Node.Name, flag, r.Code, r.Stdout, r.Stderr)
	}
}

// runningOn waits until a replica of job runs on node and returns it.
func runningOn(c *Cluster, job, node string, limit time.Duration) *api.Allocation {
	c.t.Helper()
	var got *api.Allocation
	c.Eventually(limit, job+" running on "+node, func() bool {
		for _, al := range c.Allocs(job) {
			if al.DesiredStatus == api.AllocDesiredRun && al.ClientStatus == api.AllocRunning && al.NodeName == node {
				got = al
				return true
			}
		}
		return false
	})
	return got
}

// TestGPUDefragMoveAbandoned sets up TestGPUDefragPlanAndApply's
// fragmented pair of fake A100 nodes, but the destination, gpu-b, fails
// the health checks of what it starts from then on. `gpu defrag apply`
// places small's replacement there; it runs unhealthy, so the move is
// given up: apply says so and exits 1, the replacement is stopped (and
// its node reports it complete), small's original replica keeps running
// on gpu-a untouched, train still waits, and the move's events are
// proposed, started, then abandoned with the reason.
func TestGPUDefragMoveAbandoned(t *testing.T) {
	c := StartDev(t)
	a := StartFakeNode(t, c, plainGPUNode("gpu-a"))
	b := StartFakeNode(t, c, plainGPUNode("gpu-b"))
	eligible := func(n *FakeNode, yes bool) { t.Helper(); setEligible(t, c, n, yes) }
	run := func(name, spec string) {
		t.Helper()
		if r := c.Gantry("job", "run", "-d", WriteSpec(t, name+".yaml", spec)); r.Code != 0 && r.Code != 2 {
			t.Fatalf("job run %s: %d %s%s", name, r.Code, r.Stdout, r.Stderr)
		}
	}
	eligible(b, false)
	run("small", shareSpec("small", 300))
	old := runningOn(c, "small", "gpu-a", 60*time.Second)
	eligible(b, true)
	eligible(a, false)
	run("big", shareSpec("big", 600))
	runningOn(c, "big", "gpu-b", 60*time.Second)
	eligible(a, true)
	run("train", trainSpec)
	c.Eventually(30*time.Second, "train blocked", func() bool {
		var evals []*api.Evaluation
		if c.GetJSON("/v1/jobs/train/evaluations", &evals) != nil {
			return false
		}
		for _, e := range evals {
			if e.Status == api.EvalBlocked {
				return true
			}
		}
		return false
	})
	b.FailHealthChecks(true)

	r := c.Gantry("gpu", "defrag", "apply", "--for", "train", "--timeout", "2m")
	t.Logf("gpu defrag apply --for train:\n%s%s", r.Stdout, r.Stderr)
	if r.Code != 1 || !strings.Contains(r.Stdout, "placed:") || !strings.Contains(r.Stdout, "failed: replacement") ||
		!strings.Contains(r.Stdout, "did not become healthy") || strings.Contains(r.Stdout, "moved:") {
		t.Fatalf("gpu defrag apply: exit %d, want 1 after placed: and failed: ... did not become healthy\n%s%s", r.Code, r.Stdout, r.Stderr)
	}

	events := readEvents(t, c, "topic=defrag&index=1", func(e api.Event) bool { return e.Type == api.DefragEventAbandoned })
	var types []string
	var abandoned api.DefragRecord
	for _, e := range events {
		types = append(types, e.Type)
		if e.Type == api.DefragEventAbandoned {
			if err := json.Unmarshal(e.Payload, &abandoned); err != nil {
				t.Fatal(err)
			}
		}
	}
	if want := []string{api.DefragEventProposed, api.DefragEventStarted, api.DefragEventAbandoned}; strings.Join(types, " ") != strings.Join(want, " ") {
		t.Errorf("defrag events %v, want %v", types, want)
	}
	if abandoned.Move == nil || abandoned.Move.Alloc != old.ID || abandoned.Replacement == "" || abandoned.Source != api.DefragByApply ||
		!strings.Contains(abandoned.Reason, "did not become healthy") || !strings.Contains(abandoned.Reason, `health "unhealthy"`) ||
		!strings.Contains(abandoned.Reason, "the old replica stays") {
		t.Errorf("abandoned record: %+v", abandoned)
	}

	// The replacement is stopped and its node reports it gone; the
	// original replica never stopped.
	c.Eventually(30*time.Second, "the replacement stopped and complete", func() bool {
		var repl api.Allocation
		return c.GetJSON("/v1/allocations/"+abandoned.Replacement, &repl) == nil &&
			repl.DesiredStatus == api.AllocDesiredStop && repl.ClientTerminal() && repl.NodeName == "gpu-b" && repl.PreviousAlloc == old.ID
	})
	var still api.Allocation
	if err := c.GetJSON("/v1/allocations/"+old.ID, &still); err != nil {
		t.Fatal(err)
	}
	if still.DesiredStatus != api.AllocDesiredRun || still.ClientStatus != api.AllocRunning || still.NodeName != "gpu-a" {
		t.Errorf("original replica: %s/%s on %s, want it running on gpu-a", still.DesiredStatus, still.ClientStatus, still.NodeName)
	}
	var live []string
	for _, al := range c.Allocs("small") {
		if al.DesiredStatus == api.AllocDesiredRun && !al.Terminal() {
			live = append(live, al.ID)
		}
	}
	if len(live) != 1 || live[0] != old.ID {
		t.Errorf("small's live replicas %v, want only the original %s", live, old.ID)
	}
	for _, al := range c.Allocs("train") {
		if al.DesiredStatus == api.AllocDesiredRun {
			t.Errorf("train was placed (%s on %s) though no room was made", al.ShortID(), al.NodeName)
		}
	}
}
