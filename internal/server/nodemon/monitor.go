package nodemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/state"
)

// Store is what the monitor reads and writes. *state.Store is one. The
// writes carry the leader's fence and return state.ErrNotLeader once
// leadership moved.
type Store interface {
	Nodes() []*api.Node
	Alive(nodeID string) bool
	NodeAllocs(nodeID string) ([]*api.Allocation, int64)
	UpdateNode(ctx context.Context, fence *state.Fence, id string, fn func(n *api.Node) error) (*api.Node, error)
	CreateEvals(ctx context.Context, fence *state.Fence, evals ...*api.Evaluation) error
}

// Monitor runs the decision against the store while its server leads.
type Monitor struct {
	store   Store
	fence   *state.Fence
	now     func() time.Time
	ttl     func() time.Duration
	level   func() int
	newEval func(namespace, job, trigger string) *api.Evaluation
	log     *slog.Logger
	since   time.Time // when this leadership began

	lapsed     map[string]time.Time // Lapsed, as of the last round
	overloaded time.Time            // the last round the server was overloaded at
	spared     atomic.Int64         // nodes the last round kept ready for the overload
}

// New returns a monitor for the leadership that holds fence and began
// now: ttl gives the cluster's heartbeat TTL as it is at each round,
// level the server's overload level (nil: never overloaded), and newEval
// mints an evaluation (a fresh ID, the time).
func New(store Store, fence *state.Fence, now func() time.Time, ttl func() time.Duration, level func() int,
	newEval func(namespace, job, trigger string) *api.Evaluation, log *slog.Logger) *Monitor {
	if level == nil {
		level = func() int { return 0 }
	}
	return &Monitor{store: store, fence: fence, now: now, ttl: ttl, level: level, newEval: newEval, log: log, since: now()}
}

// Spared is how many ready nodes without a lease the last round kept
// ready because the server was overloaded (Spare). Safe to call from any
// goroutine.
func (m *Monitor) Spared() int { return int(m.spared.Load()) }

// Run calls Round on every tick until ctx ends, and returns
// state.ErrNotLeader when a round finds that leadership moved.
func (m *Monitor) Run(ctx context.Context, ticks <-chan time.Time) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticks:
		}
		if err := m.Round(ctx, m.now()); err != nil {
			return err
		}
	}
}

var errUnchanged = errors.New("unchanged")

// Round marks down the nodes Down names as of now, but those Spare keeps
// ready while the server is overloaded, and asks for the evaluations of
// the jobs on each. A node whose write fails for another reason than a
// lost leadership is logged and left for the next round.
func (m *Monitor) Round(ctx context.Context, now time.Time) error {
	nodes, ttl, level := m.store.Nodes(), m.ttl(), m.level()
	if level > 0 {
		m.overloaded = now
	}
	m.lapsed = Lapsed(m.lapsed, nodes, m.store.Alive, now)
	down, spared := Spare(Down(nodes, m.store.Alive, m.since, now, ttl), m.lapsed, Overload{Level: level, Last: m.overloaded}, now, ttl)
	switch before := m.spared.Swap(int64(len(spared))); {
	case before == 0 && len(spared) > 0:
		m.log.Warn("nodes without a heartbeat kept ready: the server is or was just overloaded", "nodes", len(spared), "overload_level", level)
	case before > 0 && len(spared) == 0:
		m.log.Info("no node is kept ready for the overload any more", "kept_before", before)
	}
	for _, d := range down {
		n := d.Node
		_, err := m.store.UpdateNode(ctx, m.fence, n.ID, func(cur *api.Node) error {
			// The lease may have been renewed (a re-registration)
			// since the view was read.
			if cur.Status != api.NodeStatusReady || m.store.Alive(n.ID) {
				return errUnchanged
			}
			cur.Status, cur.StatusReason, cur.StatusChanged = api.NodeStatusDown, d.Reason, m.now()
			return nil
		})
		switch {
		case errors.Is(err, errUnchanged):
			continue
		case errors.Is(err, state.ErrNotLeader):
			return err
		case err != nil:
			m.log.Error("mark node down", "node", n.Name, "err", err)
			continue
		}
		m.log.Warn("node down", "node", n.Name, "reason", d.Reason)
		if err := EvalJobsOnNode(ctx, m.store, m.fence, m.newEval, n.ID, api.TriggerNodeUpdate); err != nil {
			return fmt.Errorf("evaluate the jobs of down node %s: %w", n.Name, err)
		}
	}
	return nil
}

// EvalJobsOnNode creates one evaluation per job with live allocations on
// the node (JobsOnNode), in one fenced write.
func EvalJobsOnNode(ctx context.Context, store Store, fence *state.Fence, newEval func(namespace, job, trigger string) *api.Evaluation, nodeID, trigger string) error {
	allocs, _ := store.NodeAllocs(nodeID)
	var evals []*api.Evaluation
	for _, j := range JobsOnNode(allocs) {
		e := newEval(j.Namespace, j.Job, trigger)
		e.NodeID = nodeID
		e.Priority = j.Priority
		evals = append(evals, e)
	}
	return store.CreateEvals(ctx, fence, evals...)
}
