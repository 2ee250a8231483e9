package versions

import (
	"fmt"

	"strings"
	"time"
)

// Report is what `gantry version report` prints: the versions in use, the
// findings of the policy, and the upgrade order.
type Report struct {
	Time       time.Time `json:"time"`
	Components []string  `json:"components"`
	Inventory  Inventory `json:"inventory"`
	Findings   []Finding `json:"findings"`
	Upgrade    []Batch   `json:"upgrade"`
}

// BuildReport evaluates the inventory against the policy at now and plans
// the upgrade of every node a finding (other than drift) names.
func BuildReport(p *Policy, inv Inventory, c Cluster, now time.Time) *Report {
	r := &Report{Time: now, Inventory: inv, Findings: Evaluate(p, inv, now)}
	r.Components = components(inv)
	var nodes []string
	for _, n := range sortedKeys(NeedUpgrade(r.Findings)) {
		if !IsEtcdMember(n) {
			nodes = append(nodes, n)
		}
	}
	r.Upgrade = PlanUpgrades(c, nodes)
	if r.Findings == nil {
		r.Findings = []Finding{}
	}
	if r.Upgrade == nil {
		r.Upgrade = []Batch{}
	}
	return r
}

func components(inv Inventory) []string {
	set := map[string]bool{}
	for _, m := range inv {
		for c := range m {
			set[c] = true
		}
	}
	return sortedKeys(set)
}

// Drifting reports, per component, whether nodes disagree on it.
func Drifting(inv Inventory) map[string]bool {
	out := map[string]bool{}
	first := map[string]string{}
	for _, node := range sortedKeys(inv) {
		for c, v := range inv[node] {
			if f, ok := first[c]; ok && f != v {
				out[c] = true
			} else if !ok {
				first[c] = v
			}
		}
	}
	return out
}

// Table writes the inventory as rows of nodes × components, a component
// whose version differs between nodes marked with "*" in the header.
func Table(inv Inventory) [][]string {
	comps := components(inv)
	drift := Drifting(inv)
	head := []string{"NODE"}
	for _, c := range comps {
		if drift[c] {
			c += "*"
		}
		head = append(head, strings.ToUpper(c))
	}
	rows := [][]string{head}
	for _, node := range sortedKeys(inv) {
		row := []string{node}
		for _, c := range comps {
			v := inv[node][c]
			if v == "" {
				v = "-"
			}
			row = append(row, v)
		}
		rows = append(rows, row)
	}
	return rows
}

// Markdown renders the report for people: what is in use, what the
// policy finds, where nodes disagree, and the upgrade order with the
// reason for each batch.
func (r *Report) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Version report (%s)\n\n", r.Time.UTC().Format(time.RFC3339))
	b.WriteString("## In use\n\n")
	rows := Table(r.Inventory)
	for i, row := range rows {
		fmt.Fprintf(&b, "| %s |\n", strings.Join(row, " | "))
		if i == 0 {
			fmt.Fprintf(&b, "|%s\n", strings.Repeat("---|", len(row)))
		}
	}
	b.WriteString("\n(* nodes disagree)\n\n## Findings\n\n")
	if len(r.Findings) == 0 {
		b.WriteString("None: every version meets the policy and the nodes agree.\n")
	}
	kinds := map[string]string{BelowMinimum: "Below the minimum", KnownBadKind: "In a known-bad range", EndOfLife: "Past end of life", Drift: "Nodes disagree"}
	order := []string{KnownBadKind, BelowMinimum, EndOfLife, Drift}
	for _, k := range order {
		var fs []Finding
		for _, f := range r.Findings {
			if f.Kind == k {
				fs = append(fs, f)
			}
		}
		if len(fs) == 0 {
			continue
		}
		fmt.Fprintf(&b, "### %s\n\n", kinds[k])
		for _, f := range fs {
			line := f.Message
			if f.Kind != Drift {
				line += " (" + strings.Join(f.Nodes, ", ") + ")"
			}
			if f.Link != "" {
				line += " — " + f.Link
			}
			fmt.Fprintf(&b, "- %s\n", line)
		}
		b.WriteString("\n")
	}
	b.WriteString("## Upgrade order\n\n")
	if len(r.Upgrade) == 0 {
		b.WriteString("No node needs an upgrade.\n")
	}
	for i, batch := range r.Upgrade {
		forced := ""
		if batch.Forced {
			forced = " **(breaks a rule even alone: accept or move the work first)**"
		}
		fmt.Fprintf(&b, "%d. %s: %s%s\n", i+1, strings.Join(batch.Nodes, ", "), batch.Reason, forced)
	}
	return b.String()
}
