package validate_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/jobspec"
	"github.com/gantryhq/gantry/internal/scheduler"
	"github.com/gantryhq/gantry/internal/scheduler/schedtest"
	"github.com/gantryhq/gantry/internal/validate"
)

// cluster is the fixture every case runs against: two A100 nodes of
// 4 cores in zone a, one 8-core node without GPUs in zone b, one node
// with an H100 in MIG mode in zone c.
func cluster() *validate.Cluster {
	return &validate.Cluster{
		Nodes: []*api.Node{
			schedtest.Node("a1", schedtest.Label("zone", "a"), schedtest.Label("rack", "r1"),
				schedtest.GPUs(2, "NVIDIA A100-SXM4-40GB", 40960)),
			schedtest.Node("a2", schedtest.Label("zone", "a"), schedtest.Label("rack", "r2"),
				schedtest.GPUs(2, "NVIDIA A100-SXM4-40GB", 40960)),
			schedtest.Node("big", schedtest.CPU(8000), schedtest.Memory(16384), schedtest.Label("zone", "b"), schedtest.Label("rack", "r1")),
			schedtest.Node("mig", schedtest.Label("zone", "c"), schedtest.Label("rack", "r3"),
				schedtest.GPUs(1, "NVIDIA H100 80GB HBM3", 81559, schedtest.CC("9.0"), schedtest.MIGMode(true))),
		},
		Queues: []*api.Queue{{Name: "research", Weight: 1, Namespaces: []string{"research"},
			Limit: &api.QueueLimits{CPU: 1500, Memory: 4096}}},
		Jobs: []*api.Job{{Name: "api", Namespace: "team-a", Type: api.JobService, Groups: []*api.Group{{
			Name: "api", Count: 1, Services: []api.Service{{Name: "api", Port: "http", LB: &api.ServiceLB{Port: 9000}}},
		}}}},
	}
}

// problems parses spec as web.yaml and returns every problem, located,
// as "class path: message (web.yaml:N)".
func problems(t *testing.T, spec string, c *validate.Cluster) []string {
	t.Helper()
	job, err := jobspec.Parse("web.yaml", []byte(spec))
	if err != nil {
		t.Fatalf("the spec does not parse:\n%v", err)
	}
	lines := jobspec.NewLocator("web.yaml", []byte(spec))
	var out []string
	for _, p := range validate.Job(job, c) {
		out = append(out, fmt.Sprintf("%s %s (web.yaml:%d)", p.Class, p, lines.Line(p.Path)))
	}
	return out
}

type tcase struct {
	name    string
	spec    string
	cluster *validate.Cluster // nil: the fixture
	want    []string
}

// spec builds web.yaml: a one-group service with keys added at the job
// (top), group and task level, and the task's resources.
func spec(top, group, task, resources string) string {
	return "name: web\n" + top + `groups:
  - name: web
` + group + `    tasks:
      - name: server
        driver: docker
        config: {image: demo, ports: [{name: http, to: 8080}]}
` + task + `        resources: {` + resources + `}
`
}

const small = "cpu: 100, memory: 64"

// TestRules holds a bad spec for every rule, with the exact message and
// line it gets, and a spec with no problem.
func TestRules(t *testing.T) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.cluster
			if c == nil {
				c = cluster()
			}
			got := problems(t, tc.spec, c)
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

