package isolation

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/audit"
)

// Handle registers a handler at a pattern of the server's API; the server
// authorizes each request before the handler runs and answers the error
// it returns (an *Error with its status, field and field errors).
type Handle func(pattern string, h func(http.ResponseWriter, *http.Request) error)

// Routes registers /v1/policy, /v1/audit, /v1/audit/scan and the agent
// protocol's POST /v1/nodes/{id}/audit.
func (s *Service) Routes(handle Handle) {
	handle("GET /v1/policy", s.handlePolicyRead)
	handle("PUT /v1/policy", s.handlePolicyApply)
	handle("DELETE /v1/policy", s.handlePolicyReset)
	handle("GET /v1/audit", s.handleAudit)
	handle("POST /v1/audit/scan", s.handleScan)
	handle("POST /v1/nodes/{id}/audit", s.handleNodeReport) // agent protocol
}

func (s *Service) handlePolicyRead(w http.ResponseWriter, r *http.Request) error {
	doc, err := s.Policy(r.Context())
	if err != nil {
		return err
	}
	s.p.Front.WriteJSON(w, http.StatusOK, doc)
	return nil
}

func (s *Service) handlePolicyApply(w http.ResponseWriter, r *http.Request) error {
	var p audit.Policy
	if err := s.p.Front.DecodeBody(w, r, &p); err != nil {
		return err
	}
	if err := p.Validate(); err != nil {
		return badRequest("%v", err)
	}
	for i, x := range p.Exceptions {
		if !api.ValidName(x.Namespace) {
			return &Error{Status: http.StatusBadRequest, Msg: fmt.Sprintf("exceptions[%d]: namespace %q %s", i, x.Namespace, api.NameRule), Field: fmt.Sprintf("exceptions[%d].namespace", i)}
		}
	}
	data, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("encode the admission policy: %w", err)
	}
	rev, err := s.p.Policies.PutAdmissionPolicy(r.Context(), data)
	if err != nil {
		return err
	}
	s.p.Log.Info("admission policy applied", "index", rev, "rules", len(p.Rules), "exceptions", len(p.Exceptions))
	s.p.Front.WriteJSON(w, http.StatusOK, audit.PolicyDocument{Policy: p, Index: rev})
	return nil
}

func (s *Service) handlePolicyReset(w http.ResponseWriter, r *http.Request) error {
	rev, err := s.p.Policies.DeleteAdmissionPolicy(r.Context())
	if err != nil {
		return err
	}
	s.p.Log.Info("admission policy reset to the default", "index", rev)
	s.p.Front.WriteJSON(w, http.StatusOK, audit.PolicyDocument{Policy: audit.DefaultPolicy(), Default: true, Index: rev})
	return nil
}

// AuditAck answers an agent's report.
type AuditAck struct {
	Stored bool  `json:"stored"` // false: the findings had not changed
	Index  int64 `json:"index,omitempty"`
}

// handleNodeReport stores an agent's report of its node, unless it says
// what the stored one says and that one is younger than Refresh.
func (s *Service) handleNodeReport(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if _, ok := s.p.Nodes.Node(id); !ok {
		return notFound("node %q is not registered; register it before reporting its audit", id)
	}
	var rep audit.Report
	if err := s.p.Front.DecodeBody(w, r, &rep); err != nil {
		return err
	}
	rep = rep.Compact()
	now := s.p.Now()
	if data, err := s.p.Reports.NodeAudit(r.Context(), id); err == nil && data != nil {
		var prev audit.NodeReport
		if json.Unmarshal(data, &prev) == nil && audit.SameFindings(prev.Report, rep) && now.Sub(prev.ModifyTime) < Refresh {
			s.p.Front.WriteJSON(w, http.StatusOK, AuditAck{})
			return nil
		}
	}
	data, err := json.Marshal(audit.NodeReport{NodeID: id, ModifyTime: now, Report: rep})
	if err != nil {
		return fmt.Errorf("encode the audit of node %s: %w", id, err)
	}
	rev, err := s.p.Reports.PutNodeAudit(r.Context(), id, data)
	if err != nil {
		return err
	}
	s.p.Front.WriteJSON(w, http.StatusOK, AuditAck{Stored: true, Index: rev})
	return nil
}

// handleAudit answers the cluster report: the policy in force and every
// node's stored report, or only that of ?node=.
func (s *Service) handleAudit(w http.ResponseWriter, r *http.Request) error {
	doc, err := s.Policy(r.Context())
	if err != nil {
		return err
	}
	out := audit.ClusterReport{Policy: doc, Nodes: []audit.NodeReport{}}
	if key := r.URL.Query().Get("node"); key != "" {
		n, err := s.p.FindNode(key)
		if err != nil {
			return err
		}
		data, err := s.p.Reports.NodeAudit(r.Context(), n.ID)
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
		s.p.Front.WriteJSON(w, http.StatusOK, out)
		return nil
	}
	ids, reports, err := s.p.Reports.NodeAudits(r.Context())
	if err != nil {
		return err
	}
	for i, data := range reports {
		var nr audit.NodeReport
		if err := json.Unmarshal(data, &nr); err != nil {
			s.p.Log.Warn("unreadable audit report in the store; skipped", "node", ids[i], "err", err)
			continue
		}
		out.Nodes = append(out.Nodes, nr)
	}
	s.p.Front.WriteJSON(w, http.StatusOK, out)
	return nil
}
