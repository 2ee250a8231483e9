package agent

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/apiclient"
)

// jobCache keeps the job versions the node's allocations run.
type jobCache struct {
	srv  *apiclient.Client
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
		tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		j, err := c.srv.JobVersion(tctx, namespace, name, version)
		cancel()
		if err == nil {
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