var cases = []tcase{
	{name: "valid", spec: spec("", "", "", small)},
	{name: "valid with gpus, a gang and constraints", spec: spec("namespace: team-a\n", `    count: 4
    gang: {min: 4}
    constraints: [{attribute: "${node.labels.zone}", operator: "=", value: "a"}]
`, "", `cpu: 100, memory: 64, gpu: {count: 1, model: "*A100*"}`)},
	{name: "valid mig profile and share", spec: `name: web
groups:
  - name: web
    tasks:
      - name: a
        driver: docker
        config: {image: demo}
        resources: {cpu: 100, memory: 64, gpu: {mig: 3g.40gb}}
  - name: b
    tasks:
      - name: b
        driver: docker
        config: {image: demo}
        resources: {cpu: 100, memory: 64, gpu: {share: {milli: 300}}}
`},
	{name: "every problem at once", spec: `name: web
namespace: research
groups:
  - name: web
    count: 2
    update: {canary: 3}
    services: [{name: web, port: http, lb: {port: 9000}}]
    constraints: [{attribute: "${node.labels.zone}", operator: "=", value: "d"}]
    tasks:
      - name: server
        driver: docker
        config: {image: demo, ports: [{name: http, to: 8080}]}
        resources: {cpu: 16000, memory: 64, gpu: {count: 1, model: "Tesla*"}}
`, want: []string{
		"invalid groups[0].update.canary: asks for 3 canaries but the group runs only 2 replicas; each canary stands in for an old replica, so set canary to at most 2 (web.yaml:6)",
		"invalid groups[0].services[0].lb.port: port 9000 is already the load-balancer port of service api.team-a (job team-a/api); load balancers serve one service per port, so choose another port or stop that job (web.yaml:7)",
		"unplaceable groups[0]: one replica asks 16000 millicores of cpu, more than the 1500 that queue research (serving namespace research) may ever use; raise the queue's limit or run the job in a namespace of another queue (web.yaml:4)",
		"unplaceable groups[0].constraints[0]: no node satisfies ${node.labels.zone} = \"d\"; the values nodes have are \"a\" (a1, a2), \"b\" (big), \"c\" (mig) (web.yaml:8)",
		"unplaceable groups[0].tasks[0].resources.cpu: asks 16000 millicores, but the largest node, big, can hold 8000 even when empty; lower it or add a bigger node (web.yaml:13)",
		"unplaceable groups[0].tasks[0].resources.gpu.model: \"Tesla*\" matches no GPU in the cluster; the models nodes have are \"NVIDIA A100-SXM4-40GB\" (a1, a2), \"NVIDIA H100 80GB HBM3\" (mig) (web.yaml:13)",
	}},
	{name: "cpu beyond every node", spec: spec("", "", "", "cpu: 16000, memory: 64"), want: []string{
		"unplaceable groups[0].tasks[0].resources.cpu: asks 16000 millicores, but the largest node, big, can hold 8000 even when empty; lower it or add a bigger node (web.yaml:8)",
	}},
	{name: "memory beyond every node", spec: spec("", "", "", "cpu: 100, memory: 32768"), want: []string{
		"unplaceable groups[0].tasks[0].resources.memory: asks 32768 MiB, but the largest node, big, can hold 16384 even when empty; lower it or add a bigger node (web.yaml:8)",
	}},
	{name: "tasks together beyond every node", spec: `name: web
groups:
  - name: web
    tasks:
      - name: a
        driver: docker
        config: {image: demo}
        resources: {cpu: 5000, memory: 64}
      - name: b
        driver: docker
        config: {image: demo}
        resources: {cpu: 5000, memory: 64}
`, want: []string{
		"unplaceable groups[0].tasks: the group's tasks ask 10000 millicores of cpu together (they share a node), but the largest node, big, can hold 8000 even when empty (web.yaml:4)",
	}},
	{name: "no gpu of the model", spec: spec("", "", "", `cpu: 100, memory: 64, gpu: {count: 1, model: "Tesla*"}`), want: []string{
		"unplaceable groups[0].tasks[0].resources.gpu.model: \"Tesla*\" matches no GPU in the cluster; the models nodes have are \"NVIDIA A100-SXM4-40GB\" (a1, a2), \"NVIDIA H100 80GB HBM3\" (mig) (web.yaml:8)",
	}},
	{name: "gpu memory", spec: spec("", "", "", `cpu: 100, memory: 64, gpu: {count: 1, memory_min: 100000}`), want: []string{
		"unplaceable groups[0].tasks[0].resources.gpu.memory_min: no GPU has 100000 MiB of memory; the largest has 81559 MiB (mig) (web.yaml:8)",
	}},
	{name: "compute capability", spec: spec("", "", "", `cpu: 100, memory: 64, gpu: {count: 1, compute_capability_min: "9.5"}`), want: []string{
		"unplaceable groups[0].tasks[0].resources.gpu.compute_capability_min: no GPU has compute capability 9.5 or higher; the highest is 9.0 (mig) (web.yaml:8)",
	}},
	{name: "more gpus than a node has", spec: spec("", "", "", `cpu: 100, memory: 64, gpu: {count: 4, model: "*A100*"}`), want: []string{
		"unplaceable groups[0].tasks[0].resources.gpu.count: asks for 4 GPUs on one node, but the node with the most matching \"*A100*\", a1, has 2 (web.yaml:8)",
	}},
	{name: "mig profile not offered", spec: spec("", "", "", `cpu: 100, memory: 64, gpu: {mig: 1g.5gb}`), want: []string{
		"unplaceable groups[0].tasks[0].resources.gpu.mig: MIG profile 1g.5gb is offered by no GPU in MIG mode; the profiles offered are 1g.10gb (mig), 1g.10gb+me (mig), 1g.20gb (mig), 2g.20gb (mig), 3g.40gb (mig), 4g.40gb (mig), 7g.80gb (mig) (web.yaml:8)",
	}},
	{name: "mig on a cluster without mig", cluster: noMIG(), spec: spec("", "", "", `cpu: 100, memory: 64, gpu: {mig: 3g.40gb}`), want: []string{
		"unplaceable groups[0].tasks[0].resources.gpu.mig: no GPU is in MIG mode, so no node offers MIG instances; ask for count or share instead, or enable MIG on a node (web.yaml:8)",
	}},
	{name: "share bigger than any gpu", spec: spec("", "", "", `cpu: 100, memory: 64, gpu: {share: {milli: 500, memory: 90000}}`), want: []string{
		"unplaceable groups[0].tasks[0].resources.gpu.share.memory: asks 90000 MiB of one GPU, but the largest GPU has 81559 MiB (mig) (web.yaml:8)",
	}},
	{name: "enforced share", spec: spec("", "", "", `cpu: 100, memory: 64, gpu: {share: {milli: 500, enforce: true}}`), want: []string{
		"unplaceable groups[0].tasks[0].resources.gpu.share.enforce: no GPU enforces shares (no node runs MPS); leave enforce out or add a node that enforces them (web.yaml:8)",
	}},
	{name: "no gpus at all", cluster: noGPUs(), spec: spec("", "", "", `cpu: 100, memory: 64, gpu: {count: 1}`), want: []string{
		"unplaceable groups[0].tasks[0].resources.gpu: asks for GPUs, but no node has any (web.yaml:8)",
	}},
	{name: "constraint no node meets", spec: spec("", "    constraints: [{attribute: \"${node.labels.zone}\", operator: \"=\", value: \"d\"}]\n", "", small), want: []string{
		"unplaceable groups[0].constraints[0]: no node satisfies ${node.labels.zone} = \"d\"; the values nodes have are \"a\" (a1, a2), \"b\" (big), \"c\" (mig) (web.yaml:4)",
	}},
	{name: "constraint on a label no node sets", spec: spec("", "    constraints: [{attribute: \"${node.labels.gpu}\", operator: \"=\", value: \"yes\"}]\n", "", small), want: []string{
		"unplaceable groups[0].constraints[0]: no node satisfies ${node.labels.gpu} = \"yes\"; no node sets ${node.labels.gpu} (web.yaml:4)",
	}},
	{name: "constraints no node meets together", spec: spec("", `    constraints:
      - {attribute: "${node.labels.zone}", operator: "=", value: "b"}
      - {attribute: "${node.labels.rack}", operator: "=", value: "r2"}
`, "", small), want: []string{
		"unplaceable groups[0].constraints: no node satisfies all 2 constraints together; closest: a2 fails only constraints[0] (${node.labels.zone} = \"b\"), big fails only constraints[1] (${node.labels.rack} = \"r2\") (web.yaml:4)",
	}},
	{name: "constraints and size", spec: spec("", `    constraints:
      - {attribute: "${node.labels.zone}", operator: "=", value: "a"}
`, "", "cpu: 6000, memory: 64"), want: []string{
		"unplaceable groups[0]: no node can hold one replica even when empty, each for another reason: a1 (node too small: needs 6000 millicores of cpu, more than the node has even when empty), a2 (node too small: needs 6000 millicores of cpu, more than the node has even when empty), big (constraint ${node.labels.zone} = a), mig (constraint ${node.labels.zone} = a) (web.yaml:3)",
	}},
	{name: "driver no node has", cluster: noExec(), spec: `name: web
groups:
  - name: web
    tasks:
      - name: server
        driver: exec
        config: {command: /bin/true}
        resources: {cpu: 100, memory: 64}
`, want: []string{
		"unplaceable groups[0].tasks[0].driver: no node offers the exec driver; the drivers nodes offer are docker (a1, a2, big and 1 more) (web.yaml:6)",
	}},
	{name: "gang larger than the cluster", spec: spec("", "    count: 6\n    gang: {min: 5}\n", "", "cpu: 100, memory: 64, gpu: {count: 1}"), want: []string{
		"unplaceable groups[0].gang.min: a gang of 5 replicas must be placed at once, but the cluster holds at most 4 replicas of this group even when empty; lower gang.min to 4 or add nodes (web.yaml:5)",
	}},
	{name: "count larger than the cluster", spec: `name: web
groups:
  - name: web
    count: 6
    tasks:
      - name: server
        driver: docker
        config: {image: demo, ports: [{name: http, static: 8080}]}
        resources: {cpu: 100, memory: 64}
`, want: []string{
		"unplaceable groups[0].count: asks for 6 replicas, but the cluster holds at most 4 of them even when empty; the other 2 would wait for nodes to join (web.yaml:4)",
	}},
	{name: "queue limit", spec: spec("namespace: research\n", "", "", "cpu: 2000, memory: 64"), want: []string{
		"unplaceable groups[0]: one replica asks 2000 millicores of cpu, more than the 1500 that queue research (serving namespace research) may ever use; raise the queue's limit or run the job in a namespace of another queue (web.yaml:4)",
	}},
	{name: "gang beyond the queue limit", spec: spec("namespace: research\n", "    count: 4\n    gang: {min: 4}\n", "", "cpu: 500, memory: 64"), want: []string{
		"unplaceable groups[0]: a gang of 4 replicas asks 2000 millicores of cpu, more than the 1500 that queue research (serving namespace research) may ever use; raise the queue's limit or run the job in a namespace of another queue (web.yaml:4)",
	}},
	{name: "no nodes", cluster: &validate.Cluster{}, spec: spec("", "", "", small), want: []string{
		"unplaceable the cluster has no nodes yet, so nothing can be placed; the job would wait until an agent joins (web.yaml:1)",
	}},
	{name: "new namespace with a near name", spec: spec("namespace: team-b\n", "", "", small), want: []string{
		"advice namespace: \"team-b\" is a new namespace: no queue lists it and no job runs in it, so queue default will serve it; did you mean \"team-a\"? (web.yaml:2)",
	}},
	{name: "new namespace", spec: spec("namespace: ops\n", "", "", small), want: []string{
		"advice namespace: \"ops\" is a new namespace: no queue lists it and no job runs in it, so queue default will serve it; the namespaces in use are default, research, team-a (web.yaml:2)",
	}},
	{name: "canaries beyond count", spec: spec("", "    count: 2\n    update: {canary: 3}\n", "", small), want: []string{
		"invalid groups[0].update.canary: asks for 3 canaries but the group runs only 2 replicas; each canary stands in for an old replica, so set canary to at most 2 (web.yaml:5)",
	}},
	{name: "canary with count 0", spec: spec("", "    count: 0\n    update: {canary: 1}\n", "", small), want: []string{
		"invalid groups[0].update.canary: asks for 1 canary but the group runs no replicas (count 0), so none could ever start; set canary to 0 or raise count (web.yaml:5)",
	}},
	{name: "healthy deadline shorter than the grace", spec: spec("", "    update: {min_healthy_time: 10s, healthy_deadline: 30s}\n",
		"        checks: [{type: http, port: http, path: /, interval: 5s, timeout: 1s, failures: 3, grace: 30s}]\n", small), want: []string{
		"invalid groups[0].update.healthy_deadline: is 30s, but no replica can count as healthy before 40s (groups[0].tasks[0].checks[0].grace 30s, then min_healthy_time 10s), so every update would fail; make it longer than 40s or shorten the grace (web.yaml:4)",
	}},
	{name: "lb ports collide in the job", spec: spec("", `    services:
      - {name: web, port: http, lb: {port: 8000}}
      - {name: web2, port: http, lb: {port: 8000}}
`, "", small), want: []string{
		"invalid groups[0].services[1].lb.port: port 8000 is already the load-balancer port of groups[0].services[0]; each service needs its own port (web.yaml:6)",
	}},
	{name: "lb port is a static port of the job", spec: `name: web
groups:
  - name: web
    services: [{name: web, port: http, lb: {port: 8080}}]
    tasks:
      - name: server
        driver: docker
        config: {image: demo, ports: [{name: http, static: 8080}]}
        resources: {cpu: 100, memory: 64}
`, want: []string{
		"invalid groups[0].services[0].lb.port: port 8080 is also the static host port of groups[0].tasks[0].config.ports[0]; load balancers listen on it on every node that runs one, so the two collide: choose another port for one of them (web.yaml:4)",
	}},
	{name: "lb port another job holds", spec: spec("", "    services: [{name: web, port: http, lb: {port: 9000}}]\n", "", small), want: []string{
		"invalid groups[0].services[0].lb.port: port 9000 is already the load-balancer port of service api.team-a (job team-a/api); load balancers serve one service per port, so choose another port or stop that job (web.yaml:4)",
	}},
}

