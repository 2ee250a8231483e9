package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/state/codec"
	"github.com/gantryhq/gantry/internal/versions"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrIndexCompacted is returned when a client resumes from an index older
// than the history the store still keeps.
var ErrIndexCompacted = errors.New("index is older than the history the store keeps")

// CompactedError carries the oldest index a client can resume from.
type CompactedError struct{ Oldest int64 }

func (e *CompactedError) Error() string {
	return fmt.Sprintf("index is older than the history the store keeps: resume from %d or later, or from 0 for new events only", e.Oldest)
}

func (e *CompactedError) Unwrap() error { return ErrIndexCompacted }

// EventFilter selects events. Empty sets match everything. A key matches
// an event's key or, for allocations and evaluations, their job's name.
type EventFilter struct {
	Topics    map[string]bool
	Keys      map[string]bool
	Namespace string
	// Visible, when set, hides events the reader may not see (by topic
	// and namespace; "" for cluster-wide objects such as nodes).
	Visible func(topic, namespace string) bool
}

type eventMeta struct {
	Namespace string `json:"namespace"`
	Job       string `json:"job"`
	Name      string `json:"name"`
	Stop      bool   `json:"stop"`
	// When the change happened, as the writer recorded it.
	ModifyTime time.Time `json:"modify_time"`
	SubmitTime time.Time `json:"submit_time"`
}

func (m eventMeta) time() time.Time {
	if !m.ModifyTime.IsZero() {
		return m.ModifyTime
	}
	return m.SubmitTime
}

// toEvent converts one watched change into an event; ok is false for keys
// that make no events.
func (s *Store) toEvent(ev *clientv3.Event) (api.Event, eventMeta, bool) {
	kind, rest := s.keys.split(string(ev.Kv.Key))
	topic := topicOf(kind)
	if topic == "" {
		return api.Event{}, eventMeta{}, false
	}
	payload := ev.Kv.Value
	verb := "Updated"
	switch {
	case ev.Type == mvccpb.DELETE:
		verb = "Deleted"
		payload = nil
		if ev.PrevKv != nil {
			payload = ev.PrevKv.Value
		}
	case ev.Kv.CreateRevision == ev.Kv.ModRevision:
		verb = "Created"
	}
	var meta eventMeta
	if topic == api.TopicAllocation && len(payload) > 0 {
		var ok bool
		if payload, meta, ok = s.allocEventPayload(ev, payload); !ok {
			return api.Event{}, eventMeta{}, false
		}
	} else if len(payload) > 0 {
		_ = json.Unmarshal(payload, &meta)
	}
	key := rest
	name := map[string]string{
		api.TopicJob: "Job", api.TopicAllocation: "Allocation", api.TopicNode: "Node",
		api.TopicEvaluation: "Evaluation", api.TopicQueue: "Queue", api.TopicAudit: "NodeAudit", api.TopicDeployment: "Deployment",
	}[topic]
	switch topic {
	case api.TopicJob:
		_, key, _ = strings.Cut(rest, "/")
		switch {
		case verb == "Created":
			verb = "Registered"
		case verb == "Updated" && meta.Stop:
			verb = "Stopped"
		}
	case api.TopicNode:
		if verb == "Created" {
			verb = "Registered"
		}
	case api.TopicVSphere:
		if e, ok := vsphereEvent(ev, payload); ok {
			return e, meta, true
		}
		return api.Event{}, eventMeta{}, false
	case api.TopicDefrag:
		if e, ok := defragEvent(ev, payload); ok {
			return e, meta, true
		}
		return api.Event{}, eventMeta{}, false
	}
	return api.Event{
		Index:     ev.Kv.ModRevision,
		Topic:     topic,
		Type:      name + verb,
		Namespace: meta.Namespace,
		Key:       key,
		Payload:   json.RawMessage(payload),
	}, meta, true
}

// allocEventPayload is the JSON payload and the meta of an allocation's
// stored value, in either form (events are JSON whatever the store
// keeps). A value this release cannot read makes no event (ok false) and
// is logged, as the view logs it.
func (s *Store) allocEventPayload(ev *clientv3.Event, value []byte) (payload []byte, meta eventMeta, ok bool) {
	var a api.Allocation
	if err := codec.DecodeAllocation(value, &a); err != nil {
		s.log.Error("undecodable allocation in the event stream; no event", "key", string(ev.Kv.Key), "err", err)
		return nil, eventMeta{}, false
	}
	meta = eventMeta{Namespace: a.Namespace, Job: a.Job, ModifyTime: a.ModifyTime}
	if codec.IsJSON(value) {
		return value, meta, true
	}
	payload, err := json.Marshal(&a)
	if err != nil {
		s.log.Error("allocation event payload", "key", string(ev.Kv.Key), "err", err)
		return nil, eventMeta{}, false
	}
	return payload, meta, true
}

