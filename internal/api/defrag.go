package api

import (
	"fmt"
	"strings"
	"time"
)

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

// Sentence says what the plan does in one line, as `gantry job plan` and
// `gantry gpu defrag plan` print it: "would fit after moving 2 replicas of
// inference/api from node-3 GPU 1 to node-7 GPU 0 (gantry gpu defrag apply
// --for train)". Moves of the same group between the same GPUs are counted
// together.
func (p *DefragPlan) Sentence() string {
	type key struct{ what, from, to string }
	var order []key
	count := map[key]int{}
	for _, m := range p.Moves {
		k := key{m.Job + "/" + m.Group, m.FromNode + " " + gpuWords(m.FromGPUs), m.ToNode + " " + gpuWords(m.ToGPUs)}
		if count[k] == 0 {
			order = append(order, k)
		}
		count[k]++
	}
	var parts []string
	for _, k := range order {
		word := "replica"
		if count[k] > 1 {
			word = "replicas"
		}
		parts = append(parts, fmt.Sprintf("%d %s of %s from %s to %s", count[k], word, k.what, k.from, k.to))
	}
	moves := strings.Join(parts, ", ")
	switch {
	case p.FitsNow:
		return "fits now, without moving anything"
	case !p.Fits:
		return "cannot fit by moving GPU work: " + p.Why
	case p.Job == "":
		return fmt.Sprintf("moving %s frees %d whole GPU(s) (gantry gpu defrag apply --for <job>)", moves, p.Freed)
	}
	return fmt.Sprintf("would fit after moving %s (gantry gpu defrag apply --for %s)", moves, p.Job)
}

func gpuWords(gs []int) string {
	s := make([]string, len(gs))
	for i, g := range gs {
		s[i] = fmt.Sprint(g)
	}
	if len(gs) == 1 {
		return "GPU " + s[0]
	}
	return "GPUs " + strings.Join(s, ",")
}

// TopicDefrag is the event topic of GPU defragmentation: plans proposed
// and each move's progress, from `gantry gpu defrag apply` and from the
// background defragmenter alike.
const TopicDefrag = "defrag"

// Event types of topic "defrag" (DefragRecord.Type).
const (
	DefragEventProposed  = "DefragProposed"           // a plan was proposed (Plan set)
	DefragEventStarted   = "DefragMoveStarted"        // a replacement was placed on the destination
	DefragEventHealthy   = "DefragReplacementHealthy" // the replacement runs and is healthy
	DefragEventCompleted = "DefragMoveCompleted"      // the old replica was stopped: the move is done
	DefragEventAbandoned = "DefragMoveAbandoned"      // the replacement was stopped, the old replica stays (Reason says why)
)

// Sources of a DefragRecord: who acted.
const (
	DefragByApply      = "apply"      // gantry gpu defrag apply
	DefragByBackground = "background" // the leader's background defragmenter
)

// DefragRecord is the payload of a "defrag" event: a proposed plan or a
// step of one move. The latest proposal stays in the store, so the UI's
// GPU map can show moves before they are made.
type DefragRecord struct {
	Type      string      `json:"type"`
	Source    string      `json:"source"`
	Namespace string      `json:"namespace,omitempty"` // of the moved replica, or of the plan's job
	Job       string      `json:"job,omitempty"`
	Plan      *DefragPlan `json:"plan,omitempty"` // DefragEventProposed
	Move      *DefragMove `json:"move,omitempty"` // the move steps
	// Replacement is the ID of the replacement allocation of a move.
	Replacement string `json:"replacement,omitempty"`
	// Reason is why: the plan's reason for a move, or why it was abandoned.
	Reason     string    `json:"reason,omitempty"`
	ModifyTime time.Time `json:"modify_time"`
}