func noMIG() *validate.Cluster {
	c := cluster()
	c.Nodes = c.Nodes[:3]
	return c
}

func noGPUs() *validate.Cluster {
	c := cluster()
	c.Nodes = c.Nodes[2:3]
	return c
}

func noExec() *validate.Cluster {
	c := cluster()
	for _, n := range c.Nodes {
		delete(n.Drivers, api.DriverExec)
	}
	return c
}

// TestSpecRules: the problems of the issue that the spec's own rules
// catch (package jobspec, on every parse): the same messages on submit.
func TestSpecRules(t *testing.T) {
	for _, tc := range []struct{ name, spec, want string }{
		{"static host ports collide in a group", `name: web
groups:
  - name: web
    tasks:
      - name: a
        driver: docker
        config: {image: demo, ports: [{name: http, static: 8080}]}
        resources: {cpu: 100, memory: 64}
      - name: b
        driver: docker
        config: {image: demo, ports: [{name: http, static: 8080}]}
        resources: {cpu: 100, memory: 64}
`, "groups[0].tasks[1].config.ports[0].static: host port 8080 is already taken by groups[0].tasks[0].config.ports[0].static; the tasks of a group share a node, so their static ports must differ (web.yaml:11)"},
		{"health check on a port the task does not declare", spec("", "", "        checks: [{type: tcp, port: grpc, interval: 5s, timeout: 1s, failures: 3}]\n", small),
			`groups[0].tasks[0].checks[0].port: "grpc" is not a port of this task; name one declared under config.ports (web.yaml:8)`},
		{"max_parallel 0", spec("", "    update: {max_parallel: 0}\n", "", small),
			"groups[0].update.max_parallel: must be between 1 and 10000, not 0 (web.yaml:4)"},
		{"min_healthy_time beyond healthy_deadline", spec("", "    update: {min_healthy_time: 5m, healthy_deadline: 1m}\n", "", small),
			"groups[0].update.healthy_deadline: must be longer than min_healthy_time (5m0s), not 1m0s (web.yaml:4)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := jobspec.Parse("web.yaml", []byte(tc.spec))
			if err == nil || err.Error() != tc.want {
				t.Errorf("got:\n%v\nwant:\n%s", err, tc.want)
			}
		})
	}
}

