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
