package agent

import (
	"slices"
	"testing"

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
