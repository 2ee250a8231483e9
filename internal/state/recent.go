package state

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// The recent changes let an event stream that starts from a recent index
// (what every follower does: `job run` from its registration's index, a
// client resuming after a reconnect) be served from the view's own watch
// at once. etcd answers a watch from a past revision only on its next
// round of catching watchers up, every 100 ms, so a `job run` whose
// deployment ended within that time waited for it.
//
// The view keeps the last maxRecent changes it applied, as the watch
// gave them (without previous values). A stream reads them and waits for
// the view's next change; one that falls behind them, or starts before
// them, is served by its own etcd watch, as every stream was before.

// maxRecent bounds the recent changes (a variable for the tests).
var maxRecent = 1 << 12

// logRecentLocked records the changes of one watch response.
func (s *Store) logRecentLocked(evs []*clientv3.Event) {
	s.recent = append(s.recent, evs...)
	if len(s.recent) <= maxRecent {
		return
	}
	// Drop the older half, whole revisions only: a reader gets every
	// change of a revision or none.
	drop := len(s.recent) / 2
	for drop < len(s.recent) && s.recent[drop].Kv.ModRevision == s.recent[drop-1].Kv.ModRevision {
		drop++
	}
	s.recentFrom = s.recent[drop-1].Kv.ModRevision
	s.recent = append([]*clientv3.Event(nil), s.recent[drop:]...)
}

// recentAfter returns the recent changes after revision last, the
// revision the answer reflects (every change up to it is among them or
// before last), and a channel closed on the view's next change. ok is
// false when the recent changes do not reach back to last.
func (s *Store) recentAfter(last int64) (evs []*clientv3.Event, upTo int64, changed <-chan struct{}, ok bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if last < s.recentFrom {
		return nil, 0, nil, false
	}
	i := sort.Search(len(s.recent), func(i int) bool { return s.recent[i].Kv.ModRevision > last })
	// The slice shares its array with s.recent: appends write past its
	// end, and a trim copies, so what it holds never changes.
	return s.recent[i:len(s.recent):len(s.recent)], max(s.rev, last), s.changed, true
}

// streamRecent hands fn the events after last from the recent changes,
// then each change as the view applies it, until ctx ends (its error) or
// the stream falls behind the recent changes: then it returns nil and
// the index of the last revision handed over, to go on from with an etcd
// watch.
func (s *Store) streamRecent(ctx context.Context, last int64, f EventFilter, c eventConverter) (int64, error) {
	for {
		evs, upTo, changed, ok := s.recentAfter(last)
		if !ok {
			return last, nil
		}
		for len(evs) > 0 {
			n := 1
			for n < len(evs) && evs[n].Kv.ModRevision == evs[0].Kv.ModRevision {
				n++
			}
			rev, err := s.withPrevious(ctx, evs[:n], f)
			if err != nil {
				return last, err
			}
			if err := c.send(rev); err != nil {
				return last, err
			}
			last = evs[0].Kv.ModRevision
			evs = evs[n:]
		}
		last = upTo
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case <-changed:
		}
	}
}

// withPrevious gives the changes of one revision their previous values
// where an event needs one: the payload of a deletion, the component
// versions of a node's update. It reads them from etcd at the revision
// before, and only for topics f selects. A previous value compacted away
// leaves the event without it, as etcd's own watch does.
func (s *Store) withPrevious(ctx context.Context, evs []*clientv3.Event, f EventFilter) ([]*clientv3.Event, error) {
	var out []*clientv3.Event
	for i, ev := range evs {
		if !s.needsPrevious(ev, f) {
			continue
		}
		if out == nil {
			out = append([]*clientv3.Event(nil), evs...)
		}
		resp, err := s.cli.Get(ctx, string(ev.Kv.Key), clientv3.WithRev(ev.Kv.ModRevision-1))
		switch {
		case errors.Is(err, rpctypes.ErrCompacted):
			continue
		case err != nil:
			return nil, fmt.Errorf("event stream: read the value %s had before revision %d: %w", ev.Kv.Key, ev.Kv.ModRevision, err)
		case len(resp.Kvs) == 0:
			continue
		}
		withPrev := *ev
		withPrev.PrevKv = resp.Kvs[0]
		out[i] = &withPrev
	}
	if out == nil {
		return evs, nil
	}
	return out, nil
}

func (s *Store) needsPrevious(ev *clientv3.Event, f EventFilter) bool {
	kind, _ := s.keys.split(string(ev.Kv.Key))
	topic := topicOf(kind)
	if topic == "" || (len(f.Topics) > 0 && !f.Topics[topic]) {
		return false
	}
	if ev.Type == mvccpb.DELETE {
		return true
	}
	return kind == kindNode && ev.Kv.CreateRevision != ev.Kv.ModRevision
}
