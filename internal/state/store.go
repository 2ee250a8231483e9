package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gantryhq/gantry/internal/acl"
	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/state/codec"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrNotFound is returned when the named object does not exist.
var ErrNotFound = errors.New("not found")

// ErrConflict is returned when a transaction's compare failed because
// something it depended on changed; the caller re-reads and retries.
var ErrConflict = errors.New("state changed concurrently")

// Store is the durable state plus its in-memory view.
type Store struct {
	cli  *clientv3.Client
	keys keys
	log  *slog.Logger

	mu           sync.RWMutex
	rev          int64
	jobs         map[string]*api.Job // by namespace/name
	allocs       map[string]*api.Allocation
	evals        map[string]*api.Evaluation
	evalsByJob   map[string]map[string]*api.Evaluation // by job key, then ID
	nodes        map[string]*api.Node
	queues       map[string]*api.Queue
	deployments  map[string]*api.Deployment
	nodePlan     map[string]int64 // node id → mod revision of its nodeplan key
	alive        map[string]bool  // node id → heartbeat key present
	leases       map[string]int64 // node id → lease holding its heartbeat key
	allocsByNode map[string]map[string]*api.Allocation
	allocsByJob  map[string]map[string]*api.Allocation
	nodeUse      map[string]*api.Usage // node id → what its live allocations take, summed (NodeChecks)
	jobTally     map[string]*jobTally  // job key → its allocations' signature and counts (JobSignature, JobCounts)
	nodeIndex    map[string]int64      // node id → last revision the servers changed one of its allocations
	// allocDesired is, per node, the last revision the servers changed
	// each of its allocations: one small map per node, read for every
	// allocation of a node on each of its agent's answers.
	allocDesired map[string]map[string]int64
	// nodeRemoved is the last revision at which an allocation left a node
	// (deleted, or moved to another), and loadRev the revision this view
	// was last loaded whole at: what came before it is unknown.
	nodeRemoved map[string]int64
	loadRev     int64
	shapes      shapes // resource maps shared by allocations of one shape
	nodeWait    map[string]chan struct{}
	capIndex    int64                  // last revision that may have freed or added capacity
	aclTokens   map[string]*acl.Token  // by secret hash
	aclPolicies map[string]*acl.Policy // by name
	changed     chan struct{}          // closed and replaced on every change
	// candidates are the election's candidates (leader key → server
	// id) and encodings the allocation format each server advertises;
	// compact is whether every candidate reads the compact form
	// (encoding.go).
	candidates map[string]string
	encodings  map[string]int
	compact    atomic.Bool
	// evalLog lists the evaluations changed after evalLogFrom, in
	// revision order (evalfeed.go).
	evalLog     []evalChange
	evalLogFrom int64
	// recent lists the last changes the view applied, every one after
	// recentFrom, in revision order (recent.go).
	recent     []*clientv3.Event
	recentFrom int64
	// progressAsked is when a waiter last asked for a progress
	// notification (WaitIndex), in Unix nanoseconds.
	progressAsked atomic.Int64

	versionsMu sync.Mutex
	versions   map[string]*api.Job // job versions read, by key: immutable

	cancel context.CancelFunc
	done   chan struct{}
}

// Open loads the whole state under prefix into memory and keeps it current
// with a watch until Close.
func Open(ctx context.Context, cli *clientv3.Client, prefix string, log *slog.Logger) (*Store, error) {
	if prefix == "" {
		prefix = "/gantry/"
	}
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	s := &Store{cli: cli, keys: keys{prefix}, log: log, done: make(chan struct{})}
	if err := s.load(ctx); err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go s.watch(wctx)
	return s, nil
}

// Close stops the watch. It does not close the etcd client.
func (s *Store) Close() {
	s.cancel()
	<-s.done
}

