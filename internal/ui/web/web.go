package web

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/gantryhq/gantry/internal/acl"
	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/audit"
	"github.com/gantryhq/gantry/internal/discovery"
	"github.com/gantryhq/gantry/internal/scheduler"
	"github.com/gantryhq/gantry/internal/server"
	"github.com/gantryhq/gantry/internal/state"
	"github.com/gantryhq/gantry/internal/vsphere"
)

// What the handlers read. Each interface is small and named for what a
// page needs; *server.Server implements those of Server, *state.Store
// those of Store.

// Router serves the UI's routes on the server's listener, each authorized
// by the rule the server keeps for its pattern.
type Router interface {
	Route(pattern string, h func(http.ResponseWriter, *http.Request) error) http.Handler
	Mount(pattern string, h http.Handler)
}

// Access checks the caller's capabilities (nil when allowed).
type Access interface {
	Allow(r *http.Request, ns string, c acl.Capability) error
}

// Cluster is the server itself: its clock and status, and the leader,
// to which the Virtualization page is forwarded from another server.
type Cluster interface {
	Now() time.Time
	Status() api.StatusResponse
	IsLeader() bool
	OnLeader(w http.ResponseWriter, r *http.Request, what string) (bool, error)
}

// Lookups resolve the objects a page's address names.
type Lookups interface {
	LookupJob(r *http.Request) (*api.Job, error)
	FindAlloc(id string) (*api.Allocation, error)
	FindNode(key string) (*api.Node, error)
}

// JobReads are the job pages' derived figures.
type JobReads interface {
	JobSummary(j *api.Job) *api.JobSummary
	Annotate(failed map[string]*api.Explanation) map[string]*api.Explanation
}

// Metrics are the usage history the server keeps and the agents' own
// series (the load balancer's figures).
type Metrics interface {
	AllocMetrics(a *api.Allocation) api.AllocMetricsResponse
	NodeHistory(id string) []api.NodeSample
	AgentMetrics(ctx context.Context, n *api.Node) (map[string]*dto.MetricFamily, error)
}

// Queues are the queues' fair-share view and reports.
type Queues interface {
	QueueReports() []server.QueueReport
	Queues() *scheduler.Queues
}

// Services is the service catalog.
type Services interface {
	Catalog() *discovery.Catalog
}

// Policy is the container isolation policy in force.
type Policy interface {
	AdmissionPolicy(ctx context.Context) (audit.PolicyDocument, error)
}

// Virtualization is what the Virtualization page shows: the vCenter
// collectors (on the leader) and Gantry's own VMs.
type Virtualization interface {
	VCenters() []server.VCenter
	GantryVMs() []vsphere.GantryVM
}

// Server is every interface the handlers read of the server.
type Server interface {
	Router
	Access
	Cluster
	Lookups
	JobReads
	Metrics
	Queues
	Services
	Policy
	Virtualization
}

// Objects is the store's in-memory view of the cluster's objects.
type Objects interface {
	Index() int64
	Nodes() []*api.Node
	Node(id string) (*api.Node, bool)
	Alloc(id string) (*api.Allocation, bool)
	Allocs(f state.AllocFilter) []*api.Allocation
	Jobs(namespace string) []*api.Job
	Job(namespace, name string) (*api.Job, bool)
	Evals(namespace, job string) []*api.Evaluation
	Deployments(namespace, job string) []*api.Deployment
}

// Records are the durable records the store reads from etcd.
type Records interface {
	JobVersions(ctx context.Context, namespace, name string) ([]*api.Job, error)
	NodeAudits(ctx context.Context) (ids []string, reports [][]byte, err error)
	DefragProposal(ctx context.Context) (*api.DefragRecord, error)
}

// EventLog is the store's event stream.
type EventLog interface {
	Events(ctx context.Context, index int64, f state.EventFilter, now func() time.Time, fn func([]api.Event) error) error
}

// Store is every interface the handlers read of the store.
type Store interface {
	Objects
	Records
	EventLog
}

// UI is the web UI's handlers and the state they keep: the fragments'
// mux (for the shell) and the recent events of the overview.
type UI struct {
	ctx     context.Context // ends the recent events' follower
	log     *slog.Logger
	view    Objects
	records Records
	events  EventLog
	access  Access
	cluster Cluster
	lookups Lookups
	jobs    JobReads
	metrics Metrics
	queues  Queues
	catalog Services
	policy  Policy
	virt    Virtualization

	frags http.Handler // the fragments, for the shell (see routes)

	once   sync.Once
	mu     sync.Mutex
	recent []recentEvent // oldest first, at most recentKept
}

// Mount builds the UI over srv and st and mounts its routes on srv (under
// /ui); call it before the server starts. The follower of the event
// stream that keeps the overview's recent events stops when ctx ends.
func Mount(ctx context.Context, srv Server, st Store, log *slog.Logger) *UI {
	u := &UI{ctx: ctx, log: log, view: st, records: st, events: st,
		access: srv, cluster: srv, lookups: srv, jobs: srv, metrics: srv, queues: srv, catalog: srv, policy: srv, virt: srv}
	u.routes(srv)
	return u
}

// httpError is a handler's error with its HTTP status; the server writes
// it as an API error (server.Route).
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string   { return e.msg }
func (e *httpError) HTTPStatus() int { return e.status }

func badRequest(format string, args ...any) error {
	return &httpError{status: http.StatusBadRequest, msg: fmt.Sprintf(format, args...)}
}

func notFound(format string, args ...any) error {
	return &httpError{status: http.StatusNotFound, msg: fmt.Sprintf(format, args...)}
}
