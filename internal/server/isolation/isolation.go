package isolation

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/gantryhq/gantry/internal/admission"
	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/audit"
)

// Policies is where the admission policy is kept. *state.Store is one.
// Its writes are not fenced: the policy is configuration any server may
// store.
type Policies interface {
	// AdmissionPolicy returns the stored policy, nil when none was
	// applied, and the store's revision.
	AdmissionPolicy(ctx context.Context) (data []byte, rev int64, err error)
	PutAdmissionPolicy(ctx context.Context, data []byte) (int64, error)
	DeleteAdmissionPolicy(ctx context.Context) (int64, error)
}

// Reports is where the nodes' audit reports are kept, one per node.
// *state.Store is one. Its writes are not fenced: a report is what an
// agent said, and an agent reports to whichever server answers.
type Reports interface {
	// NodeAudit returns a node's stored report, nil when it has none.
	NodeAudit(ctx context.Context, nodeID string) ([]byte, error)
	NodeAudits(ctx context.Context) (ids []string, reports [][]byte, err error)
	PutNodeAudit(ctx context.Context, nodeID string, data []byte) (int64, error)
}

// Nodes is what the audit reads of the nodes. *state.Store is one.
type Nodes interface {
	Node(id string) (*api.Node, bool)
	Nodes() []*api.Node
}

// Agents reach the nodes' agents.
type Agents interface {
	// Base is the root of a node's agent API: its scheme (https when the
	// cluster speaks TLS) and address.
	Base(n *api.Node) string
	// Do sends a request to an agent, presenting the server's
	// certificate when the cluster speaks TLS.
	Do(req *http.Request) (*http.Response, error)
}

// Front is how the handlers sit on the server's API. The server's
// adapter is one.
type Front interface {
	// DecodeBody reads the request's JSON body into v under the server's
	// limits, rejecting unknown fields.
	DecodeBody(w http.ResponseWriter, r *http.Request, v any) error
	// WriteJSON answers v as the server answers its own endpoints.
	WriteJSON(w http.ResponseWriter, status int, v any)
}

// Ports are the service's ways to the rest of the server.
type Ports struct {
	Policies Policies
	Reports  Reports
	Nodes    Nodes
	Agents   Agents
	Front    Front
	// FindNode resolves a node by ID, ID prefix or name, as the server's
	// endpoints do (its errors are answered as they are).
	FindNode func(key string) (*api.Node, error)
	// Now is the clock.
	Now func() time.Time
	Log *slog.Logger
}

// Refresh bounds how old the stored report of a node reporting unchanged
// findings may be.
const Refresh = 10 * time.Minute

// ScanTimeout bounds one agent's audit on demand.
const ScanTimeout = 2 * time.Minute

// Service is the container isolation policy of one server. It holds no
// state of its own: policy and reports are in the store.
type Service struct {
	p Ports
}

// New returns the service over the server's ports.
func New(p Ports) *Service {
	return &Service{p: p}
}

// Error is an answer other than success, with its HTTP status, the
// request field it is about ("" for none) and, for a refused job, every
// blocking finding at its key.
type Error struct {
	Status int
	Msg    string
	Field  string
	Errors []api.FieldError
}

func (e *Error) Error() string { return e.Msg }

// HTTPStatus is the status the server answers e with.
func (e *Error) HTTPStatus() int { return e.Status }

// APIField is the request field e is about ("" for none).
func (e *Error) APIField() string { return e.Field }

// APIErrors are the field errors answered with e (nil for none).
func (e *Error) APIErrors() []api.FieldError { return e.Errors }

func badRequest(format string, args ...any) error {
	return &Error{Status: http.StatusBadRequest, Msg: fmt.Sprintf(format, args...)}
}

func notFound(format string, args ...any) error {
	return &Error{Status: http.StatusNotFound, Msg: fmt.Sprintf(format, args...)}
}

// Policy returns the policy in force: the stored one, or the default when
// none was applied. A stored policy that cannot be read is an error, not
// the default: admission fails closed.
func (s *Service) Policy(ctx context.Context) (audit.PolicyDocument, error) {
	data, rev, err := s.p.Policies.AdmissionPolicy(ctx)
	if err != nil {
		return audit.PolicyDocument{}, err
	}
	if data == nil {
		return audit.PolicyDocument{Policy: audit.DefaultPolicy(), Default: true, Index: rev}, nil
	}
	var p audit.Policy
	if err := json.Unmarshal(data, &p); err != nil {
		return audit.PolicyDocument{}, fmt.Errorf("the stored admission policy cannot be read (%w); apply a valid one with 'gantry policy apply'", err)
	}
	return audit.PolicyDocument{Policy: p, Index: rev}, nil
}

// Review judges a job under the policy in force. A job the checks cannot
// read is a 400 *Error.
func (s *Service) Review(ctx context.Context, job *api.Job) (*admission.Review, error) {
	doc, err := s.Policy(ctx)
	if err != nil {
		return nil, err
	}
	// The job's host paths are resolved on this server's machine: in a dev
	// cluster that is the node's, elsewhere servers and nodes share the
	// distribution's layout (/var/run -> /run); the agents' runtime audit
	// judges each container again against its own node's paths.
	host := &admission.Host{HostPaths: audit.ResolveHostPaths(admission.HostPaths(job))}
	rv, err := admission.CheckOn(doc.Policy, job, host)
	if err != nil {
		return nil, badRequest("invalid job: %v", err)
	}
	return rv, nil
}

// Admit reviews a job under the policy in force. A refusal is a 403
// *Error whose message lists every blocking finding, with each located at
// the offending key (Errors, the first one's key as Field); warnings come
// back for the caller to pass on.
func (s *Service) Admit(ctx context.Context, job *api.Job) ([]string, error) {
	rv, err := s.Review(ctx, job)
	if err != nil {
		return nil, err
	}
	if !rv.Admitted() {
		errs := rv.FieldErrors(job)
		return nil, &Error{Status: http.StatusForbidden, Msg: rv.Error(), Field: errs[0].Path, Errors: errs}
	}
	return rv.Warnings(), nil
}
