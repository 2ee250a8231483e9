package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/gantryhq/gantry/internal/acl"
	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/state"
)

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	// Every route goes through authorize: its certificate role and token
	// are checked against routeRules before the handler runs.
	handle := func(pattern string, h func(http.ResponseWriter, *http.Request) error) {
		s.patterns = append(s.patterns, pattern)
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			r2, err := s.authorize(pattern, r)
			if err == nil {
				err = h(w, r2)
			}
			if err != nil {
				s.writeError(w, r, err)
			}
		})
	}
	handle("GET /v1/status", s.handleStatus)

	handle("GET /v1/jobs", s.handleJobList)
	handle("POST /v1/jobs", s.handleJobRegister)
	handle("POST /v1/jobs/plan", s.handleJobPlan)
	handle("POST /v1/jobs/validate", s.handleJobValidate)
	handle("POST /v1/validate/job", s.handleValidateJob)
	handle("GET /v1/jobs/{name}", s.handleJobRead)
	handle("DELETE /v1/jobs/{name}", s.handleJobStop)
	handle("GET /v1/jobs/{name}/versions", s.handleJobVersions)
	handle("GET /v1/jobs/{name}/versions/{version}", s.handleJobVersion)
	handle("GET /v1/jobs/{name}/allocations", s.handleJobAllocs)
	handle("GET /v1/jobs/{name}/evaluations", s.handleJobEvals)

	handle("GET /v1/allocations", s.handleAllocList)
	handle("GET /v1/allocations/{id}", s.handleAllocRead)
	handle("GET /v1/allocations/{id}/logs", s.handleAllocLogs)
	handle("GET /v1/allocations/{id}/exec", s.handleAllocExec)

	handle("GET /v1/evaluations/{id}", s.handleEvalRead)

	handle("GET /v1/nodes", s.handleNodeList)
	handle("GET /v1/versions", s.handleVersions)
	handle("GET /v1/versions/policy", s.handleVersionPolicyRead)
	handle("PUT /v1/versions/policy", s.handleVersionPolicyApply)
	handle("GET /v1/nodes/{id}", s.handleNodeRead)
	handle("POST /v1/nodes/{id}/drain", s.handleNodeDrain)
	handle("POST /v1/nodes/{id}/eligibility", s.handleNodeEligibility)
	s.history.Routes(handle) // GET /v1/nodes/{id}/metrics, /v1/allocations/{id}/metrics

	// Agent protocol.
	handle("POST /v1/nodes/register", s.handleNodeRegister)
	handle("PUT /v1/nodes/{id}/heartbeat", s.handleNodeHeartbeat)
	handle("GET /v1/nodes/{id}/allocations", s.handleNodeAllocs)
	handle("POST /v1/nodes/{id}/allocations", s.handleNodeAllocUpdate)
	handle("POST /v1/nodes/stream", s.handleNodeStream)

	handle("GET /v1/queues", s.handleQueueList)
	handle("PUT /v1/queues", s.handleQueueApply)
	handle("GET /v1/queues/{name}", s.handleQueueRead)
	handle("DELETE /v1/queues/{name}", s.handleQueueDelete)

	s.defrag.Routes(handle)

	handle("GET /v1/events", s.handleEvents)
	metricsHandler := s.registry.Handler()
	handle("GET /metrics", func(w http.ResponseWriter, r *http.Request) error {
		metricsHandler.ServeHTTP(w, r)
		return nil
	})

	s.isolation.Routes(handle)

	s.aclAdmin.Routes(handle) // /v1/acl/bootstrap, /v1/acl/tokens, /v1/acl/policies

	s.networkRoutes(handle)
	s.vsphere.Routes(handle)
	for _, m := range s.mounts {
		mux.Handle(m.pattern, m.h)
	}

	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, notFound("no API endpoint %s %s: see the README for the /v1 endpoints", r.Method, r.URL.Path))
	})
	return mux
}

// httpError is an error with an HTTP status and, optionally, the field it
// is about.
type httpError struct {
	status int
	msg    string
	field  string
	errs   []api.FieldError // every problem of a rejected job
	// retryAfter, when set, is sent as Retry-After (seconds): the request
	// may succeed as it is a little later.
	retryAfter int
}

func (e *httpError) Error() string { return e.msg }

// statusError is an error that says its HTTP status: a mounted
// handler's (Mount), or a component's (vspheremon.Error,
// defragrun.Error, isolation.Error, acladmin.Error). One that also
// names the request field it is about says so with fieldError, one that
// carries every problem of a request (a refused job's findings) with
// fieldErrors.
type statusError interface {
	error
	HTTPStatus() int
}

type fieldError interface {
	APIField() string
}