func (f *EventFilter) match(e *api.Event, m eventMeta) bool {
	if len(f.Topics) > 0 && !f.Topics[e.Topic] {
		return false
	}
	if f.Namespace != "" && e.Namespace != "" && e.Namespace != f.Namespace {
		return false
	}
	if len(f.Keys) > 0 && !f.Keys[e.Key] && !(m.Job != "" && f.Keys[m.Job]) {
		return false
	}
	return f.Visible == nil || f.Visible(e.Topic, e.Namespace)
}

// Events streams events after index (0: only new events) to fn until ctx
// ends or fn returns an error. fn receives the matching events of one
// store revision at a time, so a writer can deliver a revision whole: a
// client that resumes from the last index it saw then misses nothing.
// It returns a *CompactedError before calling fn when index is older than
// the kept history. now stamps events whose payload carries no time.
//
// A stream from an index the view's recent changes reach back to is
// served from them (recent.go); any other, or one that falls behind
// them, by an etcd watch of its own.
func (s *Store) Events(ctx context.Context, index int64, f EventFilter, now func() time.Time, fn func([]api.Event) error) error {
	if index <= 0 {
		index = s.Index()
	}
	c := eventConverter{s: s, f: f, now: now, fn: fn}
	last, err := s.streamRecent(ctx, index, f, c)
	if err != nil {
		return err
	}
	return s.watchEvents(ctx, last+1, c)
}

// watchEvents streams the events from revision from with an etcd watch.
func (s *Store) watchEvents(ctx context.Context, from int64, c eventConverter) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wch := s.cli.Watch(wctx, s.keys.prefix, clientv3.WithPrefix(), clientv3.WithRev(from),
		clientv3.WithPrevKV(), clientv3.WithCreatedNotify())
	for resp := range wch {
		if resp.CompactRevision > 0 {
			return &CompactedError{Oldest: resp.CompactRevision}
		}
		if err := resp.Err(); err != nil {
			return fmt.Errorf("event stream: %w", err)
		}
		evs := resp.Events
		for len(evs) > 0 {
			n := 1
			for n < len(evs) && evs[n].Kv.ModRevision == evs[0].Kv.ModRevision {
				n++
			}
			if err := c.send(evs[:n]); err != nil {
				return err
			}
			evs = evs[n:]
		}
	}
	return ctx.Err()
}

// eventConverter turns the changes of one revision into the events f
// selects and hands them to fn, if any.
type eventConverter struct {
	s   *Store
	f   EventFilter
	now func() time.Time
	fn  func([]api.Event) error
}

func (c eventConverter) send(evs []*clientv3.Event) error {
	var batch []api.Event
	for _, ev := range evs {
		e, meta, ok := c.s.toEvent(ev)
		if !ok || !c.f.match(&e, meta) {
			continue
		}
		if e.Time = meta.time(); e.Time.IsZero() || e.Type == "JobStopped" || strings.HasSuffix(e.Type, "Deleted") {
			e.Time = c.now()
		}
		batch = append(batch, e)
		batch = append(batch, componentEvents(ev, e)...)
	}
	if len(batch) == 0 {
		return nil
	}
	return c.fn(batch)
}

// componentEvents are the ComponentVersionChanged events a node update
// (e, from the watched change ev) carries: one per component whose
// version differs between the node's previous record and this one, with
// the update's index, key and time. Registrations and deletions carry
// none: there is no earlier version to compare with, or no new one.
func componentEvents(ev *clientv3.Event, e api.Event) []api.Event {
	if e.Topic != api.TopicNode || ev.Type != mvccpb.PUT || ev.PrevKv == nil {
		return nil
	}
	var prev, cur api.Node
	if json.Unmarshal(ev.PrevKv.Value, &prev) != nil || json.Unmarshal(ev.Kv.Value, &cur) != nil {
		return nil
	}
	var out []api.Event
	for _, c := range versions.Changes(&prev, &cur) {
		payload, err := json.Marshal(c)
		if err != nil {
			continue
		}
		out = append(out, api.Event{
			Index: e.Index, Topic: api.TopicNode, Type: api.EventComponentVersionChanged,
			Key: e.Key, Time: e.Time, Payload: payload,
		})
	}
	return out
}
