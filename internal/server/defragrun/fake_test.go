package defragrun

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	st "github.com/gantryhq/gantry/internal/scheduler/schedtest"
	"github.com/gantryhq/gantry/internal/server/fronttest"
	"github.com/gantryhq/gantry/internal/state"
)

// store is the runner's store in memory. Its fenced writes fail with
// state.ErrNotLeader for a nil fence, ApplyPlan also with
// state.ErrConflict when a node guard is stale.
type store struct {
	mu       sync.Mutex
	index    int64
	nodes    map[string]*api.Node
	jobs     map[string]*api.Job
	allocs   map[string]*api.Allocation
	evals    []*api.Evaluation
	records  []*api.DefragRecord
	nodePlan map[string]int64
}

func newStore(nodes ...*api.Node) *store {
	s := &store{index: 1, nodes: map[string]*api.Node{}, jobs: map[string]*api.Job{}, allocs: map[string]*api.Allocation{}, nodePlan: map[string]int64{}}
	for _, n := range nodes {
		s.nodes[n.ID] = n
	}
	return s
}

func (s *store) Snapshot() *state.Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap := &state.Snapshot{Index: s.index}
	for _, n := range s.nodes {
		snap.Nodes = append(snap.Nodes, n)
	}
	sort.Slice(snap.Nodes, func(i, j int) bool { return snap.Nodes[i].ID < snap.Nodes[j].ID })
	for _, a := range s.sortedAllocs() {
		if !a.Terminal() {
			snap.Allocs = append(snap.Allocs, a)
		}
	}
	return snap
}

func (s *store) sortedAllocs() []*api.Allocation {
	var out []*api.Allocation
	for _, a := range s.allocs {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (s *store) Index() int64 { s.mu.Lock(); defer s.mu.Unlock(); return s.index }

func (s *store) Jobs(string) []*api.Job {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*api.Job
	for _, j := range s.jobs {
		out = append(out, j)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	return out
}

func (s *store) Job(ns, name string) (*api.Job, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.jobs[ns+"/"+name]
	return j, ok
}

func (s *store) Evals(ns, job string) []*api.Evaluation {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*api.Evaluation
	for _, e := range s.evals {
		if e.Namespace == ns && e.Job == job {
			out = append(out, e)
		}
	}
	return out
}

func (s *store) Alloc(id string) (*api.Allocation, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.allocs[id]
	return a, ok
}

func (s *store) Allocs(state.AllocFilter) []*api.Allocation {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sortedAllocs()
}

func (s *store) Node(id string) (*api.Node, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, ok := s.nodes[id]
	return n, ok
}

func (s *store) NodeAllocsUnsorted(id string) []*api.Allocation {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*api.Allocation
	for _, a := range s.allocs {
		if a.NodeID == id {
			out = append(out, a)
		}
	}
	return out
}

func (s *store) NodePlanIndex(id string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nodePlan[id]
}

func (s *store) DefragProposal(context.Context) (*api.DefragRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.records) - 1; i >= 0; i-- {
		if s.records[i].Type == api.DefragEventProposed {
			return s.records[i], nil
		}
	}
	return nil, nil
}

func (s *store) DefragMove(_ context.Context, alloc string) (*api.DefragRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.records) - 1; i >= 0; i-- {
		if r := s.records[i]; r.Move != nil && r.Move.Alloc == alloc {
			return r, nil
		}
	}
	return nil, nil
}

func (s *store) ApplyPlan(_ context.Context, p *state.PlanCommit) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.Fence == nil {
		return 0, state.ErrNotLeader
	}
	for n, g := range p.NodeGuards {
		if s.nodePlan[n] != g {
			return 0, fmt.Errorf("node %s changed: %w", n, state.ErrConflict)
		}
	}
	s.index++
	for _, a := range p.Place {
		s.allocs[a.ID] = a
		s.nodePlan[a.NodeID] = s.index
	}
	for _, a := range p.Update {
		s.allocs[a.ID] = a
	}
	if p.Defrag != nil {
		s.records = append(s.records, p.Defrag)
	}
	return s.index, nil
}

