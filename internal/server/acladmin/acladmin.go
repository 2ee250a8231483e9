package acladmin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/gantryhq/gantry/internal/acl"
	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/state"
)

// Tokens is where the ACL tokens are kept, by the hash of their secret.
// *state.Store is one. Its writes are not fenced.
type Tokens interface {
	// BootstrapACL stores the first management token; once ACLs were
	// bootstrapped it returns state.ErrBootstrapped.
	BootstrapACL(ctx context.Context, t *acl.Token) error
	PutToken(ctx context.Context, t *acl.Token) error
	// DeleteToken returns an error wrapping state.ErrNotFound for an
	// accessor it does not know.
	DeleteToken(ctx context.Context, accessor string) error
	Tokens() []*acl.Token
	TokenByHash(hash string) (*acl.Token, bool)
}

// Policies is where the ACL policies are kept. *state.Store is one. Its
// writes are not fenced.
type Policies interface {
	// ACLPolicies returns the named policies that exist, every policy
	// when no name is given.
	ACLPolicies(names ...string) []*acl.Policy
	PutPolicy(ctx context.Context, p *acl.Policy) error
	DeletePolicy(ctx context.Context, name string) error
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

// Ports are the administration's ways to the rest of the server.
type Ports struct {
	Tokens   Tokens
	Policies Policies
	Front    Front
	// Secret is the token secret a request carries ("" for none), read
	// as the server's authorization reads it.
	Secret func(r *http.Request) string
	// Now is the clock.
	Now func() time.Time
}

// Admin is the ACL administration of one server. It holds no state of
// its own: tokens and policies are in the store.
type Admin struct {
	p Ports
}

// New returns the administration over the server's ports.
func New(p Ports) *Admin {
	return &Admin{p: p}
}

// Error is an answer other than success, with its HTTP status and, when
// it is about one, the request field.
type Error struct {
	Status int
	Msg    string
	Field  string
}

func (e *Error) Error() string { return e.Msg }

// HTTPStatus is the status the server answers e with.
func (e *Error) HTTPStatus() int { return e.Status }

// APIField is the request field e is about ("" for none).
func (e *Error) APIField() string { return e.Field }

// TokenRequest is the body of POST /v1/acl/tokens.
type TokenRequest struct {
	Name       string   `json:"name"`
	Policies   []string `json:"policies"`
	Management bool     `json:"management,omitempty"`
}

// TokenResponse carries a new token's secret, shown this once.
type TokenResponse struct {
	acl.Token
	Secret string `json:"secret"`
}

// newToken mints a token: a fresh accessor ID and secret, the secret kept
// only as its hash.
func (a *Admin) newToken(name string, policies []string, mgmt bool) (*acl.Token, string, error) {
	secret, err := acl.NewSecret()
	if err != nil {
		return nil, "", fmt.Errorf("mint a token secret: %w", err)
	}
	return &acl.Token{AccessorID: uuid.NewString(), Name: name, SecretHash: acl.Hash(secret), Policies: policies, Management: mgmt, CreateTime: a.p.Now()}, secret, nil
}

// Handle registers a handler at a pattern of the server's API; the server
// authorizes each request before the handler runs and answers the error
// it returns (an *Error with its status and field).
type Handle func(pattern string, h func(http.ResponseWriter, *http.Request) error)

// Routes registers /v1/acl/bootstrap, /v1/acl/tokens and
// /v1/acl/policies.
func (a *Admin) Routes(handle Handle) {
	handle("POST /v1/acl/bootstrap", a.handleBootstrap)
	handle("GET /v1/acl/tokens", a.handleTokenList)
	handle("POST /v1/acl/tokens", a.handleTokenCreate)
	handle("GET /v1/acl/tokens/self", a.handleTokenSelf)
	handle("DELETE /v1/acl/tokens/{accessor}", a.handleTokenDelete)
	handle("GET /v1/acl/policies", a.handlePolicyList)
	handle("PUT /v1/acl/policies", a.handlePolicyApply)
	handle("DELETE /v1/acl/policies/{name}", a.handlePolicyDelete)
}

func (a *Admin) handleBootstrap(w http.ResponseWriter, r *http.Request) error {
	t, secret, err := a.newToken("bootstrap", nil, true)
	if err != nil {
		return err
	}
	if err := a.p.Tokens.BootstrapACL(r.Context(), t); err != nil {
		if errors.Is(err, state.ErrBootstrapped) {
			return &Error{Status: http.StatusConflict, Msg: err.Error()}
		}
		return err
	}
	a.p.Front.WriteJSON(w, http.StatusOK, TokenResponse{Token: *t, Secret: secret})
	return nil
}

func (a *Admin) handleTokenCreate(w http.ResponseWriter, r *http.Request) error {
	var req TokenRequest
	if err := a.p.Front.DecodeBody(w, r, &req); err != nil {
		return err
	}
	if !api.ValidName(req.Name) {
		return &Error{Status: http.StatusBadRequest, Msg: fmt.Sprintf("token name %q %s", req.Name, api.NameRule), Field: "name"}
	}
	if !req.Management && len(req.Policies) == 0 {
		return &Error{Status: http.StatusBadRequest, Msg: "a token needs at least one policy (or management: true)", Field: "policies"}
	}
	for _, p := range req.Policies {
		if len(a.p.Policies.ACLPolicies(p)) == 0 {
			return &Error{Status: http.StatusBadRequest, Msg: fmt.Sprintf("policy %q does not exist: apply it first with 'gantry acl policy apply'", p), Field: "policies"}
		}
	}
	t, secret, err := a.newToken(req.Name, req.Policies, req.Management)
	if err != nil {
		return err
	}
	if err := a.p.Tokens.PutToken(r.Context(), t); err != nil {
		return err
	}
	a.p.Front.WriteJSON(w, http.StatusOK, TokenResponse{Token: *t, Secret: secret})
	return nil
}

// withoutHash is a token as the API shows it: everything but its hash.
func withoutHash(t *acl.Token) acl.Token {
	c := *t
	c.SecretHash = ""
	return c
}

func (a *Admin) handleTokenList(w http.ResponseWriter, r *http.Request) error {
	out := []acl.Token{}
	for _, t := range a.p.Tokens.Tokens() {
		out = append(out, withoutHash(t))
	}
	a.p.Front.WriteJSON(w, http.StatusOK, out)
	return nil
}

func (a *Admin) handleTokenSelf(w http.ResponseWriter, r *http.Request) error {
	t, ok := a.p.Tokens.TokenByHash(acl.Hash(a.p.Secret(r)))
	if !ok {
		return &Error{Status: http.StatusNotFound, Msg: "no token in this request, or ACLs are off"}
	}
	a.p.Front.WriteJSON(w, http.StatusOK, withoutHash(t))
	return nil
}

func (a *Admin) handleTokenDelete(w http.ResponseWriter, r *http.Request) error {
	if err := a.p.Tokens.DeleteToken(r.Context(), r.PathValue("accessor")); err != nil {
		return err
	}
	a.p.Front.WriteJSON(w, http.StatusOK, struct{}{})
	return nil
}

func (a *Admin) handlePolicyList(w http.ResponseWriter, r *http.Request) error {
	ps := a.p.Policies.ACLPolicies()
	if ps == nil {
		ps = []*acl.Policy{}
	}
	a.p.Front.WriteJSON(w, http.StatusOK, ps)
	return nil
}

func (a *Admin) handlePolicyApply(w http.ResponseWriter, r *http.Request) error {
	var p acl.Policy
	if err := a.p.Front.DecodeBody(w, r, &p); err != nil {
		return err
	}
	p.ModifyIndex = 0
	if err := p.Validate(); err != nil {
		return &Error{Status: http.StatusBadRequest, Msg: err.Error()}
	}
	if err := a.p.Policies.PutPolicy(r.Context(), &p); err != nil {
		return err
	}
	a.p.Front.WriteJSON(w, http.StatusOK, &p)
	return nil
}

func (a *Admin) handlePolicyDelete(w http.ResponseWriter, r *http.Request) error {
	if err := a.p.Policies.DeletePolicy(r.Context(), r.PathValue("name")); err != nil {
		return err
	}
	a.p.Front.WriteJSON(w, http.StatusOK, struct{}{})
	return nil
}