// TestAgreesWithScheduler: for every case, the shape checks find a
// problem exactly when the scheduler cannot place every replica of the
// job on the cluster with nothing running.
func TestAgreesWithScheduler(t *testing.T) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.cluster
			if c == nil {
				c = cluster()
			}
			job, err := jobspec.Parse("web.yaml", []byte(tc.spec))
			if err != nil {
				t.Fatal(err)
			}
			req := &scheduler.Request{Job: job}
			for _, g := range job.Groups {
				for i := 0; i < g.Count; i++ {
					req.Place = append(req.Place, scheduler.Placement{Group: g.Name, Index: i})
				}
			}
			plan, err := scheduler.New(scheduler.Config{}).Schedule(&scheduler.Snapshot{Nodes: c.Nodes, Queues: c.Queues}, req, time.Time{})
			if err != nil {
				t.Fatal(err)
			}
			_, unplaceable, _ := validate.Split(validate.Shape(job, c))
			if placed := len(plan.Failed) == 0; placed == (len(unplaceable) > 0) {
				t.Errorf("the scheduler placed everything: %v; the validator found %v", placed, unplaceable)
			}
		})
	}
}

// TestWithoutCluster: with no cluster only the rules internal to the job
// run, as the CLI runs them before talking to a server.
func TestWithoutCluster(t *testing.T) {
	job, err := jobspec.Parse("web.yaml", []byte(spec("namespace: nowhere\n", "    count: 2\n    update: {canary: 3}\n", "", "cpu: 999999, memory: 64")))
	if err != nil {
		t.Fatal(err)
	}
	got := validate.Job(job, nil)
	if len(got) != 1 || got[0].Class != validate.Invalid || got[0].Path != "groups[0].update.canary" {
		t.Fatalf("want only the canary problem, got %v", got)
	}
}

