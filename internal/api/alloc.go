package api

import (
	"fmt"
	"time"
)

// Desired statuses of an allocation, set by the server.
const (
	AllocDesiredRun  = "run"
	AllocDesiredStop = "stop"
)

// Client statuses of an allocation, reported by its agent (or "lost", set
// by the server when the node is gone).
const (
	AllocPending  = "pending"
	AllocRunning  = "running"
	AllocComplete = "complete"
	AllocFailed   = "failed"
	AllocLost     = "lost"
)

// Health of an allocation or task.
const (
	HealthUnknown   = ""
	HealthHealthy   = "healthy"
	HealthUnhealthy = "unhealthy"
)

// Allocation is one replica of a group placed on one node.
type Allocation struct {
	ID         string `json:"id"`
	Namespace  string `json:"namespace"`
	Job        string `json:"job"`
	JobVersion uint64 `json:"job_version"`
	// JobSubmitTime is the SubmitTime of the job version the allocation
	// runs: with Namespace, Job and JobVersion it names one registration,
	// even where a job was purged and registered again under the same
	// version number. Zero on allocations placed before it was recorded.
	JobSubmitTime time.Time `json:"job_submit_time,omitzero"`
	Group         string    `json:"group"`
	Index         int       `json:"index"` // replica number within the group
	Priority      int       `json:"priority"`
	NodeID        string    `json:"node_id"`
	NodeName      string    `json:"node_name"`
	EvalID        string    `json:"eval_id"`

	Resources map[string]*AllocatedResources `json:"resources"` // by task name

	DesiredStatus string                `json:"desired_status"`
	DesiredReason string                `json:"desired_reason,omitempty"`
	ClientStatus  string                `json:"client_status"`
	ClientReason  string                `json:"client_reason,omitempty"`
	Health        string                `json:"health,omitempty"`
	TaskStates    map[string]*TaskState `json:"task_states,omitempty"`

	PreviousAlloc string `json:"previous_alloc,omitempty"` // the allocation this one replaces
	DeploymentID  string `json:"deployment_id,omitempty"`  // the deployment that placed it
	Canary        bool   `json:"canary,omitempty"`         // placed as a canary beside the old version
	Reschedules   int    `json:"reschedules,omitempty"`    // how many replacements led to this one
	// Move says why the GPU defragmenter placed this allocation beside
	// PreviousAlloc, which it replaces once healthy; while both run, the
	// reconciler counts them as one replica.
	Move string `json:"move,omitempty"`

	CreateTime  time.Time `json:"create_time"`
	ModifyTime  time.Time `json:"modify_time"`
	ModifyIndex int64     `json:"modify_index"`
}

// Name is the allocation's readable name: "<job>.<group>[<index>]".
func (a *Allocation) Name() string { return fmt.Sprintf("%s.%s[%d]", a.Job, a.Group, a.Index) }

// JobKey is the identity of the allocation's job.
func (a *Allocation) JobKey() string { return JobKey(a.Namespace, a.Job) }

// ClientTerminal reports whether the allocation's tasks have stopped for
// good on the node.
func (a *Allocation) ClientTerminal() bool {
	switch a.ClientStatus {
	case AllocComplete, AllocFailed, AllocLost:
		return true
	}
	return false
}

// Terminal reports whether the allocation holds no resources any more:
// its tasks are done, or the server wants it stopped and the node has
// confirmed.
func (a *Allocation) Terminal() bool { return a.ClientTerminal() }

// ShortID is the first eight characters of the ID, as the CLI shows it.
func (a *Allocation) ShortID() string { return ShortID(a.ID) }

// ShortID shortens an ID for display.
func ShortID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

// AllocatedResources is what the scheduler granted one task.
type AllocatedResources struct {
	CPU    int             `json:"cpu"`
	Memory int             `json:"memory"`
	Disk   int             `json:"disk,omitempty"`
	Ports  []AllocatedPort `json:"ports,omitempty"`
	GPU    *AllocatedGPU   `json:"gpu,omitempty"`
}

// Port returns the allocated port with the given name.
func (r *AllocatedResources) Port(name string) (AllocatedPort, bool) {
	for _, p := range r.Ports {
		if p.Name == name {
			return p, true
		}
	}
	return AllocatedPort{}, false
}

// AllocatedPort maps a named port to a host port (and the container port
// it forwards to).
type AllocatedPort struct {
	Name string `json:"name"`
	Host int    `json:"host"`
	To   int    `json:"to"`
}

// AllocatedGPU holds exactly one of the three GPU forms.
type AllocatedGPU struct {
	Devices []string         `json:"devices,omitempty"` // whole GPUs by UUID
	MIG     *MIGAssignment   `json:"mig,omitempty"`
	Share   *ShareAssignment `json:"share,omitempty"`
}

