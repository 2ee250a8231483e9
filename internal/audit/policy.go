package audit

import (
	"errors"
	"fmt"
	"sort"
)

// Action is what a policy does with a failing check.
type Action string

const (
	// ActionBlock refuses the work at admission; at run time the finding
	// is reported as blocking (and `gantry audit` exits 1).
	ActionBlock Action = "block"
	// ActionWarn reports the finding and lets the work run.
	ActionWarn Action = "warn"
	// ActionIgnore drops the finding from the verdict (it stays in the
	// report).
	ActionIgnore Action = "ignore"
)

func (a Action) valid() bool { return a == ActionBlock || a == ActionWarn || a == ActionIgnore }

// Rule is the policy for one check.
type Rule struct {
	Action Action `json:"action"`
	// MinSeverity, with ActionBlock, blocks only failures at or above this
	// severity and warns on the others: 5.4 blocks a dangerous capability
	// (critical) but warns on a benign one (medium). Empty: every failure.
	MinSeverity Severity `json:"min_severity,omitempty"`
}

// Exception overrides the policy for one check in one namespace, in either
// direction (a namespace of trusted infrastructure may run privileged; a
// namespace of untrusted tenants may block more).
type Exception struct {
	Namespace string `json:"namespace"`
	Check     string `json:"check"`
	Action    Action `json:"action"`
	Reason    string `json:"reason,omitempty"`
}

// Policy says which failing checks block and which only warn.
type Policy struct {
	// Default applies to checks without a rule; empty means warn.
	Default    Action          `json:"default,omitempty"`
	Rules      map[string]Rule `json:"rules,omitempty"`
	Exceptions []Exception     `json:"exceptions,omitempty"`
}

// DefaultPolicy blocks the settings that hand a container the host, or
// another tenant's work, outright, and warns on the rest:
//
//   - 5.5 privileged: every capability and device, no seccomp or AppArmor.
//   - 5.10 host network, 5.16 host PID, 5.17 host IPC: the container joins
//     the host's namespace and can see (or signal, or sniff) every other
//     tenant's processes, traffic or shared memory on the node.
//   - 5.32 Docker socket: full control of the engine is root on the host.
//   - 5.4 only at critical: a dangerous capability (SYS_ADMIN, SYS_MODULE,
//     SYS_PTRACE, DAC_READ_SEARCH, NET_ADMIN, ALL) is an escape path; a
//     benign one (medium) warns.
//   - 5.6 only at high: a sensitive host directory mounted read-write lets
//     the container rewrite the host; read-only (low) warns.
//   - 5.18 only at high: a container that sees GPUs it was not given (raw
//     /dev/nvidia*, all GPUs requested, NVIDIA_VISIBLE_DEVICES=all) can read
//     other tenants' GPU memory on a shared node; other devices (medium) warn.
//
// Everything else warns. Missing limits (5.11, 5.12, 5.29), a writable root
// filesystem (5.13), a root user (4.1), a missing health check (5.27),
// missing no-new-privileges (5.26), loose restart policies (5.15) and port
// bindings (5.8, 5.14) weaken defence in depth but do not by themselves
// give the container the host; Gantry's driver sets them safely by default,
// and blocking them would refuse many ordinary images and every container
// Gantry did not start. 5.22 (seccomp off), 5.20 (shared propagation),
// 5.21 (host UTS) and 5.31 (host user namespace, which without engine
// remapping is the state of every container anyway) widen the attack
// surface but are rarely exploitable alone. AppArmor (5.2) and the engine
// settings (2.x, 5.1) depend on how the node was installed, not on the
// job, so they cannot be a reason to refuse one.
func DefaultPolicy() Policy {
	return Policy{
		Default: ActionWarn,
		Rules: map[string]Rule{
			"5.4":  {Action: ActionBlock, MinSeverity: SeverityCritical},
			"5.5":  {Action: ActionBlock},
			"5.6":  {Action: ActionBlock, MinSeverity: SeverityHigh},
			"5.10": {Action: ActionBlock},
			"5.16": {Action: ActionBlock},
			"5.17": {Action: ActionBlock},
			"5.18": {Action: ActionBlock, MinSeverity: SeverityHigh},
			"5.32": {Action: ActionBlock},
			// Extra QEMU arguments of a qemu task (not a CIS check).
			CheckQEMUArgs: {Action: ActionBlock},
		},
	}
}

