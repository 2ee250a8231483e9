package e2e

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestSecureCluster: certificates made with `gantry tls`, a cluster with
// mutual TLS and ACLs, a token from `gantry acl bootstrap`, a scoped token
// from a policy; denials name what is missing.
func TestSecureCluster(t *testing.T) {
	// Outside dev, a server without certificates refuses to start.
	r := runGantry(t, "server", "--data-dir", t.TempDir(), "--http-addr", "127.0.0.1:0")
	if r.Code != 1 || !strings.Contains(r.Stderr, "TLS is on by default") {
		t.Fatalf("insecure server: exit %d %s", r.Code, r.Stderr)
	}

	dir := t.TempDir()
	ca, caKey := filepath.Join(dir, "gantry-ca.pem"), filepath.Join(dir, "gantry-ca-key.pem")
	for _, args := range [][]string{
		{"tls", "ca", "create", "--out-dir", dir},
		{"tls", "cert", "create", "--server", "--ca", ca, "--ca-key", caKey, "--out-dir", dir},
		{"tls", "cert", "create", "--cli", "--ca", ca, "--ca-key", caKey, "--out-dir", dir},
	} {
		if r := runGantry(t, args...); r.Code != 0 {
			t.Fatalf("gantry %v: %d %s", args, r.Code, r.Stderr)
		}
	}
	c := StartDevSecure(t, []string{"--tls-ca", ca, "--tls-cert", filepath.Join(dir, "server.pem"), "--tls-key", filepath.Join(dir, "server-key.pem"), "--acl"},
		[]string{"--ca-cert", ca, "--client-cert", filepath.Join(dir, "cli.pem"), "--client-key", filepath.Join(dir, "cli-key.pem")})

	r = c.Gantry("acl", "bootstrap")
	if r.Code != 0 {
		t.Fatalf("acl bootstrap: %d %s%s", r.Code, r.Stdout, r.Stderr)
	}
	secret := regexp.MustCompile(`Secret\s+(gnt_[0-9a-f]+)`).FindStringSubmatch(r.Stdout)
	if secret == nil {
		t.Fatalf("no secret in %q", r.Stdout)
	}
	mgmt := secret[1]
	if r := c.Gantry("acl", "bootstrap"); r.Code != 1 || !strings.Contains(r.Stderr, "bootstrapped already") {
		t.Fatalf("second bootstrap: %d %s", r.Code, r.Stderr)
	}

	// Without a token: refused, saying how to fix it.
	if r := c.Gantry("job", "status"); r.Code != 1 || !strings.Contains(r.Stderr, "token is required") {
		t.Fatalf("no token: %d %s", r.Code, r.Stderr)
	}
	// With the management token: the demo runs, logs stream through the
	// server from the agent over mutual TLS.
	if r := c.Gantry("--token", mgmt, "job", "run", specFile("batch.yaml")); r.Code != 0 {
		t.Fatalf("job run with the management token: %d %s%s", r.Code, r.Stdout, r.Stderr)
	}
	// A policy and a scoped token.
	pol := WriteSpec(t, "team.yaml", "name: team-a\nnamespaces:\n  team-a: [read, submit-job]\n")
	if r := c.Gantry("--token", mgmt, "acl", "policy", "apply", pol); r.Code != 0 {
		t.Fatalf("policy apply: %d %s", r.Code, r.Stderr)
	}
	r = c.Gantry("--token", mgmt, "acl", "token", "create", "--name", "team-a", "--policy", "team-a")
	scoped := regexp.MustCompile(`Secret\s+(gnt_[0-9a-f]+)`).FindStringSubmatch(r.Stdout)
	if r.Code != 0 || scoped == nil {
		t.Fatalf("token create: %d %s%s", r.Code, r.Stdout, r.Stderr)
	}
	if r := c.Gantry("--token", scoped[1], "job", "run", "-n", "team-a", specFile("batch.yaml")); r.Code != 0 {
		t.Fatalf("scoped token in its namespace: %d %s%s", r.Code, r.Stdout, r.Stderr)
	}
	r = c.Gantry("--token", scoped[1], "job", "run", "-n", "default", specFile("batch.yaml"))
	if r.Code != 1 || !strings.Contains(r.Stderr, "lacks capability submit-job in namespace default") {
		t.Fatalf("scoped token elsewhere: %d %s%s", r.Code, r.Stdout, r.Stderr)
	}
	r = c.Gantry("--token", scoped[1], "alloc", "logs", firstAlloc(t, c, mgmt, "count"))
	if r.Code != 1 || !strings.Contains(r.Stderr, "read-logs") {
		t.Fatalf("logs without read-logs: %d %s%s", r.Code, r.Stdout, r.Stderr)
	}
	r = c.Gantry("--token", mgmt, "alloc", "logs", firstAlloc(t, c, mgmt, "count"))
	if r.Code != 0 || !strings.Contains(r.Stdout, "done") {
		t.Fatalf("logs through the server over mutual TLS: %d %s%s", r.Code, r.Stdout, r.Stderr)
	}
	// The token list never shows secrets.
	r = c.Gantry("--token", mgmt, "acl", "token", "list", "--json")
	if r.Code != 0 || strings.Contains(r.Stdout, mgmt) || strings.Contains(r.Stdout, scoped[1]) {
		t.Fatalf("token list: %d %s", r.Code, r.Stdout)
	}
}

func firstAlloc(t *testing.T, c *Cluster, token, job string) string {
	t.Helper()
	r := c.Gantry("--token", token, "job", "status", job, "--json")
	m := regexp.MustCompile(`"id": "([0-9a-f-]{36})"`).FindStringSubmatch(r.Stdout)
	if m == nil {
		t.Fatalf("no allocation of %s: %s %s", job, r.Stdout, r.Stderr)
	}
	return m[1]
}
