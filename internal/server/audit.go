package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/gantryhq/gantry/internal/admission"
	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/audit"
)

// The container isolation audit on the server: the admission policy
// (/v1/policy), admission of jobs at register and plan, the agents' reports
// (POST /v1/nodes/{id}/audit) and the cluster report (/v1/audit).
//
// Reports are kept in the store, one key per node, not in a server's
// memory: an agent reports to whichever server answers, `gantry audit` may
// ask any other, and a report must survive a server restart. To keep etcd's
// history small a report is stored only when its findings changed or the
// stored one is older than auditRefresh, and only its failing container
// findings are kept (audit.Report.Compact).

// auditRefresh bounds how old the stored report of a node reporting
// unchanged findings may be.
const auditRefresh = 10 * time.Minute

// admissionPolicy returns the policy in force. A stored policy that cannot
// be read is an error, not the default: admission fails closed.
func (s *Server) admissionPolicy(ctx context.Context) (audit.PolicyDocument, error) {
	data, rev, err := s.store.AdmissionPolicy(ctx)
	if err != nil {
		return audit.PolicyDocument{}, err
	}
	if data == nil {
		return audit.PolicyDocument{Policy: audit.DefaultPolicy(), Default: true, Index: rev}, nil
	}
	var p audit.Policy
	if err := json.Unmarshal(data, &p); err != nil {
		return audit.PolicyDocument{}, fmt.Errorf("the stored admission policy cannot be read (%v); apply a valid one with 'gantry policy apply'", err)
	}
	return audit.PolicyDocument{Policy: p, Index: rev}, nil
}

// review judges a job under the policy in force.
func (s *Server) review(ctx context.Context, job *api.Job) (*admission.Review, error) {
	doc, err := s.admissionPolicy(ctx)
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

// admit reviews a job under the policy in force. A refusal is an HTTP 403
// whose message lists every blocking finding, with each located at the
// offending key (errors); warnings come back for the caller to pass on.
func (s *Server) admit(ctx context.Context, job *api.Job) ([]string, error) {
	rv, err := s.review(ctx, job)
	if err != nil {
		return nil, err
	}
	if !rv.Admitted() {
		errs := rv.FieldErrors(job)
		return nil, &httpError{status: http.StatusForbidden, msg: rv.Error(), field: errs[0].Path, errs: errs}
	}
	return rv.Warnings(), nil
}

func (s *Server) handlePolicyRead(w http.ResponseWriter, r *http.Request) error {
	doc, err := s.admissionPolicy(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, doc)
	return nil
}

func (s *Server) handlePolicyApply(w http.ResponseWriter, r *http.Request) error {
	var p audit.Policy
	if err := s.decodeBody(w, r, &p); err != nil {
		return err
	}
	if err := p.Validate(); err != nil {
		return badRequest("%v", err)
	}
	for i, x := range p.Exceptions {
		if !api.ValidName(x.Namespace) {
			return &httpError{status: http.StatusBadRequest, msg: fmt.Sprintf("exceptions[%d]: namespace %q %s", i, x.Namespace, api.NameRule), field: fmt.Sprintf("exceptions[%d].namespace", i)}
		}
	}
	data, err := json.Marshal(p)
	if err != nil {
		return err
	}
	rev, err := s.store.PutAdmissionPolicy(r.Context(), data)
	if err != nil {
		return err
	}
	s.log.Info("admission policy applied", "index", rev, "rules", len(p.Rules), "exceptions", len(p.Exceptions))
	writeJSON(w, http.StatusOK, audit.PolicyDocument{Policy: p, Index: rev})
	return nil
}

func (s *Server) handlePolicyReset(w http.ResponseWriter, r *http.Request) error {
	rev, err := s.store.DeleteAdmissionPolicy(r.Context())
	if err != nil {
		return err
	}
	s.log.Info("admission policy reset to the default", "index", rev)
	writeJSON(w, http.StatusOK, audit.PolicyDocument{Policy: audit.DefaultPolicy(), Default: true, Index: rev})
	return nil
}

// AuditAck answers an agent's report.
type AuditAck struct {
	Stored bool  `json:"stored"` // false: the findings had not changed
	Index  int64 `json:"index,omitempty"`
}

func (s *Server) handleNodeAuditReport(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if _, ok := s.store.Node(id); !ok {
		return notFound("node %q is not registered; register it before reporting its audit", id)
	}
	var rep audit.Report
	if err := s.decodeBody(w, r, &rep); err != nil {
		return err
	}
	rep = rep.Compact()
	now := s.now()
	if data, err := s.store.NodeAudit(r.Context(), id); err == nil && data != nil {
		var prev audit.NodeReport
		if json.Unmarshal(data, &prev) == nil && audit.SameFindings(prev.Report, rep) && now.Sub(prev.ModifyTime) < auditRefresh {
			writeJSON(w, http.StatusOK, AuditAck{})
			return nil
		}
	}
	data, err := json.Marshal(audit.NodeReport{NodeID: id, ModifyTime: now, Report: rep})
	if err != nil {
		return err
	}
	rev, err := s.store.PutNodeAudit(r.Context(), id, data)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, AuditAck{Stored: true, Index: rev})
	return nil
}

func (s *Server) handleAudit(w http.ResponseWriter, r *http.Request) error {
	doc, err := s.admissionPolicy(r.Context())
	if err != nil {
		return err
	}
	out := audit.ClusterReport{Policy: doc, Nodes: []audit.NodeReport{}}
	if key := r.URL.Query().Get("node"); key != "" {
		n, err := s.findNode(key)
		if err != nil {
			return err
		}
		data, err := s.store.NodeAudit(r.Context(), n.ID)
		if err != nil {
			return err
		}
		if data == nil {
			return notFound("node %s has not reported an audit yet (agents audit at start, then every --audit-interval)", n.Name)
		}
		var nr audit.NodeReport
		if err := json.Unmarshal(data, &nr); err != nil {
			return fmt.Errorf("the stored audit of node %s cannot be read: %w", n.Name, err)
		}
		out.Nodes = append(out.Nodes, nr)
		writeJSON(w, http.StatusOK, out)
		return nil
	}
	ids, reports, err := s.store.NodeAudits(r.Context())
	if err != nil {
		return err
	}
	for i, data := range reports {
		var nr audit.NodeReport
		if err := json.Unmarshal(data, &nr); err != nil {
			s.log.Warn("unreadable audit report in the store; skipped", "node", ids[i], "err", err)
			continue
		}
		out.Nodes = append(out.Nodes, nr)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
