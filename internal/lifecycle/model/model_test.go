package model

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// The bounds checked exhaustively: 2 nodes, 2 allocations, 1 leader
// change, 2 lost messages (the model's defaults, named here so that the
// test says what it checks).
var bounds = []string{"-DNN=2", "-DNA=2", "-DLEADER_CHANGES=1", "-DMAXLOST=2"}

// tools returns spin and gcc, skipping the test when either is missing
// unless GANTRY_REQUIRE_SPIN=1.
func tools(t *testing.T) (spin, cc string) {
	t.Helper()
	var err error
	if spin, err = exec.LookPath("spin"); err == nil {
		cc, err = exec.LookPath("gcc")
	}
	if err != nil {
		if os.Getenv("GANTRY_REQUIRE_SPIN") == "1" {
			t.Fatalf("spin and gcc are required (GANTRY_REQUIRE_SPIN=1): %v", err)
		}
		t.Skipf("spin or gcc not installed (apt-get install spin gcc): %v", err)
	}
	return spin, cc
}

// result is what one pan run found.
type result struct {
	out     string
	errors  int
	states  int
	memMB   float64
	seconds float64
}

var (
	errorsRe = regexp.MustCompile(`errors: (\d+)`)
	statesRe = regexp.MustCompile(`(\d+) states, stored`)
	memRe    = regexp.MustCompile(`([\d.]+)\s+total actual memory usage`)
	timeRe   = regexp.MustCompile(`pan: elapsed time ([\d.e+]+) seconds`)
)

// verify generates, compiles and runs pan for the model with the given
// preprocessor defines, compiler flags and pan arguments.
func verify(t *testing.T, defines, cflags, panArgs []string) result {
	t.Helper()
	spin, cc := tools(t)
	dir := t.TempDir()
	for _, f := range []string{"lifecycle.pml", "transitions.pml"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run := func(name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run(spin, append(append([]string{"-a"}, defines...), "lifecycle.pml")...)
	run(cc, append(append([]string{"-O2", "-w", "-o", "pan"}, cflags...), "pan.c")...)
	out := run("./pan", panArgs...)
	r := result{out: out, errors: -1}
	if m := errorsRe.FindStringSubmatch(out); m != nil {
		r.errors, _ = strconv.Atoi(m[1])
	}
	if m := statesRe.FindStringSubmatch(out); m != nil {
		r.states, _ = strconv.Atoi(m[1])
	}
	if m := memRe.FindStringSubmatch(out); m != nil {
		r.memMB, _ = strconv.ParseFloat(m[1], 64)
	}
	if m := timeRe.FindStringSubmatch(out); m != nil {
		r.seconds, _ = strconv.ParseFloat(m[1], 64)
	}
	if r.errors < 0 {
		t.Fatalf("pan printed no error count:\n%s", out)
	}
	t.Logf("pan %s: %d errors, %d states, %.0f MB, %.1f s", strings.Join(panArgs, " "), r.errors, r.states, r.memMB, r.seconds)
	return r
}

// safety checks the assertions: the table allows every write, a task
// never runs on two nodes, no resource is handed out twice.
func safety(t *testing.T, extra ...string) result {
	return verify(t, append(append([]string{}, bounds...), extra...),
		[]string{"-DNOCLAIM", "-DSAFETY", "-DCOLLAPSE"}, []string{"-m100000"})
}

func mustHold(t *testing.T, r result) {
	t.Helper()
	if r.errors != 0 || strings.Contains(r.out, "violated") || strings.Contains(r.out, "acceptance cycle") {
		t.Fatalf("spin found a counterexample:\n%s", r.out)
	}
	if !strings.Contains(r.out, "Full statespace search") {
		t.Fatalf("the search was not exhaustive:\n%s", r.out)
	}
	if strings.Contains(r.out, "max search depth too small") {
		t.Fatalf("the search was truncated:\n%s", r.out)
	}
}

func mustFail(t *testing.T, r result, what string) {
	t.Helper()
	if r.errors == 0 || !strings.Contains(r.out, what) {
		t.Fatalf("the broken model must fail with %q, but spin reported:\n%s", what, r.out)
	}
}

// TestSafety: every state of the model at the bounds keeps the
// assertions (lifecycle table, no double run, no double grant), and
// every final state of a run in which the job was stopped has nothing
// running (stop_clears; see Final in lifecycle.pml for why checking the
// final states suffices).
func TestSafety(t *testing.T) { mustHold(t, safety(t)) }

// TestNoSilentLoss: every run in which the job is never stopped ends with
// an allocation of its current version running or reported failed.
func TestNoSilentLoss(t *testing.T) { mustHold(t, safety(t, "-DNO_JOB_STOP")) }

// The broken variants prove that the properties can fail.
func TestBrokenWithoutRevisionCheck(t *testing.T) {
	mustFail(t, safety(t, "-DNO_REVISION_CHECK"), "assertion violated")
}

func TestBrokenWithoutTableCheck(t *testing.T) {
	mustFail(t, safety(t, "-DNO_TABLE_CHECK"), "assertion violated")
}

func TestBrokenWithoutRetry(t *testing.T) {
	mustFail(t, safety(t, "-DNO_JOB_STOP", "-DNO_RETRY"), "assertion violated")
}

func TestBrokenWithoutStoppingEndedTasks(t *testing.T) {
	mustFail(t, safety(t, "-DNO_STOP_ENDED"), "assertion violated")
}