// TestDoesNotModifyInputs: the checks leave the job and the snapshot as
// they were.
func TestDoesNotModifyInputs(t *testing.T) {
	c := cluster()
	c.Nodes[0].Status, c.Nodes[0].Ineligible = api.NodeStatusDown, true
	before, _ := json.Marshal(c)
	for _, tc := range cases {
		job, err := jobspec.Parse("web.yaml", []byte(tc.spec))
		if err != nil {
			t.Fatal(err)
		}
		jb, _ := json.Marshal(job)
		validate.Job(job, c)
		if ja, _ := json.Marshal(job); string(ja) != string(jb) {
			t.Errorf("%s: the job changed", tc.name)
		}
	}
	if after, _ := json.Marshal(c); string(after) != string(before) {
		t.Error("the cluster changed")
	}
}

// TestPassthroughGPUs: GPUs bound to vfio-pci are for VMs only, so a
// container asking for a GPU on a cluster that has only those, and a VM
// on a cluster that has none, are each told so.
func TestPassthroughGPUs(t *testing.T) {
	qemu := func(n *api.Node) {
		n.Drivers[api.DriverQEMU] = api.DriverInfo{Detected: true, Healthy: true, Version: "7.2.22"}
	}
	ptNode := func(notReady string) *api.Node {
		return schedtest.Node("pt", qemu, schedtest.GPUs(1, "NVIDIA H100 80GB HBM3", 81920, func(_ int, g *api.GPUDevice) {
			g.UUID, g.PCIBusID, g.Passthrough, g.IOMMUGroup = "0000:01:00.0", "0000:01:00.0", true, 12
			g.Unhealthy, g.HealthReason = notReady != "", notReady
		}))
	}
	vm := `name: web
groups:
  - name: web
    tasks:
      - name: vm
        driver: qemu
        config: {kernel: /guest/vmlinuz}
        resources: {cpu: 1000, memory: 256, gpu: {count: 1}}
`
	for _, tc := range []struct {
		name  string
		nodes []*api.Node
		spec  string
		want  string
	}{
		{"a container on passthrough GPUs only", []*api.Node{ptNode("")}, spec("", "", "", `cpu: 100, memory: 64, gpu: {count: 1}`),
			"unplaceable groups[0].tasks[0].resources.gpu: the only GPUs are bound to vfio-pci for passthrough to VMs (driver qemu); a container or process cannot use them (web.yaml:8)"},
		{"a VM without passthrough GPUs", []*api.Node{schedtest.Node("nv", qemu, schedtest.GPUs(2, "NVIDIA A100-SXM4-40GB", 40960))}, vm,
			"unplaceable groups[0].tasks[0].resources.gpu: a VM is given only GPUs bound to vfio-pci for passthrough, and no node has one (bind a GPU to vfio-pci with the IOMMU on; gantry node status shows gpu.passthrough) (web.yaml:8)"},
		// Validation judges GPUs as if healthy (an operator can fix a
		// binding); job plan says why one is not ready.
		{"a VM whose passthrough GPU is not ready yet", []*api.Node{ptNode("not passthrough-ready: in no IOMMU group: the IOMMU is off")}, vm, ""},
		{"a VM with a ready passthrough GPU", []*api.Node{ptNode("")}, vm, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := problems(t, tc.spec, &validate.Cluster{Nodes: tc.nodes})
			var want []string
			if tc.want != "" {
				want = []string{tc.want}
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("problems\n got: %q\nwant: %q", got, want)
			}
		})
	}
}
