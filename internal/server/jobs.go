package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/gantryhq/gantry/internal/acl"
	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/reconcile"
	"github.com/gantryhq/gantry/internal/state"
)

func invalidJob(errs []api.FieldError) error {
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Message
		if e.Path != "" {
			msgs[i] = e.Path + ": " + e.Message
		}
	}
	return &httpError{status: http.StatusBadRequest, msg: "invalid job: " + strings.Join(msgs, "; "), field: errs[0].Path, errs: errs}
}

func (s *Server) handleJobRegister(w http.ResponseWriter, r *http.Request) error {
	// Refused before the body is read: an overloaded server spends
	// nothing on a submission it cannot take.
	if err := s.refuseIfOverloaded("the job"); err != nil {
		return err
	}
	sub, errs, err := s.readJob(w, r)
	if err != nil {
		return err
	}
	if len(errs) > 0 {
		return invalidJob(errs)
	}
	job := sub.job
	warnings, err := s.isolation.Admit(r.Context(), job)
	if err != nil {
		return err
	}
	for _, w := range sub.warnings {
		warnings = append(warnings, w.Path+": "+w.Message)
	}
	// What the cluster as it is cannot place is accepted (nodes may join)
	// and said, as `job validate` says it.
	placement := s.shape(sub)
	eval := s.newEval(job.Namespace, job.Name, api.TriggerJobRegister)
	res, err := s.store.RegisterJob(r.Context(), job, eval, s.now())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.RegisterResponse{
		EvalID: res.Eval.ID, JobVersion: res.Job.Version, Changed: res.Changed, Index: res.Index, Warnings: warnings,
		Placement: placement,
	})
	return nil
}

