package server

import (
	"fmt"
	"net/http"
	"sort"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/scheduler"
	"github.com/gantryhq/gantry/internal/state"
)

// queueView is the fair-share view of the current state.
func (s *Server) queueView() *scheduler.Queues {
	snap := s.store.Snapshot()
	return scheduler.NewQueues(&scheduler.Snapshot{Nodes: snap.Nodes, Allocs: snap.Allocs, Queues: snap.Queues})
}

func (s *Server) handleQueueList(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, s.queueView().Status())
	return nil
}

func (s *Server) handleQueueRead(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	for _, q := range s.queueView().Status() {
		if q.Name == name {
			writeJSON(w, http.StatusOK, q)
			return nil
		}
	}
	return notFound("queue %q not found", name)
}

// handleQueueApply creates or replaces one queue. A namespace may belong to
// one queue only.
func (s *Server) handleQueueApply(w http.ResponseWriter, r *http.Request) error {
	var q api.Queue
	if err := s.decodeBody(w, r, &q); err != nil {
		return err
	}
	q.ModifyIndex = 0
	if err := scheduler.ValidateQueue(&q); err != nil {
		return &httpError{status: http.StatusBadRequest, msg: err.Error()}
	}
	if q.Name == api.DefaultQueue && len(q.Namespaces) > 0 {
		return &httpError{status: http.StatusBadRequest, msg: "queue default serves every namespace no other queue names: give it no namespaces", field: "namespaces"}
	}
	for _, other := range s.store.Queues() {
		if other.Name == q.Name {
			continue
		}
		for _, ns := range q.Namespaces {
			for _, ons := range other.Namespaces {
				if ns == ons {
					return &httpError{status: http.StatusConflict, msg: fmt.Sprintf("namespace %q already belongs to queue %q: remove it there first", ns, other.Name), field: "namespaces"}
				}
			}
		}
	}
	sort.Strings(q.Namespaces)
	rev, err := s.store.PutQueue(r.Context(), &q)
	if err != nil {
		return err
	}
	if err := s.store.WaitIndex(r.Context(), rev); err != nil {
		return err
	}
	q.ModifyIndex = rev
	writeJSON(w, http.StatusOK, &q)
	return nil
}

func (s *Server) handleQueueDelete(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	if name == api.DefaultQueue {
		return badRequest("queue default cannot be deleted")
	}
	if _, err := s.store.DeleteQueue(r.Context(), name); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, struct{}{})
	return nil
}

// orderReady applies the queues' fair share to evaluations that are ready:
// dominant-resource fairness between queues, priority inside one. Work
// that its queue's limit holds back goes last: the scheduler then fails it
// with the limit as the reason, and it is retried when capacity changes.
// With one ready evaluation, or
// no queue defined, priority and age decide alone.
func (s *Server) orderReady(ready []*api.Evaluation) []*api.Evaluation {
	if len(ready) < 2 || len(s.store.Queues()) == 0 {
		return ready
	}
	snap := s.store.Snapshot()
	byKey := map[string]*api.Evaluation{}
	pending := make([]scheduler.Pending, 0, len(ready))
	for _, e := range ready {
		byKey[e.ID] = e
		pending = append(pending, scheduler.Pending{
			Key: e.ID, Namespace: e.Namespace, Priority: e.Priority, Seq: e.ModifyIndex, Demand: s.demand(e),
		})
	}
	ordered, blocked := scheduler.OrderPending(&scheduler.Snapshot{Nodes: snap.Nodes, Allocs: snap.Allocs, Queues: snap.Queues}, pending)
	out := make([]*api.Evaluation, 0, len(ready))
	for _, p := range ordered {
		out = append(out, byKey[p.Key])
	}
	for _, b := range blocked {
		out = append(out, byKey[b.Key])
	}
	return out
}

// demand is what an evaluation would add to its queue: the replicas its
// job still lacks.
func (s *Server) demand(e *api.Evaluation) scheduler.Resources {
	j, ok := s.store.Job(e.Namespace, e.Job)
	if !ok || j.Stop {
		return scheduler.Resources{}
	}
	live := map[string]int{}
	for _, a := range s.store.Allocs(state.AllocFilter{Namespace: e.Namespace, Job: e.Job, Live: true}) {
		if a.DesiredStatus == api.AllocDesiredRun {
			live[a.Group]++
		}
	}
	var d scheduler.Resources
	for _, g := range j.Groups {
		if missing := g.Count - live[g.Name]; missing > 0 {
			d = d.Add(scheduler.GroupResources(g).Scale(int64(missing)))
		}
	}
	return d
}
