package apiclient

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/gantryhq/gantry/internal/api"
)

// Consistent asks a job-scoped read to bring the server's view up to
// etcd's current revision first (a quorum read), so that it reflects
// every change the caller has seen an event of.
const Consistent = true

func jobPath(ns, name, rest string, consistent bool) string {
	q := url.Values{}
	if ns != "" {
		q.Set("namespace", ns)
	}
	if consistent {
		q.Set("consistent", "")
	}
	p := "/v1/jobs/" + url.PathEscape(name) + rest
	if len(q) > 0 {
		p += "?" + q.Encode()
	}
	return p
}

// Status is the answering server's status, with the store index its view
// holds.
func (c *Client) Status(ctx context.Context) (*api.StatusResponse, error) {
	var st api.StatusResponse
	err := c.Do(ctx, http.MethodGet, "/v1/status", nil, &st)
	return &st, err
}

// RegisterJob submits a job (a new one or a new version).
func (c *Client) RegisterJob(ctx context.Context, job *api.Job) (*api.RegisterResponse, error) {
	var out api.RegisterResponse
	err := c.Do(ctx, http.MethodPost, "/v1/jobs", job, &out)
	return &out, err
}

// Jobs lists the jobs of a namespace ("": every namespace).
func (c *Client) Jobs(ctx context.Context, ns string) ([]*api.JobSummary, error) {
	p := "/v1/jobs"
	if ns != "" {
		p += "?namespace=" + url.QueryEscape(ns)
	}
	var out []*api.JobSummary
	err := c.Do(ctx, http.MethodGet, p, nil, &out)
	return out, err
}

// Job reads one job with its groups' counts; consistent: see Consistent.
func (c *Client) Job(ctx context.Context, ns, name string, consistent bool) (*api.JobSummary, error) {
	var out api.JobSummary
	err := c.Do(ctx, http.MethodGet, jobPath(ns, name, "", consistent), nil, &out)
	return &out, err
}

// StopJob stops a job: the servers stop every allocation of it. A job
// that does not exist is a 404 (IsNotFound).
func (c *Client) StopJob(ctx context.Context, ns, name string) (*api.StopResponse, error) {
	var out api.StopResponse
	err := c.Do(ctx, http.MethodDelete, jobPath(ns, name, "", false), nil, &out)
	return &out, err
}

// JobVersion reads one version of a job's spec.
func (c *Client) JobVersion(ctx context.Context, ns, name string, version uint64) (*api.Job, error) {
	var out api.Job
	err := c.Do(ctx, http.MethodGet, jobPath(ns, name, fmt.Sprintf("/versions/%d", version), false), nil, &out)
	return &out, err
}

// JobAllocs lists a job's allocations; consistent: see Consistent.
func (c *Client) JobAllocs(ctx context.Context, ns, name string, consistent bool) ([]*api.Allocation, error) {
	var out []*api.Allocation
	err := c.Do(ctx, http.MethodGet, jobPath(ns, name, "/allocations", consistent), nil, &out)
	return out, err
}

// JobEvals lists a job's evaluations; consistent: see Consistent.
func (c *Client) JobEvals(ctx context.Context, ns, name string, consistent bool) ([]*api.Evaluation, error) {
	var out []*api.Evaluation
	err := c.Do(ctx, http.MethodGet, jobPath(ns, name, "/evaluations", consistent), nil, &out)
	return out, err
}

// JobDeployment reads the deployment of one version of a job (version
// nil: its newest); consistent: see Consistent.
func (c *Client) JobDeployment(ctx context.Context, ns, name string, version *uint64, consistent bool) (*api.Deployment, error) {
	p := jobPath(ns, name, "/deployment", consistent)
	if version != nil {
		sep := "?"
		if ns != "" || consistent {
			sep = "&"
		}
		p += fmt.Sprintf("%sversion=%d", sep, *version)
	}
	var out api.Deployment
	err := c.Do(ctx, http.MethodGet, p, nil, &out)
	return &out, err
}

// Eval reads an evaluation by ID (or a prefix of 4 characters or more).
func (c *Client) Eval(ctx context.Context, id string) (*api.Evaluation, error) {
	var out api.Evaluation
	err := c.Do(ctx, http.MethodGet, "/v1/evaluations/"+url.PathEscape(id), nil, &out)
	return &out, err
}

