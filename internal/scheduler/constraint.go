package scheduler

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/gantryhq/gantry/internal/api"
)

// Constraint and affinity operators.
const (
	OpEqual          = "="
	OpNotEqual       = "!="
	OpLess           = "<"
	OpLessEqual      = "<="
	OpGreater        = ">"
	OpGreaterEqual   = ">="
	OpRegexp         = "regexp"
	OpVersion        = "version"
	OpSemver         = "semver"
	OpSetContains    = "set_contains"
	OpSetContainsAny = "set_contains_any"
	OpDistinctHosts  = "distinct_hosts"
	OpIsSet          = "is_set"
	OpIsNotSet       = "is_not_set"
)

// attrKind says where an attribute reference reads from.
type attrKind uint8

const (
	attrLiteral attrKind = iota
	attrName
	attrID
	attrClass
	attrPool
	attrLabel
	attrAttribute
)

// attrRef is a parsed "${node.…}" reference (or a literal).
type attrRef struct {
	kind attrKind
	key  string
}

// parseAttr reads "${node.name}", "${node.id}", "${node.class}",
// "${node.pool}", "${node.labels.X}", "${node.attr.X}" (also "${attr.X}"),
// "${node.vsphere.X}" (the attribute vsphere.X);
// anything not wrapped in "${…}" is a literal.
func parseAttr(s string) (attrRef, error) {
	if !strings.HasPrefix(s, "${") {
		if strings.Contains(s, "${") {
			return attrRef{}, fmt.Errorf("%q: write a reference alone, as ${node.labels.zone}", s)
		}
		return attrRef{kind: attrLiteral, key: s}, nil
	}
	if !strings.HasSuffix(s, "}") {
		return attrRef{}, fmt.Errorf("%q: unterminated ${…}", s)
	}
	in := s[2 : len(s)-1]
	switch {
	case in == "node.name":
		return attrRef{kind: attrName}, nil
	case in == "node.id" || in == "node.unique.id":
		return attrRef{kind: attrID}, nil
	case in == "node.class":
		return attrRef{kind: attrClass}, nil
	case in == "node.pool":
		return attrRef{kind: attrPool}, nil
	case strings.HasPrefix(in, "node.labels.") && len(in) > len("node.labels."):
		return attrRef{kind: attrLabel, key: in[len("node.labels."):]}, nil
	case strings.HasPrefix(in, "node.attr.") && len(in) > len("node.attr."):
		return attrRef{kind: attrAttribute, key: in[len("node.attr."):]}, nil
	case strings.HasPrefix(in, "attr.") && len(in) > len("attr."):
		return attrRef{kind: attrAttribute, key: in[len("attr."):]}, nil
	case strings.HasPrefix(in, "driver.") && len(in) > len("driver."):
		// ${driver.qemu.kvm} is the node attribute driver.qemu.kvm.
		return attrRef{kind: attrAttribute, key: in}, nil
	case strings.HasPrefix(in, "node.vsphere.") && len(in) > len("node.vsphere."):
		// Set by the leader on nodes matched to a vSphere VM: host,
		// cluster, datastore, vm, vcenter (internal/vsphere).
		return attrRef{kind: attrAttribute, key: in[len("node."):]}, nil
	}
	return attrRef{}, fmt.Errorf("%q: unknown attribute; use ${node.name}, ${node.id}, ${node.class}, ${node.pool}, ${node.labels.<key>}, ${node.attr.<key>}, ${node.vsphere.host|cluster|datastore} or ${driver.<name>.<key>}", s)
}

func (r attrRef) get(n *api.Node) (string, bool) {
	switch r.kind {
	case attrLiteral:
		return r.key, true
	case attrName:
		return n.Name, true
	case attrID:
		return n.ID, true
	case attrClass:
		return n.Class, n.Class != ""
	case attrPool:
		return n.Pool, n.Pool != ""
	case attrLabel:
		v, ok := n.Labels[r.key]
		return v, ok
	case attrAttribute:
		v, ok := n.Attributes[r.key]
		return v, ok
	}
	return "", false
}

// matcher is a compiled constraint or affinity test.
type matcher struct {
	attr     attrRef
	op       string
	value    string
	rvalue   attrRef // value side, when it is a reference
	re       *regexp.Regexp
	version  versionConstraint
	set      []string
	setIndex map[string]struct{}
	text     string // "${node.class} = gpu", for explanations
}

