package api

import "time"

// The request and response bodies of the HTTP API that are not plain
// objects above.

// RegisterResponse answers POST /v1/jobs.
type RegisterResponse struct {
	EvalID     string   `json:"eval_id"`
	JobVersion uint64   `json:"job_version"`
	Changed    bool     `json:"changed"` // false: the spec equals the current version
	Index      int64    `json:"index"`
	Warnings   []string `json:"warnings,omitempty"`
	// Placement lists what the cluster as it is can never place (no node
	// big enough, no such GPU, …), worded as `job validate` words it. The
	// job is accepted all the same: nodes may join.
	Placement []FieldError `json:"placement,omitempty"`
}

// StopResponse answers DELETE /v1/jobs/{name}.
type StopResponse struct {
	EvalID string `json:"eval_id"`
	Index  int64  `json:"index"`
}

// LocalAlloc answers GET /v1/client/allocations on an agent, one per
// allocation with a task running there: what the agent itself runs, the
// truth on the node, independent of what the servers believe.
type LocalAlloc struct {
	ID      string            `json:"id"`
	Running map[string]string `json:"running"` // task → handle ID of its running task
}

// JobSummary is a job with its status and per-group allocation counts.
type JobSummary struct {
	Job    *Job                     `json:"job"`
	Status string                   `json:"status"`
	Groups map[string]*GroupSummary `json:"groups"`
}

// GroupSummary counts a group's allocations that the server wants running
// (desired run), by client status, plus how many are healthy.
type GroupSummary struct {
	Desired  int `json:"desired"`
	Pending  int `json:"pending"`
	Running  int `json:"running"`
	Healthy  int `json:"healthy"`
	Complete int `json:"complete"`
	Failed   int `json:"failed"`
	Lost     int `json:"lost"`
}

// PlanResponse answers POST /v1/jobs/plan: what registering the job would
// do, without doing it.
type PlanResponse struct {
	JobVersion uint64                  `json:"job_version"` // version it would get
	Changed    bool                    `json:"changed"`
	Diff       []FieldDiff             `json:"diff,omitempty"`
	Groups     map[string]*PlanGroup   `json:"groups"`
	Failed     map[string]*Explanation `json:"failed,omitempty"`
	// Defrag is set when a group that cannot be placed would fit after
	// moving GPU work (gantry gpu defrag apply --for <job>).
	Defrag *DefragPlan `json:"defrag,omitempty"`
	Index  int64       `json:"index"`
	// GPUWorkload is the learnt GPU workload the plan placed GPU work
	// with: the server's GPU policy's input, derived from the jobs in the
	// store with this job as planned. `job run` of the same job on the
	// same state plans with the same version (its evaluation records it);
	// nil when the policy learns nothing.
	GPUWorkload *GPUWorkload `json:"gpu_workload,omitempty"`
}

// GPUWorkload says which learnt GPU workload a plan used.
type GPUWorkload struct {
	Policy   string `json:"policy"`
	Version  string `json:"version"`
	Index    int64  `json:"index"` // the newest job change it reflects
	Jobs     int    `json:"jobs"`
	Replicas int    `json:"replicas"`
	Typical  int    `json:"typical"` // typical task shapes
}

// FieldDiff is one changed field between the current and the planned job.
type FieldDiff struct {
	Path string `json:"path"`
	Old  string `json:"old,omitempty"`
	New  string `json:"new,omitempty"`
}

// PlanGroup counts what the plan does to one group.
type PlanGroup struct {
	Place   int `json:"place"`
	Stop    int `json:"stop"`
	InPlace int `json:"in_place"`
	Keep    int `json:"keep"`
	// Later are replicas of an older version that stay for now and that
	// the rolling update replaces in later steps, max_parallel at a time.
	Later int `json:"later,omitempty"`
}

// ValidateResponse answers POST /v1/jobs/validate (the spec and the rules
// internal to the job) and POST /v1/validate/job (those and the checks
// against the cluster).
type ValidateResponse struct {
	// Valid: no error and nothing unplaceable (exit 0).
	Valid bool `json:"valid"`
	// Errors make the server reject the job (exit 1).
	Errors []FieldError `json:"errors,omitempty"`
	// Placement: the cluster as it is can never place the job; the server
	// accepts it and warns (exit 2 when there is no error).
	Placement []FieldError `json:"placement,omitempty"`
	// Warnings: probably mistakes, accepted (a namespace nobody uses).
	Warnings []FieldError `json:"warnings,omitempty"`
	// Cluster is set when the checks against the cluster ran; Nodes is
	// how many nodes they saw.
	Cluster bool `json:"cluster,omitempty"`
	Nodes   int  `json:"nodes,omitempty"`
}

// FieldError is one problem in a job spec, located by path and, when the
// spec came from a file, line.
type FieldError struct {
	Path    string `json:"path"`
	Line    int    `json:"line,omitempty"`
	File    string `json:"file,omitempty"`
	Message string `json:"message"`
}

// NodeRegisterResponse answers POST /v1/nodes/register.
type NodeRegisterResponse struct {
	NodeID       string   `json:"node_id"`
	HeartbeatTTL Duration `json:"heartbeat_ttl"`
}

