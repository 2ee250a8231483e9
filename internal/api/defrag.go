package api

// DefragRequest asks for a GPU defragmentation plan (POST
// /v1/gpu/defrag/plan) or for the next step of carrying one out (POST
// /v1/gpu/defrag/apply). Job names the pending job to make room for; empty
// asks for the largest pending GPU request, or, when nothing is pending,
// for the moves that free the most whole GPUs.
type DefragRequest struct {
	Namespace string `json:"namespace,omitempty"`
	Job       string `json:"job,omitempty"`
}

// DefragMove is one replica moved to another node or GPU: a replacement
// is placed on To, and the old replica is stopped once it is healthy.
type DefragMove struct {
	Alloc     string   `json:"alloc"`
	Name      string   `json:"name"` // <job>.<group>[<index>]
	Namespace string   `json:"namespace"`
	Job       string   `json:"job"`
	Group     string   `json:"group"`
	FromNode  string   `json:"from_node"` // node name
	FromGPUs  []int    `json:"from_gpus"` // device indices on FromNode
	ToNode    string   `json:"to_node"`
	ToNodeID  string   `json:"to_node_id"`
	ToGPUs    []int    `json:"to_gpus"`
	ToUUIDs   []string `json:"to_uuids"`
	Milli     int      `json:"milli"` // per GPU: below 1000 for a share
	Reason    string   `json:"reason"`
}

// DefragPlan is the proposed moves. For a job, Fits says whether it fits
// once they are made (FitsNow: without any); without one, Freed is the
// number of whole GPUs the moves free. Why explains an empty plan.
type DefragPlan struct {
	Namespace string       `json:"namespace,omitempty"`
	Job       string       `json:"job,omitempty"`
	Group     string       `json:"group,omitempty"`
	Replicas  int          `json:"replicas,omitempty"` // replicas of Group waiting to be placed
	Fits      bool         `json:"fits"`
	FitsNow   bool         `json:"fits_now,omitempty"`
	Freed     int          `json:"freed,omitempty"`
	Moves     []DefragMove `json:"moves"`
	Why       string       `json:"why,omitempty"`
	Index     int64        `json:"index,omitempty"`
}

// States of a DefragStep.
const (
	DefragPlaced  = "placed"  // a replacement was placed; call again to follow it
	DefragWaiting = "waiting" // a replacement is not healthy yet
	DefragMoved   = "moved"   // a replacement is healthy and the old replica was stopped
	DefragDone    = "done"    // nothing left to move: the job fits (or can never by moving)
	DefragFailed  = "failed"  // a replacement failed; it was stopped, the old replica kept
)

// DefragStep is what one call of POST /v1/gpu/defrag/apply did.
type DefragStep struct {
	State   string      `json:"state"`
	Move    *DefragMove `json:"move,omitempty"`
	Plan    *DefragPlan `json:"plan,omitempty"`
	Message string      `json:"message"`
}
