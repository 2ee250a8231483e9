package jobspec

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
)

var update = flag.Bool("update", false, "rewrite the .err files of testdata/invalid")

// TestValidSpecs parses every spec in testdata/valid and checks that the
// job reads the same after a JSON round trip, through Parse and through the
// server's path (encoding/json, Canonicalize, Validate).
func TestValidSpecs(t *testing.T) {
	files, _ := filepath.Glob("testdata/valid/*")
	if len(files) == 0 {
		t.Fatal("no specs in testdata/valid")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			job, err := Parse(filepath.Base(f), data)
			if err != nil {
				t.Fatalf("rejected:\n%v", err)
			}
			checkRoundTrip(t, job)
		})
	}
}

func checkRoundTrip(t *testing.T, job *api.Job) {
	t.Helper()
	first, err := json.Marshal(job)
	if err != nil {
		t.Fatal(err)
	}
	again, err := Parse("roundtrip.json", first)
	if err != nil {
		t.Fatalf("the job's own JSON is rejected:\n%v\n%s", err, first)
	}
	second, _ := json.Marshal(again)
	if !bytes.Equal(first, second) {
		t.Fatalf("JSON round trip changed the job:\n%s\n%s", first, second)
	}
	var server api.Job
	if err := json.Unmarshal(first, &server); err != nil {
		t.Fatal(err)
	}
	Canonicalize(&server)
	if errs := Validate(&server); len(errs) > 0 {
		t.Fatalf("Validate rejects an accepted job after a JSON round trip: %v\n%s", errs, first)
	}
	third, _ := json.Marshal(&server)
	if !bytes.Equal(first, third) {
		t.Fatalf("Canonicalize changed an accepted job:\n%s\n%s", first, third)
	}
}

