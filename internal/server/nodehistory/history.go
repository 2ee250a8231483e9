package nodehistory

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/gantryhq/gantry/internal/acl"
	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/metrics"
)

// Nodes is what the history reads of the nodes. *state.Store is one.
type Nodes interface {
	Node(id string) (*api.Node, bool)
	Nodes() []*api.Node
}

// Front is how the handlers sit on the server's API. The server's
// adapter is one.
type Front interface {
	// WriteJSON answers v as the server answers its own endpoints.
	WriteJSON(w http.ResponseWriter, status int, v any)
}

// Ports are the history's ways to the rest of the server.
type Ports struct {
	Nodes Nodes
	Front Front
	// FindNode and FindAlloc resolve what a request names (an ID, a
	// prefix, a node's name) as the server's endpoints do; their errors
	// are answered as they are.
	FindNode  func(key string) (*api.Node, error)
	FindAlloc func(id string) (*api.Allocation, error)
	// Allow checks that the caller of r holds capability c in namespace
	// ns: nil, or the error to answer (a 403 naming what is missing).
	Allow func(r *http.Request, ns string, c acl.Capability) error
	// Now is the clock.
	Now func() time.Time
	Log *slog.Logger
}

// Config sizes the history and keeps it across restarts.
type Config struct {
	// Size is how many samples are kept per node; 0 means
	// metrics.DefaultHistory.
	Size int
	// Interval keeps at most one sample per node per interval (0: every
	// sample a heartbeat brings).
	Interval time.Duration
	// File, when set, keeps the history across restarts: Load reads it,
	// Run saves to it every Save (0: DefaultSave) and once more when it
	// ends.
	File string
	Save time.Duration
}

// DefaultSave is how often a history kept across restarts is written to
// its file (and once more at shutdown).
const DefaultSave = time.Minute

// History is the usage history of one server. It is safe for concurrent
// use.
type History struct {
	p    Ports
	cfg  Config
	kept *metrics.History
}

// New returns an empty history; Load fills it from Config.File.
func New(p Ports, cfg Config) *History {
	if cfg.Save <= 0 {
		cfg.Save = DefaultSave
	}
	h := &History{p: p, cfg: cfg, kept: metrics.NewHistory(cfg.Size)}
	h.kept.SetInterval(cfg.Interval)
	return h
}

// Record keeps a node's usage sample, sent with its heartbeat (nil: none
// came), and forgets the nodes the store no longer knows.
func (h *History) Record(nodeID string, sample *api.NodeSample) {
	if sample == nil {
		return
	}
	h.kept.Add(nodeID, *sample)
	if h.kept.Len() > len(h.p.Nodes.Nodes()) {
		h.kept.Retain(func(id string) bool { _, ok := h.p.Nodes.Node(id); return ok })
	}
}

// Get is a node's history, oldest first (nil: none).
func (h *History) Get(nodeID string) []api.NodeSample { return h.kept.Get(nodeID) }

// Latest is the newest sample of a node.
func (h *History) Latest(nodeID string) (api.NodeSample, bool) {
	s := h.kept.Get(nodeID)
	if len(s) == 0 {
		return api.NodeSample{}, false
	}
	return s[len(s)-1], true
}

