package server

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/gantryhq/gantry/internal/acl"
	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/pki"
)

// scope says how a route is authorized.
type scope int

const (
	// public routes need nothing: health and the one-time bootstrap.
	public scope = iota
	// agentProto routes are the agent protocol: an agent (or server)
	// certificate, or without TLS a token with node-write.
	agentProto
	// namespaced routes need cap in the namespace of ?namespace=
	// (default "default"); list routes without ?namespace= need any valid
	// token and show only what it may read.
	namespaced
	// inHandler routes are authorized by their handler, against the
	// namespace of the object they read (an allocation, a job in a body).
	inHandler
	// global routes need a cluster-wide capability.
	global
	// authenticated routes need any valid token.
	authenticated
	// management routes need the management token.
	management
)

// rule is a route's authorization: its scope and capability. agentToo
// lets agents (by certificate) call a route users call too.
type rule struct {
	scope    scope
	cap      acl.Capability
	list     bool
	agentToo bool
}

// routeRules authorizes every route the server registers, and the web
// UI's routes that the daemon mounts on it (internal/ui/web, through
// Route); a route without a rule is refused (and a test fails), so no
// endpoint is ever open by omission.
var routeRules = map[string]rule{
	"GET /v1/status":         {scope: public},
	"GET /metrics":           {scope: global, cap: acl.OperatorRead},
	"POST /v1/acl/bootstrap": {scope: public},

	"GET /v1/jobs":           {scope: namespaced, cap: acl.Read, list: true},
	"POST /v1/jobs":          {scope: inHandler, cap: acl.SubmitJob},
	"POST /v1/jobs/plan":     {scope: inHandler, cap: acl.SubmitJob},
	"POST /v1/jobs/validate": {scope: inHandler, cap: acl.Read},
	// The cluster checks describe nodes (names, capacities, labels), as
	// much as a plan does: the same capability.
	"POST /v1/validate/job":                  {scope: inHandler, cap: acl.SubmitJob},
	"GET /v1/jobs/{name}":                    {scope: namespaced, cap: acl.Read},
	"DELETE /v1/jobs/{name}":                 {scope: namespaced, cap: acl.SubmitJob},
	"GET /v1/jobs/{name}/versions":           {scope: namespaced, cap: acl.Read},
	"GET /v1/jobs/{name}/versions/{version}": {scope: namespaced, cap: acl.Read, agentToo: true},
	"GET /v1/jobs/{name}/allocations":        {scope: namespaced, cap: acl.Read},
	"GET /v1/jobs/{name}/evaluations":        {scope: namespaced, cap: acl.Read},

	"GET /v1/allocations":              {scope: namespaced, cap: acl.Read, list: true},
	"GET /v1/allocations/{id}":         {scope: inHandler, cap: acl.Read},
	"GET /v1/allocations/{id}/logs":    {scope: inHandler, cap: acl.ReadLogs},
	"GET /v1/allocations/{id}/exec":    {scope: inHandler, cap: acl.AllocExec},
	"GET /v1/allocations/{id}/metrics": {scope: inHandler, cap: acl.Read},
	"GET /v1/evaluations/{id}":         {scope: inHandler, cap: acl.Read},

	"GET /v1/nodes":                   {scope: global, cap: acl.NodeRead},
	"GET /v1/versions":                {scope: global, cap: acl.NodeRead},
	"GET /v1/versions/policy":         {scope: global, cap: acl.OperatorRead},
	"PUT /v1/versions/policy":         {scope: global, cap: acl.Operator},
	"GET /v1/nodes/{id}":              {scope: global, cap: acl.NodeRead},
	"GET /v1/nodes/{id}/metrics":      {scope: global, cap: acl.NodeRead},
	"POST /v1/nodes/{id}/drain":       {scope: global, cap: acl.NodeWrite},
	"POST /v1/nodes/{id}/eligibility": {scope: global, cap: acl.NodeWrite},

	"POST /v1/nodes/register":         {scope: agentProto},
	"PUT /v1/nodes/{id}/heartbeat":    {scope: agentProto},
	"GET /v1/nodes/{id}/allocations":  {scope: agentProto},
	"POST /v1/nodes/{id}/allocations": {scope: agentProto},
	"POST /v1/nodes/{id}/audit":       {scope: agentProto},
	// The node stream carries the three above for many nodes at once:
	// authorized once, like each of them, when it opens.
	"POST /v1/nodes/stream": {scope: agentProto},

	"GET /v1/queues":           {scope: authenticated},
	"GET /v1/queues/{name}":    {scope: authenticated},
	"PUT /v1/queues":           {scope: global, cap: acl.Operator},
	"DELETE /v1/queues/{name}": {scope: global, cap: acl.Operator},

	"GET /v1/events": {scope: namespaced, cap: acl.Read, list: true},

	// A defrag plan shows every namespace's GPU work; applying it moves
	// that work.
	"POST /v1/gpu/defrag/plan":  {scope: global, cap: acl.OperatorRead},
	"POST /v1/gpu/defrag/apply": {scope: global, cap: acl.Operator},

	"GET /v1/services":                {scope: namespaced, cap: acl.Read, list: true},
	"GET /v1/services/{name}":         {scope: namespaced, cap: acl.Read},
	"GET /v1/service-catalog":         {scope: global, cap: acl.NodeRead, agentToo: true},
	"GET /v1/deployments":             {scope: namespaced, cap: acl.Read},
	"GET /v1/deployments/{id}":        {scope: inHandler, cap: acl.Read},
	"GET /v1/jobs/{name}/deployment":  {scope: namespaced, cap: acl.Read},
	"GET /v1/jobs/{name}/deployments": {scope: namespaced, cap: acl.Read},
	"POST /v1/jobs/{name}/promote":    {scope: namespaced, cap: acl.SubmitJob},
	"POST /v1/jobs/{name}/revert":     {scope: namespaced, cap: acl.SubmitJob},

	"GET /v1/policy":      {scope: global, cap: acl.OperatorRead},
	"PUT /v1/policy":      {scope: global, cap: acl.Operator},
	"DELETE /v1/policy":   {scope: global, cap: acl.Operator},
	"GET /v1/audit":       {scope: global, cap: acl.OperatorRead},
	"POST /v1/audit/scan": {scope: global, cap: acl.Operator},

	// The virtualization monitor: connections hold credentials (the API
	// never returns them), so adding and removing takes operator, reading
	// operator-read.
	"GET /v1/vsphere/connections":           {scope: global, cap: acl.OperatorRead},
	"PUT /v1/vsphere/connections":           {scope: global, cap: acl.Operator},
	"DELETE /v1/vsphere/connections/{name}": {scope: global, cap: acl.Operator},
	"GET /v1/vsphere/status":                {scope: global, cap: acl.OperatorRead},
	"GET /v1/vsphere/status/{name}":         {scope: global, cap: acl.OperatorRead},
	"GET /v1/vsphere/history/{key}":         {scope: global, cap: acl.OperatorRead},
	"GET /ui/fragments/virtualization":      {scope: global, cap: acl.OperatorRead},

	// The web UI: the shell and its assets hold no data; each page's
	// fragment is authorized like the API endpoints that read the same
	// objects.
	"GET /ui":                            {scope: public},
	"GET /ui/{path...}":                  {scope: public},
	"GET /ui/assets/{file}":              {scope: public},
	"GET /ui/fragments/{rest...}":        {scope: public}, // answers 404 only
	"GET /ui/fragments/overview":         {scope: authenticated},
	"GET /ui/fragments/jobs":             {scope: namespaced, cap: acl.Read, list: true},
	"GET /ui/fragments/jobs/{name}":      {scope: namespaced, cap: acl.Read},
	"GET /ui/fragments/allocations/{id}": {scope: inHandler, cap: acl.Read},
	"GET /ui/fragments/nodes":            {scope: global, cap: acl.NodeRead},
	"GET /ui/fragments/nodes/{id}":       {scope: global, cap: acl.NodeRead},
	"GET /ui/fragments/allocations":      {scope: namespaced, cap: acl.Read, list: true},
	"GET /ui/fragments/evaluations":      {scope: namespaced, cap: acl.Read, list: true},
	"GET /ui/fragments/deployments":      {scope: namespaced, cap: acl.Read, list: true},
	"GET /ui/fragments/services":         {scope: namespaced, cap: acl.Read, list: true},
	"GET /ui/fragments/events":           {scope: namespaced, cap: acl.Read, list: true},
	"GET /ui/fragments/queues":           {scope: authenticated},
	"GET /ui/fragments/audit":            {scope: global, cap: acl.OperatorRead},
	"GET /ui/fragments/topology":         {scope: global, cap: acl.NodeRead},

	"GET /v1/acl/tokens":               {scope: management},
	"POST /v1/acl/tokens":              {scope: management},
	"DELETE /v1/acl/tokens/{accessor}": {scope: management},
	"GET /v1/acl/tokens/self":          {scope: authenticated},
	"GET /v1/acl/policies":             {scope: management},
	"PUT /v1/acl/policies":             {scope: management},
	"DELETE /v1/acl/policies/{name}":   {scope: management},
}

