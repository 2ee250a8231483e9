package policy_test

import (
	"math"
	"reflect"
	"slices"
	"testing"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/scheduler/policy"
)

// jobOf builds a job; each group is (count, tasks), each task (cpu, gpu).
func jobOf(name string, groups ...*api.Group) *api.Job {
	return &api.Job{Name: name, Namespace: "default", Type: api.JobBatch, Priority: 50, Groups: groups}
}

func grp(count int, tasks ...*api.Task) *api.Group {
	return &api.Group{Name: "g", Count: count, Tasks: tasks}
}

func tsk(cpu int, gpu *api.GPURequest) *api.Task {
	return &api.Task{Name: "t", Driver: api.DriverExec, Resources: api.Resources{CPU: cpu, Memory: 64, GPU: gpu}}
}

func TestJobShapes(t *testing.T) {
	mig := &api.GPURequest{MIG: "1g.10gb"}
	for _, tc := range []struct {
		name string
		job  *api.Job
		want []policy.Replicas
	}{
		{"cpu only", jobOf("a", grp(3, tsk(500, nil))),
			[]policy.Replicas{{Shape: policy.Shape{CPU: 500}, N: 3}}},
		{"share: one GPU of its milli", jobOf("a", grp(2, tsk(1000, share(250)))),
			[]policy.Replicas{{Shape: policy.Shape{CPU: 1000, Milli: 250, Count: 1}, N: 2}}},
		{"whole GPUs with a model", jobOf("a", grp(1, tsk(8000, &api.GPURequest{Count: 4, Model: "H100*"}))),
			[]policy.Replicas{{Shape: policy.Shape{CPU: 8000, Milli: 1000, Count: 4, Model: "H100*"}, N: 1}}},
		{"tasks add their cpu; the first GPU request counts", jobOf("a", grp(2, tsk(100, nil), tsk(200, share(500)), tsk(300, whole(2)))),
			[]policy.Replicas{{Shape: policy.Shape{CPU: 600, Milli: 500, Count: 1}, N: 2}}},
		{"groups in order, empty ones left out", jobOf("a", grp(1, tsk(100, nil)), grp(0, tsk(100, whole(1))), grp(5, tsk(100, whole(1)))),
			[]policy.Replicas{{Shape: policy.Shape{CPU: 100}, N: 1}, {Shape: policy.Shape{CPU: 100, Milli: 1000, Count: 1}, N: 5}}},
		{"MIG left out", jobOf("a", grp(4, tsk(100, mig)), grp(1, tsk(100, nil))),
			[]policy.Replicas{{Shape: policy.Shape{CPU: 100}, N: 1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := policy.JobShapes(tc.job); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestWorkload(t *testing.T) {
	gpu1 := policy.Shape{CPU: 1000, Milli: 1000, Count: 1}
	half := policy.Shape{CPU: 1000, Milli: 500, Count: 1}
	cpu := policy.Shape{CPU: 2000}
	a := jobOf("a", grp(6, tsk(1000, whole(1))))
	b := jobOf("b", grp(3, tsk(1000, share(500))), grp(1, tsk(2000, nil)))
	a2 := jobOf("a", grp(2, tsk(1000, whole(1)))) // a new version of a
	stopped := *b
	stopped.Stop = true
	type step struct {
		observe *api.Job
		forget  string
		changed bool
	}
	for _, tc := range []struct {
		name     string
		steps    []step
		replicas int
		want     []policy.Typical
	}{
		{"nothing observed: no typical set", nil, 0, nil},
		{"weighted by replicas, most frequent first", []step{{observe: a, changed: true}, {observe: b, changed: true}}, 10,
			[]policy.Typical{{Shape: gpu1, Weight: 0.6}, {Shape: half, Weight: 0.3}, {Shape: cpu, Weight: 0.1}}},
		{"the same job again changes nothing", []step{{observe: a, changed: true}, {observe: a}}, 6,
			[]policy.Typical{{Shape: gpu1, Weight: 1}}},
		{"a new version replaces the old", []step{{observe: a, changed: true}, {observe: b, changed: true}, {observe: a2, changed: true}}, 6,
			[]policy.Typical{{Shape: half, Weight: 0.5}, {Shape: gpu1, Weight: 2.0 / 6}, {Shape: cpu, Weight: 1.0 / 6}}},
		{"a stopped job no longer counts", []step{{observe: a, changed: true}, {observe: b, changed: true}, {observe: &stopped, changed: true}}, 6,
			[]policy.Typical{{Shape: gpu1, Weight: 1}}},
		{"forget", []step{{observe: a, changed: true}, {observe: b, changed: true}, {forget: "default/a", changed: true}, {forget: "default/zz"}}, 4,
			[]policy.Typical{{Shape: half, Weight: 0.75}, {Shape: cpu, Weight: 0.25}}},
		{"forgetting everything leaves nothing", []step{{observe: a, changed: true}, {forget: "default/a", changed: true}}, 0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := policy.NewWorkload()
			for i, s := range tc.steps {
				var changed bool
				if s.observe != nil {
					changed = w.Observe(s.observe)
				} else {
					changed = w.Forget(s.forget)
				}
				if changed != s.changed {
					t.Fatalf("step %d: changed %v, want %v", i, changed, s.changed)
				}
			}
			if w.Replicas() != tc.replicas {
				t.Errorf("replicas %d, want %d", w.Replicas(), tc.replicas)
			}
			got := w.Typical()
			if len(got) != len(tc.want) {
				t.Fatalf("typical %+v, want %+v", got, tc.want)
			}
			for i := range got {
				if got[i].Shape != tc.want[i].Shape || math.Abs(got[i].Weight-tc.want[i].Weight) > 1e-12 {
					t.Fatalf("typical %+v, want %+v", got, tc.want)
				}
			}
		})
	}
}

// Typical is TypicalTasks over the replicas, coverage 0.95.
func TestWorkloadTypicalCoverage(t *testing.T) {
	w := policy.NewWorkload()
	w.Observe(jobOf("big", grp(90, tsk(1000, whole(1)))))
	w.Observe(jobOf("mid", grp(6, tsk(1000, share(500)))))
	w.Observe(jobOf("rare", grp(4, tsk(1000, share(100))))) // beyond 95%
	var shapes []policy.Shape
	for i := range 90 {
		shapes = append(shapes, policy.Shape{CPU: 1000, Milli: 1000, Count: 1})
		if i < 6 {
			shapes = append(shapes, policy.Shape{CPU: 1000, Milli: 500, Count: 1})
		}
		if i < 4 {
			shapes = append(shapes, policy.Shape{CPU: 1000, Milli: 100, Count: 1})
		}
	}
	got, want := w.Typical(), policy.TypicalTasks(shapes, 0.95)
	if !slices.Equal(got, want) || len(got) != 2 {
		t.Fatalf("typical %+v, want %+v", got, want)
	}
}

func TestDrift(t *testing.T) {
	a := policy.Shape{CPU: 1000, Milli: 1000, Count: 1}
	b := policy.Shape{CPU: 1000, Milli: 500, Count: 1}
	c := policy.Shape{CPU: 2000}
	for _, tc := range []struct {
		name string
		x, y []policy.Typical
		want float64
	}{
		{"equal", []policy.Typical{{a, 0.5}, {b, 0.5}}, []policy.Typical{{b, 0.5}, {a, 0.5}}, 0},
		{"weights move", []policy.Typical{{a, 0.6}, {b, 0.4}}, []policy.Typical{{a, 0.5}, {b, 0.5}}, 0.1},
		{"a shape comes in", []policy.Typical{{a, 0.5}, {b, 0.5}}, []policy.Typical{{a, 0.5}, {b, 0.4}, {c, 0.1}}, 0.1},
		{"disjoint", []policy.Typical{{a, 1}}, []policy.Typical{{c, 1}}, 1},
		{"one empty", nil, []policy.Typical{{c, 1}}, 0.5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := policy.Drift(tc.x, tc.y); math.Abs(got-tc.want) > 1e-12 {
				t.Fatalf("Drift %v, want %v", got, tc.want)
			}
			if got := policy.Drift(tc.y, tc.x); math.Abs(got-tc.want) > 1e-12 {
				t.Fatalf("Drift reversed %v, want %v", got, tc.want)
			}
		})
	}
}

// The same jobs give the same typical set, whatever their order and
// whatever versions came and went before.
func TestWorkloadOrderIndependent(t *testing.T) {
	jobs := []*api.Job{
		jobOf("a", grp(7, tsk(1000, whole(1)))),
		jobOf("b", grp(3, tsk(4000, share(250))), grp(2, tsk(500, nil))),
		jobOf("c", grp(5, tsk(1000, whole(2)))),
		jobOf("d", grp(5, tsk(2000, share(250)))),
	}
	w1 := policy.NewWorkload()
	for _, j := range jobs {
		w1.Observe(j)
	}
	w2 := policy.NewWorkload()
	w2.Observe(jobOf("c", grp(50, tsk(1, nil)))) // an older version of c
	w2.Observe(jobOf("gone", grp(9, tsk(1000, whole(8)))))
	for i := len(jobs) - 1; i >= 0; i-- {
		w2.Observe(jobs[i])
	}
	w2.Forget("default/gone")
	if a, b := w1.Typical(), w2.Typical(); !slices.Equal(a, b) {
		t.Fatalf("different typical sets for the same jobs:\n%+v\n%+v", a, b)
	}
}
