package server

import (
	"fmt"
	"slices"
	"strings"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/scheduler"
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

// newGPUScorer returns the GPU scorer of the default scheduler for a
// policy name, and the Online scorer the server must tell about jobs (nil
// for bestfit, which learns nothing).
func newGPUScorer(name string) (scheduler.GPUScorer, *policy.Online, error) {
	if name == "" {
		name = DefaultGPUPolicy
	}
	if err := CheckGPUPolicy(name); err != nil {
		return nil, nil, err
	}
	if name == policy.BestFit {
		return scheduler.BestFit{}, nil, nil
	}
	o, err := policy.NewOnline(name)
	if err != nil {
		return nil, nil, err
	}
	return o, o, nil
}

// learnJobs makes the GPU policy count exactly the jobs in the store: a
// new leader's starting point.
func (s *Server) learnJobs() {
	if s.gpu != nil {
		s.gpu.Reset(s.store.Jobs("")...)
	}
}

// learnJob tells the GPU policy about the job of an evaluation about to
// run, as the store holds it now (stopped or gone: no longer counted).
// Only jobs submitted so far are learnt from, never one being planned
// with a dry run.
func (s *Server) learnJob(e *api.Evaluation) {
	if s.gpu == nil {
		return
	}
	if job, ok := s.store.Job(e.Namespace, e.Job); ok {
		s.gpu.Observe(job)
	} else {
		s.gpu.Forget(api.JobKey(e.Namespace, e.Job))
	}
}
