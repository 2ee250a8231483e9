package audit

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func failed(id string, sev Severity, ns string) Finding {
	return Finding{CheckID: id, Severity: sev, Status: StatusFail, Namespace: ns}
}

func TestDefaultPolicyActions(t *testing.T) {
	p := DefaultPolicy()
	if err := p.Validate(); err != nil {
		t.Fatalf("default policy invalid: %v", err)
	}
	cases := []struct {
		check string
		sev   Severity
		want  Action
	}{
		{"5.5", SeverityCritical, ActionBlock},
		{"5.10", SeverityHigh, ActionBlock},
		{"5.16", SeverityHigh, ActionBlock},
		{"5.17", SeverityHigh, ActionBlock},
		{"5.32", SeverityCritical, ActionBlock},
		{"5.4", SeverityCritical, ActionBlock}, // a dangerous capability
		{"5.4", SeverityMedium, ActionWarn},    // a benign one
		{"5.6", SeverityHigh, ActionBlock},     // read-write
		{"5.6", SeverityLow, ActionWarn},       // read-only
		{"5.18", SeverityHigh, ActionBlock},    // GPUs beyond the allocation
		{"5.18", SeverityMedium, ActionWarn},   // another host device
		{"4.1", SeverityMedium, ActionWarn},
		{"5.2", SeverityMedium, ActionWarn},
		{"5.11", SeverityMedium, ActionWarn},
		{"5.12", SeverityLow, ActionWarn},
		{"5.13", SeverityLow, ActionWarn},
		{"5.14", SeverityMedium, ActionWarn},
		{"5.15", SeverityLow, ActionWarn},
		{"5.20", SeverityMedium, ActionWarn},
		{"5.21", SeverityMedium, ActionWarn},
		{"5.22", SeverityHigh, ActionWarn},
		{"5.26", SeverityMedium, ActionWarn},
		{"5.27", SeverityLow, ActionWarn},
		{"5.29", SeverityMedium, ActionWarn},
		{"5.31", SeverityMedium, ActionWarn},
		{"2.9", SeverityMedium, ActionWarn},
		{"2.15", SeverityLow, ActionWarn},
	}
	for _, c := range cases {
		if got := p.Action("default", c.check, c.sev); got != c.want {
			t.Errorf("%s at %s: %s, want %s", c.check, c.sev, got, c.want)
		}
	}
}

func TestEvaluateWithExceptions(t *testing.T) {
	p := DefaultPolicy()
	p.Exceptions = []Exception{
		{Namespace: "gpu-infra", Check: "5.5", Action: ActionWarn, Reason: "driver installers run privileged"},
		{Namespace: "gpu-infra", Check: "5.18", Action: ActionIgnore},
		{Namespace: "untrusted", Check: "5.13", Action: ActionBlock},
		{Namespace: "untrusted", Check: "5.26", Action: ActionWarn},
		{Namespace: "untrusted", Check: "5.26", Action: ActionBlock}, // the later exception wins
	}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	findings := []Finding{
		failed("5.5", SeverityCritical, ""),
		failed("5.18", SeverityHigh, ""),
		failed("5.13", SeverityLow, ""),
		failed("5.26", SeverityMedium, ""),
		failed("5.32", SeverityCritical, ""),
		{CheckID: "5.10", Severity: SeverityHigh, Status: StatusPass},
		{CheckID: "5.2", Severity: SeverityMedium, Status: StatusInfo},
	}
	ids := func(fs []Finding) []string {
		out := []string{}
		for _, f := range fs {
			out = append(out, f.CheckID)
		}
		return out
	}
	cases := []struct {
		ns             string
		block, warning []string
	}{
		{"default", []string{"5.5", "5.18", "5.32"}, []string{"5.13", "5.26"}},
		{"gpu-infra", []string{"5.32"}, []string{"5.5", "5.13", "5.26"}},
		{"untrusted", []string{"5.5", "5.18", "5.13", "5.26", "5.32"}, []string{}},
	}
	for _, c := range cases {
		v := Evaluate(p, c.ns, findings)
		if !reflect.DeepEqual(ids(v.Blocking), c.block) || !reflect.DeepEqual(ids(v.Warning), c.warning) {
			t.Errorf("%s: blocking %v warning %v, want %v %v", c.ns, ids(v.Blocking), ids(v.Warning), c.block, c.warning)
		}
		if v.Blocked() != (len(c.block) > 0) {
			t.Errorf("%s: Blocked() = %v", c.ns, v.Blocked())
		}
	}

	// Over a report, each finding is judged in its own container's
	// namespace; engine findings and foreign containers in none.
	r := Report{
		Engine: []Finding{failed("2.9", SeverityMedium, "")},
		Findings: []Finding{
			failed("5.5", SeverityCritical, "gpu-infra"),
			failed("5.5", SeverityCritical, "team-a"),
			failed("5.5", SeverityCritical, ""),
			failed("5.18", SeverityHigh, "gpu-infra"),
		},
	}
	v := EvaluateReport(p, r)
	if len(v.Blocking) != 2 || len(v.Warning) != 2 || v.Warning[0].CheckID != "2.9" || v.Warning[1].Namespace != "gpu-infra" {
		t.Errorf("report verdict: blocking %+v warning %+v", v.Blocking, v.Warning)
	}
}

func TestPolicyDefaults(t *testing.T) {
	if got := (Policy{}).Action("ns", "5.5", SeverityCritical); got != ActionWarn {
		t.Errorf("empty policy: %s, want warn", got)
	}
	p := Policy{Default: ActionIgnore, Rules: map[string]Rule{"5.5": {Action: ActionBlock}}}
	v := Evaluate(p, "ns", []Finding{failed("5.5", SeverityCritical, ""), failed("5.13", SeverityLow, "")})
	if len(v.Blocking) != 1 || len(v.Warning) != 0 {
		t.Errorf("ignore default: %+v", v)
	}
}

func TestPolicyValidate(t *testing.T) {
	p := Policy{
		Default: "deny",
		Rules: map[string]Rule{
			"5.99": {Action: ActionBlock},
			"5.5":  {Action: "stop"},
			"5.4":  {Action: ActionBlock, MinSeverity: "severe"},
		},
		Exceptions: []Exception{{Check: "5.5", Action: ActionWarn}, {Namespace: "a", Check: "9.9", Action: "x"}},
	}
	err := p.Validate()
	if !errors.Is(err, ErrInvalidPolicy) {
		t.Fatalf("got %v, want ErrInvalidPolicy", err)
	}
	for _, want := range []string{`default: unknown action "deny"`, "rules[5.99]: unknown check", `rules[5.5]: unknown action "stop"`,
		`rules[5.4]: unknown severity "severe"`, "exceptions[0]: namespace is required", `exceptions[1]: unknown check "9.9"`,
		`exceptions[1]: unknown action "x"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q:\n%v", want, err)
		}
	}
}

// The policy is stored and edited as JSON (gantry policy apply).
func TestPolicyJSONRoundTrip(t *testing.T) {
	p := DefaultPolicy()
	p.Exceptions = []Exception{{Namespace: "infra", Check: "5.10", Action: ActionWarn, Reason: "ingress"}}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var q Policy
	if err := json.Unmarshal(b, &q); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(p, q) {
		t.Fatalf("round trip changed the policy:\n%+v\n%+v", p, q)
	}
	if !strings.Contains(string(b), `"5.4":{"action":"block","min_severity":"critical"}`) {
		t.Errorf("unexpected encoding %s", b)
	}
}