// MIGAssignment is one MIG instance on one GPU. Create asks the agent to
// create the instance at Start before the task starts.
type MIGAssignment struct {
	GPU          string `json:"gpu"` // parent GPU UUID
	Profile      string `json:"profile"`
	Start        int    `json:"start"`
	Size         int    `json:"size"`
	InstanceUUID string `json:"instance_uuid,omitempty"`
	Create       bool   `json:"create,omitempty"`
}

// ShareAssignment is a fraction of one GPU.
type ShareAssignment struct {
	GPU     string `json:"gpu"`
	Milli   int    `json:"milli"`
	Memory  int    `json:"memory"`
	Enforce bool   `json:"enforce,omitempty"`
}

// Task states.
const (
	TaskPending = "pending"
	TaskRunning = "running"
	TaskDead    = "dead"
)

// TaskState is a task's lifecycle on its node.
type TaskState struct {
	State      string      `json:"state"`
	Failed     bool        `json:"failed,omitempty"`
	ExitCode   int         `json:"exit_code,omitempty"`
	Restarts   int         `json:"restarts,omitempty"`
	Health     string      `json:"health,omitempty"`
	StartedAt  time.Time   `json:"started_at,omitzero"`
	FinishedAt time.Time   `json:"finished_at,omitzero"`
	Events     []TaskEvent `json:"events,omitempty"`
}

// MaxTaskEvents bounds the events kept per task.
const MaxTaskEvents = 20

// TaskEvent is one transition in a task's life, with its reason.
type TaskEvent struct {
	Time    time.Time `json:"time"`
	Type    string    `json:"type"`
	Message string    `json:"message,omitempty"`
}

// Task event types.
const (
	TaskEventReceived      = "Received"
	TaskEventDriverFailure = "Driver Failure"
	TaskEventStarted       = "Started"
	TaskEventTerminated    = "Terminated"
	TaskEventRestarting    = "Restarting"
	TaskEventNotRestarting = "Not Restarting"
	TaskEventKilling       = "Killing"
	TaskEventKilled        = "Killed"
	TaskEventRecovered     = "Recovered"
	TaskEventHealthy       = "Healthy"
	TaskEventUnhealthy     = "Unhealthy"
)

// AddEvent appends an event, keeping at most MaxTaskEvents.
func (s *TaskState) AddEvent(e TaskEvent) {
	s.Events = append(s.Events, e)
	if n := len(s.Events); n > MaxTaskEvents {
		s.Events = append([]TaskEvent(nil), s.Events[n-MaxTaskEvents:]...)
	}
}

// Usage is what allocations take on a node, summed: CPU, memory and disk,
// and how many of them hold something a sum cannot check (host ports, a
// GPU), for which the node's allocations must be checked one by one
// (scheduler.Fit).
type Usage struct {
	CPU, Memory, Disk int
	Itemized          int
}

// Add counts a's resources in (sign 1) or out (sign -1).
func (u *Usage) Add(a *Allocation, sign int) {
	itemized := false
	for _, r := range a.Resources {
		if r == nil {
			continue
		}
		u.CPU += sign * r.CPU
		u.Memory += sign * r.Memory
		u.Disk += sign * r.Disk
		itemized = itemized || len(r.Ports) > 0 || r.GPU != nil
	}
	if itemized {
		u.Itemized += sign
	}
}

// ProgressHash summarizes what a deployment's progress depends on of one
// allocation: its ID, job version, desired and client status and health.
// A job's allocations sign as their count plus the sum of their hashes
// (deploywatch.Signature), which the store keeps per job as allocations
// change. Two different allocations share a hash with a chance of about
// 2^-64.
func (a *Allocation) ProgressHash() uint64 {
	h := uint64(fnvOffset)
	h = fnvString(h, a.ID)
	h = fnvUint(h, a.JobVersion)
	h = fnvString(h, a.DesiredStatus)
	h = fnvString(h, a.ClientStatus)
	h = fnvString(h, a.Health)
	return mix(h)
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// fnvString folds s and a separator into FNV-1a hash h.
func fnvString(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(s[i])) * fnvPrime
	}
	return (h ^ 0xff) * fnvPrime // no string holds 0xff: "ab","c" and "a","bc" differ
}

// fnvUint folds v's 8 bytes into FNV-1a hash h.
func fnvUint(h, v uint64) uint64 {
	for i := 0; i < 8; i++ {
		h = (h ^ (v & 0xff)) * fnvPrime
		v >>= 8
	}
	return h
}

// mix spreads h's bits (SplitMix64's finalizer) so that a sum of hashes
// does not cancel out in its low bits.
func mix(h uint64) uint64 {
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	return h ^ h>>31
}
