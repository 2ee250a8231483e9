package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/apiclient"
)

// unsafeSpec asks for privileged mode, the host network and the Docker
// socket: three settings the default policy blocks.
const unsafeSpec = `name: root-everything
groups:
  - name: tools
    tasks:
      - name: agent
        driver: docker
        config:
          image: gantry-demo:latest
          network_mode: host
          volumes: ["/var/run/docker.sock:/var/run/docker.sock"]
        resources: {cpu: 100, memory: 32}
        security: {privileged: true}
`

// TestAdmissionRefusesUnsafeJob: job run and job plan refuse a job asking
// for privileged mode, the host network and the Docker socket, listing
// every violation with its task and remediation; nothing is created. A
// namespace exception lets the same job through plan, in that namespace
// only.
func TestAdmissionRefusesUnsafeJob(t *testing.T) {
	c := StartDev(t, "--audit-interval=-1s")
	spec := WriteSpec(t, "unsafe.yaml", unsafeSpec)

	for _, verb := range []string{"run", "plan"} {
		r := c.Gantry("job", verb, spec)
		if r.Code != 1 {
			t.Fatalf("job %s of an unsafe job exited %d, want 1:\n%s%s", verb, r.Code, r.Stdout, r.Stderr)
		}
		for _, want := range []string{
			`job "root-everything" in namespace "default" is refused by the cluster's isolation policy`,
			"3 blocking finding(s)",
			"task tools/agent: 5.5 Ensure that privileged containers are not used (critical)",
			"remediation: Do not run the container with --privileged",
			"task tools/agent: 5.10 Ensure that the host's network namespace is not shared (high)",
			"remediation: Do not run the container with --network=host",
			"task tools/agent: 5.32 Ensure that the Docker socket is not mounted inside any containers (critical)",
			"remediation: Do not mount the engine's or containerd's socket",
			"Nothing was created.",
			"groups[0].tasks[0].security.privileged: refused by the cluster's isolation policy", // located (issue 15)
			"unsafe.yaml:12)",
		} {
			if !strings.Contains(r.Stderr, want) {
				t.Errorf("job %s: the refusal lacks %q:\n%s", verb, want, r.Stderr)
			}
		}
	}
	// job validate says the same, located, and exits 1 (issue 15: it said
	// the job was valid).
	r := c.Gantry("job", "validate", spec)
	if r.Code != 1 || !strings.Contains(r.Stderr, "groups[0].tasks[0].security.privileged: refused by the cluster's isolation policy") ||
		!strings.Contains(r.Stderr, "unsafe.yaml:12)") || !strings.Contains(r.Stderr, "groups[0].tasks[0].config.volumes[0]") {
		t.Fatalf("job validate of an unsafe job exited %d:\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	var jobs []*api.JobSummary
	if err := c.GetJSON("/v1/jobs", &jobs); err != nil || len(jobs) != 0 {
		t.Fatalf("a refused job changed the cluster: %v %v", jobs, err)
	}
	if err := c.GetJSON("/v1/jobs/root-everything", &api.JobSummary{}); !apiclient.IsNotFound(err) {
		t.Fatalf("the refused job exists: %v", err)
	}
	out, err := exec.Command("docker", "ps", "-aq", "--filter", "label=gantry.job=root-everything", "--filter", "label=gantry.node="+c.NodeID).Output()
	if err != nil || strings.TrimSpace(string(out)) != "" {
		t.Fatalf("containers of the refused job: %q %v", out, err)
	}

	// An operator's exception for namespace infra admits it there.
	policy := WriteSpec(t, "policy.yaml", `default: warn
rules:
  "5.4":  {action: block, min_severity: critical}
  "5.5":  {action: block}
  "5.10": {action: block}
  "5.32": {action: block}
exceptions:
  - {namespace: infra, check: "5.5", action: warn, reason: node agents}
  - {namespace: infra, check: "5.10", action: warn}
  - {namespace: infra, check: "5.32", action: warn}
`)
	if r := c.Gantry("policy", "apply", policy); r.Code != 0 {
		t.Fatalf("policy apply exited %d:\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if r := c.Gantry("policy", "show"); r.Code != 0 || !strings.Contains(r.Stdout, "infra      5.5    warn") {
		t.Fatalf("policy show exited %d:\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if r := c.Gantry("job", "plan", "-n", "infra", spec); r.Code != 0 {
		t.Fatalf("plan in the excepted namespace exited %d:\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if r := c.Gantry("job", "plan", spec); r.Code != 1 {
		t.Fatalf("plan in the default namespace exited %d, want 1:\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if r := c.Gantry("policy", "reset"); r.Code != 0 {
		t.Fatalf("policy reset exited %d:\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if r := c.Gantry("job", "plan", "-n", "infra", spec); r.Code != 1 {
		t.Fatalf("plan in infra after the reset exited %d, want 1:\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
}

// safeSpec is a plain service with a health check: no security settings
// at all, so the driver's defaults alone must make it pass the audit.
const safeSpec = `name: safe
groups:
  - name: web
    tasks:
      - name: server
        driver: docker
        config:
          image: gantry-demo:latest
          ports: [{name: http, to: 8080}]
        resources: {cpu: 100, memory: 32}
        checks:
          - {type: http, port: http, path: /healthz, interval: 1s, timeout: 1s}
`

// baselineFlags run the demo image with every automatable check passing:
// the unsafe containers below each add exactly one setting to them.
var baselineFlags = []string{
	"--read-only", "--security-opt", "no-new-privileges", "--cap-drop", "NET_RAW",
	"--pids-limit", "64", "--memory", "32m", "--cpus", "0.1",
	"--health-cmd", "/demo-app batch --steps 0", "--health-interval", "1h",
}

// unsafeContainer is one container started with docker run, outside
// Gantry: the baseline plus flags, and the checks that must fail for it.
type unsafeContainer struct {
	name  string
	flags []string // added to the baseline; "-read-only" removes --read-only
	want  []string
}

// TestAuditReportsExactlyTheUnsafeSettings runs a safe Gantry job beside
// containers started directly with docker run, each with one unsafe
// setting, and checks that `gantry audit` reports exactly those settings:
// every expected failure, no other failure on those containers, none on
// the Gantry job; that it exits 1 (some of them block); that --sarif has
// the fields SARIF 2.1.0 requires; and that changes reach the event
// stream.
func TestAuditReportsExactlyTheUnsafeSettings(t *testing.T) {
	c := StartDev(t, "--audit-interval", "1s")
	if r := c.Gantry("job", "run", "--timeout", "2m", WriteSpec(t, "safe.yaml", safeSpec)); r.Code != 0 {
		t.Fatalf("job run of the safe job exited %d:\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	allocs := c.Allocs("safe")
	if len(allocs) != 1 {
		t.Fatalf("want one allocation of the safe job, got %d", len(allocs))
	}

	apparmor := false
	if out, err := exec.Command("docker", "info", "--format", "{{json .SecurityOptions}}").Output(); err == nil {
		apparmor = strings.Contains(string(out), "apparmor")
	}
	privileged := []string{"5.5"}
	if apparmor {
		privileged = append(privileged, "5.2") // privileged containers run unconfined
	}
	b := make([]byte, 4)
	rand.Read(b)
	prefix := "gantry-e2e-audit-" + hex.EncodeToString(b) + "-"
	cases := []unsafeContainer{
		{name: "clean"},
		{name: "privileged", flags: []string{"--privileged"}, want: privileged},
		{name: "host-network", flags: []string{"--network", "host"}, want: []string{"5.10"}},
		{name: "host-pid", flags: []string{"--pid", "host"}, want: []string{"5.16"}},
		{name: "sys-admin", flags: []string{"--cap-add", "SYS_ADMIN"}, want: []string{"5.4"}},
		{name: "docker-socket", flags: []string{"-v", "/var/run/docker.sock:/var/run/docker.sock:ro"}, want: []string{"5.32"}},
		{name: "writable-root", flags: []string{"-read-only"}, want: []string{"5.13"}},
		{name: "no-limits", flags: []string{"--memory", "0", "--pids-limit", "-1", "--cpus", "0"}, want: []string{"5.11", "5.12", "5.29"}},
		{name: "gpu-not-allocated", flags: []string{"-e", "NVIDIA_VISIBLE_DEVICES=GPU-e2e-0001"}, want: []string{"5.18"}},
		// Claims the safe job's allocation, which holds no GPU.
		{name: "gpu-beyond-allocation", flags: []string{"-e", "NVIDIA_VISIBLE_DEVICES=GPU-e2e-0002",
			"--label", "gantry.alloc=" + allocs[0].ID, "--label", "gantry.task=server",
			"--label", "gantry.namespace=default", "--label", "gantry.job=safe"}, want: []string{"5.18"}},
	}
	for _, uc := range cases {
		args := []string{"run", "-d", "--name", prefix + uc.name, "--label", "gantry-e2e-audit=1"}
		args = append(args, baselineFlags...)
		for _, f := range uc.flags {
			if f == "-read-only" {
				args = slices.DeleteFunc(args, func(s string) bool { return s == "--read-only" })
				continue
			}
			args = append(args, f)
		}
		args = append(args, DemoImage, "batch", "--steps", "100000", "--interval", "1s")
		name := prefix + uc.name
		t.Cleanup(func() { exec.Command("docker", "rm", "-f", name).Run() })
		if out, err := exec.Command("docker", args...).CombinedOutput(); err != nil {
			t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}

	// Wait for an audit that saw every container: a report taken after
	// the last of them started also saw the safe job's container, which
	// ran before them all.
	type finding struct {
		Check     string `json:"check"`
		Severity  string `json:"severity"`
		Status    string `json:"status"`
		Action    string `json:"action"`
		Detail    string `json:"detail"`
		Container string `json:"container"`
		Namespace string `json:"namespace"`
		Job       string `json:"job"`
	}
	var report struct {
		Node     string    `json:"node"`
		Findings []finding `json:"findings"`
		Blocking int       `json:"blocking"`
	}
	var node api.Node
	if err := c.GetJSON("/v1/nodes/"+c.NodeID, &node); err != nil {
		t.Fatal(err)
	}
	last := prefix + cases[len(cases)-1].name
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(time.Second) {
		r := c.Gantry("audit", "--node", node.Name, "--json")
		if json.Unmarshal([]byte(r.Stdout), &report) == nil &&
			slices.ContainsFunc(report.Findings, func(f finding) bool { return f.Container == last }) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no audit saw %s within 90s; last answer (exit %d):\n%s%s", last, r.Code, r.Stdout, r.Stderr)
		}
	}

	got := map[string][]string{}
	for _, f := range report.Findings {
		if f.Status != "fail" {
			continue
		}
		switch {
		case strings.HasPrefix(f.Container, prefix):
			got[strings.TrimPrefix(f.Container, prefix)] = append(got[strings.TrimPrefix(f.Container, prefix)], f.Check)
		case f.Namespace == "default" && f.Job == "safe":
			t.Errorf("the safe Gantry job fails %s on %s: %s", f.Check, f.Container, f.Detail)
		}
		if f.Container == prefix+"gpu-beyond-allocation" && f.Check == "5.18" &&
			!strings.Contains(f.Detail, `sees GPUs GPU-e2e-0002 beyond its allocation (allocation `+api.ShortID(allocs[0].ID)+` task "server" holds no GPUs)`) {
			t.Errorf("GPU isolation detail: %s", f.Detail)
		}
	}
	for _, uc := range cases {
		have, want := got[uc.name], append([]string(nil), uc.want...)
		sort.Strings(have)
		sort.Strings(want)
		if !slices.Equal(have, want) {
			t.Errorf("container %s fails %v, want exactly %v", uc.name, have, want)
		}
	}
	if report.Blocking == 0 {
		t.Errorf("no blocking finding reported")
	}

	// The table exits 1 and names the blocking findings.
	r := c.Gantry("audit", "--node", node.Name)
	if r.Code != 1 {
		t.Errorf("gantry audit exited %d, want 1 (blocking findings):\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	for _, want := range []string{"node " + node.Name, prefix + "privileged", "5.5    critical  fail    block", "blocking"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("the table lacks %q:\n%s", want, r.Stdout)
		}
	}
	t.Logf("gantry audit --node %s:\n%s", node.Name, r.Stdout)

	// SARIF carries what the 2.1.0 schema requires.
	r = c.Gantry("audit", "--sarif")
	if r.Code != 1 {
		t.Errorf("gantry audit --sarif exited %d, want 1", r.Code)
	}
	checkSARIF(t, []byte(r.Stdout), prefix)

	// Every stored report is an event of topic audit.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.Addr+"/v1/events?topic=audit&index=1", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	var ev api.Event
	for sc.Scan() && ev.Topic == "" {
		json.Unmarshal(sc.Bytes(), &ev)
	}
	if ev.Topic != api.TopicAudit || ev.Key != c.NodeID || !strings.HasPrefix(ev.Type, "NodeAudit") {
		t.Errorf("first audit event: %+v", ev)
	}
}

// checkSARIF checks a SARIF log against the properties the SARIF 2.1.0
// schema marks required (sarifLog: version, runs; run: tool; tool: driver;
// toolComponent: name; reportingDescriptor: id; result: message;
// message: text) and the ones code-scanning tools rely on (ruleId and
// ruleIndex naming a rule, a level, a location).
func checkSARIF(t *testing.T, out []byte, prefix string) {
	t.Helper()
	var log struct {
		Schema  string `json:"$schema"`
		Version string `json:"version"`
		Runs    []struct {
			Tool *struct {
				Driver *struct {
					Name  string `json:"name"`
					Rules []struct {
						ID string `json:"id"`
					} `json:"rules"`
				} `json:"driver"`
			} `json:"tool"`
			Results []struct {
				RuleID    string `json:"ruleId"`
				RuleIndex *int   `json:"ruleIndex"`
				Level     string `json:"level"`
				Message   *struct {
					Text string `json:"text"`
				} `json:"message"`
				Locations []struct {
					LogicalLocations []struct {
						FullyQualifiedName string `json:"fullyQualifiedName"`
					} `json:"logicalLocations"`
				} `json:"locations"`
			} `json:"results"`
		} `json:"runs"`
	}
	if err := json.Unmarshal(out, &log); err != nil {
		t.Fatalf("SARIF is not JSON: %v\n%s", err, out)
	}
	if log.Version != "2.1.0" || !strings.Contains(log.Schema, "sarif-schema-2.1.0") || len(log.Runs) != 1 {
		t.Fatalf("SARIF log: version %q schema %q runs %d", log.Version, log.Schema, len(log.Runs))
	}
	run := log.Runs[0]
	if run.Tool == nil || run.Tool.Driver == nil || run.Tool.Driver.Name == "" {
		t.Fatal("SARIF run without tool.driver.name")
	}
	rules := run.Tool.Driver.Rules
	for i, rl := range rules {
		if rl.ID == "" {
			t.Errorf("rule %d has no id", i)
		}
	}
	levels := map[string]bool{"none": true, "note": true, "warning": true, "error": true}
	ours := map[string]string{}
	for i, res := range run.Results {
		switch {
		case res.Message == nil || res.Message.Text == "":
			t.Errorf("result %d has no message.text", i)
		case res.RuleIndex == nil || *res.RuleIndex < 0 || *res.RuleIndex >= len(rules) || rules[*res.RuleIndex].ID != res.RuleID:
			t.Errorf("result %d: ruleId %q and ruleIndex %v disagree", i, res.RuleID, res.RuleIndex)
		case !levels[res.Level]:
			t.Errorf("result %d: level %q", i, res.Level)
		case len(res.Locations) == 0 || len(res.Locations[0].LogicalLocations) == 0 || res.Locations[0].LogicalLocations[0].FullyQualifiedName == "":
			t.Errorf("result %d has no location", i)
		}
		if strings.Contains(res.Message.Text, prefix) {
			ours[strings.SplitN(strings.TrimPrefix(res.Message.Text, prefix), ":", 2)[0]+" "+res.RuleID] = res.Level
		}
	}
	if ours["privileged 5.5"] != "error" || ours["writable-root 5.13"] != "warning" {
		t.Errorf("SARIF levels of our containers: %v", ours)
	}
}
