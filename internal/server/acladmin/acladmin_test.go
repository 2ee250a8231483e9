package acladmin

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/internal/acl"
	"github.com/gantryhq/gantry/internal/api"
)

// TestBootstrapOnce: the first bootstrap answers the management token's
// secret, stored only as its hash; the second is a 409 that says why.
func TestBootstrapOnce(t *testing.T) {
	st := newStore()
	srv := serve(t, newAdmin(st))
	var tr TokenResponse
	if code, body := call(t, http.MethodPost, srv.URL+"/v1/acl/bootstrap", "", "", &tr); code != http.StatusOK || tr.Secret == "" || !tr.Management {
		t.Fatalf("first bootstrap: %d %s", code, body)
	}
	stored, ok := st.TokenByHash(acl.Hash(tr.Secret))
	if !ok || stored.Name != "bootstrap" || !stored.Management || !stored.CreateTime.Equal(testNow) || stored.AccessorID == "" {
		t.Fatalf("stored %+v, want the management token under the hash of its secret", stored)
	}
	if code, body := call(t, http.MethodPost, srv.URL+"/v1/acl/bootstrap", "", "", nil); code != http.StatusConflict || !strings.Contains(body, "bootstrapped already") {
		t.Errorf("second bootstrap: %d %s, want 409", code, body)
	}
}

// TestTokenCreateRefusals: each refusal is a 400 about its field, and
// stores nothing.
func TestTokenCreateRefusals(t *testing.T) {
	st := newStore()
	srv := serve(t, newAdmin(st))
	for _, tc := range []struct {
		name, body, field, want string
	}{
		{"bad name", `{"name":"Not A Name","policies":["p"]}`, "name", "token name"},
		{"no policy", `{"name":"ci"}`, "policies", "at least one policy"},
		{"unknown policy", `{"name":"ci","policies":["nope"]}`, "policies", "gantry acl policy apply"},
	} {
		code, body := call(t, http.MethodPost, srv.URL+"/v1/acl/tokens", "", tc.body, nil)
		var e api.Error
		json.Unmarshal([]byte(body), &e)
		if code != http.StatusBadRequest || e.Field != tc.field || !strings.Contains(e.Error, tc.want) {
			t.Errorf("%s: %d %s, want 400 about %s saying %q", tc.name, code, body, tc.field, tc.want)
		}
	}
	if len(st.tokens) != 0 {
		t.Errorf("refused tokens stored: %v", st.tokens)
	}
}

// TestTokenLifecycle: a token's secret is answered once, at creation;
// the list and self show tokens without their hash; delete removes it,
// an unknown accessor is the store's not-found.
func TestTokenLifecycle(t *testing.T) {
	st := newStore()
	st.policies["readers"] = &acl.Policy{Name: "readers", Namespaces: map[string][]acl.Capability{"default": {acl.Read}}}
	srv := serve(t, newAdmin(st))
	var created TokenResponse
	if code, body := call(t, http.MethodPost, srv.URL+"/v1/acl/tokens", "", `{"name":"ci","policies":["readers"]}`, &created); code != http.StatusOK || created.Secret == "" {
		t.Fatalf("create: %d %s", code, body)
	}
	if stored, ok := st.TokenByHash(acl.Hash(created.Secret)); !ok || stored.Name != "ci" || stored.Management || strings.Contains(stored.SecretHash, created.Secret) {
		t.Fatalf("stored %+v", stored)
	}
	code, body := call(t, http.MethodGet, srv.URL+"/v1/acl/tokens", "", "", nil)
	if code != http.StatusOK || strings.Contains(body, created.Secret) || strings.Contains(body, acl.Hash(created.Secret)) || !strings.Contains(body, created.AccessorID) {
		t.Errorf("list: %d %s, want the token without its secret or hash", code, body)
	}
	var self acl.Token
	if code, body := call(t, http.MethodGet, srv.URL+"/v1/acl/tokens/self", created.Secret, "", &self); code != http.StatusOK || self.AccessorID != created.AccessorID || self.SecretHash != "" {
		t.Errorf("self: %d %s", code, body)
	}
	if code, body := call(t, http.MethodGet, srv.URL+"/v1/acl/tokens/self", "", "", nil); code != http.StatusNotFound || !strings.Contains(body, "ACLs are off") {
		t.Errorf("self without a token: %d %s, want 404", code, body)
	}
	if code, body := call(t, http.MethodDelete, srv.URL+"/v1/acl/tokens/"+created.AccessorID, "", "", nil); code != http.StatusOK {
		t.Errorf("delete: %d %s", code, body)
	}
	if _, ok := st.TokenByHash(acl.Hash(created.Secret)); ok {
		t.Error("a deleted token is still stored")
	}
	if code, body := call(t, http.MethodDelete, srv.URL+"/v1/acl/tokens/"+created.AccessorID, "", "", nil); code != http.StatusNotFound {
		t.Errorf("delete twice: %d %s, want 404", code, body)
	}
	var empty []acl.Token
	if code, body := call(t, http.MethodGet, srv.URL+"/v1/acl/tokens", "", "", &empty); code != http.StatusOK || empty == nil || len(empty) != 0 {
		t.Errorf("list of none: %d %s, want []", code, body)
	}
}

// TestPolicyLifecycle: an invalid policy is a 400; a stored one comes
// back without the index the caller sent; an empty list is [], not null.
func TestPolicyLifecycle(t *testing.T) {
	st := newStore()
	srv := serve(t, newAdmin(st))
	if code, body := call(t, http.MethodGet, srv.URL+"/v1/acl/policies", "", "", nil); code != http.StatusOK || strings.TrimSpace(body) != "[]" {
		t.Errorf("list of none: %d %s, want []", code, body)
	}
	if code, body := call(t, http.MethodPut, srv.URL+"/v1/acl/policies", "", `{"name":"ops","global":["no-such-cap"]}`, nil); code != http.StatusBadRequest {
		t.Errorf("an unknown capability: %d %s, want 400", code, body)
	}
	var p acl.Policy
	if code, body := call(t, http.MethodPut, srv.URL+"/v1/acl/policies", "", `{"name":"ops","global":["operator"],"modify_index":99}`, &p); code != http.StatusOK || p.Name != "ops" || p.ModifyIndex != 0 {
		t.Fatalf("apply: %d %s", code, body)
	}
	if stored := st.ACLPolicies("ops"); len(stored) != 1 || stored[0].ModifyIndex != 0 || len(stored[0].Global) != 1 {
		t.Errorf("stored %+v", stored)
	}
	var ps []acl.Policy
	if code, _ := call(t, http.MethodGet, srv.URL+"/v1/acl/policies", "", "", &ps); code != http.StatusOK || len(ps) != 1 {
		t.Errorf("list: %+v", ps)
	}
	if code, body := call(t, http.MethodDelete, srv.URL+"/v1/acl/policies/ops", "", "", nil); code != http.StatusOK || len(st.policies) != 0 {
		t.Errorf("delete: %d %s", code, body)
	}
	if code, body := call(t, http.MethodDelete, srv.URL+"/v1/acl/policies/ops", "", "", nil); code != http.StatusNotFound {
		t.Errorf("delete twice: %d %s, want 404", code, body)
	}
}
