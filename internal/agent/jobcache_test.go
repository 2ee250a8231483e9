package agent

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
)

func TestJobCacheRetainsOnlyVersionsInUse(t *testing.T) {
	c := &jobCache{jobs: map[string]*api.Job{}}
	for _, k := range []string{"default/web@1", "default/web@2", "default/batch@1", "team-a/web@1"} {
		c.jobs[k] = &api.Job{}
	}
	c.retain([]*api.Allocation{
		{Namespace: "default", Job: "web", JobVersion: 2},
		{Namespace: "default", Job: "web", JobVersion: 2},
		{Namespace: "team-a", Job: "web", JobVersion: 1},
	})
	var got []string
	for k := range c.jobs {
		got = append(got, k)
	}
	slices.Sort(got)
	if want := []string{"default/web@2", "team-a/web@1"}; !slices.Equal(got, want) {
		t.Fatalf("cache holds %v after retain, want %v", got, want)
	}
	c.retain(nil)
	if len(c.jobs) != 0 {
		t.Fatalf("cache holds %d jobs with no allocations left, want none", len(c.jobs))
	}
}

// TestJobShareKeepsOneCopy: agents that fetch the same job version hold
// one copy; a different job under the same version (deleted and
// registered again) is not taken for it; without a share each agent
// keeps its own.
func TestJobShareKeepsOneCopy(t *testing.T) {
	spec := func(image string) *api.Job {
		return &api.Job{Name: "web", Namespace: "default", Version: 1, Groups: []*api.Group{{Name: "g", Count: 3,
			Tasks: []*api.Task{{Name: "t", Driver: "docker", Config: api.TaskConfig{Image: image}}}}}}
	}
	s := NewJobShare()
	first := s.canonical("default/web@1", spec("nginx"))
	if got := s.canonical("default/web@1", spec("nginx")); got != first {
		t.Fatal("an equal copy of a held job version was kept beside it")
	}
	other := spec("caddy")
	if got := s.canonical("default/web@1", other); got != other {
		t.Fatal("a different job under the same version was replaced by the held one")
	}
	var none *JobShare
	if j := spec("nginx"); none.canonical("default/web@1", j) != j {
		t.Fatal("without a share the agent does not keep what it fetched")
	}
}

// TestJobShareFetchesARegistrationOnce: agents that want the same
// registration at once wait for one fetch and share its copy; a held
// registration is taken without a fetch; a registration the servers no
// longer hold under that version (purged, registered again) is not
// shared; a fetch that ended with its agent's context is made again by
// an agent still waiting.
func TestJobShareFetchesARegistrationOnce(t *testing.T) {
	submitted := time.Date(2026, 12, 8, 1, 2, 3, 456, time.UTC)
	al := &api.Allocation{Namespace: "default", Job: "web", JobVersion: 1, JobSubmitTime: submitted}
	key := jobCacheKey(al)
	if key != "default/web@1#"+strconv.FormatInt(submitted.UnixNano(), 10) {
		t.Fatalf("key %q does not name the registration", key)
	}

	s := NewJobShare()
	var fetches atomic.Int32
	release := make(chan struct{})
	fetch := func(context.Context) (*api.Job, error) {
		fetches.Add(1)
		<-release
		return &api.Job{Name: "web", Namespace: "default", Version: 1, SubmitTime: submitted}, nil
	}
	const agents = 8
	got := make([]*api.Job, agents)
	var wg sync.WaitGroup
	for i := range agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			j, err := s.load(context.Background(), key, submitted, fetch)
			if err != nil {
				t.Errorf("agent %d: %v", i, err)
			}
			got[i] = j
		}()
	}
	for fetches.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // let the others find the fetch in flight
	close(release)
	wg.Wait()
	if n := fetches.Load(); n != 1 {
		t.Fatalf("%d agents wanting one registration made %d fetches, want 1", agents, n)
	}
	for i, j := range got {
		if j != got[0] {
			t.Fatalf("agent %d holds its own copy", i)
		}
	}
	if j, _ := s.load(context.Background(), key, submitted, func(context.Context) (*api.Job, error) {
		t.Fatal("a held registration was fetched again")
		return nil, nil
	}); j != got[0] {
		t.Fatal("the held registration was not returned")
	}

	// The servers now hold another registration under version 1.
	later := submitted.Add(time.Second)
	other := &api.Allocation{Namespace: "default", Job: "web", JobVersion: 1, JobSubmitTime: later}
	newer := &api.Job{Name: "web", Namespace: "default", Version: 1, SubmitTime: submitted.Add(2 * time.Second)}
	for range 2 {
		j, err := s.load(context.Background(), jobCacheKey(other), later, func(context.Context) (*api.Job, error) { return newer, nil })
		if err != nil || j != newer {
			t.Fatalf("load = %v, %v; want what the servers answered", j, err)
		}
	}
	if s.jobs[jobCacheKey(other)].Value() != nil {
		t.Fatal("a job of another registration was held under this one")
	}

	// The fetching agent's context ends; a waiting agent fetches itself.
	third := &api.Allocation{Namespace: "default", Job: "batch", JobVersion: 0, JobSubmitTime: submitted}
	started := make(chan struct{})
	cctx, cancel := context.WithCancel(context.Background())
	go func() {
		_, _ = s.load(cctx, jobCacheKey(third), submitted, func(ctx context.Context) (*api.Job, error) {
			close(started)
			<-ctx.Done()
			return nil, ctx.Err()
		})
	}()
	<-started
	done := make(chan *api.Job)
	go func() {
		j, err := s.load(context.Background(), jobCacheKey(third), submitted, func(context.Context) (*api.Job, error) {
			return &api.Job{Name: "batch", SubmitTime: submitted}, nil
		})
		if err != nil {
			t.Errorf("waiting agent: %v", err)
		}
		done <- j
	}()
	time.Sleep(20 * time.Millisecond)
	cancel()
	if j := <-done; j == nil || j.Name != "batch" {
		t.Fatalf("the waiting agent got %v after the fetching agent's context ended", j)
	}
}
