package api

import "time"

// Deployment statuses. A deployment is running until every group's
// replicas of its job version are healthy (successful), a replica fails
// or a deadline passes (failed), or a newer version or a stop replaces it
// (cancelled).
const (
	DeploymentRunning    = "running"
	DeploymentSuccessful = "successful"
	DeploymentFailed     = "failed"
	DeploymentCancelled  = "cancelled"
)

// Deployment follows one job version's rollout over the groups that have
// an update block: how many replicas of the version are placed and
// healthy, whether its canaries were promoted, and how it ended.
type Deployment struct {
	ID                string                      `json:"id"`
	Namespace         string                      `json:"namespace"`
	Job               string                      `json:"job"`
	JobVersion        uint64                      `json:"job_version"`
	Status            string                      `json:"status"`
	StatusDescription string                      `json:"status_description,omitempty"`
	Groups            map[string]*DeploymentGroup `json:"groups"`
	// RevertTo is the version an automatic rollback registers again once
	// the deployment failed; nil when none applies.
	RevertTo *uint64 `json:"revert_to,omitempty"`
	// Previous is the version every live allocation of the job ran, all of
	// them running and none unhealthy, when the deployment began, however
	// that version got there (a rolling deployment, a -d submit, a scale);
	// an automatic rollback goes there first. Nil when the job ran nothing,
	// or a mix of versions, or something unhealthy.
	Previous *uint64 `json:"previous_version,omitempty"`
	// RevertedAs is set once the server acted on RevertTo: the version the
	// rollback registered, or the job's version when the job had moved on
	// and nothing was registered (the description says which).
	RevertedAs  *uint64   `json:"reverted_as,omitempty"`
	CreateTime  time.Time `json:"create_time"`
	ModifyTime  time.Time `json:"modify_time"`
	ModifyIndex int64     `json:"modify_index"`
}

// JobKey is the identity of the deployment's job.
func (d *Deployment) JobKey() string { return JobKey(d.Namespace, d.Job) }

// Active reports whether the deployment still moves allocations.
func (d *Deployment) Active() bool { return d.Status == DeploymentRunning }

// RequiresPromotion reports whether a running deployment waits for its
// canaries to be promoted.
func (d *Deployment) RequiresPromotion() bool {
	if !d.Active() {
		return false
	}
	for _, g := range d.Groups {
		if g.DesiredCanaries > 0 && !g.Promoted {
			return true
		}
	}
	return false
}

// DeploymentGroup is one group's progress in a deployment.
type DeploymentGroup struct {
	Desired         int  `json:"desired"`
	DesiredCanaries int  `json:"desired_canaries,omitempty"`
	Promoted        bool `json:"promoted,omitempty"`
	AutoRevert      bool `json:"auto_revert,omitempty"`
	MaxParallel     int  `json:"max_parallel"`
	// Placed counts live allocations of the version; Healthy those healthy
	// for at least min_healthy_time; Unhealthy those that failed their
	// checks, failed, or missed healthy_deadline.
	Placed          int `json:"placed"`
	Healthy         int `json:"healthy"`
	Unhealthy       int `json:"unhealthy"`
	HealthyCanaries int `json:"healthy_canaries,omitempty"`
	// RequireProgressBy is when the group fails unless another replica
	// became healthy (progress_deadline); zero for no deadline.
	RequireProgressBy time.Time `json:"require_progress_by,omitzero"`
}
