package server

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/acl"
	"github.com/gantryhq/gantry/internal/pki"
)

// secureServer starts a real server (embedded etcd, TLS, ACLs) and returns
// its address and the files of a CA and one certificate per role.
func secureServer(t *testing.T) (*Server, string, map[pki.Role]pki.Files) {
	t.Helper()
	dir := t.TempDir()
	now := time.Now()
	ca, caKey, err := pki.NewCA("test-ca", now)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.pem")
	os.WriteFile(caFile, ca.PEM, 0o644)
	os.WriteFile(filepath.Join(dir, "ca-key.pem"), caKey, 0o600)
	files := map[pki.Role]pki.Files{}
	for _, role := range []pki.Role{pki.RoleServer, pki.RoleAgent, pki.RoleCLI} {
		c, k, err := ca.Issue(role, string(role), nil, now)
		if err != nil {
			t.Fatal(err)
		}
		f := pki.Files{CA: caFile, Cert: filepath.Join(dir, string(role)+".pem"), Key: filepath.Join(dir, string(role)+"-key.pem")}
		os.WriteFile(f.Cert, c, 0o644)
		os.WriteFile(f.Key, k, 0o600)
		files[role] = f
	}
	serverTLS, err := files[pki.RoleServer].ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	// The web UI's routes are mounted from outside (the daemon mounts
	// internal/ui/web, whose tests read its pages): stand-ins here, so
	// that their rules are checked like every other route's.
	s := startTestServerWith(t, Config{TLS: serverTLS, ACL: true}, func(s *Server) {
		for pattern := range routeRules {
			if strings.HasPrefix(pattern, "GET /ui") {
				s.Mount(pattern, s.Route(pattern, func(w http.ResponseWriter, r *http.Request) error {
					w.WriteHeader(http.StatusOK)
					return nil
				}))
			}
		}
	})
	return s, "https://" + s.Addr(), files
}

func clientFor(t *testing.T, f pki.Files) *http.Client {
	t.Helper()
	cfg, err := f.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
}

// concrete turns a route pattern into a request.
func concrete(pattern, ns string) (method, path string) {
	method, path, _ = strings.Cut(pattern, " ")
	r := strings.NewReplacer("{name}", "web", "{id}", "00000000", "{version}", "0", "{accessor}", "nobody")
	path = r.Replace(path)
	if ns != "" {
		path += "?namespace=" + ns
	}
	return method, path
}

