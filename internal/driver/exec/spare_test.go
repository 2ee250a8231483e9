package exec

import (
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/driver"
)

// eventually fails the test unless ok holds within 30 s.
func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !ok(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 30s", what)
		}
	}
}

func pidFrom(t *testing.T, path string) int {
	t.Helper()
	var pid int
	eventually(t, "the spare's program wrote its pid", func() bool {
		b, err := os.ReadFile(path)
		pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil && pid > 0
	})
	return pid
}

// TestSpareTaken: a task that runs the spare's program takes the spare:
// the program that was already running gets the task's argv on its
// descriptor 3, its output goes to the task's logs, and its exit is the
// task's; the spare is gone once taken.
func TestSpareTaken(t *testing.T) {
	sh, err := osexec.LookPath("sh")
	if err != nil {
		t.Fatalf("this test needs sh: %v", err)
	}
	root := t.TempDir()
	d := newDriver(t, root)
	pidFile := filepath.Join(t.TempDir(), "pid")
	// The spare's program: it says who it is, then waits for its task.
	sp, err := d.StartSpare(sh, []string{"sh", "-c", `echo $$ > ` + pidFile + `; read task <&3; echo "task $task"; echo "to stderr" >&2; exit 4`}, filepath.Join(root, "spares.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sp.Close)
	pid := pidFrom(t, pidFile)

	// The task's own script would print something else: what the logs
	// show proves the spare's program ran it.
	cfg := task(root, "n1", sh, "-c", "echo not the spare")
	h, err := d.StartWith(testCtx(t), cfg, StartOptions{Spare: sp})
	if err != nil {
		t.Fatalf("start with a spare: %v", err)
	}
	t.Cleanup(func() { d.Destroy(testCtx(t), h) })
	if h.Pid != pid {
		t.Errorf("the task's pid is %d, want the spare's program, %d", h.Pid, pid)
	}
	res := wait(t, d, h)
	if res.ExitCode != 4 {
		t.Errorf("exit %+v, want code 4", res)
	}
	if got, want := logs(t, d, h, driver.LogOptions{}), `task ["`+sh+`","-c","echo not the spare"]`+"\n"; got != want {
		t.Errorf("stdout %q, want %q", got, want)
	}
	if got := logs(t, d, h, driver.LogOptions{Stderr: true}); got != "to stderr\n" {
		t.Errorf("stderr %q", got)
	}
	if _, err := d.StartWith(testCtx(t), task(root, "n1", sh, "-c", "true"), StartOptions{Spare: sp}); err == nil {
		t.Error("a spare was taken twice")
	}
}

// TestSpareLetGoAndEnded: a spare let go (Close) ends its program and its
// executor; a spare whose program ends before a task comes is no longer
// alive; a task that runs another program is refused by the spare and
// starts nothing.
func TestSpareLetGoAndEnded(t *testing.T) {
	sh, err := osexec.LookPath("sh")
	if err != nil {
		t.Fatalf("this test needs sh: %v", err)
	}
	root := t.TempDir()
	d := newDriver(t, root)
	log := filepath.Join(root, "spares.log")

	pidFile := filepath.Join(t.TempDir(), "pid")
	sp, err := d.StartSpare(sh, []string{"sh", "-c", `echo $$ > ` + pidFile + `; sleep 600`}, log)
	if err != nil {
		t.Fatal(err)
	}
	pid := pidFrom(t, pidFile)
	if !sp.Alive() {
		t.Fatal("a new spare is not alive")
	}
	sp.Close()
	eventually(t, "the spare's executor ends once let go", func() bool { return !sp.Alive() })
	eventually(t, "the spare's program ends once let go", func() bool { return processGone(pid) })

	sp, err = d.StartSpare(sh, []string{"sh", "-c", "exit 0"}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sp.Close)
	eventually(t, "a spare whose program ended", func() bool { return !sp.Alive() })
	if _, err := d.StartWith(testCtx(t), task(root, "n1", sh, "-c", "true"), StartOptions{Spare: sp}); err == nil {
		t.Error("a task took a spare whose program had ended")
	}

	pidFile = filepath.Join(t.TempDir(), "pid")
	sp, err = d.StartSpare(sh, []string{"sh", "-c", `echo $$ > ` + pidFile + `; sleep 600`}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sp.Close)
	pid = pidFrom(t, pidFile)
	_, err = d.StartWith(testCtx(t), task(root, "n1", demoApp, "batch"), StartOptions{Spare: sp})
	if err == nil || !strings.Contains(err.Error(), "the spare runs "+sh) {
		t.Errorf("a task of another program: %v, want the spare's refusal", err)
	}
	eventually(t, "the refused spare's program ends", func() bool { return processGone(pid) })
}
