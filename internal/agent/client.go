package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gantryhq/gantry/internal/api"
)

// serverClient speaks the agent protocol to the servers, moving to the
// next server when one does not answer.
type serverClient struct {
	addrs []string
	http  *http.Client
	token string

	mu  sync.Mutex
	cur int
}

// newServerClient talks to the servers at addrs: over mutual TLS when
// tlsCfg is set (https), presenting token when one is given.
func newServerClient(addrs []string, tlsCfg *tls.Config, token string, rt http.RoundTripper) *serverClient {
	scheme := "http://"
	hc := &http.Client{Transport: rt}
	if tlsCfg != nil {
		scheme = "https://"
		if rt == nil {
			hc.Transport = &http.Transport{TLSClientConfig: tlsCfg}
		}
	}
	norm := make([]string, len(addrs))
	for i, a := range addrs {
		if !strings.Contains(a, "://") {
			a = scheme + a
		}
		norm[i] = strings.TrimRight(a, "/")
	}
	return &serverClient{addrs: norm, http: hc, token: token}
}

// statusError is a non-2xx answer from a server.
type statusError struct {
	code int
	msg  string
}

func (e *statusError) Error() string { return fmt.Sprintf("server answered %d: %s", e.code, e.msg) }

func isStatus(err error, code int) bool {
	var se *statusError
	return errors.As(err, &se) && se.code == code
}

// do sends one request, trying each server once on connection errors.
func (c *serverClient) do(ctx context.Context, method, path string, body, out any, timeout time.Duration) error {
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return err
		}
	}
	var lastErr error
	for range c.addrs {
		c.mu.Lock()
		base := c.addrs[c.cur]
		c.mu.Unlock()
		rctx, cancel := context.WithTimeout(ctx, timeout)
		req, err := http.NewRequestWithContext(rctx, method, base+path, bytes.NewReader(payload))
		if err != nil {
			cancel()
			return err
		}
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		if c.token != "" {
			req.Header.Set("X-Gantry-Token", c.token)
		}
		resp, err := c.http.Do(req)
		if err != nil {
			cancel()
			lastErr = fmt.Errorf("server %s: %w", base, err)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			c.mu.Lock()
			c.cur = (c.cur + 1) % len(c.addrs)
			c.mu.Unlock()
			continue
		}
		data, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
		resp.Body.Close()
		cancel()
		if err != nil {
			lastErr = fmt.Errorf("server %s: %w", base, err)
			continue
		}
		if resp.StatusCode/100 != 2 {
			var e api.Error
			json.Unmarshal(data, &e)
			if e.Error == "" {
				e.Error = strings.TrimSpace(string(data))
			}
			return &statusError{code: resp.StatusCode, msg: e.Error}
		}
		if out != nil {
			if err := json.Unmarshal(data, out); err != nil {
				return fmt.Errorf("decode answer of %s %s: %w", method, path, err)
			}
		}
		return nil
	}
	return lastErr
}

func (c *serverClient) register(ctx context.Context, n *api.Node) (*api.NodeRegisterResponse, error) {
	var out api.NodeRegisterResponse
	err := c.do(ctx, http.MethodPost, "/v1/nodes/register", n, &out, 15*time.Second)
	return &out, err
}

// heartbeat renews the node's lease, carrying the latest usage sample;
// timeout should be well under the TTL so that a vanished server is left
// for another before the lease expires.
func (c *serverClient) heartbeat(ctx context.Context, nodeID string, sample *api.NodeSample, timeout time.Duration) error {
	return c.do(ctx, http.MethodPut, "/v1/nodes/"+nodeID+"/heartbeat", api.HeartbeatRequest{Sample: sample}, nil, timeout)
}

func (c *serverClient) allocs(ctx context.Context, nodeID string, index int64, wait time.Duration) (*api.NodeAllocsResponse, error) {
	var out api.NodeAllocsResponse
	path := fmt.Sprintf("/v1/nodes/%s/allocations?index=%d&wait=%s", nodeID, index, wait)
	// A server that vanished mid-query (no reset arrives) is given up
	// on soon after the wait it promised.
	err := c.do(ctx, http.MethodGet, path, nil, &out, wait+5*time.Second)
	for _, a := range out.Allocs {
		if a != nil {
			a.Intern()
		}
	}
	return &out, err
}

// reportTimeout is how long a report may wait for its commit. It is long:
// a busy server answers late but commits what it queued anyway, so
// giving up early only makes every node send its reports again, and the
// load that made the server slow grows (reports are idempotent; a server
// that is gone fails at once, with a connection error, not a timeout).
const reportTimeout = time.Minute

func (c *serverClient) updateAllocs(ctx context.Context, nodeID string, updates []api.AllocUpdate) error {
	return c.do(ctx, http.MethodPost, "/v1/nodes/"+nodeID+"/allocations", api.AllocUpdateRequest{Updates: updates}, nil, reportTimeout)
}

func (c *serverClient) jobVersion(ctx context.Context, namespace, name string, version uint64) (*api.Job, error) {
	var out api.Job
	path := fmt.Sprintf("/v1/jobs/%s/versions/%d?namespace=%s", name, version, namespace)
	err := c.do(ctx, http.MethodGet, path, nil, &out, 10*time.Second)
	return &out, err
}

// jobCache keeps the job versions the node's allocations run.
type jobCache struct {
	srv  *serverClient
	mu   sync.Mutex
	jobs map[string]*api.Job
}

func jobCacheKey(namespace, name string, version uint64) string {
	return fmt.Sprintf("%s/%s@%d", namespace, name, version)
}

// retain drops every cached job version no allocation in allocs runs, so
// a long-lived agent does not keep each version it ever ran.
func (c *jobCache) retain(allocs []*api.Allocation) {
	keep := make(map[string]bool, len(allocs))
	for _, al := range allocs {
		keep[jobCacheKey(al.Namespace, al.Job, al.JobVersion)] = true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for key := range c.jobs {
		if !keep[key] {
			delete(c.jobs, key)
		}
	}
}

// get returns one version of a job, asking the servers until they answer
// or ctx ends.
func (c *jobCache) get(ctx context.Context, namespace, name string, version uint64) (*api.Job, error) {
	key := jobCacheKey(namespace, name, version)
	c.mu.Lock()
	j := c.jobs[key]
	c.mu.Unlock()
	if j != nil {
		return j, nil
	}
	backoff := 200 * time.Millisecond
	for {
		j, err := c.srv.jobVersion(ctx, namespace, name, version)
		if err == nil {
			c.mu.Lock()
			c.jobs[key] = j
			c.mu.Unlock()
			return j, nil
		}
		if isStatus(err, http.StatusNotFound) || ctx.Err() != nil {
			return nil, err
		}
		sleep(ctx, backoff)
		backoff = min(backoff*2, 5*time.Second)
	}
}

// catalogClient is an HTTP client for other readers of the servers (the
// load balancer's catalog): the agent's transport, presenting its token.
func (c *serverClient) catalogClient() *http.Client {
	rt := c.http.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	if c.token == "" {
		return &http.Client{Transport: rt}
	}
	return &http.Client{Transport: tokenTransport{rt: rt, token: c.token}}
}

type tokenTransport struct {
	rt    http.RoundTripper
	token string
}

func (t tokenTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("X-Gantry-Token", t.token)
	return t.rt.RoundTrip(r)
}