// TestInvalidSpecs compares the errors for each spec in testdata/invalid
// with the file of the same name plus ".err" (go test -update rewrites them).
func TestInvalidSpecs(t *testing.T) {
	files, _ := filepath.Glob("testdata/invalid/*")
	for _, f := range files {
		if strings.HasSuffix(f, ".err") {
			continue
		}
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			job, err := Parse(filepath.Base(f), data)
			if err == nil {
				t.Fatalf("accepted: %+v", job)
			}
			got := err.Error() + "\n"
			if *update {
				if err := os.WriteFile(f+".err", []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(f + ".err")
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("got:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

func TestFiveErrors(t *testing.T) {
	data, err := os.ReadFile("testdata/invalid/five-errors.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Parse("web.yaml", data)
	var errs *Errors
	if !errors.As(err, &errs) {
		t.Fatalf("got %v, want *Errors", err)
	}
	want := []FieldError{
		{"name", 1, `"Web-App" is not a valid name; names must match [a-z0-9][a-z0-9-]{0,62}`},
		{"groups[0].tasks[0].resources.memory", 14, "must be greater than 0 (MiB), not 0"},
		{"groups[0].tasks[0].checks[0].port", 18, `"admin" is not a port of this task; name one declared under config.ports`},
		{"groups[0].tasks[1].driver", 21, `"kubelet" is not a driver; use docker, exec, qemu or wasm`},
		{"groups[0].restart.mode", 24, `"sometimes" is not a restart mode; use delay or fail`},
	}
	if fmt.Sprint(errs.Fields) != fmt.Sprint(want) {
		t.Fatalf("got\n%v\nwant\n%v", errs.Fields, want)
	}
	if got := strings.Split(err.Error(), "\n")[1]; got != "groups[0].tasks[0].resources.memory: must be greater than 0 (MiB), not 0 (web.yaml:14)" {
		t.Errorf("line 2 of the message reads %q", got)
	}
	var fe FieldError
	if !errors.As(err, &fe) || fe.Path != "name" {
		t.Errorf("errors.As gives the first FieldError, got %+v", fe)
	}
}

func TestErrorFormat(t *testing.T) {
	e := &Errors{File: "web.yaml", Fields: []FieldError{
		{Path: "", Line: 0, Message: "is empty"},
		{Path: "", Line: 3, Message: "is not valid YAML: oops"},
		{Path: "groups", Line: 0, Message: "must list at least one group"},
		{Path: "name", Line: 1, Message: "is required"},
	}}
	want := "web.yaml: is empty\nis not valid YAML: oops (web.yaml:3)\ngroups: must list at least one group\nname: is required (web.yaml:1)"
	if e.Error() != want {
		t.Errorf("got\n%s\nwant\n%s", e.Error(), want)
	}
	if got := (FieldError{Path: "name", Line: 1, Message: "is required"}).Error(); got != "name: is required (line 1)" {
		t.Errorf("FieldError.Error() = %q", got)
	}
}

func TestJSON(t *testing.T) {
	// Legal JSON that YAML parsers reject: \/ and a surrogate pair.
	spec := `{"name": "api", "groups": [{"name": "api", "tasks": [{"name": "api", "driver": "exec",
		"config": {"command": "\/bin\/api", "args": ["\ud83d\ude80"]}, "resources": {"cpu": 1, "memory": 1}}]}]}`
	job, err := Parse("api.json", []byte(spec))
	if err != nil {
		t.Fatal(err)
	}
	if got := job.Groups[0].Tasks[0].Config; got.Command != "/bin/api" || got.Args[0] != "🚀" {
		t.Errorf("config = %+v", got)
	}
	// Without a .json name, a JSON object is still read as JSON.
	if _, err := Parse("-", []byte(spec)); err != nil {
		t.Errorf("JSON without a .json name: %v", err)
	}
	// Lines in JSON errors.
	_, err = Parse("api.json", []byte("{\n\"name\": \"api\",\n\"groups\": [\n  {\"name\": \"api\", \"count\": 1.5}\n]\n}"))
	if want := "groups[0].count: must be a whole number, not 1.5 (api.json:4)\ngroups[0].tasks: must list at least one task (api.json:4)"; err == nil || err.Error() != want {
		t.Errorf("got\n%v\nwant\n%s", err, want)
	}
	_, err = Parse("api.json", []byte("{\n\"name\": \"api\",\n}"))
	if want := "is not valid JSON: invalid character '}' looking for beginning of object key string (api.json:3)"; err == nil || err.Error() != want {
		t.Errorf("got\n%v\nwant\n%s", err, want)
	}
}

func TestServerOwnedFieldsIgnored(t *testing.T) {
	data, _ := os.ReadFile("testdata/valid/inspect.json")
	job, err := Parse("inspect.json", data)
	if err != nil {
		t.Fatal(err)
	}
	if job.Version != 0 || job.Status != "" || !job.SubmitTime.IsZero() || job.ModifyIndex != 0 {
		t.Errorf("server fields kept: %+v", job)
	}
	// Explicit zeros are kept, not defaulted.
	g := job.Groups[0]
	if job.Priority != 0 || g.Count != 0 || g.Restart.Attempts != 0 || g.Restart.Delay != 0 {
		t.Errorf("explicit zeros were defaulted: priority %d count %d restart %+v", job.Priority, g.Count, g.Restart)
	}
}

func TestDefaults(t *testing.T) {
	spec := `name: web
type: batch
groups:
  - name: a
    restart: {mode: delay}
    tasks:
      - name: t
        driver: exec
        config: {command: /t, ports: [{name: http}]}
        resources: {cpu: 1, memory: 1}
        checks:
          - {type: tcp, port: http}
          - {type: tcp, port: http, interval: 1s}
  - name: b
    tasks:
      - name: t
        driver: exec
        config: {command: /t}
        resources: {cpu: 1, memory: 1}
`
	job, err := Parse("d.yaml", []byte(spec))
	if err != nil {
		t.Fatal(err)
	}
	if job.Namespace != "default" || job.Type != api.JobBatch || job.Priority != 50 {
		t.Errorf("job defaults: namespace %q type %q priority %d", job.Namespace, job.Type, job.Priority)
	}
	batch := api.DefaultRestartPolicy(api.JobBatch)
	a, b := job.Groups[0], job.Groups[1]
	if a.Count != 1 || b.Count != 1 {
		t.Errorf("counts %d %d, want 1", a.Count, b.Count)
	}
	if want := (api.RestartPolicy{Attempts: batch.Attempts, Interval: batch.Interval, Delay: batch.Delay, Mode: "delay"}); *a.Restart != want {
		t.Errorf("partial restart policy filled to %+v, want %+v", *a.Restart, want)
	}
	if *b.Restart != batch {
		t.Errorf("restart policy %+v, want the batch default %+v", *b.Restart, batch)
	}
	c := a.Tasks[0].Checks
	if want := (api.Check{Type: "tcp", Port: "http", Interval: api.Duration(10 * time.Second), Timeout: api.Duration(2 * time.Second), Failures: 3}); !reflect.DeepEqual(c[0], want) {
		t.Errorf("check defaults %+v, want %+v", c[0], want)
	}
	if c[1].Timeout != api.Duration(time.Second) {
		t.Errorf("a check with a 1s interval gets timeout %s, want 1s", c[1].Timeout)
	}
	if p := a.Tasks[0].Config.Ports[0]; p.To != 0 || p.Static != 0 {
		t.Errorf("port defaults %+v, want to and static left 0", p)
	}

	// Canonicalize alone: idempotent, and nil-safe.
	j := &api.Job{Groups: []*api.Group{nil, {Tasks: []*api.Task{nil, {Checks: []api.Check{{Interval: -1}}}}}}}
	Canonicalize(j)
	once, _ := json.Marshal(j)
	Canonicalize(j)
	twice, _ := json.Marshal(j)
	if !bytes.Equal(once, twice) {
		t.Errorf("Canonicalize is not idempotent:\n%s\n%s", once, twice)
	}
	if j.Namespace != "default" || j.Type != api.JobService || *j.Groups[1].Restart != api.DefaultRestartPolicy(api.JobService) {
		t.Errorf("Canonicalize: %s", once)
	}
	Canonicalize(nil)
	if errs := Validate(nil); len(errs) != 1 {
		t.Errorf("Validate(nil) = %v", errs)
	}
}

func TestUnsupportedRegistry(t *testing.T) {
	data, _ := os.ReadFile("testdata/valid/contract.yaml")
	_, err := Parse("u.yaml", data)
	if want := len(Unsupported); want == 0 && err != nil || want > 0 && (err == nil || strings.Count(err.Error(), "not supported yet") != want) {
		t.Fatalf("got %v, want %d key(s) not supported yet", err, want)
	}

	// Once a feature leaves the registry, its rules apply.
	saved := Unsupported
	t.Cleanup(func() { Unsupported = saved })
	Unsupported = map[string]string{}
	if _, err := Parse("u.yaml", data); err != nil {
		t.Fatalf("with every feature supported: %v", err)
	}
	spec := `name: web
groups:
  - name: web
    update: {max_parallel: 0, min_healthy_time: 1m, healthy_deadline: 30s, progress_deadline: 10s}
    services: [{name: web, port: http}, {name: web, port: grpc}, {name: Api}]
    tasks:
      - name: server
        driver: docker
        config: {image: "x", ports: [{name: http}]}
        resources: {cpu: 1, memory: 1}
        security: {user: "a b", cap_drop: [all]}
`
	_, err = Parse("u.yaml", []byte(spec))
	want := `groups[0].update.max_parallel: must be between 1 and 10000, not 0 (u.yaml:4)
groups[0].update.healthy_deadline: must be longer than min_healthy_time (1m0s), not 30s (u.yaml:4)
groups[0].update.progress_deadline: must be at least healthy_deadline (30s), not 10s (u.yaml:4)
groups[0].services[1].name: "web" is already the name of groups[0].services[0]; each service needs its own name (u.yaml:5)
groups[0].services[1].port: "grpc" is not a port of any task in this group; declare it under a task's config.ports (u.yaml:5)
groups[0].services[2].name: "Api" is not a valid name; names must match [a-z0-9][a-z0-9-]{0,62} (u.yaml:5)
groups[0].services[2].port: is required; name a port declared by one of the group's tasks (u.yaml:5)
groups[0].tasks[0].security.user: "a b" is not a user; give a name or uid[:gid] without white space (u.yaml:11)
groups[0].tasks[0].security.cap_drop[0]: "all" is not a capability; use names like NET_ADMIN or ALL (u.yaml:11)`
	if err == nil || err.Error() != want {
		t.Errorf("got\n%v\nwant\n%s", err, want)
	}
}

func TestDocumentProblems(t *testing.T) {
	for _, tc := range []struct {
		name, spec, want string
	}{
		{"empty", "", "s.yaml: is empty; it must hold one job spec"},
		{"white space", " \n\t\n", "s.yaml: is empty; it must hold one job spec"},
		{"comments only", "# nothing\n", "s.yaml: holds no job spec, only comments or document markers"},
		{"null", "~\n", "must be a mapping of the job's keys (name, groups, …) to values, not null (s.yaml:1)"},
		{"scalar", "web\n", `must be a mapping of the job's keys (name, groups, …) to values, not "web" (s.yaml:1)`},
		{"two documents", "name: a\n---\nname: b\n", "holds a second YAML document; a file holds exactly one job spec (s.yaml:2)"},
		{"invalid YAML", "name: a\ngroups: [\n  {name: b\n", "is not valid YAML: did not find expected ',' or '}' (s.yaml:4)"},
		{"tab indent", "name: a\ngroups:\n\t- name: b\n", "is not valid YAML: found character that cannot start any token (s.yaml:3)"},
		{"too large", "name: a\n" + strings.Repeat("#", MaxSpecBytes), "s.yaml: is 1048584 bytes; a job spec may be at most 1048576 bytes (1 MiB)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("s.yaml", []byte(tc.spec))
			if err == nil || err.Error() != tc.want {
				t.Errorf("got\n%v\nwant\n%s", err, tc.want)
			}
		})
	}
	// A trailing document marker adds no document.
	if _, err := Parse("s.yaml", []byte(base+"---\n")); err != nil {
		t.Errorf("trailing ---: %v", err)
	}
}

func TestBillionLaughs(t *testing.T) {
	data, _ := os.ReadFile("testdata/invalid/billion-laughs.yaml")
	_, err := Parse("laughs.yaml", data)
	if err == nil || !strings.Contains(err.Error(), "groups: YAML aliases (*i) are not supported; write the value out in full (laughs.yaml:12)") {
		t.Fatalf("got %v", err)
	}
	// Aliases in JSON cannot exist; in an unknown key they are never followed.
	if strings.Contains(err.Error(), "lol") {
		t.Errorf("an alias was expanded: %v", err)
	}
}

func TestLimits(t *testing.T) {
	task := "      - name: t%d\n        driver: exec\n        config: {command: /t}\n        resources: {cpu: 1, memory: 1}\n"
	var many strings.Builder
	many.WriteString("name: web\ngroups:\n  - name: web\n    tasks:\n")
	for i := range MaxTasks + 1 {
		fmt.Fprintf(&many, task, i)
	}
	_, err := Parse("l.yaml", []byte(many.String()))
	if want := "groups[0].tasks: has 51 tasks; at most 50 are allowed (l.yaml:4)"; err == nil || err.Error() != want {
		t.Errorf("got\n%v\nwant\n%s", err, want)
	}

	var groups strings.Builder
	groups.WriteString("name: web\ngroups:\n")
	for i := range MaxGroups + 1 {
		fmt.Fprintf(&groups, "  - {name: g%d, tasks: [{name: t, driver: exec, config: {command: /t}, resources: {cpu: 1, memory: 1}}]}\n", i)
	}
	_, err = Parse("l.yaml", []byte(groups.String()))
	if want := "groups: has 101 groups; at most 100 are allowed (l.yaml:2)"; err == nil || err.Error() != want {
		t.Errorf("got\n%v\nwant\n%s", err, want)
	}

	var env strings.Builder
	for i := range MaxEnv + 1 {
		fmt.Fprintf(&env, "            K%d: v\n", i)
	}
	envSpec := edit("", `config: {image: "demo:1"}`, "config:\n          image: demo\n          env:\n"+env.String())
	_, err = Parse("l.yaml", []byte(envSpec))
	if want := "groups[0].tasks[0].config.env: has 1001 entries; at most 1000 are allowed (l.yaml:9)"; err == nil || err.Error() != want {
		t.Errorf("got\n%v\nwant\n%s", err, want)
	}

	long := strings.Repeat("x", MaxString+1)
	_, err = Parse("l.yaml", []byte(edit("", `config: {image: "demo:1"}`, `config: {image: "demo:1", args: [`+long+`]}`)))
	if want := "groups[0].tasks[0].config.args[0]: is 4097 bytes long; at most 4096 are allowed (l.yaml:7)"; err == nil || err.Error() != want {
		t.Errorf("got\n%v\nwant\n%s", err, want)
	}

	args := "[" + strings.Repeat("a,", MaxArgs) + "a]"
	_, err = Parse("l.yaml", []byte(edit("", `config: {image: "demo:1"}`, `config: {image: "demo:1", entrypoint: `+args+`}`)))
	if want := "groups[0].tasks[0].config.entrypoint: has 1001 entries; at most 1000 are allowed (l.yaml:7)"; err == nil || err.Error() != want {
		t.Errorf("got\n%v\nwant\n%s", err, want)
	}

	checks := "        checks: [" + strings.Repeat("{type: exec, command: [x]},", MaxChecks) + "{type: exec, command: [x]}]\n"
	_, err = Parse("l.yaml", []byte(edit(checks)))
	if want := "groups[0].tasks[0].checks: has 17 checks; at most 16 are allowed (l.yaml:9)"; err == nil || err.Error() != want {
		t.Errorf("got\n%v\nwant\n%s", err, want)
	}

	cons := "    constraints: [" + strings.Repeat("{operator: distinct_hosts},", MaxConstraints) + "{operator: distinct_hosts}]\n"
	_, err = Parse("l.yaml", []byte(edit(cons)))
	if want := "groups[0].constraints: has 65 constraints; at most 64 are allowed (l.yaml:9)"; err == nil || err.Error() != want {
		t.Errorf("got\n%v\nwant\n%s", err, want)
	}

	// Thousands of problems: the first MaxErrors are listed, then a count.
	var bad strings.Builder
	bad.WriteString("name: web\ngroups:\n  - name: web\n    tasks:\n      - name: t\n        driver: exec\n        config: {command: /t}\n        resources: {cpu: 1, memory: 1}\n")
	for i := range 500 {
		fmt.Fprintf(&bad, "x%d: 1\n", i)
	}
	_, err = Parse("l.yaml", []byte(bad.String()))
	var errs *Errors
	if !errors.As(err, &errs) || len(errs.Fields) != MaxErrors+1 || errs.Fields[MaxErrors].Message != "and 400 more problems (only the first 100 are listed)" {
		t.Errorf("got %d problems, last %+v", len(errs.Fields), errs.Fields[len(errs.Fields)-1])
	}
}

// TestDeepNesting feeds nesting far deeper than any spec: it must fail
// cleanly, never exhaust the stack.
func TestDeepNesting(t *testing.T) {
	n := 100_000
	for _, spec := range []string{
		"name: " + strings.Repeat("[", n) + strings.Repeat("]", n),
		"{\"name\": " + strings.Repeat("[", n) + strings.Repeat("]", n) + "}",
		"name: web\nx: " + strings.Repeat("{a: ", n) + "1" + strings.Repeat("}", n),
	} {
		if _, err := Parse("deep", []byte(spec)); err == nil {
			t.Errorf("accepted nesting %d deep", n)
		}
	}
}
