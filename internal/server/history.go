package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/gantryhq/gantry/internal/acl"
	"github.com/gantryhq/gantry/internal/api"
)

// allocGPUs lists the physical GPUs an allocation holds all or part of.
func allocGPUs(a *api.Allocation) []string {
	var out []string
	add := func(u string) {
		if u != "" && !slices.Contains(out, u) {
			out = append(out, u)
		}
	}
	for _, r := range a.Resources {
		if r == nil || r.GPU == nil {
			continue
		}
		for _, d := range r.GPU.Devices {
			add(d)
		}
		if r.GPU.MIG != nil {
			add(r.GPU.MIG.GPU)
		}
		if r.GPU.Share != nil {
			add(r.GPU.Share.GPU)
		}
	}
	slices.Sort(out)
	return out
}

// allocMetrics cuts an allocation's share out of its node's history: the
// samples that read one of its tasks, or, while it existed, the GPUs it
// holds.
func (s *Server) allocMetrics(a *api.Allocation) api.AllocMetricsResponse {
	resp := api.AllocMetricsResponse{AllocID: a.ID, NodeID: a.NodeID, GPUs: allocGPUs(a), Samples: []api.AllocMetricSample{}}
	for _, ns := range s.history.Get(a.NodeID) {
		p := api.AllocMetricSample{Time: ns.Time, Tasks: []api.AllocSample{}}
		for _, t := range ns.Allocs {
			if t.Alloc == a.ID {
				p.Tasks = append(p.Tasks, t)
			}
		}
		if !ns.Time.Before(a.CreateTime) {
			for _, g := range ns.GPUs {
				if slices.Contains(resp.GPUs, g.UUID) {
					p.GPUs = append(p.GPUs, g)
				}
			}
		}
		if len(p.Tasks) > 0 || len(p.GPUs) > 0 {
			resp.Samples = append(resp.Samples, p)
		}
	}
	return resp
}

// handleAllocMetrics answers GET /v1/allocations/{id}/metrics.
func (s *Server) handleAllocMetrics(w http.ResponseWriter, r *http.Request) error {
	a, err := s.findAlloc(r.PathValue("id"))
	if err != nil {
		return err
	}
	if err := s.allow(r, a.Namespace, acl.Read); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.allocMetrics(a))
	return nil
}

// historyFile is the on-disk form of the metrics history.
type historyFile struct {
	Version int                         `json:"version"`
	Saved   time.Time                   `json:"saved"`
	Nodes   map[string][]api.NodeSample `json:"nodes"`
}

// DefaultHistorySave is how often a history kept across restarts is
// written to its file (and once more at shutdown).
const DefaultHistorySave = time.Minute

// startHistory applies the history's interval and, when a file is
// configured, loads what it holds and keeps saving to it until ctx ends.
func (s *Server) startHistory(ctx context.Context) {
	s.history.SetInterval(s.cfg.HistoryInterval)
	if s.cfg.HistoryFile == "" {
		return
	}
	if err := s.loadHistory(); err != nil {
		s.log.Warn("metrics history not restored; starting empty", "file", s.cfg.HistoryFile, "err", err)
	}
	every := s.cfg.HistorySave
	if every <= 0 {
		every = DefaultHistorySave
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
			case <-ctx.Done():
				if err := s.saveHistory(); err != nil {
					s.log.Warn("save metrics history", "file", s.cfg.HistoryFile, "err", err)
				}
				return
			}
			if err := s.saveHistory(); err != nil {
				s.log.Warn("save metrics history", "file", s.cfg.HistoryFile, "err", err)
			}
		}
	}()
}

func (s *Server) loadHistory() error {
	b, err := os.ReadFile(s.cfg.HistoryFile)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	var f historyFile
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("%s is not a saved metrics history: %w", s.cfg.HistoryFile, err)
	}
	if f.Version != 1 {
		return fmt.Errorf("%s has version %d; this server reads version 1", s.cfg.HistoryFile, f.Version)
	}
	s.history.Restore(f.Nodes)
	n := 0
	for _, ss := range f.Nodes {
		n += len(ss)
	}
	s.log.Info("metrics history restored", "file", s.cfg.HistoryFile, "nodes", len(f.Nodes), "samples", n, "saved", f.Saved)
	return nil
}

// saveHistory writes the history to a temporary file and renames it over
// the old one, so a crash leaves the previous save whole.
func (s *Server) saveHistory() error {
	b, err := json.Marshal(historyFile{Version: 1, Saved: s.now().UTC(), Nodes: s.history.Dump()})
	if err != nil {
		return err
	}
	dir := filepath.Dir(s.cfg.HistoryFile)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".metrics-history-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), s.cfg.HistoryFile)
}
