package agent

import (
	"context"
	"errors"
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
// nodes then hold one per version instead of one per node.
//
// An allocation that names its job's registration (api.Allocation's
// JobSubmitTime) takes the held copy of that registration without asking
// the servers, and agents that want one not held yet wait for a single
// fetch. Without it (an allocation placed by an older server), the agent
// fetches and shares its copy only when it equals the held one: a job
// deleted and registered again may reuse a version number. A copy is
// forgotten once no agent holds it.
type JobShare struct {
	mu       sync.Mutex
	jobs     map[string]weak.Pointer[api.Job]
	inflight map[string]*jobFetch
}

// jobFetch is one fetch of a registration other agents wait for.
type jobFetch struct {
	done chan struct{}
	job  *api.Job
	err  error
}

// NewJobShare makes an empty share.
func NewJobShare() *JobShare {
	return &JobShare{jobs: map[string]weak.Pointer[api.Job]{}, inflight: map[string]*jobFetch{}}
}

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
	s.holdLocked(key, j)
	return j
}

// holdLocked makes j the held copy of key; s.mu is held.
func (s *JobShare) holdLocked(key string, j *api.Job) {
	wp := weak.Make(j)
	s.jobs[key] = wp
	runtime.AddCleanup(j, s.forget, sharedJob{key: key, wp: wp})
}

// load returns the held copy of registration key, or what fetch returns
// when none is held; while one agent fetches a registration, the others
// that want it wait for its answer. A fetched job is held only when its
// SubmitTime is submitted (the server may hold another registration under
// the version by now). A fetch that ended with its own context is
// retried by the next agent that waits, unless that agent's ctx ended
// too.
func (s *JobShare) load(ctx context.Context, key string, submitted time.Time,
	fetch func(context.Context) (*api.Job, error)) (*api.Job, error) {
	for {
		s.mu.Lock()
		if held := s.jobs[key].Value(); held != nil {
			s.mu.Unlock()
			return held, nil
		}
		if f := s.inflight[key]; f != nil {
			s.mu.Unlock()
			select {
			case <-f.done:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			if f.err != nil && (errors.Is(f.err, context.Canceled) || errors.Is(f.err, context.DeadlineExceeded)) && ctx.Err() == nil {
				continue
			}
			return f.job, f.err
		}
		f := &jobFetch{done: make(chan struct{})}
		s.inflight[key] = f
		s.mu.Unlock()

		f.job, f.err = fetch(ctx)
		s.mu.Lock()
		delete(s.inflight, key)
		if f.err == nil && f.job.SubmitTime.Equal(submitted) {
			s.holdLocked(key, f.job)
		}
		s.mu.Unlock()
		close(f.done)
		return f.job, f.err
	}
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

// jobCacheKey names the job version an allocation runs: namespace, name
// and version, and the registration's submit time where the allocation
// records it.
func jobCacheKey(al *api.Allocation) string {
	if al.JobSubmitTime.IsZero() {
		return fmt.Sprintf("%s/%s@%d", al.Namespace, al.Job, al.JobVersion)
	}
	return fmt.Sprintf("%s/%s@%d#%d", al.Namespace, al.Job, al.JobVersion, al.JobSubmitTime.UnixNano())
}

// retain drops every cached job version no allocation in allocs runs, so
// a long-lived agent does not keep each version it ever ran.
func (c *jobCache) retain(allocs []*api.Allocation) {
	keep := make(map[string]bool, len(allocs))
	for _, al := range allocs {
		keep[jobCacheKey(al)] = true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for key := range c.jobs {
		if !keep[key] {
			delete(c.jobs, key)
		}
	}
}

// get returns the job version al runs, from this agent's cache, the
// process's share or the servers, asking them until they answer or ctx
// ends.
func (c *jobCache) get(ctx context.Context, al *api.Allocation) (*api.Job, error) {
	key := jobCacheKey(al)
	c.mu.Lock()
	j := c.jobs[key]
	c.mu.Unlock()
	if j != nil {
		return j, nil
	}
	fetch := func(ctx context.Context) (*api.Job, error) { return c.fetch(ctx, al) }
	var err error
	switch {
	case c.shared != nil && !al.JobSubmitTime.IsZero():
		j, err = c.shared.load(ctx, key, al.JobSubmitTime, fetch)
	default:
		if j, err = fetch(ctx); err == nil {
			j = c.shared.canonical(key, j)
		}
	}
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.jobs[key] = j
	c.mu.Unlock()
	return j, nil
}

// fetch asks the servers for the job version al runs until they answer,
// the version is not found or ctx ends.
func (c *jobCache) fetch(ctx context.Context, al *api.Allocation) (*api.Job, error) {
	backoff := 200 * time.Millisecond
	for {
		tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		j, err := c.srv.JobVersion(tctx, al.Namespace, al.Job, al.JobVersion)
		cancel()
		if err == nil {
			return j, nil
		}
		if apiclient.IsNotFound(err) || ctx.Err() != nil {
			return nil, err
		}
		sleep(ctx, backoff)
		backoff = min(backoff*2, 5*time.Second)
	}
}
