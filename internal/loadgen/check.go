package loadgen

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/apiclient"
)

// Check is the exact-count check that ends a run: every submitted job is
// read back from the store through the API (a consistent read per job),
// and each of its slots (group, index) must hold exactly one running
// allocation. A server killed during the run must neither lose work nor
// place it twice.
type Check struct {
	// Pass: the last read found every job, Want allocations running and
	// each slot held once.
	Pass bool `json:"pass"`
	Jobs int  `json:"jobs"` // jobs submitted
	Want int  `json:"want"` // allocations submitted
	// Running is how many allocations of the submitted jobs run.
	Running int `json:"running"`
	// MissingJobs are submitted jobs the store does not have.
	MissingJobs int `json:"missing_jobs"`
	// Lost are slots with no running allocation (those of missing jobs
	// included).
	Lost int `json:"lost"`
	// Duplicates are running allocations beyond the first of a slot.
	Duplicates int `json:"duplicates"`
	// Stray are running allocations outside the submitted slots (another
	// group, or an index at or beyond the group's count).
	Stray int `json:"stray"`
	// Discrepancies are the first few problems of the first read that
	// found any (empty when every read was exact).
	Discrepancies []string `json:"discrepancies,omitempty"`
	// Reads is how many times the jobs were read: more than one when the
	// first read was not exact and the check waited for the store to
	// settle.
	Reads int           `json:"reads"`
	Took  time.Duration `json:"took"`
}

// String is the check's answer in one line.
func (c *Check) String() string {
	verdict := "pass"
	if !c.Pass {
		verdict = "FAIL"
	}
	s := fmt.Sprintf("%s: %d of %d allocations running in %d jobs; %d missing jobs, %d lost, %d duplicated, %d stray (%d read(s), %s)",
		verdict, c.Running, c.Want, c.Jobs, c.MissingJobs, c.Lost, c.Duplicates, c.Stray, c.Reads, c.Took.Round(time.Millisecond))
	if len(c.Discrepancies) > 0 {
		first := "first"
		if c.Pass {
			first = "an earlier read, since settled, found"
		}
		s += fmt.Sprintf("; %s: %v", first, c.Discrepancies)
	}
	return s
}

// wantJob is one submitted job: its name, its one group and that
// group's count.
type wantJob struct {
	Name  string
	Group string
	Count int
}

// maxDiscrepancies bounds the problems a check lists.
const maxDiscrepancies = 10

// verify checks what the store holds (found, by job name; a job absent
// from it is missing) against what was submitted. It does no I/O and
// reads no clock.
func verify(want []wantJob, found map[string][]*api.Allocation) Check {
	c := Check{Jobs: len(want)}
	note := func(format string, args ...any) {
		if len(c.Discrepancies) < maxDiscrepancies {
			c.Discrepancies = append(c.Discrepancies, fmt.Sprintf(format, args...))
		}
	}
	for _, w := range want {
		c.Want += w.Count
		allocs, ok := found[w.Name]
		if !ok {
			c.MissingJobs++
			c.Lost += w.Count
			note("job %s is missing", w.Name)
			continue
		}
		slots := make([][]string, w.Count) // running allocation IDs per index
		for _, a := range allocs {
			if a.ClientStatus != api.AllocRunning {
				continue
			}
			c.Running++
			if a.Group != w.Group || a.Index < 0 || a.Index >= w.Count {
				c.Stray++
				note("%s: allocation %s runs outside the submitted slots", a.Name(), a.ID)
				continue
			}
			slots[a.Index] = append(slots[a.Index], a.ID)
		}
		for i, ids := range slots {
			switch {
			case len(ids) == 0:
				c.Lost++
				note("%s.%s[%d]: no running allocation", w.Name, w.Group, i)
			case len(ids) > 1:
				c.Duplicates += len(ids) - 1
				slices.Sort(ids)
				note("%s.%s[%d]: %d running allocations %v", w.Name, w.Group, i, len(ids), ids)
			}
		}
	}
	c.Pass = c.MissingJobs == 0 && c.Lost == 0 && c.Duplicates == 0 && c.Stray == 0 && c.Running == c.Want
	return c
}

// readJobs reads each job's allocations with a consistent read (the
// answering server first brings its view up to etcd's current revision),
// a few jobs at a time; a job the store does not have is absent from the
// answer.
func readJobs(ctx context.Context, c *apiclient.Client, want []wantJob) (map[string][]*api.Allocation, error) {
	found := make(map[string][]*api.Allocation, len(want))
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for _, w := range want {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			allocs, err := c.JobAllocs(ctx, api.DefaultNamespace, w.Name, apiclient.Consistent)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				found[w.Name] = allocs
			case apiclient.IsNotFound(err):
			case first == nil:
				first = fmt.Errorf("read the allocations of job %s: %w", w.Name, err)
			}
		}()
	}
	wg.Wait()
	return found, first
}

// exactCheck reads the jobs and verifies them; while the answer is not
// exact it reads them again every two seconds, for up to settle (a
// replacement may still be starting, a stopped duplicate still
// stopping). The discrepancies kept are the first read's that had any.
func exactCheck(ctx context.Context, c *apiclient.Client, want []wantJob, settle time.Duration) (*Check, error) {
	start := time.Now()
	var first []string
	for reads := 1; ; reads++ {
		found, err := readJobs(ctx, c, want)
		if err != nil {
			return nil, fmt.Errorf("the exact-count check: %w", err)
		}
		chk := verify(want, found)
		if first == nil && len(chk.Discrepancies) > 0 {
			first = chk.Discrepancies
		}
		chk.Discrepancies, chk.Reads, chk.Took = first, reads, time.Since(start)
		if chk.Pass || time.Since(start) >= settle {
			return &chk, nil
		}
		select {
		case <-ctx.Done():
			return &chk, nil
		case <-time.After(2 * time.Second):
		}
	}
}
