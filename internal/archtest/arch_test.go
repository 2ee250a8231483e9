package archtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/gantryhq/gantry/"

// layers orders the module's packages from the bottom up: a package may
// import packages of its own layer or of a lower one, never of a higher
// one. Every package must be listed (a pattern ending in "/..." covers a
// subtree), so a new package takes a place on purpose.
var layers = []struct {
	name string
	pkgs []string
}{
	{"model", []string{"internal/api", "internal/nodewire", "internal/pki", "internal/bench/stats", "internal/lifecycle/model",
		"internal/gpu/nvml/nvmltest", "internal/vfio/vfiotest", "internal/vsphere/vcsim"}},
	{"API client", []string{"internal/apiclient"}},
	{"pure cores and leaf libraries", []string{"internal/acl", "internal/jobspec", "internal/lifecycle", "internal/lifecycle/gen",
		"internal/reconcile", "internal/gpu", "internal/gpu/mps", "internal/gpu/nvml", "internal/vfio", "internal/defrag", "internal/discovery",
		"internal/metrics", "internal/versions", "internal/compose", "internal/audit", "internal/vsphere", "internal/driver",
		"internal/bench/report", "internal/bench/plot", "internal/bench/compare", "internal/agent/tasklife"}},
	{"scheduling", []string{"internal/scheduler/...", "internal/validate", "internal/sim", "internal/defragplan"}},
	{"drivers", []string{"internal/driver/docker", "internal/driver/exec", "internal/driver/null", "internal/driver/qemu", "internal/driver/wasm"}},
	{"shared by agent and server", []string{"internal/admission", "internal/lb", "internal/dns", "internal/ui"}},
	{"store", []string{"internal/state/..."}},
	{"node", []string{"internal/agent", "internal/loadgen"}},
	{"control plane", []string{"internal/server/..."}},
	{"web UI", []string{"internal/ui/web"}},
	{"entry points and tools", []string{"internal/cli", "internal/bench/suite", "internal/vsphere/vsbench", "internal/sim/cmd/...", "cmd/...",
		"internal/archtest", "examples/...", "scripts/...", "deploy/..."}},
}

// rules forbid imports. An import of a path with one of the prefixes is
// allowed only in the packages of allow (and in the known exceptions,
// each with its reason). tests says whether test files count too.
var rules = []struct {
	name     string
	prefixes []string
	allow    []string
	known    map[string]string // package → why it is allowed today
	tests    bool
	from     []string // packages the rule applies to; empty: every package
}{
	{name: "only the store talks to etcd", prefixes: []string{"go.etcd.io/"}, allow: []string{"internal/state/..."}, tests: true},
	{name: "only the docker driver and the audit collector use the Docker client",
		prefixes: []string{"github.com/moby/moby/client", "github.com/docker/docker/"},
		allow:    []string{"internal/driver/docker", "internal/audit"},
		known: map[string]string{
			"internal/agent": "audit.go hands the docker driver's client to audit.Collector (the field is of the client's type)",
			"internal/cli":   "compose.go asks the local engine which images it lacks before `gantry compose up` submits",
		}},
	{name: "the agent reaches the servers over the API only", prefixes: []string{module + "internal/state", module + "internal/server"},
		from: []string{"internal/agent", "internal/driver/...", "internal/loadgen"}},
	{name: "the server drives no task itself", prefixes: []string{module + "internal/agent", module + "internal/driver/"},
		from: []string{"internal/server/..."}},
	// The UI's handlers (internal/ui/web) read the server through
	// interfaces of their own; the daemon mounts them on the server.
	{name: "the server does not hold the UI", prefixes: []string{module + "internal/ui"}, from: []string{"internal/server/..."}},
	// The control plane's components own their jobs: the rest of the
	// server reaches them through their methods, not around them.
	// (vspheredrain is the monitor's pure decision: it uses the matching,
	// never a collector.)
	{name: "in the control plane, only the virtualization monitor talks to vCenter",
		prefixes: []string{module + "internal/vsphere"}, allow: []string{"internal/server/vspheremon", "internal/server/vspheredrain"}, from: []string{"internal/server/..."},
		known: map[string]string{
			"internal/server": "forui.go hands the web UI Gantry's own VMs as vsphere.GantryVM (the UI's interface names that type)",
		}},
	{name: "in the control plane, only defragrun carries GPU defragmentation out",
		prefixes: []string{module + "internal/defragplan", module + "internal/defrag"}, allow: []string{"internal/server/defragrun"}, from: []string{"internal/server/..."}},
	{name: "in the control plane, only the isolation component admits jobs and keeps audits",
		prefixes: []string{module + "internal/admission", module + "internal/audit"}, allow: []string{"internal/server/isolation"}, from: []string{"internal/server/..."},
		known: map[string]string{
			"internal/server": "forui.go hands the web UI the policy in force as audit.PolicyDocument (the UI's interface names that type)",
		}},
}

// pure packages decide without the outside world: no I/O packages, no
// clock, no goroutines in their non-test files. The clock comes in as a
// value (STYLE.md, lesson 1).
var pure = []string{"internal/scheduler", "internal/reconcile", "internal/lifecycle", "internal/validate",
	"internal/admission", "internal/acl", "internal/jobspec", "internal/defragplan",
	"internal/server/evalstep", "internal/server/broker", "internal/server/nodemon", "internal/server/overload", "internal/server/gc", "internal/server/deploywatch", "internal/server/vspheredrain", "internal/server/ownwrites", "internal/agent/tasklife"}

var (
	pureForbiddenImports = []string{"os", "os/exec", "os/signal", "net", "net/http", "syscall"}
	pureForbiddenCalls   = map[string]bool{"Now": true, "Since": true, "Until": true, "Sleep": true, "After": true,
		"AfterFunc": true, "Tick": true, "NewTimer": true, "NewTicker": true}
)

