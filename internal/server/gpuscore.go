package server

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/scheduler/policy"
)

// DefaultGPUPolicy is the GPU placement policy of the default scheduler:
// Gantry's own, the winner of the trace replay (gantry sim).
const DefaultGPUPolicy = policy.Gantry

// GPUPolicies are the values Config.GPUPolicy accepts: the policies of
// internal/scheduler/policy. "bestfit" is the scheduler core's own
// BestFit (memory-aware, honours spread, learns nothing), the default
// before gantry.
var GPUPolicies = slices.Clone(policy.Names)

// CheckGPUPolicy returns an error naming the accepted values unless name
// is one of GPUPolicies or empty (the default).
func CheckGPUPolicy(name string) error {
	if name == "" || slices.Contains(GPUPolicies, name) {
		return nil
	}
	return fmt.Errorf("unknown GPU policy %q: use one of %s (default %s)", name, strings.Join(GPUPolicies, ", "), DefaultGPUPolicy)
}

// gpuPolicyName resolves Config.GPUPolicy: the policy the default
// scheduler's evaluations are given, "" for bestfit (the core's own
// scorer, which learns nothing).
func gpuPolicyName(name string) (string, error) {
	if name == "" {
		name = DefaultGPUPolicy
	}
	if err := CheckGPUPolicy(name); err != nil {
		return "", err
	}
	if name == policy.BestFit {
		return "", nil
	}
	return name, nil
}

// gpuLearner derives the GPU policy's input from the store: the learnt
// workload (policy.Learnt) of the jobs the view holds, folded in the
// order of their ModifyIndex (policy.Learner). It is a function of those
// jobs alone, so every server whose view holds the same jobs (a follower
// answering `job plan`, the leader's worker, the next leader) derives the
// same value and places alike; nothing is written to etcd (see
// policy.Learnt for why it is derived rather than stored).
//
// The policy.IncrementalLearner it keeps is a cache of that function, not
// state: it has folded exactly the jobs of the last read, each as the
// value the view held (the view replaces a job's value on every change),
// and refolds only from where the jobs read since differ from those.
type gpuLearner struct {
	policy string // "": the GPU policy learns nothing

	mu   sync.Mutex
	fold *policy.IncrementalLearner
	// served is the scorer handed out for the last version of the learnt
	// workload: evaluations planned on an unchanged typical set share it,
	// and with it the ratings its policy memoized (see policy.Served).
	served *policy.Served
}

func newGPULearner(name string) *gpuLearner {
	return &gpuLearner{policy: name, fold: policy.NewIncrementalLearner()}
}

// learnt returns the GPU policy's input for the jobs the view holds, with
// planned (nil: none) folded as if it were submitted now: what a dry run
// plans with, equal to what the worker plans with once the job is in the
// store.
func (l *gpuLearner) learnt(jobs []*api.Job, planned *api.Job) *policy.Learnt {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.fold.Sync(jobs)
	if planned == nil {
		return l.fold.Learnt()
	}
	// The planned job as the store would take it: after every job in it
	// (a new version of a job in the store moves to the end of the order).
	next := *planned
	next.ModifyIndex = l.fold.Last() + 1
	return l.fold.LearntWith(&next)
}

// gpuInput builds the GPU policy's input for one evaluation (planned nil)
// or one dry run of planned: the scorer the scheduler is given with each
// request and the learnt workload it is built on. It returns nils when
// the policy learns nothing (the scheduler's own scorer places GPU work).
func (s *Server) gpuInput(planned *api.Job) (*policy.Served, *policy.Learnt) {
	if s.gpu == nil || s.gpu.policy == "" {
		return nil, nil
	}
	l := s.gpu.learnt(s.store.Jobs(""), planned)
	sc, err := s.gpu.serve(l)
	if err != nil { // the name was checked when the server was built
		return nil, nil
	}
	return sc, l
}

// serve is the scorer for l: the last one handed out when its learnt
// workload has l's version (the same typical set), else a new one.
func (l *gpuLearner) serve(learnt *policy.Learnt) (*policy.Served, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.served != nil && l.served.Learnt().Version == learnt.Version {
		return l.served, nil
	}
	sc, err := policy.Serve(l.policy, learnt)
	if err != nil {
		return nil, err
	}
	l.served = sc
	return sc, nil
}

// gpuWorkloadRef is what `job plan` reports of the learnt workload it
// planned with.
func gpuWorkloadRef(sc *policy.Served, l *policy.Learnt) *api.GPUWorkload {
	if sc == nil {
		return nil
	}
	return &api.GPUWorkload{Policy: sc.Name(), Version: l.Version, Index: l.Index, Jobs: l.Jobs, Replicas: l.Replicas, Typical: len(l.Typical)}
}
