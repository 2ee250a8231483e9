package agent

import (
	"context"
	"fmt"
	"reflect"
	"runtime"
	"sync"
	"time"
	"weak"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/apiclient"
)

// jobCache keeps the job versions the node's allocations run.
type jobCache struct {
	srv    *apiclient.Client
	shared *JobShare // nil: this agent keeps its own copies
	mu     sync.Mutex
	jobs   map[string]*api.Job
}

// JobShare keeps one decoded copy of each job version for the agents of
// one process (Config.Jobs). The agent only reads a job, so agents that
// run the same version can hold the same copy: the load tool's simulated
// nodes then hold one per version instead of one per node. A copy is
// shared only when it equals what the agent fetched (a job deleted and
// registered again may reuse a version number), and is forgotten once
// no agent holds it.
type JobShare struct {
	mu   sync.Mutex
	jobs map[string]weak.Pointer[api.Job]
}

// NewJobShare makes an empty share.
func NewJobShare() *JobShare { return &JobShare{jobs: map[string]weak.Pointer[api.Job]{}} }

// canonical is the shared copy of job version key when one is held and
// equals j, else j, which is held from now on.
func (s *JobShare) canonical(key string, j *api.Job) *api.Job {
	if s == nil {
		return j
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if held := s.jobs[key].Value(); held != nil && reflect.DeepEqual(held, j) {
		return held
	}
	wp := weak.Make(j)
	s.jobs[key] = wp
	runtime.AddCleanup(j, s.forget, sharedJob{key: key, wp: wp})
	return j
}

// sharedJob names an entry of the share, for its cleanup.
type sharedJob struct {
	key string
	wp  weak.Pointer[api.Job]
}

// forget drops an entry whose job was collected, unless a newer copy
// took its place.
func (s *JobShare) forget(e sharedJob) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.jobs[e.key] == e.wp {
		delete(s.jobs, e.key)
	}
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
		tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		j, err := c.srv.JobVersion(tctx, namespace, name, version)
		cancel()
		if err == nil {
			j = c.shared.canonical(key, j)
			c.mu.Lock()
			c.jobs[key] = j
			c.mu.Unlock()
			return j, nil
		}
		if apiclient.IsNotFound(err) || ctx.Err() != nil {
			return nil, err
		}
		sleep(ctx, backoff)
		backoff = min(backoff*2, 5*time.Second)
	}
}