func (s *store) CreateEvals(_ context.Context, fence *state.Fence, evals ...*api.Evaluation) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if fence == nil {
		return state.ErrNotLeader
	}
	s.index++
	s.evals = append(s.evals, evals...)
	return nil
}

func (s *store) PutDefragRecord(_ context.Context, fence *state.Fence, r *api.DefragRecord) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if fence == nil {
		return state.ErrNotLeader
	}
	s.index++
	s.records = append(s.records, r)
	return nil
}

// types lists the records' types in order.
func (s *store) types() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, r := range s.records {
		out = append(out, r.Type)
	}
	return out
}

// report sets what an agent reports of an allocation.
func (s *store) report(id, status, health string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := *s.allocs[id]
	c.ClientStatus, c.Health = status, health
	s.allocs[id] = &c
}

// moving returns the replacement under way, if any.
func (s *store) moving() *api.Allocation {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.sortedAllocs() {
		if a.Move != "" && a.DesiredStatus == api.AllocDesiredRun && !a.ClientTerminal() {
			return a
		}
	}
	return nil
}

const a100 = "NVIDIA A100-SXM4-40GB"

// fragmented is TestGPUDefragPlanAndApply's cluster: two nodes of one
// A100 each, a share of 300 milli on gpu-a and one of 600 on gpu-b (both
// of groups with migrate: true), and train, asking for one whole GPU,
// blocked: one move (small to gpu-b) makes room for it.
func fragmented() *store {
	s := newStore(st.Node("gpu-a", st.CPU(16000), st.Memory(65536), st.GPUs(1, a100, 40960)),
		st.Node("gpu-b", st.CPU(16000), st.Memory(65536), st.GPUs(1, a100, 40960)))
	share := func(name string, milli int, node string) {
		j := st.Job(name, st.Group("g", 1, st.Task("main", 200, 256, st.Share(milli, 0, false))))
		j.Groups[0].Migrate = true
		s.jobs[j.Key()] = j
		n := s.nodes["id-"+node]
		s.allocs[name+"-0"] = &api.Allocation{ID: name + "-0", Namespace: j.Namespace, Job: name, Group: "g", NodeID: n.ID, NodeName: n.Name,
			JobVersion: j.Version, DesiredStatus: api.AllocDesiredRun, ClientStatus: api.AllocRunning, Health: api.HealthHealthy,
			Resources: map[string]*api.AllocatedResources{"main": {CPU: 200, Memory: 256,
				GPU: &api.AllocatedGPU{Share: &api.ShareAssignment{GPU: n.GPUs[0].UUID, Milli: milli, Memory: n.GPUs[0].Memory * milli / 1000}}}}}
	}
	share("small", 300, "gpu-a")
	share("big", 600, "gpu-b")
	train := st.Job("train", st.Group("g", 1, st.Task("main", 200, 256, st.WholeGPUs(1, ""))))
	s.jobs[train.Key()] = train
	s.evals = append(s.evals, &api.Evaluation{ID: "blocked-train", Namespace: train.Namespace, Job: "train", Status: api.EvalBlocked,
		FailedGroups: map[string]*api.Explanation{"g": {Unplaced: 1}}})
	return s
}

// front is the server's side of the handlers on the leader.
type front struct{ fronttest.JSON }

func (front) OnLeader(http.ResponseWriter, *http.Request, string) (bool, error) { return false, nil }

type clock = fronttest.Clock

func newClock() *clock                           { return fronttest.NewClock(time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)) }
func discard() *slog.Logger                      { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
func leading(f *state.Fence) func() *state.Fence { return func() *state.Fence { return f } }

func newRunner(s *store, c *clock, fence *state.Fence, cfg Config) *Runner {
	n := 0
	return New(Ports{View: s, Writer: s, Front: front{}, Fence: leading(fence), Now: c.Now, Log: discard(),
		NewEval: func(ns, job, trigger string) *api.Evaluation {
			n++
			return &api.Evaluation{ID: fmt.Sprintf("eval-%d", n), Namespace: ns, Job: job, TriggeredBy: trigger, Status: api.EvalPending}
		}}, cfg)
}
