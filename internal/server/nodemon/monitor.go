package nodemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
	newEval func(namespace, job, trigger string) *api.Evaluation
	log     *slog.Logger
	since   time.Time // when this leadership began
}

// New returns a monitor for the leadership that holds fence and began
// now: ttl gives the cluster's heartbeat TTL as it is at each round, and
// newEval mints an evaluation (a fresh ID, the time).
func New(store Store, fence *state.Fence, now func() time.Time, ttl func() time.Duration,
	newEval func(namespace, job, trigger string) *api.Evaluation, log *slog.Logger) *Monitor {
	return &Monitor{store: store, fence: fence, now: now, ttl: ttl, newEval: newEval, log: log, since: now()}
}

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

// Round marks down the nodes Down names as of now and asks for the
// evaluations of the jobs on each. A node whose write fails for another
// reason than a lost leadership is logged and left for the next round.
func (m *Monitor) Round(ctx context.Context, now time.Time) error {
	for _, d := range Down(m.store.Nodes(), m.store.Alive, m.since, now, m.ttl()) {
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