// Alloc reads an allocation by ID (or a prefix of 4 characters or more).
func (c *Client) Alloc(ctx context.Context, id string) (*api.Allocation, error) {
	var out api.Allocation
	err := c.Do(ctx, http.MethodGet, "/v1/allocations/"+url.PathEscape(id), nil, &out)
	return &out, err
}

// Nodes lists the nodes.
func (c *Client) Nodes(ctx context.Context) ([]*api.Node, error) {
	var out []*api.Node
	err := c.Do(ctx, http.MethodGet, "/v1/nodes", nil, &out)
	return out, err
}

// Node reads a node by ID, prefix or name.
func (c *Client) Node(ctx context.Context, id string) (*api.Node, error) {
	var out api.Node
	err := c.Do(ctx, http.MethodGet, "/v1/nodes/"+url.PathEscape(id), nil, &out)
	return &out, err
}

// ServiceCatalog waits up to wait for the service catalog to differ from
// the one with hash ("": answer at once) and returns it (a blocking
// query; the load balancers follow the catalog with it).
func (c *Client) ServiceCatalog(ctx context.Context, hash string, wait time.Duration) (*api.ServiceCatalog, error) {
	var out api.ServiceCatalog
	p := fmt.Sprintf("/v1/service-catalog?wait=%s&hash=%s", wait, url.QueryEscape(hash))
	// A server that vanished mid-query is given up on after twice the
	// wait it promised.
	err := c.call(ctx, http.MethodGet, p, nil, &out, 2*wait)
	return &out, err
}

// AgentAllocs asks an agent's own API (this client's addresses are then
// agents', not servers') which allocations have a task running on it.
func (c *Client) AgentAllocs(ctx context.Context) ([]api.LocalAlloc, error) {
	var out []api.LocalAlloc
	err := c.Do(ctx, http.MethodGet, "/v1/client/allocations", nil, &out)
	return out, err
}

// The agent protocol: a node registers, heartbeats, long-polls its
// allocations and reports on them.

// RegisterNode registers (or re-registers) a node.
func (c *Client) RegisterNode(ctx context.Context, n *api.Node) (*api.NodeRegisterResponse, error) {
	var out api.NodeRegisterResponse
	err := c.call(ctx, http.MethodPost, "/v1/nodes/register", n, &out, 15*time.Second)
	return &out, err
}

// Heartbeat renews the node's lease, carrying the latest usage sample
// (nil: none); timeout should be well under the TTL so that a vanished
// server is left for another before the lease expires.
func (c *Client) Heartbeat(ctx context.Context, nodeID string, sample *api.NodeSample, timeout time.Duration) error {
	return c.call(ctx, http.MethodPut, "/v1/nodes/"+url.PathEscape(nodeID)+"/heartbeat", api.HeartbeatRequest{Sample: sample}, nil, timeout)
}

// NodeAllocs waits up to wait for the node's allocations to change after
// index (a long-poll) and returns what changed, with every ID.
func (c *Client) NodeAllocs(ctx context.Context, nodeID string, index int64, wait time.Duration) (*api.NodeAllocsResponse, error) {
	var out api.NodeAllocsResponse
	p := fmt.Sprintf("/v1/nodes/%s/allocations?index=%d&wait=%s", url.PathEscape(nodeID), index, wait)
	// A server that vanished mid-query (no reset arrives) is given up
	// on soon after the wait it promised.
	err := c.call(ctx, http.MethodGet, p, nil, &out, wait+5*time.Second)
	return &out, err
}

// reportTimeout is how long a report may wait for its commit. It is long:
// a busy server answers late but commits what it queued anyway, so
// giving up early only makes every node send its reports again, and the
// load that made the server slow grows (reports are idempotent; a server
// that is gone fails at once, with a connection error, not a timeout).
const reportTimeout = time.Minute

// ReportAllocs reports changes of the node's allocations.
func (c *Client) ReportAllocs(ctx context.Context, nodeID string, updates []api.AllocUpdate) error {
	return c.call(ctx, http.MethodPost, "/v1/nodes/"+url.PathEscape(nodeID)+"/allocations", api.AllocUpdateRequest{Updates: updates}, nil, reportTimeout)
}

// ReportAudit reports the node's container audit; report is an
// audit.Report (that package sits above this one).
func (c *Client) ReportAudit(ctx context.Context, nodeID string, report any) error {
	return c.call(ctx, http.MethodPost, "/v1/nodes/"+url.PathEscape(nodeID)+"/audit", report, nil, 30*time.Second)
}
