package policy_test

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"pgregory.net/rapid"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/scheduler/policy"
)

// gpuShapes are the tasks jobs are drawn from: CPU-only, whole GPUs,
// shares, a model pattern and a MIG instance (left out of the workload).
var gpuShapes = []*api.Task{
	tsk(1000, nil), tsk(2000, nil), tsk(4000, whole(1)), tsk(4000, whole(2)), tsk(8000, whole(8)),
	tsk(2000, share(250)), tsk(2000, share(500)), tsk(1000, share(100)),
	tsk(4000, &api.GPURequest{Count: 1, Model: "*A100*"}), tsk(4000, &api.GPURequest{MIG: "1g.10gb"}),
}

// drawJob draws a value of the job named name at index: one or two
// groups of drawn shapes and counts (count 0: a group with no replicas),
// sometimes stopped.
func drawJob(t *rapid.T, name string, index int64) *api.Job {
	var groups []*api.Group
	for range rapid.IntRange(1, 2).Draw(t, "groups") {
		task := *rapid.SampledFrom(gpuShapes).Draw(t, "task")
		groups = append(groups, grp(rapid.IntRange(0, 40).Draw(t, "count"), &task))
	}
	j := jobOf(name, groups...)
	j.ModifyIndex = index
	j.Stop = rapid.IntRange(0, 9).Draw(t, "stop") == 0
	return j
}

// current lists the jobs of a store, by name.
func current(store map[string]*api.Job) []*api.Job {
	jobs := make([]*api.Job, 0, len(store))
	for _, j := range store {
		jobs = append(jobs, j)
	}
	return jobs
}

// An IncrementalLearner synced to a store after every change holds what
// folding the store's jobs afresh gives: jobs arrive, change (usually to
// a new index, sometimes to an older one, as the learner must not assume
// the store's order), stop and go, with marks taken every few jobs so
// that changes land before, on and after them. LearntWith of a job (new
// or a new version of one held) is what folding it in gives.
func TestIncrementalLearnerIsLearnerOf(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		defer policy.SetMarkEvery(rapid.SampledFrom([]int{1, 2, 3, 7, 256}).Draw(t, "markEvery"))()
		names := make([]string, rapid.IntRange(1, 60).Draw(t, "names"))
		for i := range names {
			names[i] = fmt.Sprintf("j%02d", i)
		}
		l := policy.NewIncrementalLearner()
		store := map[string]*api.Job{}
		index := int64(0)
		check := func(step string) {
			jobs := current(store)
			if got, want := l.Learnt(), policy.Learn(jobs...); !reflect.DeepEqual(got, want) {
				t.Fatalf("%s: incremental %+v\nafresh %+v", step, got, want)
			}
		}
		for i := range rapid.IntRange(1, 60).Draw(t, "steps") {
			// A batch of changes between two syncs.
			for range rapid.IntRange(1, 4).Draw(t, "batch") {
				name := rapid.SampledFrom(names).Draw(t, "name")
				switch op := rapid.IntRange(0, 9).Draw(t, "op"); {
				case op < 6: // a new job or a new version, after every other
					index++
					store[name] = drawJob(t, name, index)
				case op < 7: // a new version at an index already used
					store[name] = drawJob(t, name, rapid.Int64Range(0, index).Draw(t, "index"))
				case op < 9 && store[name] != nil: // stopped
					index++
					stopped := *store[name]
					stopped.Stop, stopped.ModifyIndex = true, index
					store[name] = &stopped
				default:
					delete(store, name)
				}
			}
			l.Sync(current(store))
			check(fmt.Sprintf("step %d", i))
			// A dry run, which leaves the learner as it was.
			name := rapid.SampledFrom(names).Draw(t, "planned")
			planned := drawJob(t, name, l.Last()+1)
			with := current(store)
			with = slices.DeleteFunc(with, func(j *api.Job) bool { return j.Name == name })
			if got, want := l.LearntWith(planned), policy.Learn(append(with, planned)...); !reflect.DeepEqual(got, want) {
				t.Fatalf("step %d: with %s: incremental %+v\nafresh %+v", i, name, got, want)
			}
			check(fmt.Sprintf("step %d after the dry run", i))
		}
	})
}

