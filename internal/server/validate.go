package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/jobspec"
	"github.com/gantryhq/gantry/internal/scheduler"
)

// readJob reads a job from the request body and admits it through the
// same parser and rules as the CLI (defaults for missing keys, every
// problem at once, located by path and line of the body).
func (s *Server) readJob(w http.ResponseWriter, r *http.Request) (*api.Job, []api.FieldError, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return nil, nil, &httpError{status: http.StatusUnsupportedMediaType, msg: fmt.Sprintf("request body must be a JSON job (Content-Type application/json), not %s", ct)}
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		return nil, nil, err
	}
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
		return job, nil, nil
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
