package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/jobspec"
	"github.com/gantryhq/gantry/internal/scheduler"
	"github.com/gantryhq/gantry/internal/state"
	"github.com/gantryhq/gantry/internal/validate"
)

// submitted is a job read from a request body with what the checks that
// do not reject it said.
type submitted struct {
	job      *api.Job
	lines    *jobspec.Locator // lines of the request body
	warnings []api.FieldError // advice from package validate
}

// readJob reads a job from the request body and admits it through the
// same parser and rules as the CLI (defaults for missing keys, every
// problem at once, located by path and line of the body).
//
// Package validate's Rules run too: their Invalid problems reject the job
// with the same messages `gantry job validate` prints; their advice comes
// back in warnings. The job comes back (non-nil) whenever it could be read,
// even with problems: every handler that changes anything must refuse a
// job with problems.
func (s *Server) readJob(w http.ResponseWriter, r *http.Request) (*submitted, []api.FieldError, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return nil, nil, &httpError{status: http.StatusUnsupportedMediaType, msg: fmt.Sprintf("request body must be a JSON job (Content-Type application/json), not %s", ct)}
	}
	data, release, err := s.readBody(w, r)
	if err != nil {
		return nil, nil, err
	}
	defer release()
	if !json.Valid(data) {
		var v any
		err := json.Unmarshal(data, &v)
		if len(bytes.TrimSpace(data)) == 0 {
			return nil, nil, badRequest("request body is empty: send the job as a JSON object")
		}
		return nil, nil, badRequest("request body is not valid JSON: %v", err)
	}
	job, err := jobspec.Parse("request body", data)
	if err == nil {
		// The job names its namespace: the route's capability is checked
		// there, for every handler that reads a job.
		if err := s.allow(r, job.Namespace, routeRule(r).cap); err != nil {
			return nil, nil, err
		}
		// What the scheduler must understand (constraint values, GPU
		// forms) is checked by the scheduler itself.
		var ve *scheduler.ValidationError
		if serr := scheduler.Validate(job); errors.As(serr, &ve) {
			return nil, []api.FieldError{{Path: ve.Field, Message: ve.Msg}}, nil
		} else if serr != nil {
			return nil, []api.FieldError{{Message: serr.Error()}}, nil
		}
		sub := &submitted{job: job, lines: jobspec.NewLocator("request body", data)}
		// Rules read the queues and the jobs, not the nodes.
		invalid, _, advice := validate.Split(validate.Rules(job, &validate.Cluster{Queues: s.store.Queues(), Jobs: s.store.Jobs("")}))
		// The job is returned with its invalid problems so that
		// validation can go on to the cluster checks: every problem at
		// once. Handlers that change anything refuse it.
		sub.warnings = sub.located(advice)
		return sub, sub.located(invalid), nil
	}
	var errs *jobspec.Errors
	if !errors.As(err, &errs) {
		return nil, nil, badRequest("%v", err)
	}
	out := make([]api.FieldError, len(errs.Fields))
	for i, f := range errs.Fields {
		out[i] = api.FieldError{Path: f.Path, Line: f.Line, Message: f.Message}
	}
	return nil, out, nil
}

// validationCluster is the snapshot package validate reads.
func (s *Server) validationCluster() *validate.Cluster {
	eng, _ := s.sched.(*scheduler.Engine)
	c := &validate.Cluster{Queues: s.store.Queues(), Jobs: s.store.Jobs(""), Engine: eng}
	c.Nodes, c.Ideal, c.QueueView = s.shapeCache.get(s.store, eng, c.Queues)
	return c
}

// shapeCache keeps the nodes, their ideal shape and the queue view of
// their capacity between changes of capacity (and, for the queue view,
// of the queues), so that registering a job on a large cluster does not
// rebuild the shape of every node each time.
type shapeCache struct {
	mu     sync.Mutex
	index  int64
	nodes  []*api.Node
	ideal  *scheduler.Ideal
	engine *scheduler.Engine
	queues []*api.Queue // as read: the store replaces a queue's value when it changes
	view   *scheduler.Queues
}

func (c *shapeCache) get(st *state.Store, eng *scheduler.Engine, queues []*api.Queue) ([]*api.Node, *scheduler.Ideal, *scheduler.Queues) {
	if eng == nil {
		return st.Nodes(), nil, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	idx := st.CapacityIndex()
	if c.nodes == nil || idx != c.index || eng != c.engine {
		// Read the index before the nodes: a change in between makes the
		// next call rebuild, never keeps a stale shape.
		c.nodes, c.index, c.engine = st.Nodes(), idx, eng
		c.ideal = eng.NewIdeal(c.nodes)
		c.view = nil
	}
	if c.view == nil || !slices.Equal(queues, c.queues) {
		c.queues = queues
		c.view = scheduler.NewQueues(&scheduler.Snapshot{Nodes: c.nodes, Queues: queues})
	}
	return c.nodes, c.ideal, c.view
}

// shape runs package validate's checks against the cluster's shape.
func (s *Server) shape(sub *submitted) []api.FieldError {
	return sub.located(validate.Shape(sub.job, s.validationCluster()))
}

// located turns problems into field errors with the lines of the body.
func (sub *submitted) located(ps []validate.Problem) []api.FieldError {
	out := make([]api.FieldError, len(ps))
	for i, p := range ps {
		out[i] = api.FieldError{Path: p.Path, Line: sub.lines.Line(p.Path), Message: p.Message}
	}
	return out
}

// handleValidateJob answers POST /v1/validate/job: every problem of the
// job, the checks against the cluster included.
func (s *Server) handleValidateJob(w http.ResponseWriter, r *http.Request) error {
	sub, errs, err := s.readJob(w, r)
	if err != nil {
		return err
	}
	c := s.validationCluster()
	resp := api.ValidateResponse{Errors: errs, Cluster: true, Nodes: len(c.Nodes)}
	if sub != nil {
		// The isolation policy too: what run and plan would refuse is
		// invalid here, with the same words, at the offending key.
		if len(errs) == 0 {
			rv, err := s.isolation.Review(r.Context(), sub.job)
			if err != nil {
				return err
			}
			for _, fe := range rv.FieldErrors(sub.job) {
				fe.Line = sub.lines.Line(fe.Path)
				resp.Errors = append(resp.Errors, fe)
			}
		}
		resp.Placement = sub.located(validate.Shape(sub.job, c))
		resp.Warnings = sub.warnings
	}
	resp.Valid = len(resp.Errors) == 0 && len(resp.Placement) == 0
	writeJSON(w, http.StatusOK, resp)
	return nil
}
