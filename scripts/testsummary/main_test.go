package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestSkipsAreCounted (issue 15): tests that skipped for lack of a tool
// went unseen under `make test`; the summary names each skip and why.
func TestSkipsAreCounted(t *testing.T) {
	in := `{"Action":"output","Package":"p","Test":"TestA","Output":"    a_test.go:3: spin not installed\n"}
{"Action":"skip","Package":"p","Test":"TestA"}
{"Action":"pass","Package":"p","Test":"TestB"}
{"Action":"pass","Package":"p"}
`
	cmd := exec.Command("go", "run", ".")
	cmd.Stdin = strings.NewReader(in)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "tests: 1 passed, 0 failed, 1 skipped") ||
		!strings.Contains(string(out), "SKIP p TestA (a_test.go:3: spin not installed)") {
		t.Fatalf("%v\n%s", err, out)
	}
}

// TestPrerequisitesFailAtOnce (issue 15): without the tools the tests
// drive, `make test` fails before running anything, naming each.
func TestPrerequisitesFailAtOnce(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bash, "../test-prereqs.sh")
	cmd.Env = []string{"PATH=" + t.TempDir(), "HOME=" + os.Getenv("HOME")}
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("passed with an empty PATH:\n%s", out)
	}
	for _, want := range []string{"chromium", "promtool", "spin", "a running Docker engine", "apt-get install -y chromium prometheus docker-compose spin gcc"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("does not name %q:\n%s", want, out)
		}
	}
}