func (s *Store) reset() {
	s.jobs = map[string]*api.Job{}
	s.allocs = map[string]*api.Allocation{}
	s.evals = map[string]*api.Evaluation{}
	s.evalsByJob = map[string]map[string]*api.Evaluation{}
	s.nodes = map[string]*api.Node{}
	s.queues = map[string]*api.Queue{}
	s.deployments = map[string]*api.Deployment{}
	s.nodePlan = map[string]int64{}
	s.alive = map[string]bool{}
	s.leases = map[string]int64{}
	s.allocsByNode = map[string]map[string]*api.Allocation{}
	s.allocsByJob = map[string]map[string]*api.Allocation{}
	s.nodeUse = map[string]*api.Usage{}
	s.jobTally = map[string]*jobTally{}
	s.nodeIndex = map[string]int64{}
	s.allocDesired = map[string]map[string]int64{}
	s.nodeRemoved = map[string]int64{}
	s.shapes = shapes{}
	if s.nodeWait == nil {
		s.nodeWait = map[string]chan struct{}{}
	}
	for n, ch := range s.nodeWait {
		close(ch)
		delete(s.nodeWait, n)
	}
	s.aclTokens = map[string]*acl.Token{}
	s.aclPolicies = map[string]*acl.Policy{}
	s.candidates = map[string]string{}
	s.encodings = map[string]int{}
	if s.changed == nil {
		s.changed = make(chan struct{})
	}
}