type pkg struct {
	ImportPath   string
	Dir          string
	GoFiles      []string
	Imports      []string
	TestImports  []string
	XTestImports []string
}

// list is every package of the module as `go list` sees it.
func list(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", module+"...")
	cmd.Dir = "../.."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.Bytes())
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		p.ImportPath = strings.TrimPrefix(p.ImportPath, module)
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 20 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	return pkgs
}

// matches reports whether path is one of patterns ("x/..." covers x and
// everything below it).
func matches(path string, patterns []string) bool {
	for _, p := range patterns {
		if base, ok := strings.CutSuffix(p, "/..."); ok {
			if path == base || strings.HasPrefix(path, base+"/") {
				return true
			}
		} else if path == p {
			return true
		}
	}
	return false
}

func layerOf(path string) int {
	for i, l := range layers {
		if matches(path, l.pkgs) {
			return i
		}
	}
	return -1
}

// TestArchitecture checks the tables above against the module.
func TestArchitecture(t *testing.T) {
	pkgs := list(t)
	byPath := map[string]pkg{}
	for _, p := range pkgs {
		byPath[p.ImportPath] = p
		if strings.HasPrefix(p.ImportPath, "e2e") {
			continue // the end-to-end tests drive everything from outside
		}
		if layerOf(p.ImportPath) < 0 {
			t.Errorf("package %s is in no layer of the table: give it one", p.ImportPath)
		}
	}

	t.Run("layers", func(t *testing.T) {
		for _, p := range pkgs {
			from := layerOf(p.ImportPath)
			if from < 0 {
				continue
			}
			for _, imp := range p.Imports {
				to, ok := strings.CutPrefix(imp, module)
				if !ok {
					continue
				}
				if l := layerOf(to); l > from {
					t.Errorf("%s (layer %q) imports %s of the higher layer %q", p.ImportPath, layers[from].name, to, layers[l].name)
				}
			}
		}
	})

	for _, r := range rules {
		t.Run(r.name, func(t *testing.T) {
			used := map[string]bool{}
			for _, p := range pkgs {
				if strings.HasPrefix(p.ImportPath, "e2e") || (len(r.from) > 0 && !matches(p.ImportPath, r.from)) {
					continue
				}
				imports := p.Imports
				if r.tests {
					imports = slices.Concat(p.Imports, p.TestImports, p.XTestImports)
				}
				for _, imp := range imports {
					if !hasPrefix(imp, r.prefixes) || matches(p.ImportPath, r.allow) {
						continue
					}
					if _, ok := r.known[p.ImportPath]; ok {
						used[p.ImportPath] = true
						continue
					}
					t.Errorf("%s imports %s", p.ImportPath, imp)
				}
			}
			for k := range r.known {
				if !used[k] {
					t.Errorf("known exception %s no longer imports what the rule forbids: remove it from the table", k)
				}
			}
		})
	}

	t.Run("purity", func(t *testing.T) {
		for _, path := range pure {
			p, ok := byPath[path]
			if !ok {
				t.Errorf("pure package %s does not exist", path)
				continue
			}
			for _, problem := range checkPure(t, p.Dir, p.GoFiles) {
				t.Errorf("%s: %s", p.ImportPath, problem)
			}
		}
	})
}

func hasPrefix(imp string, prefixes []string) bool {
	for _, p := range prefixes {
		if imp == strings.TrimSuffix(p, "/") || strings.HasPrefix(imp, p) {
			return true
		}
	}
	return false
}

// checkPure parses the package's non-test files (those its build compiles)
// and names every I/O import, read of the clock and go statement.
func checkPure(t *testing.T, dir string, files []string) []string {
	t.Helper()
	var problems []string
	fset := token.NewFileSet()
	for _, name := range files {
		f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		timeName := ""
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if slices.Contains(pureForbiddenImports, path) {
				problems = append(problems, fmt.Sprintf("%s imports %s: a pure package does no I/O", name, path))
			}
			if path == "time" {
				timeName = "time"
				if imp.Name != nil {
					timeName = imp.Name.Name
				}
			}
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.GoStmt:
				problems = append(problems, fmt.Sprintf("%s: a go statement", at(fset, n.Pos())))
			case *ast.SelectorExpr:
				if id, ok := n.X.(*ast.Ident); ok && timeName != "" && id.Name == timeName && pureForbiddenCalls[n.Sel.Name] {
					problems = append(problems, fmt.Sprintf("%s: time.%s reads the clock: take the time as a value", at(fset, n.Pos()), n.Sel.Name))
				}
			}
			return true
		})
	}
	return problems
}

// TestPurityCheckFindsViolations: the purity check, run on a file that
// breaks each rule once (testdata/impure), names each break.
func TestPurityCheckFindsViolations(t *testing.T) {
	got := checkPure(t, "testdata/impure", []string{"impure.go"})
	want := []string{"imports os", "imports net/http", "a go statement", "clock.Now reads the clock", "clock.Since reads the clock"}
	if len(got) != len(want) {
		t.Errorf("%d problems, want %d: %q", len(got), len(want), got)
	}
	for _, w := range want {
		if !slices.ContainsFunc(got, func(g string) bool { return strings.Contains(g, strings.Replace(w, "clock.", "time.", 1)) }) {
			t.Errorf("no problem says %q: %q", w, got)
		}
	}
}

func at(fset *token.FileSet, p token.Pos) string {
	pos := fset.Position(p)
	return fmt.Sprintf("%s:%d", filepath.Base(pos.Filename), pos.Line)
}