type fieldErrors interface {
	APIErrors() []api.FieldError
}

func badRequest(format string, args ...any) error {
	return &httpError{status: http.StatusBadRequest, msg: fmt.Sprintf(format, args...)}
}

func notFound(format string, args ...any) error {
	return &httpError{status: http.StatusNotFound, msg: fmt.Sprintf(format, args...)}
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, body := errorAnswer(err)
	var he *httpError
	if errors.As(err, &he) && he.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(he.retryAfter))
	}
	if status == http.StatusInternalServerError {
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeJSON(w, status, body)
}

// errorAnswer is the HTTP status and body that answer err: the request
// endpoints' (writeError) and the node stream's acknowledgements.
func errorAnswer(err error) (int, api.Error) {
	status := http.StatusInternalServerError
	body := api.Error{Error: err.Error()}
	var he *httpError
	var mbe *http.MaxBytesError
	var se statusError
	switch {
	case errors.As(err, &he):
		status, body.Field, body.Errors = he.status, he.field, he.errs
	case errors.As(err, &se):
		status = se.HTTPStatus()
		if fe, ok := se.(fieldError); ok {
			body.Field = fe.APIField()
		}
		if fe, ok := se.(fieldErrors); ok {
			body.Errors = fe.APIErrors()
		}
	case errors.As(err, &mbe):
		status = http.StatusRequestEntityTooLarge
		body.Error = fmt.Sprintf("request body is larger than %d bytes", mbe.Limit)
	case errors.Is(err, state.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, state.ErrConflict):
		status = http.StatusConflict
	case errors.Is(err, state.ErrNotLeader):
		status = http.StatusServiceUnavailable
	case errors.Is(err, state.ErrIndexCompacted):
		status = http.StatusGone
	case errors.Is(err, acl.ErrDenied):
		status = http.StatusForbidden
	}
	return status, body
}

// writeCompactJSON writes v without indentation: for the agent protocol's
// hot paths (allocation long-polls, reports, job versions), where
// thousands of nodes read and nobody looks.
func writeCompactJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// writeRawJSON writes JSON already encoded.
func writeRawJSON(w http.ResponseWriter, status int, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// front is how the components (vspheremon, defragrun, isolation,
// nodehistory, acladmin) serve their endpoints as the server serves its
// own: forwarded to the leader where only it can answer, bodies read
// under the server's limits, answers written as writeJSON writes them.
type front struct{ s *Server }

func (f front) OnLeader(w http.ResponseWriter, r *http.Request, what string) (bool, error) {
	return f.s.onLeader(w, r, what)
}

func (f front) DecodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	return f.s.decodeBody(w, r, v)
}

func (front) WriteJSON(w http.ResponseWriter, status int, v any) { writeJSON(w, status, v) }

// agents is how a component reaches the nodes' agents: over TLS with the
// server's certificate when the cluster speaks TLS (agentClient).
type agents struct{ s *Server }

func (a agents) Base(n *api.Node) string { return a.s.agentScheme("http") + "://" + n.HTTPAddr }

func (a agents) Do(req *http.Request) (*http.Response, error) { return a.s.agentClient().Do(req) }

// decodeBody reads one JSON value into v, rejecting unknown fields,
// trailing data and bodies over the size limit.
func (s *Server) decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return &httpError{status: http.StatusUnsupportedMediaType, msg: fmt.Sprintf("request body must be JSON (Content-Type application/json), not %s", ct)}
	}
	data, release, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	defer release()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &mbe):
			return err
		case errors.Is(err, io.EOF):
			return badRequest("request body is empty: send a JSON object")
		case errors.As(err, &se):
			return badRequest("request body is not valid JSON at byte %d: %v", se.Offset, err)
		case errors.As(err, &te):
			return &httpError{status: http.StatusBadRequest, msg: fmt.Sprintf("field %s: expected %s, got %s", te.Field, te.Type, te.Value), field: te.Field}
		default:
			return badRequest("request body: %v", err)
		}
	}
	if dec.More() {
		return badRequest("request body has data after the JSON object")
	}
	return nil
}

func namespaceParam(r *http.Request) (string, error) {
	ns := r.URL.Query().Get("namespace")
	if ns == "" {
		return api.DefaultNamespace, nil
	}
	if !api.ValidName(ns) {
		return "", &httpError{status: http.StatusBadRequest, msg: fmt.Sprintf("namespace %q %s", ns, api.NameRule), field: "namespace"}
	}
	return ns, nil
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, api.StatusResponse{
		Server: s.cfg.ID, Leader: s.IsLeader(), Index: s.store.Index(), Version: s.cfg.Version, Time: s.now(),
	})
	return nil
}
