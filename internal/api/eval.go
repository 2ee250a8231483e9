package api

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Evaluation statuses.
const (
	EvalPending  = "pending"
	EvalComplete = "complete"
	EvalFailed   = "failed"
	EvalBlocked  = "blocked" // some work could not be placed; retried when the cluster changes
)

// What triggered an evaluation.
const (
	TriggerJobRegister   = "job-register"
	TriggerJobDeregister = "job-deregister"
	TriggerAllocFailure  = "alloc-failure"
	TriggerNodeUpdate    = "node-update"
	TriggerRetry         = "retry"
	TriggerPlanContinue  = "plan-continue"      // a plan committed in part: this one places the rest
	TriggerDeployment    = "deployment-watcher" // a deployment's allocations changed health
	TriggerPromote       = "deployment-promote"
	TriggerJobRevert     = "job-revert"
	TriggerDefrag        = "gpu-defrag" // GPU defragmentation made room for the job
)

// Evaluation is a request to bring one job's allocations to its desired
// state.
type Evaluation struct {
	ID                string                  `json:"id"`
	Namespace         string                  `json:"namespace"`
	Job               string                  `json:"job"`
	JobVersion        uint64                  `json:"job_version"`
	Priority          int                     `json:"priority"`
	TriggeredBy       string                  `json:"triggered_by"`
	NodeID            string                  `json:"node_id,omitempty"`
	Status            string                  `json:"status"`
	StatusDescription string                  `json:"status_description,omitempty"`
	FailedGroups      map[string]*Explanation `json:"failed_groups,omitempty"`
	Placed            int                     `json:"placed,omitempty"`
	Stopped           int                     `json:"stopped,omitempty"`
	// GPUWorkload is the version of the learnt GPU workload the
	// evaluation's plan placed GPU work with (the server's GPU policy's
	// input, derived from the jobs in the store); empty when the policy
	// learns nothing. `job plan` reports the version it planned with.
	GPUWorkload string    `json:"gpu_workload,omitempty"`
	WaitUntil   time.Time `json:"wait_until,omitzero"` // not before this time (restart delays)
	// SnapshotIndex is, for a blocked evaluation, the capacity index of
	// the view it was planned with: it is retried once capacity changed
	// after that index. A change that lands while the plan is being
	// made and written is after it, so it is never missed. Zero (written
	// before the field existed): ModifyIndex stands in.
	SnapshotIndex int64     `json:"snapshot_index,omitempty"`
	CreateTime    time.Time `json:"create_time"`
	ModifyTime    time.Time `json:"modify_time"`
	ModifyIndex   int64     `json:"modify_index"`
}

// BlockedAt is the capacity index a blocked evaluation waits to see
// passed: SnapshotIndex, or ModifyIndex where that is unset.
func (e *Evaluation) BlockedAt() int64 {
	if e.SnapshotIndex > 0 {
		return e.SnapshotIndex
	}
	return e.ModifyIndex
}

// JobKey is the identity of the evaluation's job.
func (e *Evaluation) JobKey() string { return JobKey(e.Namespace, e.Job) }

// Explanation says why replicas of a group could not be placed: how many
// nodes were looked at, how many fit, and how many each reason rejected.
type Explanation struct {
	Group          string        `json:"group"`
	Unplaced       int           `json:"unplaced"`
	NodesEvaluated int           `json:"nodes_evaluated"`
	NodesFit       int           `json:"nodes_fit"`
	Reasons        []ReasonCount `json:"reasons,omitempty"`
}

// ReasonCount is one rejection reason and the number of nodes it rejected.
type ReasonCount struct {
	Reason string `json:"reason"`
	Nodes  int    `json:"nodes"`
}

// SortReasons orders reasons by count, most frequent first, then by text.
func (e *Explanation) SortReasons() {
	sort.SliceStable(e.Reasons, func(i, j int) bool {
		if e.Reasons[i].Nodes != e.Reasons[j].Nodes {
			return e.Reasons[i].Nodes > e.Reasons[j].Nodes
		}
		return e.Reasons[i].Reason < e.Reasons[j].Reason
	})
}

// String renders the explanation in one line:
// "0/5000 nodes fit: memory exhausted on 4210, constraint … filtered 790".
func (e *Explanation) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d/%d nodes fit", e.NodesFit, e.NodesEvaluated)
	for i, r := range e.Reasons {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s on %d", r.Reason, r.Nodes)
	}
	return b.String()
}

// Event topics.
const (
	TopicJob        = "job"
	TopicAllocation = "allocation"
	TopicNode       = "node"
	TopicEvaluation = "evaluation"
	TopicDeployment = "deployment"
	TopicQueue      = "queue"
	TopicAudit      = "audit" // a node's container audit report changed
)

// Event is one change in the cluster's state. Index is the store revision
// of the change: a client that resumes from the last index it saw gets
// every later event exactly once.
type Event struct {
	Index     int64           `json:"index"`
	Topic     string          `json:"topic"`
	Type      string          `json:"type"`
	Namespace string          `json:"namespace,omitempty"`
	Key       string          `json:"key"`
	Time      time.Time       `json:"time"`
	Payload   json.RawMessage `json:"payload,omitempty"`
}

// Error is the body of every failed API call.
type Error struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
	// Errors lists every problem of a rejected job, located by path (and
	// line of the request body), so that a client can locate them in its
	// own file.
	Errors []FieldError `json:"errors,omitempty"`
}
