package audit

import (
	"reflect"
	"time"
)

// The shapes in which the policy and the reports are stored and travel
// over the HTTP API (/v1/policy, /v1/audit, and the agents' reports).

// PolicyDocument is the admission policy in force, as GET and PUT
// /v1/policy answer it.
type PolicyDocument struct {
	Policy Policy `json:"policy"`
	// Default is true when no policy was applied: Policy is
	// DefaultPolicy().
	Default bool  `json:"default"`
	Index   int64 `json:"index,omitempty"` // store revision of the last change
}

// NodeReport is the latest audit of one node as the server keeps it.
type NodeReport struct {
	NodeID string `json:"node_id"`
	// ModifyTime is when the server stored this report: the report changed
	// then, or was refreshed (see Changed).
	ModifyTime time.Time `json:"modify_time"`
	Report     Report    `json:"report"`
}

// ClusterReport answers GET /v1/audit: the policy in force and the latest
// report of each node (one node with ?node=).
type ClusterReport struct {
	Policy PolicyDocument `json:"policy"`
	Nodes  []NodeReport   `json:"nodes"`
}

// Compact keeps what the server stores of a report: every engine finding
// and the failing container findings. Passing and informational container
// findings are many (one per check and container) and say nothing an
// operator acts on; the agent that took the report logs them.
func (r Report) Compact() Report {
	c := r
	c.Engine = append([]Finding{}, r.Engine...)
	c.Findings = []Finding{}
	for _, f := range r.Findings {
		if f.Failed() {
			c.Findings = append(c.Findings, f)
		}
	}
	return c
}

// SameFindings reports whether two reports say the same thing, whenever
// they were taken.
func SameFindings(a, b Report) bool {
	a.Time, b.Time = time.Time{}, time.Time{}
	return reflect.DeepEqual(a, b)
}
