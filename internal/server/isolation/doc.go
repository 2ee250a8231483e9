// Package isolation is the container isolation policy on the server: the
// admission policy in force (/v1/policy: read, apply, reset to the
// default), admission of jobs against it at register, plan and validate
// (Admit, Review), the agents' audit reports (POST /v1/nodes/{id}/audit),
// the cluster report (/v1/audit) and the on-demand audit that asks the
// agents to audit now (POST /v1/audit/scan). The checks themselves are
// internal/admission's and internal/audit's; this package owns applying
// them on the server and keeping what they report.
//
// Policy and reports are kept in the store, not in a server's memory: an
// agent reports to whichever server answers, `gantry audit` may ask any
// other, and a report must survive a server restart. So every server
// answers every endpoint itself (nothing is forwarded to the leader), and
// the writes carry no leader's fence: the policy is configuration and a
// report is what an agent said, which any server may store. To keep
// etcd's history small a report is stored only when its findings changed
// or the stored one is older than Refresh, and only its failing container
// findings are kept (audit.Report.Compact).
//
// It reads and writes through Policies, Reports and Nodes, reaches the
// agents through Agents, and sits on the server's API through Front (the
// server authorizes every request before a handler runs).
//
// It must never admit a job when the policy in force cannot be read
// (admission fails closed: an unreadable stored policy is an error, not
// the default), never store a report of a node that is not registered,
// and never let one agent that does not answer hold up the others' scan
// (each is asked in its own goroutine, for at most ScanTimeout).
package isolation
