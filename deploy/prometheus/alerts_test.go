// Package prometheus holds the monitoring kit's Prometheus files; its Go
// test runs their unit tests with Prometheus' own promtool.
package prometheus

import (
	"os"
	"os/exec"
	"testing"
)

// TestAlertRules runs `promtool test rules alerts_test.yml`: the drift
// alert fires when two nodes disagree on a component for longer than its
// set time, and stays quiet when the disagreement ends before then. It
// skips when promtool is missing, unless GANTRY_REQUIRE_UI_DEPS=1 (as CI
// sets it), when it fails instead.
func TestAlertRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		msg := "promtool is not installed; on Debian: apt-get install prometheus"
		if os.Getenv("GANTRY_REQUIRE_UI_DEPS") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg + "; set GANTRY_REQUIRE_UI_DEPS=1 to make this a failure")
	}
	for _, f := range []string{"alerts.yml", "alerts_test.yml"} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("the rule tests need %s: %v", f, err)
		}
	}
	out, err := exec.Command(promtool, "test", "rules", "alerts_test.yml").CombinedOutput()
	if err != nil {
		t.Fatalf("promtool test rules alerts_test.yml: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