func normalizeOp(op string) string {
	switch strings.TrimSpace(op) {
	case "", "=", "==", "is":
		return OpEqual
	case "!=", "not":
		return OpNotEqual
	case "=~":
		return OpRegexp
	}
	return strings.TrimSpace(op)
}

// compileMatcher checks and compiles one constraint or affinity.
// distinct_hosts is handled by the caller.
func compileMatcher(attr, op, value string) (*matcher, error) {
	m := &matcher{op: normalizeOp(op), value: value}
	var err error
	if m.attr, err = parseAttr(attr); err != nil {
		return nil, err
	}
	if m.op != OpIsSet && m.op != OpIsNotSet && m.attr.kind == attrLiteral {
		return nil, fmt.Errorf("attribute %q is not a ${node.…} reference", attr)
	}
	if strings.HasPrefix(value, "${") {
		if m.rvalue, err = parseAttr(value); err != nil {
			return nil, err
		}
	} else {
		m.rvalue = attrRef{kind: attrLiteral, key: value}
	}
	switch m.op {
	case OpEqual, OpNotEqual, OpIsSet, OpIsNotSet:
	case OpLess, OpLessEqual, OpGreater, OpGreaterEqual:
		if value == "" {
			return nil, fmt.Errorf("operator %s needs a value", m.op)
		}
	case OpRegexp:
		if m.re, err = regexp.Compile(value); err != nil {
			return nil, fmt.Errorf("invalid regexp %q: %v", value, err)
		}
	case OpVersion, OpSemver:
		if m.version, err = parseVersionConstraint(value); err != nil {
			return nil, err
		}
	case OpSetContains, OpSetContainsAny:
		m.set = splitSet(value)
		if len(m.set) == 0 {
			return nil, fmt.Errorf("operator %s needs a comma-separated value", m.op)
		}
		m.setIndex = make(map[string]struct{}, len(m.set))
		for _, x := range m.set {
			m.setIndex[x] = struct{}{}
		}
	default:
		return nil, fmt.Errorf("unknown operator %q; use =, !=, <, <=, >, >=, regexp, version, semver, set_contains, set_contains_any, distinct_hosts, is_set or is_not_set", op)
	}
	switch m.op {
	case OpIsSet, OpIsNotSet:
		m.text = attr + " " + m.op
	default:
		m.text = attr + " " + m.op + " " + value
	}
	return m, nil
}

func splitSet(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// match evaluates the test on a node.
func (m *matcher) match(n *api.Node) bool {
	v, ok := m.attr.get(n)
	switch m.op {
	case OpIsSet:
		return ok
	case OpIsNotSet:
		return !ok
	case OpNotEqual:
		want, wok := m.rvalue.get(n)
		return !ok || !wok || v != want
	}
	if !ok {
		return false
	}
	switch m.op {
	case OpEqual:
		want, wok := m.rvalue.get(n)
		return wok && v == want
	case OpLess, OpLessEqual, OpGreater, OpGreaterEqual:
		want, wok := m.rvalue.get(n)
		if !wok {
			return false
		}
		c := compareValues(v, want)
		switch m.op {
		case OpLess:
			return c < 0
		case OpLessEqual:
			return c <= 0
		case OpGreater:
			return c > 0
		}
		return c >= 0
	case OpRegexp:
		return m.re.MatchString(v)
	case OpVersion, OpSemver:
		ver, err := parseVersion(v)
		return err == nil && m.version.check(ver)
	case OpSetContainsAny:
		// Any of the node's items in the set: walk the node's items (few)
		// against the set's index.
		for len(v) > 0 {
			item, rest, _ := strings.Cut(v, ",")
			if _, in := m.setIndex[strings.TrimSpace(item)]; in {
				return true
			}
			v = rest
		}
		return false
	case OpSetContains:
		have := splitSet(v)
		for _, want := range m.set {
			found := false
			for _, h := range have {
				if h == want {
					found = true
					break
				}
			}
			if found && m.op == OpSetContainsAny {
				return true
			}
			if !found && m.op == OpSetContains {
				return false
			}
		}
		return m.op == OpSetContains
	}
	return false
}

// compareValues compares numerically when both parse as numbers, else as
// strings.
func compareValues(a, b string) int {
	x, err1 := strconv.ParseFloat(strings.TrimSpace(a), 64)
	y, err2 := strconv.ParseFloat(strings.TrimSpace(b), 64)
	if err1 == nil && err2 == nil {
		switch {
		case x < y:
			return -1
		case x > y:
			return 1
		}
		return 0
	}
	return strings.Compare(a, b)
}
