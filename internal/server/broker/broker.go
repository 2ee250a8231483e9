// Package broker keeps the leader's open evaluations in an indexed
// priority queue and says which one runs next.
//
// An evaluation is in one of three heaps, found by its ID in O(1) and
// moved or removed in O(log n): delayed (pending, by the time it waits
// for), blocked (by the store index it was blocked at; it may run once
// the cluster's capacity changed after that) and ready (highest priority
// first, then the lowest modify index, then the ID). Next moves what
// became due or was woken by a capacity change into ready and returns the
// head; nothing is copied or sorted per pick.
//
// The queue does not deduplicate by job: every open evaluation of a job
// stays queued, the worker runs one at a time, and the evaluation that
// runs closes the job's other due ones as superseded (evalstep). It keeps
// no evaluation the store does not list as pending or blocked: Upsert of
// any other status removes it.
//
// The package does no I/O and never reads the clock: the time and the
// capacity index come in with each call.
package broker

import (
	"container/heap"
	"sort"
	"time"

	"github.com/gantryhq/gantry/internal/api"
)

// MaxWait is the longest Next asks the caller to wait before asking again
// when nothing is ready.
const MaxWait = 5 * time.Second

type where int

const (
	inReady where = iota
	inDelayed
	inBlocked
)

type item struct {
	e     *api.Evaluation
	where where
	index int // in its heap
}

// before is the order of ready evaluations.
func before(a, b *api.Evaluation) bool {
	if a.Priority != b.Priority {
		return a.Priority > b.Priority
	}
	if a.ModifyIndex != b.ModifyIndex {
		return a.ModifyIndex < b.ModifyIndex
	}
	return a.ID < b.ID
}

type itemHeap struct {
	items []*item
	less  func(a, b *api.Evaluation) bool
}

func (h *itemHeap) Len() int           { return len(h.items) }
func (h *itemHeap) Less(i, j int) bool { return h.less(h.items[i].e, h.items[j].e) }
func (h *itemHeap) Swap(i, j int) {
	h.items[i], h.items[j] = h.items[j], h.items[i]
	h.items[i].index, h.items[j].index = i, j
}
func (h *itemHeap) Push(x any) {
	it := x.(*item)
	it.index = len(h.items)
	h.items = append(h.items, it)
}
func (h *itemHeap) Pop() any {
	n := len(h.items) - 1
	it := h.items[n]
	h.items[n] = nil
	h.items = h.items[:n]
	it.index = -1
	return it
}
func (h *itemHeap) peek() *item {
	if len(h.items) == 0 {
		return nil
	}
	return h.items[0]
}

// Queue is the broker's indexed priority queue. It is not safe for
// concurrent use; the leader's broker loop owns it.
type Queue struct {
	byID    map[string]*item
	heaps   [3]*itemHeap
	ready   *itemHeap
	delayed *itemHeap
	blocked *itemHeap
}

// New returns an empty queue.
func New() *Queue {
	q := &Queue{byID: map[string]*item{}}
	q.ready = &itemHeap{less: before}
	q.delayed = &itemHeap{less: func(a, b *api.Evaluation) bool {
		if !a.WaitUntil.Equal(b.WaitUntil) {
			return a.WaitUntil.Before(b.WaitUntil)
		}
		return before(a, b)
	}}
	q.blocked = &itemHeap{less: func(a, b *api.Evaluation) bool {
		if a.BlockedAt() != b.BlockedAt() {
			return a.BlockedAt() < b.BlockedAt()
		}
		return before(a, b)
	}}
	q.heaps = [3]*itemHeap{inReady: q.ready, inDelayed: q.delayed, inBlocked: q.blocked}
	return q
}

// Len is the number of queued evaluations.
func (q *Queue) Len() int { return len(q.byID) }

// Upsert adds or replaces an evaluation by its ID: a pending one waits
// until its WaitUntil, a blocked one until capacity changes after the
// view it was planned with (api.Evaluation.BlockedAt); any other status
// removes it.
func (q *Queue) Upsert(e *api.Evaluation) {
	q.Remove(e.ID)
	var w where
	switch e.Status {
	case api.EvalPending:
		w = inDelayed
	case api.EvalBlocked:
		w = inBlocked
	default:
		return
	}
	it := &item{e: e, where: w}
	q.byID[e.ID] = it
	heap.Push(q.heaps[w], it)
}

// Remove drops an evaluation; an unknown ID is ignored.
func (q *Queue) Remove(id string) {
	it, ok := q.byID[id]
	if !ok {
		return
	}
	heap.Remove(q.heaps[it.where], it.index)
	delete(q.byID, id)
}

// Reset empties the queue (the store's view was loaded anew).
func (q *Queue) Reset() {
	*q = *New()
}

// promote moves into ready every pending evaluation due at now and every
// blocked one that capacity changed for since it was blocked.
func (q *Queue) promote(now time.Time, capIndex int64) {
	for it := q.delayed.peek(); it != nil && !now.Before(it.e.WaitUntil); it = q.delayed.peek() {
		heap.Pop(q.delayed)
		it.where = inReady
		heap.Push(q.ready, it)
	}
	for it := q.blocked.peek(); it != nil && it.e.BlockedAt() < capIndex; it = q.blocked.peek() {
		heap.Pop(q.blocked)
		it.where = inReady
		heap.Push(q.ready, it)
	}
}

// Next returns the evaluation to run at now, given the store's capacity
// index, without removing it (it leaves when the store records its new
// status); or nil and how long to wait for the next delayed one (at most
// MaxWait: a change in the store is the other reason to ask again).
func (q *Queue) Next(now time.Time, capIndex int64) (*api.Evaluation, time.Duration) {
	q.promote(now, capIndex)
	if it := q.ready.peek(); it != nil {
		return it.e, 0
	}
	wake := MaxWait
	if it := q.delayed.peek(); it != nil {
		wake = min(wake, it.e.WaitUntil.Sub(now))
	}
	return nil, wake
}

// Ready lists every evaluation ready at now in the queue's order (for an
// ordering that needs them all: fair share between queues).
func (q *Queue) Ready(now time.Time, capIndex int64) []*api.Evaluation {
	q.promote(now, capIndex)
	out := make([]*api.Evaluation, 0, q.ready.Len())
	for _, it := range q.ready.items {
		out = append(out, it.e)
	}
	sort.Slice(out, func(i, j int) bool { return before(out[i], out[j]) })
	return out
}