// ErrInvalidPolicy is returned (wrapped, with every problem named) by
// Policy.Validate when a policy names an unknown check, action or severity.
var ErrInvalidPolicy = errors.New("invalid audit policy")

// Validate checks that every rule and exception names a known check, a
// known action and (where given) a known severity, and that every
// exception names a namespace.
func (p Policy) Validate() error {
	var problems []error
	if p.Default != "" && !p.Default.valid() {
		problems = append(problems, fmt.Errorf("default: unknown action %q (use block, warn or ignore)", p.Default))
	}
	ids := make([]string, 0, len(p.Rules))
	for id := range p.Rules {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return lessID(ids[i], ids[j]) })
	for _, id := range ids {
		r := p.Rules[id]
		if !knownCheck(id) {
			problems = append(problems, fmt.Errorf("rules[%s]: unknown check", id))
		}
		if !r.Action.valid() {
			problems = append(problems, fmt.Errorf("rules[%s]: unknown action %q (use block, warn or ignore)", id, r.Action))
		}
		if r.MinSeverity != "" && !r.MinSeverity.Valid() {
			problems = append(problems, fmt.Errorf("rules[%s]: unknown severity %q (use low, medium, high or critical)", id, r.MinSeverity))
		}
	}
	for i, x := range p.Exceptions {
		if x.Namespace == "" {
			problems = append(problems, fmt.Errorf("exceptions[%d]: namespace is required", i))
		}
		if !knownCheck(x.Check) {
			problems = append(problems, fmt.Errorf("exceptions[%d]: unknown check %q", i, x.Check))
		}
		if !x.Action.valid() {
			problems = append(problems, fmt.Errorf("exceptions[%d]: unknown action %q (use block, warn or ignore)", i, x.Action))
		}
	}
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalidPolicy, errors.Join(problems...))
}

// Action returns what the policy does with a failing finding of check
// checkID at severity sev in namespace. A namespace exception wins over
// the rule; the last matching exception wins over earlier ones.
func (p Policy) Action(namespace, checkID string, sev Severity) Action {
	for i := len(p.Exceptions) - 1; i >= 0; i-- {
		x := p.Exceptions[i]
		if x.Namespace == namespace && x.Check == checkID {
			return x.Action
		}
	}
	r, ok := p.Rules[checkID]
	if !ok {
		if p.Default == "" {
			return ActionWarn
		}
		return p.Default
	}
	if r.Action == ActionBlock && r.MinSeverity != "" && sev.Rank() < r.MinSeverity.Rank() {
		return ActionWarn
	}
	return r.Action
}

// Verdict splits failing findings by what the policy does with them.
type Verdict struct {
	Blocking []Finding `json:"blocking"`
	Warning  []Finding `json:"warning"`
}

// Blocked reports whether any finding blocks.
func (v Verdict) Blocked() bool { return len(v.Blocking) > 0 }

// Evaluate applies the policy to findings that all belong to namespace
// (the job's namespace at admission). Passing and informational findings
// never block or warn.
func Evaluate(p Policy, namespace string, findings []Finding) Verdict {
	return evaluate(p, findings, func(Finding) string { return namespace })
}

// EvaluateReport applies the policy to a whole report, each container
// finding in the namespace of its gantry.namespace label (none for
// containers Gantry did not start), engine findings in no namespace.
func EvaluateReport(p Policy, r Report) Verdict {
	all := append(append([]Finding(nil), r.Engine...), r.Findings...)
	return evaluate(p, all, func(f Finding) string { return f.Namespace })
}

func evaluate(p Policy, findings []Finding, ns func(Finding) string) Verdict {
	v := Verdict{Blocking: []Finding{}, Warning: []Finding{}}
	for _, f := range findings {
		if !f.Failed() {
			continue
		}
		switch p.Action(ns(f), f.CheckID, f.Severity) {
		case ActionBlock:
			v.Blocking = append(v.Blocking, f)
		case ActionWarn:
			v.Warning = append(v.Warning, f)
		}
	}
	return v
}