type ctxKey int

const (
	aclKey ctxKey = iota
	ruleKey
)

// routeRule is the rule of the route serving r.
func routeRule(r *http.Request) rule {
	rl, _ := r.Context().Value(ruleKey).(rule)
	return rl
}

// requestACL is the caller's ACL, nil when ACLs are off.
func requestACL(r *http.Request) *acl.ACL {
	a, _ := r.Context().Value(aclKey).(*acl.ACL)
	return a
}

// tokenOf reads the caller's secret from X-Gantry-Token or a bearer
// Authorization header.
func tokenOf(r *http.Request) string {
	if t := r.Header.Get("X-Gantry-Token"); t != "" {
		return t
	}
	if v, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return strings.TrimSpace(v)
	}
	return ""
}

// peerRole is the role in the caller's verified certificate, "" without
// TLS.
func peerRole(r *http.Request) (pki.Role, error) {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
		return "", nil
	}
	return pki.RoleOf(r.TLS.VerifiedChains[0][0])
}

func denied(format string, args ...any) error {
	return &httpError{status: http.StatusForbidden, msg: fmt.Sprintf(format, args...)}
}

// authorize checks the certificate role and the token against the route's
// rule. It returns the request, carrying the caller's ACL.
func (s *Server) authorize(pattern string, r *http.Request) (*http.Request, error) {
	rl, ok := routeRules[pattern]
	if !ok {
		return nil, denied("endpoint %s has no access rule; refusing it", pattern)
	}
	role, err := peerRole(r)
	if err != nil {
		return nil, denied("%v", err)
	}
	if role != "" {
		switch {
		case role == pki.RoleAgent && rl.scope != agentProto && rl.scope != public && !rl.agentToo:
			return nil, denied("an agent certificate may not call %s: it is for users and servers", pattern)
		case role == pki.RoleCLI && rl.scope == agentProto:
			return nil, denied("a cli certificate may not call %s: it is the agent protocol", pattern)
		}
	}
	r = r.WithContext(context.WithValue(r.Context(), ruleKey, rl))
	if rl.scope == public || !s.cfg.ACL {
		return r, nil
	}
	if (role == pki.RoleAgent || role == pki.RoleServer) && (rl.scope == agentProto || rl.agentToo) {
		return r, nil
	}
	secret := tokenOf(r)
	if secret == "" {
		return nil, &httpError{status: http.StatusUnauthorized, msg: "an ACL token is required: pass --token or set GANTRY_TOKEN"}
	}
	t, ok := s.store.TokenByHash(acl.Hash(secret))
	if !ok {
		return nil, &httpError{status: http.StatusUnauthorized, msg: "the ACL token is unknown or was deleted"}
	}
	a := acl.Compile(t, s.store.ACLPolicies(t.Policies...))
	r = r.WithContext(context.WithValue(r.Context(), aclKey, a))
	var need error
	switch rl.scope {
	case agentProto, global:
		c := rl.cap
		if rl.scope == agentProto {
			c = acl.NodeWrite
		}
		need = a.Allow("", c)
	case namespaced:
		ns := r.URL.Query().Get("namespace")
		if ns == "" && rl.list {
			break // the handler shows only what the token may read
		}
		if ns == "" {
			ns = api.DefaultNamespace
		}
		need = a.Allow(ns, rl.cap)
	case management:
		if !a.Management() {
			need = fmt.Errorf("%w: only the management token may call %s", acl.ErrDenied, pattern)
		}
	}
	if need != nil {
		return nil, denied("%v", need)
	}
	return r, nil
}

// allow is the handlers' check for inHandler routes: cap in namespace ns.
func (s *Server) allow(r *http.Request, ns string, c acl.Capability) error {
	if !s.cfg.ACL {
		return nil
	}
	if role, _ := peerRole(r); role == pki.RoleServer {
		return nil
	}
	if err := requestACL(r).Allow(ns, c); err != nil {
		return denied("%v", err)
	}
	return nil
}

// visible reports whether list results of namespace ns may be shown.
func (s *Server) visible(r *http.Request, ns string) bool {
	return s.allow(r, ns, acl.Read) == nil
}
