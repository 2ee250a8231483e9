package versions

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// Policy says, per component, which versions are acceptable: a minimum,
// known-bad ranges (with a note and a link), and end-of-life dates of
// release ranges.
//
//	components:
//	  docker:
//	    minimum: "20.10.0"
//	    known_bad:
//	      - {range: ">= 25.0.0, < 25.0.2", note: "…", link: "https://…"}
//	    end_of_life:
//	      - {range: "< 24.0", date: 2024-06-08}
type Policy struct {
	Components map[string]ComponentPolicy `json:"components"`
}

// ComponentPolicy is the policy of one component.
type ComponentPolicy struct {
	Minimum   string     `json:"minimum,omitempty"`
	KnownBad  []KnownBad `json:"known_bad,omitempty"`
	EndOfLife []EOL      `json:"end_of_life,omitempty"`
}

// KnownBad is a range of versions with a known problem.
type KnownBad struct {
	Range string `json:"range"`
	Note  string `json:"note"`
	Link  string `json:"link,omitempty"`
}

// EOL is the date after which a range of versions gets no more fixes.
type EOL struct {
	Range string `json:"range"`
	Date  string `json:"date"` // YYYY-MM-DD
}

// ParsePolicy reads a policy (YAML or JSON) and checks every minimum,
// range and date in it, naming each problem with its place.
func ParsePolicy(data []byte) (*Policy, error) {
	var p Policy
	if err := yaml.UnmarshalStrict(data, &p); err != nil {
		return nil, fmt.Errorf("version policy: %w", err)
	}
	var problems []string
	for _, name := range sortedKeys(p.Components) {
		c := p.Components[name]
		if c.Minimum != "" {
			if _, err := Parse(name, c.Minimum); err != nil {
				problems = append(problems, fmt.Sprintf("components.%s.minimum: %v", name, err))
			}
		}
		for i, kb := range c.KnownBad {
			if _, err := ParseConstraint(name, kb.Range); err != nil {
				problems = append(problems, fmt.Sprintf("components.%s.known_bad[%d]: %v", name, i, err))
			}
			if kb.Note == "" {
				problems = append(problems, fmt.Sprintf("components.%s.known_bad[%d]: needs a note saying what is wrong", name, i))
			}
		}
		for i, e := range c.EndOfLife {
			if _, err := ParseConstraint(name, e.Range); err != nil {
				problems = append(problems, fmt.Sprintf("components.%s.end_of_life[%d]: %v", name, i, err))
			}
			if _, err := time.Parse(time.DateOnly, e.Date); err != nil {
				problems = append(problems, fmt.Sprintf("components.%s.end_of_life[%d].date: %q is not a date like 2025-06-30", name, i, e.Date))
			}
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("version policy has %d problem(s):\n  %s", len(problems), strings.Join(problems, "\n  "))
	}
	return &p, nil
}

// Inventory is what every node reports: node name → component → version
// as the component prints it.
type Inventory map[string]map[string]string

// Finding kinds.
const (
	BelowMinimum = "below-minimum"
	KnownBadKind = "known-bad"
	EndOfLife    = "end-of-life"
	Drift        = "drift"
)

// Finding is one thing a report says about a component on a node (or,
// for drift, over the nodes).
type Finding struct {
	Kind      string   `json:"kind"`
	Component string   `json:"component"`
	Version   string   `json:"version,omitempty"`
	Nodes     []string `json:"nodes"`
	Message   string   `json:"message"`
	Link      string   `json:"link,omitempty"`
}

// Evaluate checks an inventory against a policy at the time now (a
// value, never the clock): versions below a minimum, in a known-bad
// range, past their end of life, and components whose version differs
// between nodes. It is pure and its findings are sorted.
func Evaluate(p *Policy, inv Inventory, now time.Time) []Finding {
	var out []Finding
	// component → version → nodes
	uses := map[string]map[string][]string{}
	for _, node := range sortedKeys(inv) {
		for comp, ver := range inv[node] {
			if uses[comp] == nil {
				uses[comp] = map[string][]string{}
			}
			uses[comp][ver] = append(uses[comp][ver], node)
		}
	}
	for _, comp := range sortedKeys(uses) {
		vers := uses[comp]
		if len(vers) > 1 {
			var parts []string
			var all []string
			for _, v := range sortedVersions(comp, vers) {
				parts = append(parts, fmt.Sprintf("%s on %s", v, strings.Join(vers[v], ", ")))
				all = append(all, vers[v]...)
			}
			sort.Strings(all)
			out = append(out, Finding{Kind: Drift, Component: comp, Nodes: all,
				Message: fmt.Sprintf("%s differs between nodes: %s", comp, strings.Join(parts, "; "))})
		}
		if p == nil {
			continue
		}
		cp, ok := p.Components[comp]
		if !ok {
			continue
		}
		for _, v := range sortedVersions(comp, vers) {
			nodes := vers[v]
			if cp.Minimum != "" && Compare(comp, v, cp.Minimum) < 0 {
				out = append(out, Finding{Kind: BelowMinimum, Component: comp, Version: v, Nodes: nodes,
					Message: fmt.Sprintf("%s %s is below the minimum %s", comp, v, cp.Minimum)})
			}
			for _, kb := range cp.KnownBad {
				if c, err := ParseConstraint(comp, kb.Range); err == nil && c.Contains(comp, v) {
					out = append(out, Finding{Kind: KnownBadKind, Component: comp, Version: v, Nodes: nodes, Link: kb.Link,
						Message: fmt.Sprintf("%s %s is in the known-bad range %s: %s", comp, v, kb.Range, kb.Note)})
				}
			}
			for _, e := range cp.EndOfLife {
				c, err := ParseConstraint(comp, e.Range)
				date, derr := time.Parse(time.DateOnly, e.Date)
				if err == nil && derr == nil && c.Contains(comp, v) && !now.Before(date) {
					out = append(out, Finding{Kind: EndOfLife, Component: comp, Version: v, Nodes: nodes,
						Message: fmt.Sprintf("%s %s reached its end of life on %s", comp, v, e.Date)})
				}
			}
		}
	}
	return out
}

// Nodes that need an upgrade: every node named by a finding other than
// drift.
func NeedUpgrade(findings []Finding) map[string][]string {
	out := map[string][]string{}
	for _, f := range findings {
		if f.Kind == Drift {
			continue
		}
		for _, n := range f.Nodes {
			out[n] = append(out[n], f.Message)
		}
	}
	return out
}

func sortedVersions(comp string, m map[string][]string) []string {
	out := sortedKeys(m)
	sort.SliceStable(out, func(i, j int) bool { return Compare(comp, out[i], out[j]) < 0 })
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
