package defragrun

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/scheduler"
	"github.com/gantryhq/gantry/internal/state"
)

// View is what defragmentation reads of the cluster. *state.Store is one.
type View interface {
	Snapshot() *state.Snapshot
	Index() int64
	Jobs(namespace string) []*api.Job
	Job(namespace, name string) (*api.Job, bool)
	Evals(namespace, job string) []*api.Evaluation
	Alloc(id string) (*api.Allocation, bool)
	Allocs(f state.AllocFilter) []*api.Allocation
	Node(id string) (*api.Node, bool)
	NodeAllocsUnsorted(nodeID string) []*api.Allocation
	NodePlanIndex(nodeID string) int64
	DefragProposal(ctx context.Context) (*api.DefragRecord, error)
	// DefragMove is the latest recorded step of the move of replica
	// alloc, or nil.
	DefragMove(ctx context.Context, alloc string) (*api.DefragRecord, error)
}

// Writer is how defragmentation changes the cluster. *state.Store is
// one. Every write carries the leader's fence and returns
// state.ErrNotLeader once leadership moved; ApplyPlan also checks the
// commit's node guards, and commits the move's record (PlanCommit.Defrag)
// with the step it records.
type Writer interface {
	ApplyPlan(ctx context.Context, p *state.PlanCommit) (int64, error)
	CreateEvals(ctx context.Context, fence *state.Fence, evals ...*api.Evaluation) error
	PutDefragRecord(ctx context.Context, fence *state.Fence, r *api.DefragRecord) error
}

// Front is how the handlers sit on the server's API. The server's
// adapter is one.
type Front interface {
	// OnLeader returns false on the leader, whose handler then serves the
	// request; elsewhere it forwards the request to the leader, writes its
	// answer and returns true, or returns true and the error to answer
	// with. what names what only the leader does, for the error's sentence.
	OnLeader(w http.ResponseWriter, r *http.Request, what string) (bool, error)
	// DecodeBody reads the request's JSON body into v under the server's
	// limits, rejecting unknown fields.
	DecodeBody(w http.ResponseWriter, r *http.Request, v any) error
	// WriteJSON answers v as the server answers its own endpoints.
	WriteJSON(w http.ResponseWriter, status int, v any)
}

// Ports are the runner's ways to the rest of the server.
type Ports struct {
	View   View
	Writer Writer
	Front  Front
	// Fence is the fence of this server's leadership now, nil while it
	// does not lead.
	Fence func() *state.Fence
	// NewEval mints an evaluation (a fresh ID, the time).
	NewEval func(namespace, job, trigger string) *api.Evaluation
	// Now is the clock.
	Now func() time.Time
	Log *slog.Logger
}

// Config turns the background defragmenter on.
type Config struct {
	// Interval, when positive, is how often the leader does one round of
	// what apply does, moving only replicas of groups with migrate: true.
	// 0: off.
	Interval time.Duration
	// MovesPerHour bounds the moves started in any hour, apply's included
	// (0: DefaultMovesPerHour).
	MovesPerHour int
}

// DefaultMovesPerHour is the background defragmenter's rate limit when
// Config.MovesPerHour is 0.
const DefaultMovesPerHour = 6

// healthyDeadline bounds how long a replacement may take to become
// healthy when its group's update block does not say.
const healthyDeadline = 5 * time.Minute

// Runner carries GPU defragmentation out for one server. It holds no
// state of its own between calls: everything is in the store.
type Runner struct {
	p   Ports
	cfg Config
}

// New returns a runner over the server's ports.
func New(p Ports, cfg Config) *Runner {
	return &Runner{p: p, cfg: cfg}
}

func engine() *scheduler.Engine {
	return scheduler.New(scheduler.Config{DisablePreemption: true})
}

// Error is an answer other than success, with its HTTP status: bad
// input, something gone, or a cluster that changed since the plan.
type Error struct {
	Status int
	Msg    string
}

func (e *Error) Error() string { return e.Msg }

// HTTPStatus is the status the server answers e with.
func (e *Error) HTTPStatus() int { return e.Status }

func badRequest(format string, args ...any) error {
	return &Error{Status: http.StatusBadRequest, Msg: fmt.Sprintf(format, args...)}
}

func notFound(format string, args ...any) error {
	return &Error{Status: http.StatusNotFound, Msg: fmt.Sprintf(format, args...)}
}

func conflict(format string, args ...any) error {
	return &Error{Status: http.StatusConflict, Msg: fmt.Sprintf(format, args...)}
}
