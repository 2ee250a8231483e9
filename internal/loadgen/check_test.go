package loadgen

import (
	"fmt"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/internal/api"
)

// TestVerify: the exact-count check passes only when every submitted job
// is in the store and each of its slots holds exactly one running
// allocation; lost, duplicated, stray and missing work each fail it and
// are named.
func TestVerify(t *testing.T) {
	alloc := func(job, group string, index int, status string) *api.Allocation {
		return &api.Allocation{ID: fmt.Sprintf("%s-%s-%d-%s", job, group, index, status), Job: job, Group: group, Index: index, ClientStatus: status}
	}
	// exact is a job's count running allocations, one per slot.
	exact := func(job string, count int) []*api.Allocation {
		var out []*api.Allocation
		for i := range count {
			out = append(out, alloc(job, "g", i, api.AllocRunning))
		}
		return out
	}
	want := []wantJob{{Name: "load-0000", Group: "g", Count: 3}, {Name: "load-0001", Group: "g", Count: 2}}
	cases := []struct {
		name  string
		found map[string][]*api.Allocation
		check Check // Pass and the counts; Jobs and Want are always 2 and 5
		says  []string
	}{{
		name:  "exact",
		found: map[string][]*api.Allocation{"load-0000": exact("load-0000", 3), "load-0001": exact("load-0001", 2)},
		check: Check{Pass: true, Running: 5},
	}, {
		name: "exact beside stopped and failed ones",
		found: map[string][]*api.Allocation{
			"load-0000": append(exact("load-0000", 3), alloc("load-0000", "g", 1, api.AllocComplete), alloc("load-0000", "g", 2, api.AllocFailed)),
			"load-0001": append(exact("load-0001", 2), alloc("load-0001", "g", 0, api.AllocLost)),
		},
		check: Check{Pass: true, Running: 5},
	}, {
		name:  "lost",
		found: map[string][]*api.Allocation{"load-0000": exact("load-0000", 3)[:2], "load-0001": append(exact("load-0001", 2)[1:], alloc("load-0001", "g", 0, api.AllocPending))},
		check: Check{Running: 3, Lost: 2},
		says:  []string{"load-0000.g[2]: no running allocation", "load-0001.g[0]: no running allocation"},
	}, {
		name:  "duplicated",
		found: map[string][]*api.Allocation{"load-0000": append(exact("load-0000", 3), alloc("load-0000", "g", 1, api.AllocRunning)), "load-0001": exact("load-0001", 2)},
		check: Check{Running: 6, Duplicates: 1},
		says:  []string{"load-0000.g[1]: 2 running allocations"},
	}, {
		name:  "duplicated in place of a lost one: the total is right, the slots are not",
		found: map[string][]*api.Allocation{"load-0000": append(exact("load-0000", 2), alloc("load-0000", "g", 0, api.AllocRunning)), "load-0001": exact("load-0001", 2)},
		check: Check{Running: 5, Lost: 1, Duplicates: 1},
		says:  []string{"load-0000.g[0]: 2 running allocations", "load-0000.g[2]: no running allocation"},
	}, {
		name:  "stray",
		found: map[string][]*api.Allocation{"load-0000": append(exact("load-0000", 3), alloc("load-0000", "g", 3, api.AllocRunning)), "load-0001": append(exact("load-0001", 2), alloc("load-0001", "h", 0, api.AllocRunning))},
		check: Check{Running: 7, Stray: 2},
		says:  []string{"load-0000.g[3]", "load-0001.h[0]"},
	}, {
		name:  "missing job",
		found: map[string][]*api.Allocation{"load-0000": exact("load-0000", 3)},
		check: Check{Running: 3, MissingJobs: 1, Lost: 2},
		says:  []string{"job load-0001 is missing"},
	}, {
		name:  "a job with no allocation is not missing",
		found: map[string][]*api.Allocation{"load-0000": exact("load-0000", 3), "load-0001": nil},
		check: Check{Running: 3, Lost: 2},
		says:  []string{"load-0001.g[0]: no running allocation", "load-0001.g[1]: no running allocation"},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := verify(want, tc.found)
			tc.check.Jobs, tc.check.Want = 2, 5
			says := got.Discrepancies
			got.Discrepancies = nil
			if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", tc.check) {
				t.Errorf("verify = %+v\nwant      %+v", got, tc.check)
			}
			if tc.check.Pass != (len(says) == 0) {
				t.Errorf("pass %v with discrepancies %q", got.Pass, says)
			}
			all := strings.Join(says, "\n")
			for _, s := range tc.says {
				if !strings.Contains(all, s) {
					t.Errorf("discrepancies %q do not name %q", says, s)
				}
			}
		})
	}
}

// TestVerifyListsFew: a check of a large loss lists its first few
// problems, not every slot.
func TestVerifyListsFew(t *testing.T) {
	got := verify([]wantJob{{Name: "load-0000", Group: "g", Count: 1000}}, map[string][]*api.Allocation{"load-0000": nil})
	if got.Pass || got.Lost != 1000 || len(got.Discrepancies) != maxDiscrepancies {
		t.Errorf("verify: pass %v, lost %d, %d discrepancies listed; want a failure, 1000 lost and %d listed", got.Pass, got.Lost, len(got.Discrepancies), maxDiscrepancies)
	}
}