func call(t *testing.T, c *http.Client, base, method, path, token string) int {
	t.Helper()
	req, _ := http.NewRequest(method, base+path, strings.NewReader("{}"))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("X-Gantry-Token", token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func refused(code int) bool { return code == http.StatusUnauthorized || code == http.StatusForbidden }

// TestEveryRouteHasARule: no endpoint is open by omission.
func TestEveryRouteHasARule(t *testing.T) {
	s := New(Config{}, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	s.routes()
	if len(s.patterns) < 30 {
		t.Fatalf("only %d routes recorded", len(s.patterns))
	}
	for _, p := range s.patterns {
		if _, ok := routeRules[p]; !ok {
			t.Errorf("route %q has no entry in routeRules", p)
		}
	}
}

// TestAuthorizationTable: certificate role × endpoint and token ×
// capability, against a real server speaking mutual TLS with ACLs on.
func TestAuthorizationTable(t *testing.T) {
	s, base, files := secureServer(t)
	ctx := context.Background()

	// Tokens: management, and one per capability set.
	mk := func(name string, p *acl.Policy, mgmt bool) string {
		secret, _ := acl.NewSecret()
		tok := &acl.Token{AccessorID: name, Name: name, SecretHash: acl.Hash(secret), Management: mgmt}
		if p != nil {
			if err := s.store.PutPolicy(ctx, p); err != nil {
				t.Fatal(err)
			}
			tok.Policies = []string{p.Name}
		}
		if err := s.store.PutToken(ctx, tok); err != nil {
			t.Fatal(err)
		}
		return secret
	}
	mgmt := mk("mgmt", nil, true)
	reader := mk("reader", &acl.Policy{Name: "reader", Namespaces: map[string][]acl.Capability{"team-a": {acl.Read}}}, false)
	submitter := mk("submitter", &acl.Policy{Name: "submitter", Namespaces: map[string][]acl.Capability{"team-a": {acl.SubmitJob}}}, false)
	nodeReader := mk("node-reader", &acl.Policy{Name: "node-reader", Global: []acl.Capability{acl.NodeRead}}, false)
	operator := mk("operator", &acl.Policy{Name: "operator", Global: []acl.Capability{acl.Operator}}, false)

	cli, agent, server := clientFor(t, files[pki.RoleCLI]), clientFor(t, files[pki.RoleAgent]), clientFor(t, files[pki.RoleServer])

	// 1. Every rule, for each role without a token, and the CLI with the
	// management token.
	for pattern, rl := range routeRules {
		if pattern == "POST /v1/acl/bootstrap" {
			continue // changes state; tested below
		}
		m, p := concrete(pattern, "")
		agentCode := call(t, agent, base, m, p, "")
		cliNoToken := call(t, cli, base, m, p, "")
		cliMgmt := call(t, cli, base, m, p, mgmt)
		serverCode := call(t, server, base, m, p, "")
		switch rl.scope {
		case public:
			if refused(agentCode) || refused(cliNoToken) {
				t.Errorf("%s is public but refused: agent %d cli %d", pattern, agentCode, cliNoToken)
			}
		case agentProto:
			if refused(agentCode) || refused(serverCode) {
				t.Errorf("%s: agent %d server %d, want allowed for agent and server certificates", pattern, agentCode, serverCode)
			}
			if cliMgmt != http.StatusForbidden {
				t.Errorf("%s: cli certificate with the management token got %d, want 403 (agent protocol)", pattern, cliMgmt)
			}
		default:
			if rl.agentToo {
				if refused(agentCode) {
					t.Errorf("%s: agents may call it, got %d", pattern, agentCode)
				}
			} else if agentCode != http.StatusForbidden {
				t.Errorf("%s: agent certificate got %d, want 403", pattern, agentCode)
			}
			if cliNoToken != http.StatusUnauthorized {
				t.Errorf("%s: cli certificate without a token got %d, want 401", pattern, cliNoToken)
			}
			if refused(cliMgmt) {
				t.Errorf("%s: management token refused with %d", pattern, cliMgmt)
			}
			if !rl.agentToo && serverCode != http.StatusUnauthorized {
				t.Errorf("%s: server certificate without a token got %d, want 401", pattern, serverCode)
			}
		}
	}

	// 2. Token × capability.
	cases := []struct {
		token, method, path string
		allowed             bool
	}{
		{reader, "GET", "/v1/jobs/web?namespace=team-a", true},
		{reader, "GET", "/v1/jobs/web?namespace=default", false},
		{reader, "DELETE", "/v1/jobs/web?namespace=team-a", false},
		{submitter, "DELETE", "/v1/jobs/web?namespace=team-a", true},
		{submitter, "GET", "/v1/jobs/web?namespace=team-a", true}, // submit-job implies read
		{submitter, "DELETE", "/v1/jobs/web?namespace=team-b", false},
		{reader, "GET", "/v1/nodes", false},
		{nodeReader, "GET", "/v1/nodes", true},
		{nodeReader, "POST", "/v1/nodes/x/drain", false},
		{reader, "PUT", "/v1/queues", false},
		{operator, "PUT", "/v1/queues", true},
		{operator, "GET", "/v1/policy", true},
		{reader, "GET", "/v1/queues", true},
		{reader, "GET", "/v1/acl/tokens", false},
		{mgmt, "GET", "/v1/acl/tokens", true},
		{"gnt_not-a-token", "GET", "/v1/jobs", false},
		// vCenter connections hold credentials: operator to change,
		// operator-read to read (never the password itself).
		{reader, "GET", "/v1/vsphere/connections", false},
		{nodeReader, "GET", "/v1/vsphere/connections", false},
		{nodeReader, "PUT", "/v1/vsphere/connections", false},
		{operator, "GET", "/v1/vsphere/connections", true},
		{operator, "PUT", "/v1/vsphere/connections", true},
		{reader, "GET", "/ui/fragments/virtualization", false},
	}
	for _, tc := range cases {
		code := call(t, cli, base, tc.method, tc.path, tc.token)
		if refused(code) == tc.allowed {
			t.Errorf("%s %s with token %.12s…: got %d, allowed=%v", tc.method, tc.path, tc.token, code, tc.allowed)
		}
	}

	// Routes that read a job from the body check its namespace.
	jobBody := `{"name":"web","namespace":"default","groups":[{"name":"g","tasks":[{"name":"t","driver":"exec","config":{"command":"/bin/true"},"resources":{"cpu":10,"memory":10}}]}]}`
	for _, p := range []string{"/v1/jobs", "/v1/jobs/plan", "/v1/jobs/validate", "/v1/validate/job"} {
		req, _ := http.NewRequest("POST", base+p, strings.NewReader(jobBody))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Gantry-Token", submitter)
		resp, err := cli.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("POST %s of a job in namespace default with a team-a token: %d, want 403", p, resp.StatusCode)
		}
	}

	// A denial names the missing capability.
	req, _ := http.NewRequest("DELETE", base+"/v1/jobs/web?namespace=team-a", nil)
	req.Header.Set("X-Gantry-Token", reader)
	resp, err := cli.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "submit-job") || !strings.Contains(string(body), "team-a") {
		t.Errorf("denial does not name the missing capability: %s", body)
	}

	// 3. Tokens are stored hashed: no secret in the store.
	for _, tok := range s.store.Tokens() {
		if strings.HasPrefix(tok.SecretHash, "gnt_") || len(tok.SecretHash) != 64 {
			t.Errorf("token %s stored with %q, want a SHA-256 hex", tok.Name, tok.SecretHash)
		}
	}

	// 4. Bootstrap works once.
	if code := call(t, cli, base, "POST", "/v1/acl/bootstrap", ""); code != http.StatusOK {
		t.Fatalf("first bootstrap: %d", code)
	}
	if code := call(t, cli, base, "POST", "/v1/acl/bootstrap", ""); code != http.StatusConflict {
		t.Fatalf("second bootstrap: %d, want 409", code)
	}

	// 5. Without a client certificate the TLS handshake fails.
	caOnly := files[pki.RoleCLI]
	cfg, _ := caOnly.ClientConfig()
	cfg.Certificates = nil
	bare := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 5 * time.Second}
	if _, err := bare.Get(base + "/v1/status"); err == nil {
		t.Fatal("a client without a certificate was let in")
	}
	// And a certificate from another CA is refused too.
	other, _, _ := pki.NewCA("other", time.Now())
	oc, ok, _ := other.Issue(pki.RoleCLI, "x", nil, time.Now())
	pair, _ := tls.X509KeyPair(oc, ok)
	cfg2, _ := files[pki.RoleCLI].ClientConfig()
	cfg2.Certificates = []tls.Certificate{pair}
	foreign := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg2}, Timeout: 5 * time.Second}
	if _, err := foreign.Get(base + "/v1/status"); err == nil {
		t.Fatal("a certificate from another CA was let in")
	}
}
