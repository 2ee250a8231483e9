package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/state"
)

// hostnamePattern is compiled at its first use: its counted repetition
// compiles to a long program, which every start of the gantry binary
// paid at package initialization (2-4 ms), servers or not.
var hostnamePattern = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$`) })

func (s *Server) handleNodeRegister(w http.ResponseWriter, r *http.Request) error {
	var n api.Node
	if err := s.decodeBody(w, r, &n); err != nil {
		return err
	}
	switch {
	case n.ID == "" || len(n.ID) > 64:
		return &httpError{status: http.StatusBadRequest, msg: "node id is required (at most 64 characters)", field: "id"}
	case !hostnamePattern().MatchString(n.Name):
		return &httpError{status: http.StatusBadRequest, msg: fmt.Sprintf("node name %q must be a host name", n.Name), field: "name"}
	case n.Resources.CPU < 0 || n.Resources.Memory < 0 || n.Resources.Disk < 0:
		return &httpError{status: http.StatusBadRequest, msg: "node resources must not be negative", field: "resources"}
	}
	prev, known := s.store.Node(n.ID)
	ttl := s.registrationTTL(!known || prev.Status == api.NodeStatusDown)
	if err := s.store.RegisterNode(r.Context(), &n, ttl, s.now()); err != nil {
		return err
	}
	s.log.Info("node registered", "node", n.Name, "id", api.ShortID(n.ID))
	if known && prev.Status == api.NodeStatusDown {
		// A node back from down may hold allocations the servers kept
		// waiting for it (disconnect.replace false): evaluate their jobs.
		if err := s.evalJobsOnNode(r.Context(), nil, n.ID, api.TriggerNodeUpdate); err != nil {
			s.log.Warn("evaluate the jobs of a node back from down", "node", n.Name, "err", err)
		}
	}
	writeJSON(w, http.StatusOK, api.NodeRegisterResponse{NodeID: n.ID, HeartbeatTTL: api.Duration(ttl)})
	return nil
}

func (s *Server) handleNodeHeartbeat(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		api.HeartbeatRequest
		// LegacyLeaseID is what agents before the store kept leases to
		// itself sent; it is accepted and ignored (the store renews the
		// node's lease by the node's ID).
		LegacyLeaseID int64 `json:"lease_id,omitempty"`
	}
	if err := s.decodeBody(w, r, &req); err != nil {
		return err
	}
	if err := s.nodeHeartbeat(r.Context(), r.PathValue("id"), req.Sample); err != nil {
		return err
	}
	writeCompactJSON(w, http.StatusOK, struct{}{})
	return nil
}

// nodeHeartbeat renews a node's lease and keeps its usage sample: the
// heartbeat endpoint's work, and the node stream's.
func (s *Server) nodeHeartbeat(ctx context.Context, id string, sample *api.NodeSample) error {
	n, ok := s.store.Node(id)
	if !ok || n.Status == api.NodeStatusDown {
		return notFound("node %s is not registered or was marked down: register again", id)
	}
	done := s.timeHeartbeat()
	err := s.store.Heartbeat(ctx, n.ID)
	done()
	if err != nil {
		if errors.Is(err, state.ErrLeaseExpired) {
			return notFound("node %s: %v", n.Name, err)
		}
		return err
	}
	s.history.Record(n.ID, sample)
	s.recordHeartbeat(ctx, n)
	return nil
}

// heartbeatRecord is how stale a node's stored last_heartbeat may grow:
// the lease is renewed on every heartbeat, but writing the node on each
// would cost a store write per node every few seconds, so the time is
// written once it is this old.
const heartbeatRecord = 30 * time.Second

// recordHeartbeat writes the node's last_heartbeat when the stored one is
// older than heartbeatRecord. A failure is not the agent's problem: the
// lease, which decides whether the node is up, was renewed.
func (s *Server) recordHeartbeat(ctx context.Context, n *api.Node) {
	now := s.now()
	if now.Sub(n.LastHeartbeat) < heartbeatRecord {
		return
	}
	_, err := s.store.UpdateNode(ctx, nil, n.ID, func(cur *api.Node) error {
		if !cur.LastHeartbeat.Before(now) || cur.Status == api.NodeStatusDown {
			return errUnchanged
		}
		cur.LastHeartbeat = now
		return nil
	})
	if err != nil && !errors.Is(err, errUnchanged) {
		s.log.Debug("record heartbeat", "node", n.Name, "err", err)
	}
}

// handleNodeAllocs answers an agent's blocking query for its allocations:
// it returns once they changed after index, or after wait.
func (s *Server) handleNodeAllocs(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	q := r.URL.Query()
	index, _ := strconv.ParseInt(q.Get("index"), 10, 64)
	wait := 30 * time.Second
	if v := q.Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 || d > 5*time.Minute {
			return badRequest("wait %q must be a duration up to 5m", v)
		}
		wait = d
	}
	// A full answer is what an agent decides orphans on: bring the view
	// up to etcd's current revision first, so that a lagging view cannot
	// omit an allocation and get its live task removed.
	consistent := false
	if index == 0 {
		if _, err := s.store.Sync(r.Context()); err != nil {
			return fmt.Errorf("bring the view up to date before a full answer: %w", err)
		}
		consistent = true
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		allocs, ids, idx, changed := s.store.NodeAllocsSince(id, index)
		idx = max(idx, 1)
		if index == 0 || idx > index {
			writeCompactJSON(w, http.StatusOK, api.NodeAllocsResponse{Index: idx, Allocs: allocs, IDs: ids, Consistent: consistent})
			return nil
		}
		select {
		case <-changed:
		case <-timer.C:
			writeCompactJSON(w, http.StatusOK, api.NodeAllocsResponse{Index: idx, Allocs: allocs, IDs: ids})
			return nil
		case <-r.Context().Done():
			return nil
		}
	}
}

func (s *Server) handleNodeAllocUpdate(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if _, ok := s.store.Node(id); !ok {
		return notFound("node %s is not registered", id)
	}
	var req api.AllocUpdateRequest
	if err := s.decodeBody(w, r, &req); err != nil {
		return err
	}
	if err := s.nodeReport(r.Context(), id, req.Updates); err != nil {
		return err
	}
	writeCompactJSON(w, http.StatusOK, struct{}{})
	return nil
}

// nodeReport checks a node's allocation reports and commits them with
// the others that arrive meanwhile (reportBatcher): the report
// endpoint's work, and the node stream's. The same report twice changes
// nothing the second time (the store writes a report equal to what it
// holds as nothing, and never lets a late one undo a terminal status).
func (s *Server) nodeReport(ctx context.Context, id string, updates []api.AllocUpdate) error {
	if _, ok := s.store.Node(id); !ok {
		return notFound("node %s is not registered", id)
	}
	for i, u := range updates {
		switch u.ClientStatus {
		case api.AllocPending, api.AllocRunning, api.AllocComplete, api.AllocFailed:
		default:
			return &httpError{status: http.StatusBadRequest, msg: fmt.Sprintf("updates[%d].client_status %q is not one of pending, running, complete, failed", i, u.ClientStatus), field: fmt.Sprintf("updates[%d].client_status", i)}
		}
	}
	return s.reports.submit(ctx, id, updates)
}

// findNode resolves a node by ID, ID prefix or name.
func (s *Server) findNode(key string) (*api.Node, error) {
	if n, ok := s.store.Node(key); ok {
		return n, nil
	}
	var matches []*api.Node
	for _, n := range s.store.Nodes() {
		if n.Name == key || strings.HasPrefix(n.ID, key) {
			matches = append(matches, n)
		}
	}
	switch len(matches) {
	case 0:
		return nil, notFound("node %q not found", key)
	case 1:
		return matches[0], nil
	}
	return nil, badRequest("node %q is ambiguous: %d nodes match; use the full ID", key, len(matches))
}

func (s *Server) handleNodeList(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, s.store.Nodes())
	return nil
}

func (s *Server) handleNodeRead(w http.ResponseWriter, r *http.Request) error {
	n, err := s.findNode(r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, n)
	return nil
}

func (s *Server) handleNodeDrain(w http.ResponseWriter, r *http.Request) error {
	n, err := s.findNode(r.PathValue("id"))
	if err != nil {
		return err
	}
	var req api.DrainRequest
	if err := s.decodeBody(w, r, &req); err != nil {
		return err
	}
	if req.Deadline < 0 {
		return &httpError{status: http.StatusBadRequest, msg: "deadline must not be negative", field: "deadline"}
	}
	now := s.now()
	updated, err := s.store.UpdateNode(r.Context(), nil, n.ID, func(cur *api.Node) error {
		if req.Enable {
			d := req.Deadline.D()
			if d == 0 {
				d = time.Hour
			}
			cur.Drain = &api.Drain{StartedAt: now, Deadline: now.Add(d)}
		} else {
			cur.Drain = nil
		}
		return nil
	})
	if err != nil {
		return err
	}
	if req.Enable {
		if err := s.evalJobsOnNode(r.Context(), nil, n.ID, api.TriggerNodeUpdate); err != nil {
			return err
		}
	}
	writeJSON(w, http.StatusOK, updated)
	return nil
}

func (s *Server) handleNodeEligibility(w http.ResponseWriter, r *http.Request) error {
	n, err := s.findNode(r.PathValue("id"))
	if err != nil {
		return err
	}
	var req api.EligibilityRequest
	if err := s.decodeBody(w, r, &req); err != nil {
		return err
	}
	updated, err := s.store.UpdateNode(r.Context(), nil, n.ID, func(cur *api.Node) error {
		cur.Ineligible = !req.Eligible
		return nil
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, updated)
	return nil
}