// HeartbeatRequest is the body of PUT /v1/nodes/{id}/heartbeat, which
// renews the lease of the node's latest registration (the lease is the
// store's business: the agent names only its node). Sample, when set, is
// the agent's latest reading of the node's usage.
type HeartbeatRequest struct {
	Sample *NodeSample `json:"sample,omitempty"`
}

// NodeAllocsResponse answers GET /v1/nodes/{id}/allocations: the node's
// allocations the servers changed after the index asked for (all of them
// when it was 0), and the IDs of every allocation the node has (one that
// is missing was removed), as of Index. IDs is null when no allocation
// left the node after the index asked for: the agent keeps what it knows.
type NodeAllocsResponse struct {
	Index  int64         `json:"index"`
	Allocs []*Allocation `json:"allocations"`
	IDs    []string      `json:"ids"`
	// Consistent says that the answer reflects etcd as of a linearizable
	// read made after the request arrived, so it holds every allocation
	// written before: a full answer (index 0) is consistent. An agent
	// removes the tasks of its earlier run that the servers do not know
	// only on a consistent answer; a server that lags could otherwise
	// omit live work.
	Consistent bool `json:"consistent,omitempty"`
}

// AllocUpdate is what an agent reports about one allocation.
type AllocUpdate struct {
	ID           string                `json:"id"`
	ClientStatus string                `json:"client_status"`
	ClientReason string                `json:"client_reason,omitempty"`
	Health       string                `json:"health,omitempty"`
	TaskStates   map[string]*TaskState `json:"task_states,omitempty"`
	// MIGInstances are the instances the agent created, by task.
	MIGInstances map[string]string `json:"mig_instances,omitempty"`
}

// AllocUpdateRequest is the body of POST /v1/nodes/{id}/allocations.
type AllocUpdateRequest struct {
	Updates []AllocUpdate `json:"updates"`
}

// DrainRequest is the body of POST /v1/nodes/{id}/drain.
type DrainRequest struct {
	Enable   bool     `json:"enable"`
	Deadline Duration `json:"deadline,omitempty"` // 0: one hour
}

// EligibilityRequest is the body of POST /v1/nodes/{id}/eligibility.
type EligibilityRequest struct {
	Eligible bool `json:"eligible"`
}

// StatusResponse answers GET /v1/status.
type StatusResponse struct {
	Server  string    `json:"server"`
	Leader  bool      `json:"leader"`
	Index   int64     `json:"index"`
	Version string    `json:"version"`
	Time    time.Time `json:"time"`
}

// ExecFrame is one message of an exec session over WebSocket. The client
// sends Stdin, StdinClose and Resize; the agent sends Stdout, Stderr, and
// finally Exit or Error.
type ExecFrame struct {
	Stdin      []byte    `json:"stdin,omitempty"`
	StdinClose bool      `json:"stdin_close,omitempty"`
	Resize     *TermSize `json:"resize,omitempty"`
	Stdout     []byte    `json:"stdout,omitempty"`
	Stderr     []byte    `json:"stderr,omitempty"`
	Exit       *int      `json:"exit,omitempty"`
	Error      string    `json:"error,omitempty"`
}

// TermSize is a terminal's size in characters.
type TermSize struct {
	Width  uint `json:"width"`
	Height uint `json:"height"`
}

// ServiceEndpoint is one healthy replica serving a service: the node's
// address and the host port of the published port.
type ServiceEndpoint struct {
	AllocID    string `json:"alloc_id"`
	Job        string `json:"job"`
	Group      string `json:"group"`
	Index      int    `json:"index"`
	JobVersion uint64 `json:"job_version"`
	NodeID     string `json:"node_id"`
	NodeName   string `json:"node_name"`
	Address    string `json:"address"`
	Port       int    `json:"port"`
}

// ServiceInfo is a service with its healthy endpoints. Unhealthy counts
// the live replicas that publish it but are not healthy (not listed).
type ServiceInfo struct {
	Name      string            `json:"name"`
	Namespace string            `json:"namespace"`
	Jobs      []string          `json:"jobs"`
	LB        *ServiceLB        `json:"lb,omitempty"`
	Endpoints []ServiceEndpoint `json:"endpoints"`
	Unhealthy int               `json:"unhealthy"`
}

// ServiceCatalog answers GET /v1/service-catalog: every service, as of
// Index, with a Hash of its content that a blocking query passes back.
type ServiceCatalog struct {
	Hash     string         `json:"hash"`
	Index    int64          `json:"index"`
	Services []*ServiceInfo `json:"services"`
}

// PromoteResponse answers POST /v1/jobs/{name}/promote.
type PromoteResponse struct {
	DeploymentID string `json:"deployment_id"`
	EvalID       string `json:"eval_id"`
	Index        int64  `json:"index"`
}

// RevertRequest is the body of POST /v1/jobs/{name}/revert: register the
// spec of Version again, as a new version.
type RevertRequest struct {
	Version uint64 `json:"version"`
}
