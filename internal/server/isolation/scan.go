package isolation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"sync"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/audit"
)

// The on-demand audit (POST /v1/audit/scan, `gantry audit --now`, the
// UI's "Scan now"): the server asks every ready agent (or the one of
// ?node=) to audit its containers at once (POST /v1/client/audit on the
// agent), stores each answer as that node's report whatever it says, and
// answers the cluster report, so nobody waits for the next round.

func (s *Service) handleScan(w http.ResponseWriter, r *http.Request) error {
	var nodes []*api.Node
	if key := r.URL.Query().Get("node"); key != "" {
		n, err := s.p.FindNode(key)
		if err != nil {
			return err
		}
		nodes = []*api.Node{n}
	} else {
		nodes = s.p.Nodes.Nodes()
	}
	out := audit.ScanResponse{Scanned: []string{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, n := range nodes {
		if n.Status != api.NodeStatusReady || n.HTTPAddr == "" {
			// Under mu: the scans of nodes already started append to
			// Skipped too.
			mu.Lock()
			out.Skipped = append(out.Skipped, audit.ScanSkip{Node: n.Name, Reason: "node is " + n.Status})
			mu.Unlock()
			continue
		}
		wg.Add(1)
		go func(n *api.Node) {
			defer wg.Done()
			err := s.scanNode(r.Context(), n)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				out.Skipped = append(out.Skipped, audit.ScanSkip{Node: n.Name, Reason: err.Error()})
				return
			}
			out.Scanned = append(out.Scanned, n.Name)
		}(n)
	}
	wg.Wait()
	sort.Strings(out.Scanned)
	sort.Slice(out.Skipped, func(a, b int) bool { return out.Skipped[a].Node < out.Skipped[b].Node })
	s.p.Log.Info("container audit on demand", "scanned", len(out.Scanned), "skipped", len(out.Skipped))
	doc, err := s.Policy(r.Context())
	if err != nil {
		return err
	}
	out.Policy, out.Nodes = doc, []audit.NodeReport{}
	ids, reports, err := s.p.Reports.NodeAudits(r.Context())
	if err != nil {
		return err
	}
	want := map[string]bool{}
	for _, n := range nodes {
		want[n.ID] = true
	}
	for i, data := range reports {
		var nr audit.NodeReport
		if !want[ids[i]] || json.Unmarshal(data, &nr) != nil {
			continue
		}
		out.Nodes = append(out.Nodes, nr)
	}
	s.p.Front.WriteJSON(w, http.StatusOK, out)
	return nil
}

// scanNode has one agent audit now and stores its report. Its error is
// the reason the scan names for the node: one sentence about its agent.
func (s *Service) scanNode(ctx context.Context, n *api.Node) error {
	ctx, cancel := context.WithTimeout(ctx, ScanTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.p.Agents.Base(n)+"/v1/client/audit", nil)
	if err != nil {
		return fmt.Errorf("its agent's address %q is not usable: %w", n.HTTPAddr, err)
	}
	resp, err := s.p.Agents.Do(req)
	if err != nil {
		return fmt.Errorf("its agent does not answer: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("read its audit: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e api.Error
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return errors.New(e.Error)
		}
		return fmt.Errorf("its agent answered %s", resp.Status)
	}
	var rep audit.Report
	if err := json.Unmarshal(body, &rep); err != nil {
		return fmt.Errorf("its agent's audit cannot be read: %w", err)
	}
	data, err := json.Marshal(audit.NodeReport{NodeID: n.ID, ModifyTime: s.p.Now(), Report: rep.Compact()})
	if err != nil {
		return fmt.Errorf("encode its audit: %w", err)
	}
	if _, err := s.p.Reports.PutNodeAudit(ctx, n.ID, data); err != nil {
		return fmt.Errorf("store its audit: %w", err)
	}
	return nil
}
