package acladmin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/acl"
	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/server/fronttest"
	"github.com/gantryhq/gantry/internal/state"
)

// store keeps tokens and policies in memory as the store does: tokens by
// the hash of their secret, bootstrap once.
type store struct {
	mu           sync.Mutex
	bootstrapped bool
	tokens       map[string]*acl.Token // by hash
	policies     map[string]*acl.Policy
}

func newStore() *store {
	return &store{tokens: map[string]*acl.Token{}, policies: map[string]*acl.Policy{}}
}

func (s *store) BootstrapACL(_ context.Context, t *acl.Token) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bootstrapped {
		return state.ErrBootstrapped
	}
	s.bootstrapped = true
	c := *t
	s.tokens[t.SecretHash] = &c
	return nil
}

func (s *store) PutToken(_ context.Context, t *acl.Token) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := *t
	s.tokens[t.SecretHash] = &c
	return nil
}

func (s *store) DeleteToken(_ context.Context, accessor string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for h, t := range s.tokens {
		if t.AccessorID == accessor {
			delete(s.tokens, h)
			return nil
		}
	}
	return fmt.Errorf("token %s: %w", accessor, state.ErrNotFound)
}

func (s *store) Tokens() []*acl.Token {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*acl.Token
	for _, t := range s.tokens {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (s *store) TokenByHash(hash string) (*acl.Token, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tokens[hash]
	return t, ok
}

func (s *store) ACLPolicies(names ...string) []*acl.Policy {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*acl.Policy
	for _, p := range s.policies {
		if len(names) == 0 || names[0] == p.Name {
			out = append(out, p)
		}
	}
	return out
}

func (s *store) PutPolicy(_ context.Context, p *acl.Policy) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := *p
	s.policies[p.Name] = &c
	return nil
}

func (s *store) DeletePolicy(_ context.Context, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.policies[name]; !ok {
		return fmt.Errorf("policy %s: %w", name, state.ErrNotFound)
	}
	delete(s.policies, name)
	return nil
}

type front struct{ fronttest.JSON }

var testNow = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func newAdmin(st *store) *Admin {
	return New(Ports{Tokens: st, Policies: st, Front: front{}, Now: func() time.Time { return testNow },
		Secret: func(r *http.Request) string { return r.Header.Get("X-Gantry-Token") }})
}

// serve mounts the routes as the server does: an *Error is answered with
// its status and field, a store's not-found with 404.
func serve(t *testing.T, a *Admin) *httptest.Server {
	mux := http.NewServeMux()
	a.Routes(func(pattern string, h func(http.ResponseWriter, *http.Request) error) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			if err := h(w, r); err != nil {
				status := http.StatusInternalServerError
				body := api.Error{Error: err.Error()}
				var e *Error
				switch {
				case errors.As(err, &e):
					status, body.Field = e.HTTPStatus(), e.APIField()
				case errors.Is(err, state.ErrNotFound):
					status = http.StatusNotFound
				}
				front{}.WriteJSON(w, status, body)
			}
		})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// call sends a request with the token secret (when not empty) and decodes
// a 200's body into out (when not nil).
func call(t *testing.T, method, url, secret, body string, out any) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if secret != "" {
		req.Header.Set("X-Gantry-Token", secret)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK && out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, url, err, b)
		}
	}
	return resp.StatusCode, string(b)
}