// zipfJobs are n jobs of one group each, of shapes drawn from 40 with a
// Zipf law (a few common shapes and a long tail, as in a cluster's
// trace), 1–8 replicas, indexes 1..n.
func zipfJobs(n int, seed uint64) []*api.Job {
	r := rand.New(rand.NewPCG(seed, 1))
	z := rand.NewZipf(r, 1.3, 2, 39)
	jobs := make([]*api.Job, n)
	for i := range jobs {
		s := int(z.Uint64())
		var g *api.GPURequest
		switch s % 4 {
		case 1:
			g = whole(1 + s%3)
		case 2:
			g = share(100 * (1 + s%9))
		}
		jobs[i] = jobOf(fmt.Sprintf("j%05d", i), grp(1+r.IntN(8), tsk(1000*(1+s/4), g)))
		jobs[i].ModifyIndex = int64(i + 1)
	}
	return jobs
}

// On a workload the size of a real store, where the learner skips most
// jobs (it may only skip those that provably keep the typical set in
// use), it still gives what folding afresh gives, through changes of
// old and recent jobs, stops and removals.
func TestIncrementalLearnerLargeStore(t *testing.T) {
	jobs := zipfJobs(3000, 7)
	l := policy.NewIncrementalLearner()
	l.Sync(jobs)
	if got, want := l.Learnt(), policy.Learn(jobs...); !reflect.DeepEqual(got, want) {
		t.Fatalf("first sync: incremental %+v\nafresh %+v", got, want)
	}
	if full := l.FullSteps(); full >= len(jobs) {
		t.Errorf("folded all %d jobs in full: the test does not reach the skip rule", full)
	}
	r := rand.New(rand.NewPCG(7, 2))
	index := int64(len(jobs))
	for step := range 40 {
		i := r.IntN(len(jobs))
		index++
		next := *jobs[i]
		switch step % 4 {
		case 0, 1: // scaled
			g := *next.Groups[0]
			g.Count = 1 + r.IntN(40)
			next.Groups = []*api.Group{&g}
		case 2:
			next.Stop = true
		}
		next.ModifyIndex = index
		if step%4 == 3 {
			jobs = slices.Delete(jobs, i, i+1)
		} else {
			jobs[i] = &next
		}
		l.Sync(jobs)
		if got, want := l.Learnt(), policy.Learn(jobs...); !reflect.DeepEqual(got, want) {
			t.Fatalf("step %d: incremental %+v\nafresh %+v", step, got, want)
		}
	}
}

// BenchmarkLearnerChange measures what one changed job costs once 10,000
// are folded: refolding every job (LearnerOf, what the server did) against
// the incremental learner, for a change of the oldest job, one in the
// middle and one of the newest hundred.
func BenchmarkLearnerChange(b *testing.B) {
	base := zipfJobs(10000, 1)
	for _, at := range []struct {
		name string
		i    int
	}{{"oldest", 0}, {"middle", 5000}, {"recent", 9950}} {
		// The store with the job at.i scaled, at the next index.
		changed := slices.Clone(base)
		j := *changed[at.i]
		g := *j.Groups[0]
		g.Count++
		j.Groups = []*api.Group{&g}
		j.ModifyIndex = int64(len(base) + 1)
		changed[at.i] = &j
		b.Run(at.name+"/refold", func(b *testing.B) {
			for b.Loop() {
				policy.LearnerOf(changed...)
			}
		})
		b.Run(at.name+"/incremental", func(b *testing.B) {
			// Each iteration moves the job between its old position
			// and the end: either way the fold changes from at.i on.
			l := policy.NewIncrementalLearner()
			l.Sync(base)
			versions := [][]*api.Job{changed, base}
			n, full := 0, l.FullSteps()
			for b.Loop() {
				l.Sync(versions[n%2])
				n++
			}
			b.ReportMetric(float64(l.FullSteps()-full)/float64(n), "full-folds/op")
		})
	}
}
