package server

import (
	"context"
	"fmt"
	"net/http"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/gantryhq/gantry/internal/acl"
	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/audit"
	"github.com/gantryhq/gantry/internal/metrics"
	"github.com/gantryhq/gantry/internal/scheduler"
	"github.com/gantryhq/gantry/internal/server/nodehistory"
	"github.com/gantryhq/gantry/internal/server/vspheremon"
	"github.com/gantryhq/gantry/internal/vsphere"
)

// What the web UI (package internal/ui/web) reads of the server, and how
// it mounts its handlers on the server's API listener. The server does not
// know the UI: the daemon builds the UI's handlers over these methods and
// mounts them before Start.

// Route wraps h the way the server wraps its own endpoints: the request is
// authorized against the rule routeRules holds for pattern (a pattern
// without a rule is refused), and an error h returns is answered like an
// API error (an error with an HTTPStatus() int method gets that status).
func (s *Server) Route(pattern string, h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r2, err := s.authorize(pattern, r)
		if err == nil {
			err = h(w, r2)
		}
		if err != nil {
			s.writeError(w, r, err)
		}
	})
}

// Mount serves h at pattern on the API listener, beside the /v1 routes.
// Call it before Start; h authorizes its requests itself (wrap it with
// Route).
func (s *Server) Mount(pattern string, h http.Handler) {
	s.mounts = append(s.mounts, mount{pattern, h})
}

type mount struct {
	pattern string
	h       http.Handler
}

// Now reads the server's clock (Config.Now).
func (s *Server) Now() time.Time { return s.now() }

// Status is what GET /v1/status answers now.
func (s *Server) Status() api.StatusResponse {
	return api.StatusResponse{Server: s.cfg.ID, Leader: s.IsLeader(), Index: s.store.Index(), Version: s.cfg.Version, Time: s.now()}
}

// Allow reports whether the caller of r holds capability c in namespace
// ns ("" for cluster-wide capabilities): nil, or a 403 error naming what
// is missing. r must have come through Route.
func (s *Server) Allow(r *http.Request, ns string, c acl.Capability) error {
	return s.allow(r, ns, c)
}

// JobSummary derives a job's status and per-group counts from its
// allocations, as GET /v1/jobs/{name} answers it.
func (s *Server) JobSummary(j *api.Job) *api.JobSummary { return s.summarize(j) }

// LookupJob finds the job of a request's {name} path value and
// ?namespace= query, as GET /v1/jobs/{name} does: a 400 for a bad
// namespace, a 404 for a job that does not exist.
func (s *Server) LookupJob(r *http.Request) (*api.Job, error) { return s.lookupJob(r) }

// FindAlloc resolves a full allocation ID or an unambiguous prefix.
func (s *Server) FindAlloc(id string) (*api.Allocation, error) { return s.findAlloc(id) }

// FindNode resolves a node by ID, ID prefix or name.
func (s *Server) FindNode(key string) (*api.Node, error) { return s.findNode(key) }

// Annotate adds the nodes' own reasons to the "driver … unavailable"
// explanations of failed placements (it changes failed and returns it).
func (s *Server) Annotate(failed map[string]*api.Explanation) map[string]*api.Explanation {
	return s.annotate(failed)
}

// DiffJobs lists the fields of the user's spec that differ between two
// versions of a job, by JSON path (what `job plan` shows).
func DiffJobs(old, cur *api.Job) []api.FieldDiff { return diffJobs(old, cur) }

// AllocGPUs lists the physical GPUs an allocation holds all or part of.
func AllocGPUs(a *api.Allocation) []string { return nodehistory.AllocGPUs(a) }

// AllocMetrics cuts an allocation's share out of its node's history, as
// GET /v1/allocations/{id}/metrics answers it.
func (s *Server) AllocMetrics(a *api.Allocation) api.AllocMetricsResponse {
	return s.history.AllocMetrics(a)
}

// NodeHistory is the usage history this server keeps of a node, oldest
// first.
func (s *Server) NodeHistory(id string) []api.NodeSample { return s.history.Get(id) }

// AgentMetrics scrapes an agent's /metrics, presenting the server's
// certificate when the cluster speaks TLS.
func (s *Server) AgentMetrics(ctx context.Context, n *api.Node) (map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.agentScheme("http")+"://"+n.HTTPAddr+"/metrics", nil)
	if err != nil {
		return nil, fmt.Errorf("bad address %q: %w", n.HTTPAddr, err)
	}
	req.Header.Set("Accept", "text/plain")
	resp, err := s.agentClient().Do(req)
	if err != nil {
		return nil, fmt.Errorf("no answer")
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	return metrics.ParseText(resp.Body)
}

// Queues is the fair-share view of the current state: which queue serves
// a namespace, and each queue's usage.
func (s *Server) Queues() *scheduler.Queues { return s.queueView() }

// AdmissionPolicy returns the container isolation policy in force (the
// default one when none was applied).
func (s *Server) AdmissionPolicy(ctx context.Context) (audit.PolicyDocument, error) {
	return s.isolation.Policy(ctx)
}

// KnownTopic reports whether GET /v1/events knows the topic t.
func KnownTopic(t string) bool { return knownTopics[t] }

// VCenter is one running vCenter collector as the Virtualization page
// draws it: its full status with node matches, and the history of one of
// its objects by ID.
type VCenter = vspheremon.VCenter

// VCenters lists the vCenter collectors this server runs (only the
// leader runs them), by connection name.
func (s *Server) VCenters() []VCenter { return s.vsphere.VCenters() }

// GantryVMs lists Gantry's own VMs (qemu tasks of live allocations) as
// /v1/vsphere/status shows them under "gantry".
func (s *Server) GantryVMs() []vsphere.GantryVM { return s.vsphere.GantryVMs() }

// WhatCollectors names what only the leader holds of the virtualization
// monitor, for OnLeader's sentences.
const WhatCollectors = vspheremon.WhatCollectors

// OnLeader serves r on the leader: on the leader it returns false and the
// caller serves r itself; on another server it forwards r to the leader
// (at most once), writes the leader's answer and returns true, or returns
// true and the error to answer with (a retryable 503 when no leader can be
// reached). what names what only the leader has, for the error's sentence.
func (s *Server) OnLeader(w http.ResponseWriter, r *http.Request, what string) (bool, error) {
	return s.onLeader(w, r, what)
}
