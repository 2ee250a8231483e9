package cli

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/internal/audit"
)

func TestReadPolicy(t *testing.T) {
	p, err := readPolicy("../../examples/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if p.Action("infra", "5.5", audit.SeverityCritical) != audit.ActionWarn ||
		p.Action("default", "5.5", audit.SeverityCritical) != audit.ActionBlock ||
		p.Action("tenants", "5.13", audit.SeverityLow) != audit.ActionBlock {
		t.Errorf("examples/policy.yaml reads as %+v", p)
	}
	if lost := noLongerBlocked(p); len(lost) != 0 {
		t.Errorf("the example stops blocking %v", lost)
	}

	dir := t.TempDir()
	for _, tc := range []struct{ text, want string }{
		{"default: warn\nrule: {}\n", `unknown field "rule"`},
		{"rules: {\"5.99\": {action: block}}\n", "unknown check"},
		{"exceptions: [{check: \"5.5\", action: warn}]\n", "namespace is required"},
		{"default: [\n", "not valid YAML"},
	} {
		f := filepath.Join(dir, "p.yaml")
		os.WriteFile(f, []byte(tc.text), 0o644)
		if _, err := readPolicy(f); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error containing %q", tc.text, err, tc.want)
		}
	}

	if lost := noLongerBlocked(audit.Policy{Rules: map[string]audit.Rule{"5.5": {Action: audit.ActionBlock}}}); !slices.Equal(lost, []string{audit.CheckQEMUArgs, "5.4", "5.6", "5.10", "5.16", "5.17", "5.18", "5.32"}) {
		t.Errorf("no longer blocked: %v", lost)
	}
}
