package defragrun

import (
	"net/http"

	"github.com/gantryhq/gantry/internal/api"
)

// Handle registers a handler at a pattern of the server's API; the server
// authorizes each request before the handler runs and answers the error
// it returns (an *Error with its status).
type Handle func(pattern string, h func(http.ResponseWriter, *http.Request) error)

// Routes registers POST /v1/gpu/defrag/plan and /apply.
func (r *Runner) Routes(handle Handle) {
	handle("POST /v1/gpu/defrag/plan", r.handlePlan)
	handle("POST /v1/gpu/defrag/apply", r.handleApply)
}

func (r *Runner) handlePlan(w http.ResponseWriter, req *http.Request) error {
	var dr api.DefragRequest
	if err := r.p.Front.DecodeBody(w, req, &dr); err != nil {
		return err
	}
	p, err := r.Plan(dr)
	if err != nil {
		return err
	}
	r.p.Front.WriteJSON(w, http.StatusOK, p)
	return nil
}

// handleApply does one step of carrying a plan out.
func (r *Runner) handleApply(w http.ResponseWriter, req *http.Request) error {
	// Moves are made by the leader: another server forwards the request.
	if done, err := r.p.Front.OnLeader(w, req, "GPU moves"); done {
		return err
	}
	var dr api.DefragRequest
	if err := r.p.Front.DecodeBody(w, req, &dr); err != nil {
		return err
	}
	if dr.Job == "" {
		return badRequest("apply needs the job to make room for (--for <job>); see the plan first with gantry gpu defrag plan")
	}
	fence := r.p.Fence()
	if fence == nil {
		return &Error{Status: http.StatusServiceUnavailable, Msg: "this server does not lead the cluster: send the request to the leader"}
	}
	step, err := r.Apply(req.Context(), fence, dr)
	if err != nil {
		return err
	}
	r.p.Front.WriteJSON(w, http.StatusOK, step)
	return nil
}
