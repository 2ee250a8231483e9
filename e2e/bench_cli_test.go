package e2e

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/bench/report"
)

// TestBenchRunQuick runs `gantry bench run --quick --suite startup,sched`
// against a dev cluster, as the README says, and checks the report's
// shape: both suites ok, every figure with samples and a summary that
// matches them, the docker and exec start-ups beside their direct
// baselines, the page and the charts written. No timing is asserted.
func TestBenchRunQuick(t *testing.T) {
	c := StartDev(t)
	out := filepath.Join(t.TempDir(), "report")
	r := c.Gantry("bench", "run", "--quick", "--suite", "startup,sched", "--drivers", "docker,exec", "--out", out)
	if r.Code != 0 {
		t.Fatalf("bench run: exit %d\n%s\n%s", r.Code, r.Stdout, r.Stderr)
	}
	rep, err := report.Read(filepath.Join(out, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Partial || len(rep.Suites) != 2 || rep.Machine.CPUs == 0 || rep.Machine.GoVersion == "" || rep.Machine.DockerVersion == "" {
		t.Fatalf("report: partial %v, %d suites, machine %+v", rep.Partial, len(rep.Suites), rep.Machine)
	}
	for _, s := range rep.Suites {
		if s.Status != report.StatusOK {
			t.Errorf("suite %s: %s %s", s.Name, s.Status, s.Reason)
		}
	}
	if rep.Suites[0].Target != c.Addr {
		t.Errorf("startup measured %q, want the cluster given by --address (%s)", rep.Suites[0].Target, c.Addr)
	}
	names := map[string]bool{}
	for _, f := range rep.Figures() {
		names[f.Name] = true
		if len(f.Samples) == 0 || f.Summary.N != len(f.Samples) || f.Unit == "" || f.Better == "" {
			t.Errorf("figure %s: %d samples, summary n=%d, unit %q, better %q", f.Name, len(f.Samples), f.Summary.N, f.Unit, f.Better)
		}
		if f.Summary.Min > f.Summary.Median || f.Summary.Median > f.Summary.P90 || f.Summary.P90 > f.Summary.P99 || f.Summary.P99 > f.Summary.Max {
			t.Errorf("figure %s: summary out of order %+v", f.Name, f.Summary)
		}
	}
	for _, want := range []string{
		"startup/docker/running", "startup/docker/healthy", "startup/docker-direct/healthy",
		"startup/exec/running", "startup/exec/healthy", "startup/exec-direct/healthy",
		"sched/cpu/1000", "sched/gpu-mixed/2000", "sched/gang8/1000",
	} {
		if !names[want] {
			t.Errorf("no figure %s (have %v)", want, names)
		}
	}
	if f, _ := rep.Figure("startup/docker/healthy"); f.Summary.N != 6 || len(f.Rounds) != 2 || f.Baseline != "startup/docker-direct/healthy" {
		t.Errorf("docker healthy: %d samples (want 3 replicas × 2 rounds), %d rounds, baseline %q", f.Summary.N, len(f.Rounds), f.Baseline)
	}
	if f, ok := rep.Figure("startup/exec/healthy-vs-direct"); !ok || len(f.Samples) != 2 || f.Summary.Min <= 0 {
		t.Errorf("exec against its direct start: %+v, want one ratio per round", f)
	}
	for _, f := range []string{"report.md", "index.html", "startup-healthy.svg", "startup-running.svg", "sched-throughput.svg"} {
		if st, err := os.Stat(filepath.Join(out, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	if !strings.Contains(r.Stdout, "| startup/exec/healthy | ms | 6 |") {
		t.Errorf("no Markdown summary on stdout:\n%s", r.Stdout)
	}
	// Nothing the suite started stays: its jobs are stopped.
	var jobs []struct {
		Name   string `json:"name"`
		Status string `json:"status"`
	}
	if err := c.GetJSON("/v1/jobs", &jobs); err != nil {
		t.Fatal(err)
	}
	for _, j := range jobs {
		if strings.HasPrefix(j.Name, "bench-") && j.Status != "dead" {
			t.Errorf("job %s left %s", j.Name, j.Status)
		}
	}
	if left := benchContainers(t); len(left) > 0 {
		t.Errorf("containers left running: %v", left)
	}
}

// TestBenchRunInterrupted interrupts a run in the middle of the startup
// suite (which then runs its own gantry dev): the command exits 1, the
// report keeps the figures measured before and says it is partial, and
// neither a cluster process nor a container of the run is left.
func TestBenchRunInterrupted(t *testing.T) {
	tmp := t.TempDir()
	out := filepath.Join(tmp, "report")
	cmd := exec.Command(gantryBin, "bench", "run", "--quick", "--suite", "sched,startup", "--drivers", "docker", "--rounds", "3", "--out", out)
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stderr)
	var seen []string
	interrupted := false
	for sc.Scan() {
		seen = append(seen, sc.Text())
		if !interrupted && strings.Contains(sc.Text(), "docker round 1/3") {
			cmd.Process.Signal(syscall.SIGINT)
			interrupted = true
		}
	}
	err = cmd.Wait()
	if !interrupted {
		t.Fatalf("the run ended before its first docker round:\n%s", strings.Join(seen, "\n"))
	}
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("exit: %v, want 1\n%s", err, strings.Join(seen, "\n"))
	}
	rep, err := report.Read(filepath.Join(out, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Partial || len(rep.Suites) != 2 || rep.Suites[0].Status != report.StatusOK || rep.Suites[1].Status != report.StatusInterrupted {
		t.Fatalf("report: partial %v (%s), suites %+v", rep.Partial, rep.PartialReason, rep.Suites)
	}
	if len(rep.Suites[0].Figures) == 0 {
		t.Error("the sched figures measured before the interrupt are gone")
	}
	if last := seen[len(seen)-1]; !strings.Contains(last, "the report is partial") {
		t.Errorf("last line %q does not say the report is partial", last)
	}
	// The scratch folder (under TMPDIR) is gone with every process that
	// ran from it.
	if left, _ := filepath.Glob(filepath.Join(tmp, "gantry-bench*")); len(left) > 0 {
		t.Errorf("scratch left: %v", left)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, _ := os.ReadFile(p)
		if strings.Contains(string(b), tmp) {
			t.Errorf("process %s still runs: %q", p, strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(benchContainers(t)) > 0 && time.Now().Before(deadline) {
		time.Sleep(500 * time.Millisecond)
	}
	if left := benchContainers(t); len(left) > 0 {
		t.Errorf("containers left: %v", left)
	}
}

// benchContainers lists running containers of bench jobs or of the
// direct baseline.
func benchContainers(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("docker", "ps", "--format", `{{.ID}} {{.Label "gantry.job"}} {{.Label "gantry-bench"}}`).Output()
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && (strings.HasPrefix(f[1], "bench-startup-") || len(f) == 3) {
			left = append(left, line)
		}
	}
	return left
}