// AllocGPUs lists the physical GPUs an allocation holds all or part of.
func AllocGPUs(a *api.Allocation) []string {
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

// AllocMetrics cuts an allocation's share out of its node's history: the
// samples that read one of its tasks, or, while it existed, the GPUs it
// holds.
func (h *History) AllocMetrics(a *api.Allocation) api.AllocMetricsResponse {
	resp := api.AllocMetricsResponse{AllocID: a.ID, NodeID: a.NodeID, GPUs: AllocGPUs(a), Samples: []api.AllocMetricSample{}}
	for _, ns := range h.kept.Get(a.NodeID) {
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

// Handle registers a handler at a pattern of the server's API; the server
// authorizes each request before the handler runs and answers the error
// it returns.
type Handle func(pattern string, h func(http.ResponseWriter, *http.Request) error)

// Routes registers GET /v1/nodes/{id}/metrics and GET
// /v1/allocations/{id}/metrics.
func (h *History) Routes(handle Handle) {
	handle("GET /v1/nodes/{id}/metrics", h.handleNode)
	handle("GET /v1/allocations/{id}/metrics", h.handleAlloc)
}

// handleNode answers a node's recent usage samples that this server
// holds, oldest first.
func (h *History) handleNode(w http.ResponseWriter, r *http.Request) error {
	n, err := h.p.FindNode(r.PathValue("id"))
	if err != nil {
		return err
	}
	samples := h.kept.Get(n.ID)
	if samples == nil {
		samples = []api.NodeSample{}
	}
	h.p.Front.WriteJSON(w, http.StatusOK, api.NodeMetricsResponse{NodeID: n.ID, Samples: samples})
	return nil
}

// handleAlloc answers an allocation's share of its node's history, to a
// caller who may read the allocation's namespace.
func (h *History) handleAlloc(w http.ResponseWriter, r *http.Request) error {
	a, err := h.p.FindAlloc(r.PathValue("id"))
	if err != nil {
		return err
	}
	if err := h.p.Allow(r, a.Namespace, acl.Read); err != nil {
		return err
	}
	h.p.Front.WriteJSON(w, http.StatusOK, h.AllocMetrics(a))
	return nil
}

// file is the on-disk form of the history.
type file struct {
	Version int                         `json:"version"`
	Saved   time.Time                   `json:"saved"`
	Nodes   map[string][]api.NodeSample `json:"nodes"`
}

// Load adds what Config.File holds to the history (samples that arrived
// before it stay). No file configured, or none written yet, is an empty
// history, not an error.
func (h *History) Load() error {
	if h.cfg.File == "" {
		return nil
	}
	b, err := os.ReadFile(h.cfg.File)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read the metrics history: %w", err)
	}
	var f file
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("%s is not a saved metrics history: %w", h.cfg.File, err)
	}
	if f.Version != 1 {
		return fmt.Errorf("%s has version %d; this server reads version 1", h.cfg.File, f.Version)
	}
	h.kept.Restore(f.Nodes)
	n := 0
	for _, ss := range f.Nodes {
		n += len(ss)
	}
	h.p.Log.Info("metrics history restored", "file", h.cfg.File, "nodes", len(f.Nodes), "samples", n, "saved", f.Saved)
	return nil
}

// Save writes the history to Config.File through a temporary file renamed
// over the old one, so a crash leaves the previous save whole.
func (h *History) Save() error {
	b, err := json.Marshal(file{Version: 1, Saved: h.p.Now().UTC(), Nodes: h.kept.Dump()})
	if err != nil {
		return fmt.Errorf("encode the metrics history: %w", err)
	}
	dir := filepath.Dir(h.cfg.File)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create the metrics history's directory: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".metrics-history-*")
	if err != nil {
		return fmt.Errorf("create the metrics history's temporary file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("write the metrics history: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write the metrics history: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write the metrics history: %w", err)
	}
	if err := os.Rename(tmp.Name(), h.cfg.File); err != nil {
		return fmt.Errorf("replace the saved metrics history: %w", err)
	}
	return nil
}

// Run saves the history to Config.File at every tick and once more when
// ctx ends, then returns; without a file it returns at once. A save that
// fails is logged and tried again at the next tick.
func (h *History) Run(ctx context.Context, tick <-chan time.Time) {
	if h.cfg.File == "" {
		return
	}
	save := func() {
		if err := h.Save(); err != nil {
			h.p.Log.Warn("save metrics history", "file", h.cfg.File, "err", err)
		}
	}
	for {
		select {
		case <-tick:
			save()
		case <-ctx.Done():
			save()
			return
		}
	}
}

// SaveEvery is how often Run should be ticked.
func (h *History) SaveEvery() time.Duration { return h.cfg.Save }