func (s *Server) handleJobValidate(w http.ResponseWriter, r *http.Request) error {
	sub, errs, err := s.readJob(w, r)
	if err != nil {
		return err
	}
	resp := api.ValidateResponse{Valid: len(errs) == 0, Errors: errs}
	if sub != nil {
		resp.Warnings = sub.warnings
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

func (s *Server) handleJobPlan(w http.ResponseWriter, r *http.Request) error {
	sub, errs, err := s.readJob(w, r)
	if err != nil {
		return err
	}
	if len(errs) > 0 {
		return invalidJob(errs)
	}
	job := sub.job
	if _, err := s.isolation.Admit(r.Context(), job); err != nil {
		return err
	}
	resp := api.PlanResponse{Groups: map[string]*api.PlanGroup{}, Index: s.store.Index(), Changed: true}
	planned := *job
	if cur, ok := s.store.Job(job.Namespace, job.Name); ok {
		resp.Diff = diffJobs(cur, job)
		resp.Changed = cur.Stop || !state.SpecEqual(cur, job)
		planned.Version = cur.Version
		if resp.Changed {
			planned.Version++
		}
	}
	resp.JobVersion = planned.Version
	p, gpuWork, err := s.planJob(r.Context(), &planned, s.now())
	if err != nil {
		return err
	}
	resp.GPUWorkload = gpuWork
	for _, g := range job.Groups {
		resp.Groups[g.Name] = &api.PlanGroup{}
	}
	group := func(name string) *api.PlanGroup {
		if resp.Groups[name] == nil {
			resp.Groups[name] = &api.PlanGroup{}
		}
		return resp.Groups[name]
	}
	for _, pl := range p.Result.Place {
		group(pl.Group).Place++
	}
	touched := map[string]bool{}
	for _, st := range p.Result.Stop {
		group(st.Alloc.Group).Stop++
		touched[st.Alloc.ID] = true
	}
	for _, a := range p.Result.InPlace {
		touched[a.ID] = true
		// A replica whose group changed only in count is kept as it is:
		// moving it to the new version changes nothing about it.
		if old, err := s.store.JobVersion(r.Context(), job.Namespace, job.Name, a.JobVersion); err == nil && onlyCountChanged(old, job, a.Group) {
			group(a.Group).Keep++
			continue
		}
		group(a.Group).InPlace++
	}
	for _, a := range s.store.Allocs(state.AllocFilter{Namespace: job.Namespace, Job: job.Name, Live: true}) {
		if a.DesiredStatus != api.AllocDesiredRun || touched[a.ID] {
			continue
		}
		// A replica of an older, different spec that the first step
		// leaves is replaced by a later step of the rolling update.
		if a.JobVersion != planned.Version && job.LookupGroup(a.Group) != nil {
			if old, err := s.store.JobVersion(r.Context(), job.Namespace, job.Name, a.JobVersion); err == nil && !reconcile.SameGroup(old, &planned, a.Group) {
				group(a.Group).Later++
				continue
			}
		}
		group(a.Group).Keep++
	}
	resp.Failed = s.annotate(p.Failed)
	resp.Defrag = s.defrag.ForPlan(&planned, p.Failed)
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// annotate adds the nodes' own reasons to "driver … unavailable"
// explanations, so users learn why a driver is missing.
func (s *Server) annotate(failed map[string]*api.Explanation) map[string]*api.Explanation {
	if len(failed) == 0 {
		return nil
	}
	for _, ex := range failed {
		for i, rc := range ex.Reasons {
			drv, ok := strings.CutPrefix(rc.Reason, "driver ")
			if !ok {
				continue
			}
			drv, _, _ = strings.Cut(drv, " ")
			var why []string
			for _, n := range s.store.Nodes() {
				if d := n.Drivers[drv]; !d.Healthy && d.Reason != "" {
					why = append(why, fmt.Sprintf("%s: %s", n.Name, d.Reason))
				}
			}
			if len(why) > 0 && !strings.Contains(rc.Reason, "(") {
				ex.Reasons[i].Reason = fmt.Sprintf("%s (%s)", rc.Reason, strings.Join(why, "; "))
			}
		}
	}
	return failed
}

func (s *Server) lookupJob(r *http.Request) (*api.Job, error) {
	ns, err := namespaceParam(r)
	if err != nil {
		return nil, err
	}
	name := r.PathValue("name")
	if _, ok := r.URL.Query()["consistent"]; ok {
		if err := s.syncView(r.Context()); err != nil {
			return nil, err
		}
	}
	j, ok := s.store.Job(ns, name)
	if !ok {
		// A job this server's view has not received yet (registered a
		// moment ago, through this server or another, before the watch
		// delivered it) must not be called missing, by a read or a
		// write: ask etcd before saying the job does not exist.
		if err := s.syncView(r.Context()); err != nil {
			return nil, err
		}
		j, ok = s.store.Job(ns, name)
	}
	if !ok {
		return nil, notFound("job %q not found in namespace %q", name, ns)
	}
	return j, nil
}

// syncView brings the view up to etcd's current revision (a linearizable
// read), so that what it answers next reflects every write acknowledged
// before the request arrived, through any server.
func (s *Server) syncView(ctx context.Context) error {
	if _, err := s.store.Sync(ctx); err != nil {
		return fmt.Errorf("bring the view up to date: %w", err)
	}
	return nil
}

func (s *Server) handleJobRead(w http.ResponseWriter, r *http.Request) error {
	j, err := s.lookupJob(r)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.summarize(j))
	return nil
}

func (s *Server) handleJobList(w http.ResponseWriter, r *http.Request) error {
	ns := r.URL.Query().Get("namespace")
	if ns != "" && !api.ValidName(ns) {
		return badRequest("namespace %q %s", ns, api.NameRule)
	}
	out := []*api.JobSummary{}
	for _, j := range s.store.Jobs(ns) {
		if !s.visible(r, j.Namespace) {
			continue
		}
		out = append(out, s.summarize(j))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// summarize derives a job's status and per-group counts from its
// allocations, as the store counts them (state.Store.JobCounts): a job
// list costs its jobs' groups, not their allocations.
func (s *Server) summarize(j *api.Job) *api.JobSummary {
	sum := &api.JobSummary{Job: j, Groups: map[string]*api.GroupSummary{}}
	for _, g := range j.Groups {
		sum.Groups[g.Name] = &api.GroupSummary{Desired: g.Count}
	}
	if j.Stop {
		for _, g := range sum.Groups {
			g.Desired = 0
		}
	}
	counts := s.store.JobCounts(j.Namespace, j.Name)
	live, done := counts.Live, 0
	for name, g := range sum.Groups {
		c := counts.Groups[name]
		c.Desired = g.Desired
		*g = c
		done += c.Complete
	}
	switch {
	case live > 0:
		sum.Status = api.JobStatusRunning
	case j.Stop:
		sum.Status = api.JobStatusDead
	case j.Type == api.JobBatch && done > 0 && !s.jobHasOpenEval(j):
		sum.Status = api.JobStatusDead
	default:
		sum.Status = api.JobStatusPending
	}
	return sum
}

func (s *Server) jobHasOpenEval(j *api.Job) bool {
	for _, e := range s.store.Evals(j.Namespace, j.Name) {
		if e.Status == api.EvalPending || e.Status == api.EvalBlocked {
			return true
		}
	}
	return false
}

func (s *Server) handleJobStop(w http.ResponseWriter, r *http.Request) error {
	j, err := s.lookupJob(r)
	if err != nil {
		return err
	}
	eval := s.newEval(j.Namespace, j.Name, api.TriggerJobDeregister)
	_, rev, err := s.store.StopJob(r.Context(), j.Namespace, j.Name, eval)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.StopResponse{EvalID: eval.ID, Index: rev})
	return nil
}

func (s *Server) handleJobVersions(w http.ResponseWriter, r *http.Request) error {
	j, err := s.lookupJob(r)
	if err != nil {
		return err
	}
	vs, err := s.store.JobVersions(r.Context(), j.Namespace, j.Name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, vs)
	return nil
}

func (s *Server) handleJobVersion(w http.ResponseWriter, r *http.Request) error {
	ns, err := namespaceParam(r)
	if err != nil {
		return err
	}
	v, err := strconv.ParseUint(r.PathValue("version"), 10, 64)
	if err != nil {
		return badRequest("version %q must be a non-negative integer", r.PathValue("version"))
	}
	key := api.JobKey(ns, r.PathValue("name")) + "@" + strconv.FormatUint(v, 10)
	if b, ok := s.versionJSON.get(key); ok {
		writeRawJSON(w, http.StatusOK, b)
		return nil
	}
	j, err := s.store.JobVersion(r.Context(), ns, r.PathValue("name"), v)
	if err != nil {
		return err
	}
	b, err := json.Marshal(j)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	s.versionJSON.put(key, b)
	writeRawJSON(w, http.StatusOK, b)
	return nil
}

// versionCache holds encoded job versions: every node that receives an
// allocation of a job fetches its version, so a 1,000-replica job is
// read 1,000 times. Versions never change once written, so the cache is
// never stale; it is bounded by dropping everything when full.
type versionCache struct {
	mu sync.Mutex
	m  map[string][]byte
}

const maxVersionCache = 4096

func (c *versionCache) get(key string) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.m[key]
	return b, ok
}

func (c *versionCache) put(key string, b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxVersionCache {
		c.m = map[string][]byte{}
	}
	c.m[key] = b
}

func (s *Server) handleJobAllocs(w http.ResponseWriter, r *http.Request) error {
	j, err := s.lookupJob(r)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.store.Allocs(state.AllocFilter{Namespace: j.Namespace, Job: j.Name}))
	return nil
}

func (s *Server) handleJobEvals(w http.ResponseWriter, r *http.Request) error {
	j, err := s.lookupJob(r)
	if err != nil {
		return err
	}
	evals := s.store.Evals(j.Namespace, j.Name)
	for _, e := range evals {
		s.annotate(e.FailedGroups)
	}
	writeJSON(w, http.StatusOK, evals)
	return nil
}

// findEval finds an evaluation by ID or by a prefix of 4 characters or
// more, as the CLI prints them (the rule of allocations).
func (s *Server) findEval(id string) (*api.Evaluation, error) {
	if e, ok := s.store.Eval(id); ok {
		return e, nil
	}
	if len(id) < 4 {
		return nil, badRequest("evaluation ID prefix %q is too short: give at least 4 characters", id)
	}
	var ids []string
	var match *api.Evaluation
	for _, e := range s.store.Evals("", "") {
		if strings.HasPrefix(e.ID, id) {
			match = e
			ids = append(ids, e.ID)
		}
	}
	switch len(ids) {
	case 0:
		return nil, notFound("evaluation %q not found", id)
	case 1:
		return match, nil
	}
	return nil, badRequest("evaluation prefix %q is ambiguous: %s", id, strings.Join(ids, ", "))
}

func (s *Server) handleEvalRead(w http.ResponseWriter, r *http.Request) error {
	e, err := s.findEval(r.PathValue("id"))
	if err != nil {
		return err
	}
	if err := s.allow(r, e.Namespace, acl.Read); err != nil {
		return err
	}
	c := *e
	c.FailedGroups = s.annotate(e.FailedGroups)
	writeJSON(w, http.StatusOK, &c)
	return nil
}

// diffJobs lists the fields of the user's spec that differ between two
// versions, by JSON path.
func diffJobs(old, cur *api.Job) []api.FieldDiff {
	a, b := flatten(specJSON(old)), flatten(specJSON(cur))
	var out []api.FieldDiff
	for k, v := range a {
		if w, ok := b[k]; !ok {
			out = append(out, api.FieldDiff{Path: k, Old: v})
		} else if w != v {
			out = append(out, api.FieldDiff{Path: k, Old: v, New: w})
		}
	}
	for k, w := range b {
		if _, ok := a[k]; !ok {
			out = append(out, api.FieldDiff{Path: k, New: w})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

func specJSON(j *api.Job) any {
	c := *j
	c.Version, c.Stop, c.Status, c.ModifyIndex = 0, false, "", 0
	c.SubmitTime = c.SubmitTime.UTC().Truncate(0)
	b, _ := json.Marshal(&c)
	var v any
	json.Unmarshal(b, &v)
	if m, ok := v.(map[string]any); ok {
		delete(m, "submit_time")
		delete(m, "version")
		delete(m, "stop")
		delete(m, "modify_index")
	}
	return v
}

func flatten(v any) map[string]string {
	out := map[string]string{}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch t := v.(type) {
		case map[string]any:
			for k, e := range t {
				p := k
				if path != "" {
					p = path + "." + k
				}
				walk(p, e)
			}
		case []any:
			for i, e := range t {
				walk(fmt.Sprintf("%s[%d]", path, i), e)
			}
		case nil:
		default:
			b, _ := json.Marshal(t)
			out[path] = string(b)
		}
	}
	walk("", v)
	return out
}

// onlyCountChanged reports whether group name is the same in both
// versions of the job but for its count.
func onlyCountChanged(old, cur *api.Job, name string) bool {
	a, b := old.LookupGroup(name), cur.LookupGroup(name)
	if a == nil || b == nil || old.Priority != cur.Priority || old.Type != cur.Type {
		return false
	}
	ac, bc := *a, *b
	ac.Count, bc.Count = 0, 0
	aj, _ := json.Marshal(&ac)
	bj, _ := json.Marshal(&bc)
	return bytes.Equal(aj, bj)
}