func (s *Store) load(ctx context.Context) error {
	resp, err := s.cli.Get(ctx, s.keys.prefix, clientv3.WithPrefix())
	if err != nil {
		return fmt.Errorf("load state from etcd: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reset()
	for _, kv := range resp.Kvs {
		s.applyLocked(kv, false, nil)
	}
	s.recomputeGateLocked()
	s.rev = resp.Header.Revision
	s.loadRev = s.rev
	s.evalLog, s.evalLogFrom = nil, s.rev // readers of the feed start over
	s.recent, s.recentFrom = nil, s.rev
	s.broadcastLocked()
	return nil
}

func (s *Store) watch(ctx context.Context) {
	defer close(s.done)
	for ctx.Err() == nil {
		s.mu.RLock()
		from := s.rev + 1
		s.mu.RUnlock()
		wch := s.cli.Watch(clientv3.WithRequireLeader(ctx), s.keys.prefix, clientv3.WithPrefix(), clientv3.WithRev(from), clientv3.WithProgressNotify())
		for resp := range wch {
			if err := resp.Err(); err != nil {
				if errors.Is(err, rpctypes.ErrCompacted) {
					s.log.Warn("state watch fell behind compaction; reloading", "from", from)
					if err := s.load(ctx); err != nil {
						s.log.Error("reload state", "err", err)
					}
				} else if ctx.Err() == nil {
					s.log.Warn("state watch interrupted", "err", err)
				}
				break
			}
			pre := s.decodeAllocs(resp.Events)
			s.mu.Lock()
			for i, ev := range resp.Events {
				var a *api.Allocation
				if pre != nil {
					a = pre[i]
				}
				s.applyLocked(ev.Kv, ev.Type == mvccpb.DELETE, a)
			}
			s.logRecentLocked(resp.Events)
			s.recomputeGateLocked()
			if rev := viewRevision(resp); rev > s.rev {
				s.rev = rev
			}
			s.broadcastLocked()
			s.mu.Unlock()
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// decodeAllocs decodes the allocations among events (nil where an event
// is not one, or does not decode: applyLocked decodes it again and says
// so) before the view's lock is taken. A plan's hundreds of allocations
// decoded under the lock kept every reader waiting: the leader's plan
// re-check and the agents' answers.
func (s *Store) decodeAllocs(events []*clientv3.Event) []*api.Allocation {
	var out []*api.Allocation
	for i, ev := range events {
		if ev.Type == mvccpb.DELETE {
			continue
		}
		if kind, _ := s.keys.split(string(ev.Kv.Key)); kind != kindAlloc {
			continue
		}
		a := new(api.Allocation)
		if codec.DecodeAllocation(ev.Kv.Value, a) != nil {
			continue
		}
		if out == nil {
			out = make([]*api.Allocation, len(events))
		}
		out[i] = a
	}
	return out
}

// viewRevision is the revision a view holds once it applied resp: the
// last of its events, or, for a progress notification, its header's.
// The header of a response with events is not: a watch that fell behind
// gets its backlog in batches whose header names etcd's current revision,
// ahead of the events still to come. Taking it made the view claim
// revisions it had not applied (WaitIndex returned early), and made the
// evaluation feed skip the changes of the batches that followed, so the
// leader's broker kept an evaluation pending after it completed and ran
// it again and again, ahead of every other: the stalls of the large
// scale runs.
func viewRevision(resp clientv3.WatchResponse) int64 {
	if n := len(resp.Events); n > 0 {
		return resp.Events[n-1].Kv.ModRevision
	}
	if resp.IsProgressNotify() {
		return resp.Header.Revision
	}
	return 0
}

func (s *Store) broadcastLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// applyValue folds one key of a kind the view keeps as decoded values: a
// deleted key leaves m; a value this release can read replaces the old
// one, stamped with its revision where stamp is given. A value it cannot
// read leaves the view as it was.
func applyValue[T any](s *Store, m map[string]*T, kv *mvccpb.KeyValue, key string, deleted bool, stamp func(*T, int64)) {
	if deleted {
		delete(m, key)
		return
	}
	var v T
	if s.decode(kv, &v) {
		if stamp != nil {
			stamp(&v, kv.ModRevision)
		}
		m[key] = &v
	}
}

// applyLocked folds one key's new value (or deletion) into the view. pre
// is the allocation kv holds, decoded before the lock was taken
// (decodeAllocs), or nil: applyLocked decodes it.
func (s *Store) applyLocked(kv *mvccpb.KeyValue, deleted bool, pre *api.Allocation) {
	kind, rest := s.keys.split(string(kv.Key))
	switch kind {
	case kindJob:
		applyValue(s, s.jobs, kv, rest, deleted, func(j *api.Job, rev int64) { j.ModifyIndex = rev })
	case kindAlloc:
		// Decode first: a value this release cannot read leaves the view
		// as it was.
		a := pre
		if !deleted && a == nil {
			a = new(api.Allocation)
			if err := codec.DecodeAllocation(kv.Value, a); err != nil {
				s.log.Error("undecodable allocation in store; ignored", "key", string(kv.Key), "err", err)
				return
			}
		}
		old := s.allocs[rest]
		if old != nil {
			if !old.Terminal() {
				s.useLocked(old.NodeID).Add(old, -1)
			}
			s.tallyLocked(old, -1)
			delete(s.allocsByNode[old.NodeID], old.ID)
			delete(s.allocsByJob[old.JobKey()], old.ID)
		}
		if deleted {
			delete(s.allocs, rest)
			s.capIndex = kv.ModRevision
			if old != nil {
				delete(s.allocDesired[old.NodeID], old.ID)
				s.nodeRemoved[old.NodeID] = kv.ModRevision
				s.nodeChangedLocked(old.NodeID, kv.ModRevision)
			}
			return
		}
		if old != nil && (old.ClientTerminal() != a.ClientTerminal() || old.DesiredStatus != a.DesiredStatus) {
			s.capIndex = kv.ModRevision
		}
		a.ModifyIndex = kv.ModRevision
		a.Intern()
		a.Resources = s.shapes.share(a.Resources)
		if a.ID == rest {
			rest = a.ID // the map key shares the ID's bytes, not the whole etcd key's
		}
		s.allocs[rest] = a
		if !a.Terminal() {
			s.useLocked(a.NodeID).Add(a, 1)
		}
		s.tallyLocked(a, 1)
		index(s.allocsByNode, a.NodeID)[a.ID] = a
		index(s.allocsByJob, a.JobKey())[a.ID] = a
		if old == nil || desiredChanged(old, a) {
			// Only what the servers decide wakes the node's agent; its
			// own reports do not.
			index(s.allocDesired, a.NodeID)[a.ID] = kv.ModRevision
			s.nodeChangedLocked(a.NodeID, kv.ModRevision)
			if old != nil && old.NodeID != a.NodeID {
				delete(s.allocDesired[old.NodeID], old.ID)
				s.nodeRemoved[old.NodeID] = kv.ModRevision
				s.nodeChangedLocked(old.NodeID, kv.ModRevision)
			}
		}
	case kindEval:
		s.logEvalLocked(kv.ModRevision, rest)
		var e api.Evaluation
		if !deleted && !s.decode(kv, &e) {
			return
		}
		if old := s.evals[rest]; old != nil {
			if byJob := s.evalsByJob[old.JobKey()]; byJob != nil {
				delete(byJob, rest)
				if len(byJob) == 0 {
					delete(s.evalsByJob, old.JobKey())
				}
			}
		}
		if deleted {
			delete(s.evals, rest)
			return
		}
		e.ModifyIndex = kv.ModRevision
		s.evals[rest] = &e
		index(s.evalsByJob, e.JobKey())[rest] = &e
	case kindNode:
		if deleted {
			s.capIndex = kv.ModRevision
			delete(s.nodes, rest)
			return
		}
		var n api.Node
		if s.decode(kv, &n) {
			n.ModifyIndex = kv.ModRevision
			if !onlyHeartbeatMoved(s.nodes[rest], &n) {
				s.capIndex = kv.ModRevision
			}
			s.nodes[rest] = &n
		} else {
			s.capIndex = kv.ModRevision
		}
	case kindQueue:
		applyValue(s, s.queues, kv, rest, deleted, func(q *api.Queue, rev int64) { q.ModifyIndex = rev })
	case kindDeployment:
		s.applyDeploymentLocked(kv, rest, deleted)
	case kindNodePlan:
		if deleted {
			delete(s.nodePlan, rest)
		} else {
			s.nodePlan[rest] = kv.ModRevision
		}
	case kindACLToken:
		applyValue(s, s.aclTokens, kv, rest, deleted, nil)
	case kindACLPolicy:
		applyValue(s, s.aclPolicies, kv, rest, deleted, func(p *acl.Policy, rev int64) { p.ModifyIndex = rev })
	case kindLeader, kindEncodings:
		s.applyGateLocked(kind, rest, kv, deleted)
	case kindHeartbeat:
		s.capIndex = kv.ModRevision
		if deleted {
			delete(s.alive, rest)
			delete(s.leases, rest)
		} else {
			s.alive[rest] = true
			s.leases[rest] = kv.Lease
		}
	}
}

// onlyHeartbeatMoved reports whether node record next differs from old
// in nothing but its last heartbeat time (and revision): what a server
// writes for every node every 30 s. Such a write changes no capacity, so
// it must not move CapacityIndex: at 10,000 nodes that is 333 writes a
// second, each of which made the leader rebuild its scheduling view of
// every allocation for the next evaluation and retry every blocked one.
func onlyHeartbeatMoved(old, next *api.Node) bool {
	if old == nil {
		return false
	}
	a, b := *old, *next
	a.LastHeartbeat, a.ModifyIndex = time.Time{}, 0
	b.LastHeartbeat, b.ModifyIndex = time.Time{}, 0
	return reflect.DeepEqual(a, b)
}

// index is m's inner map under k, made when there is none.
func index[V any](m map[string]map[string]V, k string) map[string]V {
	inner := m[k]
	if inner == nil {
		inner = map[string]V{}
		m[k] = inner
	}
	return inner
}

func (s *Store) decode(kv *mvccpb.KeyValue, v any) bool {
	if err := json.Unmarshal(kv.Value, v); err != nil {
		s.log.Error("undecodable object in store; ignored", "key", string(kv.Key), "err", err)
		return false
	}
	return true
}

// Index is the revision the view reflects.
func (s *Store) Index() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.rev
}

// Sync makes the view at least as new as etcd is now: it reads etcd's
// current revision with a linearizable read (one that a majority of
// members confirms, so no member's lag can make it stale) and waits until
// the view reflects it. Whatever the view answers afterwards is as new as
// every write acknowledged before Sync was called. It returns that
// revision.
func (s *Store) Sync(ctx context.Context) (int64, error) {
	resp, err := s.cli.Get(ctx, s.keys.prefix+"sync-probe")
	if err != nil {
		return 0, fmt.Errorf("read etcd's revision: %w", err)
	}
	rev := resp.Header.Revision
	return rev, s.WaitIndex(ctx, rev)
}

// WaitIndex blocks until the view reflects at least revision rev. A
// revision no event under the prefix carries (a write elsewhere in a
// shared etcd) is reached by a progress notification, which it asks
// etcd for while it waits.
func (s *Store) WaitIndex(ctx context.Context, rev int64) error {
	var tick <-chan time.Time
	for {
		s.mu.RLock()
		cur, ch := s.rev, s.changed
		s.mu.RUnlock()
		if cur >= rev {
			return nil
		}
		if tick == nil {
			t := time.NewTicker(progressEvery)
			defer t.Stop()
			tick = t.C
		}
		select {
		case <-ch:
		case <-tick:
			s.requestProgress(ctx)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// progressEvery is how often a waiter asks etcd for a progress
// notification; requests from all waiters together go out at most as
// often.
const progressEvery = 100 * time.Millisecond

// requestProgress asks etcd to tell the view's watch the current
// revision. etcd answers once the watch has received every event before
// it; it does not while the watch is behind, and the events then move
// the view on.
func (s *Store) requestProgress(ctx context.Context) {
	now := time.Now().UnixNano()
	last := s.progressAsked.Load()
	if now-last < int64(progressEvery) || !s.progressAsked.CompareAndSwap(last, now) {
		return
	}
	// The watch's stream is the one opened with the same metadata.
	if err := s.cli.RequestProgress(clientv3.WithRequireLeader(ctx)); err != nil && ctx.Err() == nil {
		s.log.Debug("ask etcd for the watch's progress", "err", err)
	}
}

// CapacityIndex is the last revision at which capacity may have changed:
// a node changed, or an allocation stopped or went away.
func (s *Store) CapacityIndex() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.capIndex
}

// Changed returns a channel closed at the next change of the view.
func (s *Store) Changed() <-chan struct{} {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.changed
}

// Job returns the current version of a job.
func (s *Store) Job(namespace, name string) (*api.Job, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	j, ok := s.jobs[api.JobKey(namespace, name)]
	return j, ok
}

// Jobs lists jobs, in one namespace or ("") all, sorted by namespace and
// name.
func (s *Store) Jobs(namespace string) []*api.Job {
	s.mu.RLock()
	out := make([]*api.Job, 0, len(s.jobs))
	for _, j := range s.jobs {
		if namespace == "" || j.Namespace == namespace {
			out = append(out, j)
		}
	}
	s.mu.RUnlock()
	sortJobs(out)
	return out
}

// sortJobs sorts jobs by key (namespace/name), building each key once.
func sortJobs(jobs []*api.Job) {
	type keyed struct {
		key string
		job *api.Job
	}
	ks := make([]keyed, len(jobs))
	for i, j := range jobs {
		ks[i] = keyed{j.Key(), j}
	}
	slices.SortFunc(ks, func(a, b keyed) int { return strings.Compare(a.key, b.key) })
	for i := range ks {
		jobs[i] = ks[i].job
	}
}

// Alloc returns an allocation by ID.
func (s *Store) Alloc(id string) (*api.Allocation, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	a, ok := s.allocs[id]
	return a, ok
}

// AllocsByPrefix returns the allocations whose ID starts with prefix.
func (s *Store) AllocsByPrefix(prefix string) []*api.Allocation {
	s.mu.RLock()
	var out []*api.Allocation
	for id, a := range s.allocs {
		if strings.HasPrefix(id, prefix) {
			out = append(out, a)
		}
	}
	s.mu.RUnlock()
	sortAllocs(out)
	return out
}

// Allocs lists allocations matching the filter.
func (s *Store) Allocs(f AllocFilter) []*api.Allocation {
	out := s.AllocsUnsorted(f)
	sortAllocs(out)
	return out
}

// AllocsUnsorted returns the allocations that match f in no order: for
// counting, on hot paths (every job's summary in a job list).
func (s *Store) AllocsUnsorted(f AllocFilter) []*api.Allocation {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var src map[string]*api.Allocation
	switch {
	case f.NodeID != "":
		src = s.allocsByNode[f.NodeID]
	case f.Job != "":
		src = s.allocsByJob[api.JobKey(f.Namespace, f.Job)]
	default:
		src = s.allocs
	}
	out := make([]*api.Allocation, 0, len(src))
	for _, a := range src {
		if f.matches(a) {
			out = append(out, a)
		}
	}
	return out
}

// AllocFilter selects allocations; empty fields match everything.
type AllocFilter struct {
	Namespace string
	Job       string
	NodeID    string
	Live      bool // only allocations that are not client-terminal
}

func (f AllocFilter) matches(a *api.Allocation) bool {
	return (f.Namespace == "" || a.Namespace == f.Namespace) &&
		(f.Job == "" || a.Job == f.Job) &&
		(f.NodeID == "" || a.NodeID == f.NodeID) &&
		(!f.Live || !a.Terminal())
}

func sortAllocs(as []*api.Allocation) {
	sort.Slice(as, func(i, j int) bool {
		a, b := as[i], as[j]
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		if a.Job != b.Job {
			return a.Job < b.Job
		}
		if a.Group != b.Group {
			return a.Group < b.Group
		}
		if a.Index != b.Index {
			return a.Index < b.Index
		}
		return a.CreateTime.Before(b.CreateTime)
	})
}

// desiredChanged reports whether the servers changed what an agent must
// act on: desired status, job version, node, or the allocation was lost.
func desiredChanged(old, cur *api.Allocation) bool {
	return old.DesiredStatus != cur.DesiredStatus || old.JobVersion != cur.JobVersion || old.NodeID != cur.NodeID ||
		(old.ClientStatus != cur.ClientStatus && cur.ClientStatus == api.AllocLost)
}

func (s *Store) nodeChangedLocked(node string, rev int64) {
	s.nodeIndex[node] = rev
	if ch := s.nodeWait[node]; ch != nil {
		close(ch)
		delete(s.nodeWait, node)
	}
}

// NodeAllocsSince is an agent's blocking query: the node's allocations the
// servers changed after index (all of them when index is 0), the node's
// index, and a channel closed at the node's next change. Only the node's
// own waiters wake.
//
// ids, the IDs of every allocation the node has, is nil unless one may
// have left the node after index (or index is 0, or older than what this
// view knows): a node with a hundred allocations placed one plan at a
// time would otherwise be sent every ID again on each of them.
func (s *Store) NodeAllocsSince(nodeID string, index int64) (changed []*api.Allocation, ids []string, idx int64, wait <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// allocDesired holds the same allocations as allocsByNode: walking
	// it reads each one's revision without a lookup, which at a hundred
	// allocations a node was most of an answer's cost (each lookup
	// compares an ID that lives elsewhere in memory).
	src, desired := s.allocsByNode[nodeID], s.allocDesired[nodeID]
	withIDs := index == 0 || index < s.loadRev || s.nodeRemoved[nodeID] > index
	if withIDs {
		ids = make([]string, 0, len(desired))
	}
	for id, rev := range desired {
		if withIDs {
			ids = append(ids, id)
		}
		if index == 0 || rev > index {
			if a := src[id]; a != nil {
				changed = append(changed, a)
			}
		}
	}
	sort.Strings(ids)
	sortAllocs(changed)
	ch := s.nodeWait[nodeID]
	if ch == nil {
		ch = make(chan struct{})
		s.nodeWait[nodeID] = ch
	}
	return changed, ids, s.nodeIndex[nodeID], ch
}

// NodeWait is the node's index (the revision at which the servers last
// changed any of its allocations) and a channel closed at its next
// change: NodeAllocsSince without the allocations, for a stream that only
// needs to know when to read them.
func (s *Store) NodeWait(nodeID string) (idx int64, wait <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := s.nodeWait[nodeID]
	if ch == nil {
		ch = make(chan struct{})
		s.nodeWait[nodeID] = ch
	}
	return s.nodeIndex[nodeID], ch
}

// NodeAllocsUnsorted returns a node's allocations in no order (for
// checks that do not need one, on hot paths).
func (s *Store) NodeAllocsUnsorted(nodeID string) []*api.Allocation {
	s.mu.RLock()
	defer s.mu.RUnlock()
	src := s.allocsByNode[nodeID]
	out := make([]*api.Allocation, 0, len(src))
	for _, a := range src {
		out = append(out, a)
	}
	return out
}

// useLocked is the node's summed usage, created empty.
func (s *Store) useLocked(node string) *api.Usage {
	u := s.nodeUse[node]
	if u == nil {
		u = &api.Usage{}
		s.nodeUse[node] = u
	}
	return u
}

// jobTally is what the store keeps per job as its allocations change:
// their count and the sum of their progress hashes (the signature), and
// the counts a job's summary shows.
type jobTally struct {
	n    int
	sum  uint64
	live int
	// groups counts the allocations desired running, by group; Desired
	// is not used.
	groups map[string]*api.GroupSummary
}

// tallyLocked counts a in (sign 1) or out (-1) of its job's tally.
func (s *Store) tallyLocked(a *api.Allocation, sign int) {
	k := a.JobKey()
	t := s.jobTally[k]
	if t == nil {
		t = &jobTally{groups: map[string]*api.GroupSummary{}}
		s.jobTally[k] = t
	}
	t.n += sign
	t.sum += uint64(sign) * a.ProgressHash()
	if !a.ClientTerminal() {
		t.live += sign
	}
	if a.DesiredStatus == api.AllocDesiredRun {
		g := t.groups[a.Group]
		if g == nil {
			g = &api.GroupSummary{}
			t.groups[a.Group] = g
		}
		switch a.ClientStatus {
		case api.AllocPending:
			g.Pending += sign
		case api.AllocRunning:
			g.Running += sign
		case api.AllocComplete:
			g.Complete += sign
		case api.AllocFailed:
			g.Failed += sign
		case api.AllocLost:
			g.Lost += sign
		}
		if a.Health == api.HealthHealthy && a.ClientStatus == api.AllocRunning {
			g.Healthy += sign
		}
	}
	if t.n == 0 {
		delete(s.jobTally, k)
	}
}

// JobSignature is the signature of the job's allocations, what a
// deployment's progress depends on (deploywatch.Signature of them, kept
// as they change instead of computed from them): 0 when it has none.
func (s *Store) JobSignature(namespace, job string) uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	t := s.jobTally[api.JobKey(namespace, job)]
	if t == nil {
		return 0
	}
	return uint64(t.n) + t.sum
}

// JobCounts is a job's allocations counted, as the store keeps them.
type JobCounts struct {
	// Live counts those not client-terminal.
	Live int
	// Groups counts those desired running, by group, by client status
	// and health (Desired is left 0).
	Groups map[string]api.GroupSummary
}

// JobCounts counts the job's allocations without reading them: what a
// job's summary shows, at the cost of its number of groups.
func (s *Store) JobCounts(namespace, job string) JobCounts {
	s.mu.RLock()
	defer s.mu.RUnlock()
	t := s.jobTally[api.JobKey(namespace, job)]
	if t == nil {
		return JobCounts{}
	}
	out := JobCounts{Live: t.live, Groups: make(map[string]api.GroupSummary, len(t.groups))}
	for name, g := range t.groups {
		out.Groups[name] = *g
	}
	return out
}

// NodeCheck is what the leader's plan re-check reads of one node.
type NodeCheck struct {
	// Node is the node's record; nil when the node is gone.
	Node *api.Node
	// PlanIndex is the revision of the node's last plan (NodePlanIndex).
	PlanIndex int64
	// Usage is what the node's live (not client-terminal) allocations
	// take, summed as they change, plus each of the node's extra
	// allocations the view does not hold yet (by ID).
	Usage api.Usage
}

// NodeChecks reads each node's record, plan revision and usage under one
// lock: the re-check of one plan reads a thousand nodes, and taking the
// lock for each kept it waiting behind the view's writer again and
// again. extra (may be nil) names a node's allocations the reader
// committed and the view may not hold yet (the leader's own); an
// allocation arriving meanwhile counts once.
func (s *Store) NodeChecks(ids []string, extra func(node string) []*api.Allocation) []NodeCheck {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]NodeCheck, len(ids))
	for i, id := range ids {
		c := &out[i]
		c.Node, c.PlanIndex = s.nodes[id], s.nodePlan[id]
		if p := s.nodeUse[id]; p != nil {
			c.Usage = *p
		}
		if extra == nil {
			continue
		}
		for _, a := range extra(id) {
			if _, ok := s.allocs[a.ID]; !ok && !a.Terminal() {
				c.Usage.Add(a, 1)
			}
		}
	}
	return out
}

// NodeAllocs returns a node's allocations and the revision at which the
// servers last changed any of them.
func (s *Store) NodeAllocs(nodeID string) ([]*api.Allocation, int64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	src := s.allocsByNode[nodeID]
	out := make([]*api.Allocation, 0, len(src))
	for _, a := range src {
		out = append(out, a)
	}
	sortAllocs(out)
	return out, s.nodeIndex[nodeID]
}

// Eval returns an evaluation by ID.
func (s *Store) Eval(id string) (*api.Evaluation, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e, ok := s.evals[id]
	return e, ok
}

// Evals lists evaluations of one job ("" for all jobs), oldest first.
func (s *Store) Evals(namespace, job string) []*api.Evaluation {
	s.mu.RLock()
	src := s.evals
	if job != "" {
		src = s.evalsByJob[api.JobKey(namespace, job)]
	}
	out := make([]*api.Evaluation, 0, len(src))
	for _, e := range src {
		out = append(out, e)
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ModifyIndex < out[j].ModifyIndex })
	return out
}

// ReadyEvals counts the pending evaluations due at now: the ones ready to
// run, and the one running, which stays pending until it finishes.
// Blocked evaluations and delayed ones (WaitUntil after now) do not count.
func (s *Store) ReadyEvals(now time.Time) int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := 0
	for _, e := range s.evals {
		if e.Status == api.EvalPending && !e.WaitUntil.After(now) {
			n++
		}
	}
	return n
}

// Node returns a node by ID.
func (s *Store) Node(id string) (*api.Node, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n, ok := s.nodes[id]
	return n, ok
}

// Nodes lists every node, sorted by name.
func (s *Store) Nodes() []*api.Node {
	s.mu.RLock()
	out := make([]*api.Node, 0, len(s.nodes))
	for _, n := range s.nodes {
		out = append(out, n)
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// Alive reports whether the node's heartbeat lease is held.
func (s *Store) Alive(nodeID string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.alive[nodeID]
}

// Queues lists queues sorted by name.
func (s *Store) Queues() []*api.Queue {
	s.mu.RLock()
	out := make([]*api.Queue, 0, len(s.queues))
	for _, q := range s.queues {
		out = append(out, q)
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// NodePlanIndex is the revision guarding placements on a node (0 when
// nothing was ever placed there).
func (s *Store) NodePlanIndex(nodeID string) int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.nodePlan[nodeID]
}

// Snapshot is a consistent read of everything the scheduler needs, at one
// revision.
type Snapshot struct {
	Index    int64
	Nodes    []*api.Node
	Allocs   []*api.Allocation // allocations that still hold resources
	Queues   []*api.Queue
	NodePlan map[string]int64 // node id → revision guarding placements on it
}

// Snapshot returns the scheduler's view of the cluster.
func (s *Store) Snapshot() *Snapshot {
	s.mu.RLock()
	defer s.mu.RUnlock()
	snap := &Snapshot{Index: s.rev, NodePlan: make(map[string]int64, len(s.nodePlan))}
	for _, n := range s.nodes {
		snap.Nodes = append(snap.Nodes, n)
	}
	sort.Slice(snap.Nodes, func(i, j int) bool { return snap.Nodes[i].ID < snap.Nodes[j].ID })
	for _, a := range s.allocs {
		if !a.Terminal() {
			snap.Allocs = append(snap.Allocs, a)
		}
	}
	sort.Slice(snap.Allocs, func(i, j int) bool { return snap.Allocs[i].ID < snap.Allocs[j].ID })
	for _, q := range s.queues {
		snap.Queues = append(snap.Queues, q)
	}
	for k, v := range s.nodePlan {
		snap.NodePlan[k] = v
	}
	return snap
}
