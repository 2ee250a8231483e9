package audit

// ScanResponse answers POST /v1/audit/scan (`gantry audit --now`): the
// cluster report after every reachable agent audited its containers on
// the spot, with the nodes that were audited and those that could not be.
type ScanResponse struct {
	ClusterReport
	Scanned []string   `json:"scanned"`
	Skipped []ScanSkip `json:"skipped,omitempty"`
}

// ScanSkip is a node that was not audited, and why.
type ScanSkip struct {
	Node   string `json:"node"`
	Reason string `json:"reason"`
}
