package state

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/lifecycle"
	"github.com/gantryhq/gantry/internal/state/codec"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// maxRetries bounds compare-and-swap loops on contended keys.
const maxRetries = 20

func encode(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		// Only api types are stored; they always encode.
		panic(fmt.Sprintf("encode %T: %v", v, err))
	}
	return string(b)
}

// Fence makes a write conditional on the writer still holding leadership:
// the leader key must still exist with the creation revision the writer
// won the election with.
type Fence struct {
	Key string
	Rev int64
}

func (f *Fence) cmps() []clientv3.Cmp {
	if f == nil {
		return nil
	}
	return []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(f.Key), "=", f.Rev)}
}

// ErrNotLeader is returned when a fenced write finds that leadership moved.
var ErrNotLeader = errors.New("this server is no longer the leader")

// specOf is the user-submitted part of a job, used to tell whether a
// registration changes anything.
func specOf(j *api.Job) []byte {
	c := *j
	c.Version, c.Stop, c.Status, c.SubmitTime, c.ModifyIndex = 0, false, "", time.Time{}, 0
	return []byte(encode(&c))
}

// SpecEqual reports whether two jobs have the same user-submitted spec.
func SpecEqual(a, b *api.Job) bool { return bytes.Equal(specOf(a), specOf(b)) }

// RegisterResult says what a registration did.
type RegisterResult struct {
	Job     *api.Job
	Eval    *api.Evaluation
	Changed bool // a new version was written
	Index   int64
}

// RegisterJob stores job as a new version unless its spec equals the
// current one (and the job is not stopped), and creates an evaluation for
// it, all in one transaction.
func (s *Store) RegisterJob(ctx context.Context, job *api.Job, eval *api.Evaluation, now time.Time) (*RegisterResult, error) {
	return s.registerJob(ctx, nil, job, eval, now)
}

// RegisterJobFenced is RegisterJob for the leader's own registrations (a
// deployment's automatic rollback): the write also needs the fence, and
// ErrNotLeader says that leadership moved.
func (s *Store) RegisterJobFenced(ctx context.Context, fence *Fence, job *api.Job, eval *api.Evaluation, now time.Time) (*RegisterResult, error) {
	if fence == nil {
		return nil, fmt.Errorf("register job %s: a fenced registration needs the leader's fence", job.Key())
	}
	return s.registerJob(ctx, fence, job, eval, now)
}

func (s *Store) registerJob(ctx context.Context, fence *Fence, job *api.Job, eval *api.Evaluation, now time.Time) (*RegisterResult, error) {
	key := s.keys.job(job.Namespace, job.Name)
	for range maxRetries {
		resp, err := s.cli.Get(ctx, key)
		if err != nil {
			return nil, fmt.Errorf("read job %s: %w", job.Key(), err)
		}
		nj := *job
		nj.Stop = false
		nj.SubmitTime = now
		cmp := clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
		changed := true
		if len(resp.Kvs) == 1 {
			var cur api.Job
			if err := json.Unmarshal(resp.Kvs[0].Value, &cur); err != nil {
				return nil, fmt.Errorf("decode job %s: %w", job.Key(), err)
			}
			cmp = clientv3.Compare(clientv3.ModRevision(key), "=", resp.Kvs[0].ModRevision)
			if !cur.Stop && SpecEqual(&cur, job) {
				changed = false
				nj = cur
			} else {
				nj.Version = cur.Version + 1
			}
		}
		ev := *eval
		ev.JobVersion = nj.Version
		ev.Priority = nj.Priority
		ops := []clientv3.Op{clientv3.OpPut(s.keys.eval(ev.ID), encode(&ev))}
		if changed {
			ops = append(ops,
				clientv3.OpPut(key, encode(&nj)),
				clientv3.OpPut(s.keys.jobVersion(nj.Namespace, nj.Name, nj.Version), encode(&nj)))
		}
		tr, err := s.cli.Txn(ctx).If(append(fence.cmps(), cmp)...).Then(ops...).Commit()
		if err != nil {
			return nil, fmt.Errorf("register job %s: %w", job.Key(), err)
		}
		if tr.Succeeded {
			return &RegisterResult{Job: &nj, Eval: &ev, Changed: changed, Index: tr.Header.Revision}, nil
		}
		if fence != nil {
			// The job changed meanwhile, or the fence no longer holds.
			fr, err := s.cli.Get(ctx, fence.Key)
			if err != nil {
				return nil, fmt.Errorf("register job %s: read the leader key: %w", job.Key(), err)
			}
			if len(fr.Kvs) != 1 || fr.Kvs[0].CreateRevision != fence.Rev {
				return nil, ErrNotLeader
			}
		}
	}
	return nil, fmt.Errorf("register job %s: %w after %d attempts", job.Key(), ErrConflict, maxRetries)
}

// StopJob marks a job stopped and creates an evaluation that stops its
// allocations.
func (s *Store) StopJob(ctx context.Context, namespace, name string, eval *api.Evaluation) (*api.Job, int64, error) {
	key := s.keys.job(namespace, name)
	var out *api.Job
	rev, err := s.cas(ctx, key, func(cur []byte) (string, []clientv3.Op, error) {
		if cur == nil {
			return "", nil, fmt.Errorf("job %s: %w", api.JobKey(namespace, name), ErrNotFound)
		}
		var j api.Job
		if err := json.Unmarshal(cur, &j); err != nil {
			return "", nil, err
		}
		j.Stop = true
		ev := *eval
		ev.JobVersion, ev.Priority = j.Version, j.Priority
		out = &j
		return encode(&j), []clientv3.Op{clientv3.OpPut(s.keys.eval(ev.ID), encode(&ev))}, nil
	})
	return out, rev, err
}

// JobVersions returns every stored version of a job, newest first.
func (s *Store) JobVersions(ctx context.Context, namespace, name string) ([]*api.Job, error) {
	resp, err := s.cli.Get(ctx, s.keys.jobVersions(namespace, name), clientv3.WithPrefix(),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend))
	if err != nil {
		return nil, fmt.Errorf("read versions of job %s: %w", api.JobKey(namespace, name), err)
	}
	out := make([]*api.Job, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var j api.Job
		if err := json.Unmarshal(kv.Value, &j); err != nil {
			return nil, fmt.Errorf("decode %s: %w", kv.Key, err)
		}
		out = append(out, &j)
	}
	return out, nil
}

// JobVersion returns one stored version of a job. Versions never change
// once written, so they are kept in memory after the first read (agents
// read the version of every allocation they run).
func (s *Store) JobVersion(ctx context.Context, namespace, name string, v uint64) (*api.Job, error) {
	key := s.keys.jobVersion(namespace, name, v)
	s.versionsMu.Lock()
	j, ok := s.versions[key]
	s.versionsMu.Unlock()
	if ok {
		return j, nil
	}
	resp, err := s.cli.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("read version %d of job %s: %w", v, api.JobKey(namespace, name), err)
	}
	if len(resp.Kvs) == 0 {
		return nil, fmt.Errorf("version %d of job %s: %w", v, api.JobKey(namespace, name), ErrNotFound)
	}
	j = &api.Job{}
	if err := json.Unmarshal(resp.Kvs[0].Value, j); err != nil {
		return nil, err
	}
	s.versionsMu.Lock()
	if s.versions == nil || len(s.versions) >= maxCachedVersions {
		s.versions = map[string]*api.Job{}
	}
	s.versions[key] = j
	s.versionsMu.Unlock()
	return j, nil
}

// maxCachedVersions bounds the job versions kept in memory.
const maxCachedVersions = 10000

// CreateEvals stores new evaluations.
func (s *Store) CreateEvals(ctx context.Context, fence *Fence, evals ...*api.Evaluation) error {
	if len(evals) == 0 {
		return nil
	}
	ops := make([]clientv3.Op, 0, len(evals))
	for _, e := range evals {
		ops = append(ops, clientv3.OpPut(s.keys.eval(e.ID), encode(e)))
	}
	tr, err := s.cli.Txn(ctx).If(fence.cmps()...).Then(ops...).Commit()
	if err != nil {
		return fmt.Errorf("create evaluations: %w", err)
	}
	if !tr.Succeeded {
		return ErrNotLeader
	}
	return nil
}

// PlanCommit is one atomic step of applying a plan.
type PlanCommit struct {
	Fence *Fence
	// Eval is written with its new status; ModifyIndex is compared so an
	// evaluation is never applied twice. Nil leaves the evaluation alone.
	Eval *api.Evaluation
	// Place are new allocations.
	Place []*api.Allocation
	// Update are changed allocations (stops, lost); each one's ModifyIndex
	// is compared.
	Update []*api.Allocation
	// NodeGuards are the nodeplan revisions the plan was checked against,
	// for every node that receives a placement.
	NodeGuards map[string]int64
	// FollowUps are evaluations created with the plan.
	FollowUps []*api.Evaluation
	// Deployments are written with the plan: new ones (ModifyIndex 0) must
	// not exist yet, changed ones must not have changed since read.
	Deployments []*api.Deployment
	// Defrag, when set, is a GPU defragmentation record (what
	// PutDefragRecord writes) committed with the plan, so that a move's
	// step and its record are one write: a leader deposed between the two
	// can leave neither a step without its event nor an event without its
	// step.
	Defrag *api.DefragRecord
}

// ApplyPlan commits a plan step in one transaction. It fails with
// ErrConflict when any allocation, node or the evaluation changed since
// the plan was made, and with ErrNotLeader when the fence no longer holds.
func (s *Store) ApplyPlan(ctx context.Context, p *PlanCommit) (int64, error) {
	cmps := p.Fence.cmps()
	var ops []clientv3.Op
	if p.Eval != nil {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(s.keys.eval(p.Eval.ID)), "=", p.Eval.ModifyIndex))
		ops = append(ops, clientv3.OpPut(s.keys.eval(p.Eval.ID), encode(p.Eval)))
	}
	for node, rev := range p.NodeGuards {
		k := s.keys.nodePlan(node)
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", rev))
		ops = append(ops, clientv3.OpPut(k, ""))
	}
	for _, a := range p.Place {
		k := s.keys.alloc(a.ID)
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(k), "=", 0))
		ops = append(ops, clientv3.OpPut(k, s.encodeAlloc(a)))
	}
	for _, a := range p.Update {
		k := s.keys.alloc(a.ID)
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", a.ModifyIndex))
		ops = append(ops, clientv3.OpPut(k, s.encodeAlloc(a)))
	}
	for _, e := range p.FollowUps {
		ops = append(ops, clientv3.OpPut(s.keys.eval(e.ID), encode(e)))
	}
	cmps, ops = s.deploymentOps(p.Deployments, cmps, ops)
	if p.Defrag != nil {
		op, err := s.defragOp(p.Defrag)
		if err != nil {
			return 0, fmt.Errorf("apply plan: %w", err)
		}
		ops = append(ops, op)
	}
	if len(ops) == 0 {
		return s.Index(), nil
	}
	tr, err := s.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return 0, fmt.Errorf("apply plan: %w", err)
	}
	if !tr.Succeeded {
		if p.Fence != nil {
			if r, err := s.cli.Get(ctx, p.Fence.Key); err == nil && (len(r.Kvs) == 0 || r.Kvs[0].CreateRevision != p.Fence.Rev) {
				return 0, ErrNotLeader
			}
		}
		return 0, ErrConflict
	}
	return tr.Header.Revision, nil
}

// UpdateEval writes an evaluation's new status if it has not changed since
// it was read (its ModifyIndex).
func (s *Store) UpdateEval(ctx context.Context, fence *Fence, e *api.Evaluation) error {
	_, err := s.ApplyPlan(ctx, &PlanCommit{Fence: fence, Eval: e})
	return err
}

// DeleteEvals removes evaluations (garbage collection). Only a leader
// deletes: fence is required, and a deposed leader's delete fails with
// ErrNotLeader.
func (s *Store) DeleteEvals(ctx context.Context, fence *Fence, ids []string) error {
	return s.deleteFenced(ctx, fence, "evaluations", ids, s.keys.eval)
}

// DeleteAllocs removes allocations (garbage collection of terminal ones),
// fenced like DeleteEvals.
func (s *Store) DeleteAllocs(ctx context.Context, fence *Fence, ids []string) error {
	return s.deleteFenced(ctx, fence, "allocations", ids, s.keys.alloc)
}

// gcBatch is how many keys one garbage-collection transaction deletes.
const gcBatch = 100

// deleteFenced deletes the keys of ids in transactions of gcBatch, each
// conditional on fence. A batch that commits stays deleted when a later
// one finds leadership gone: garbage collection is idempotent.
func (s *Store) deleteFenced(ctx context.Context, fence *Fence, what string, ids []string, key func(string) string) error {
	if fence == nil {
		return fmt.Errorf("delete %s: only the leader collects garbage, and no leader fence was given", what)
	}
	for len(ids) > 0 {
		n := min(len(ids), gcBatch)
		ops := make([]clientv3.Op, 0, n)
		for _, id := range ids[:n] {
			ops = append(ops, clientv3.OpDelete(key(id)))
		}
		tr, err := s.cli.Txn(ctx).If(fence.cmps()...).Then(ops...).Commit()
		if err != nil {
			return fmt.Errorf("delete %s: %w", what, err)
		}
		if !tr.Succeeded {
			return fmt.Errorf("delete %s: %w", what, ErrNotLeader)
		}
		ids = ids[n:]
	}
	return nil
}

// UpdateAllocsFromClient merges agent reports into allocations of nodeID.
// An allocation that becomes failed, complete or lost gets an evaluation
// of its job (made by newEval) in the same transaction. Reports for
// allocations that are gone or belong to another node are ignored.
func (s *Store) UpdateAllocsFromClient(ctx context.Context, nodeID string, updates []api.AllocUpdate, now time.Time, newEval func(a *api.Allocation) *api.Evaluation) error {
	reports := make([]NodeReport, len(updates))
	for i, u := range updates {
		reports[i] = NodeReport{NodeID: nodeID, Update: u}
	}
	return s.UpdateAllocsFromClients(ctx, reports, now, newEval)
}

// NodeReport is one agent's report about one of its allocations.
type NodeReport struct {
	NodeID string
	Update api.AllocUpdate
}

// ClientBatch is how many reports one transaction carries.
const ClientBatch = 100

// UpdateAllocsFromClients merges many agents' reports. Each batch commits
// in two round trips (read all, write all guarded by their revisions); a
// batch that meets a concurrent change falls back to one compare-and-swap
// per allocation.
func (s *Store) UpdateAllocsFromClients(ctx context.Context, reports []NodeReport, now time.Time, newEval func(a *api.Allocation) *api.Evaluation) error {
	for len(reports) > 0 {
		n := min(len(reports), ClientBatch)
		err := s.clientBatchCached(ctx, reports[:n], now, newEval)
		if errors.Is(err, ErrConflict) {
			err = s.clientBatch(ctx, reports[:n], now, newEval)
		}
		if err != nil {
			if !errors.Is(err, ErrConflict) {
				return err
			}
			for _, r := range reports[:n] {
				_, err := s.cas(ctx, s.keys.alloc(r.Update.ID), func(cur []byte) (string, []clientv3.Op, error) {
					return mergeClientUpdate(s, cur, r.NodeID, r.Update, now, newEval)
				})
				if err != nil && !errors.Is(err, errSkip) {
					return fmt.Errorf("update allocation %s: %w", r.Update.ID, err)
				}
			}
		}
		reports = reports[n:]
	}
	return nil
}

// clientBatchCached commits a batch of reports against the allocations
// as this server's view holds them, without reading them back from etcd:
// each write is guarded by the revision the view saw, so a view that
// lags fails the whole transaction (ErrConflict) and the caller retries
// from etcd. A report for an allocation the view does not hold yet is
// such a conflict too, and so is an ending that needs an evaluation: that
// is decided once, from etcd.
func (s *Store) clientBatchCached(ctx context.Context, reports []NodeReport, now time.Time, newEval func(a *api.Allocation) *api.Evaluation) error {
	last := make(map[string]int, len(reports))
	for i, r := range reports {
		last[r.Update.ID] = i
	}
	curs := make([]api.Allocation, len(reports))
	s.mu.RLock()
	for i, r := range reports {
		if last[r.Update.ID] != i {
			continue
		}
		a := s.allocs[r.Update.ID]
		if a == nil {
			s.mu.RUnlock()
			return ErrConflict
		}
		curs[i] = *a
	}
	s.mu.RUnlock()
	var cmps []clientv3.Cmp
	var ops []clientv3.Op
	for i, r := range reports {
		if last[r.Update.ID] != i {
			continue
		}
		a := &curs[i]
		rev := a.ModifyIndex
		if newEval != nil && a.DesiredStatus == api.AllocDesiredRun && !a.ClientTerminal() &&
			(r.Update.ClientStatus == api.AllocComplete || r.Update.ClientStatus == api.AllocFailed) {
			// An ending that needs an evaluation is made once, against
			// the allocation as etcd holds it.
			return ErrConflict
		}
		extra, err := mergeReport(s, a, r.NodeID, r.Update, now, newEval)
		if errors.Is(err, errSkip) {
			continue
		}
		if err != nil {
			return err
		}
		key := s.keys.alloc(r.Update.ID)
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(key), "=", rev))
		ops = append(append(ops, clientv3.OpPut(key, s.encodeAlloc(a))), extra...)
	}
	return s.commitReports(ctx, cmps, ops)
}

// commitReports writes merged reports if none of the guarded allocations
// changed meanwhile (ErrConflict otherwise).
func (s *Store) commitReports(ctx context.Context, cmps []clientv3.Cmp, ops []clientv3.Op) error {
	if len(ops) == 0 {
		return nil
	}
	tr, err := s.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return fmt.Errorf("update allocations: %w", err)
	}
	if !tr.Succeeded {
		return ErrConflict
	}
	return nil
}

func (s *Store) clientBatch(ctx context.Context, reports []NodeReport, now time.Time, newEval func(a *api.Allocation) *api.Evaluation) error {
	// The same allocation twice in one batch: keep the later report.
	last := map[string]int{}
	for i, r := range reports {
		last[r.Update.ID] = i
	}
	var gets []clientv3.Op
	var idx []int
	for i, r := range reports {
		if last[r.Update.ID] == i {
			gets = append(gets, clientv3.OpGet(s.keys.alloc(r.Update.ID)))
			idx = append(idx, i)
		}
	}
	read, err := s.cli.Txn(ctx).Then(gets...).Commit()
	if err != nil {
		return fmt.Errorf("read allocations: %w", err)
	}
	var cmps []clientv3.Cmp
	var ops []clientv3.Op
	for j, i := range idx {
		r := reports[i]
		kvs := read.Responses[j].GetResponseRange().Kvs
		key := s.keys.alloc(r.Update.ID)
		var cur []byte
		var rev int64
		if len(kvs) == 1 {
			cur, rev = kvs[0].Value, kvs[0].ModRevision
		}
		val, extra, err := mergeClientUpdate(s, cur, r.NodeID, r.Update, now, newEval)
		if errors.Is(err, errSkip) {
			continue
		}
		if err != nil {
			return err
		}
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(key), "=", rev))
		ops = append(append(ops, clientv3.OpPut(key, val)), extra...)
	}
	return s.commitReports(ctx, cmps, ops)
}

// mergeClientUpdate folds an agent's report into the stored allocation.
// Reports for allocations that are gone, lost, or belong to another node,
// and reports the lifecycle table does not allow (a terminal allocation
// going back to running), are skipped (errSkip). An allocation that
// becomes terminal while the servers want it running gets an evaluation
// of its job.
func mergeClientUpdate(s *Store, cur []byte, nodeID string, u api.AllocUpdate, now time.Time, newEval func(a *api.Allocation) *api.Evaluation) (string, []clientv3.Op, error) {
	if cur == nil {
		return "", nil, errSkip
	}
	var a api.Allocation
	if err := codec.DecodeAllocation(cur, &a); err != nil {
		return "", nil, fmt.Errorf("read allocation %s: %w", u.ID, err)
	}
	extra, err := mergeReport(s, &a, nodeID, u, now, newEval)
	if err != nil {
		return "", nil, err
	}
	return s.encodeAlloc(&a), extra, nil
}

// mergeReport folds an agent's report into a (a copy the caller owns; its
// maps may be shared and are replaced, never written) and returns the
// extra operations the change needs.
func mergeReport(s *Store, a *api.Allocation, nodeID string, u api.AllocUpdate, now time.Time, newEval func(a *api.Allocation) *api.Evaluation) ([]clientv3.Op, error) {
	if a.NodeID != nodeID || a.ClientStatus == api.AllocLost {
		return nil, errSkip
	}
	// The lifecycle table decides which reports may change the status: a
	// late or reordered report never revives a terminal allocation.
	if !lifecycle.ClientAllowed(lifecycle.Of(a), u.ClientStatus) {
		return nil, errSkip
	}
	if a.ClientStatus == u.ClientStatus && a.ClientReason == u.ClientReason && a.Health == u.Health &&
		migRecorded(a, u.MIGInstances) && reflect.DeepEqual(a.TaskStates, u.TaskStates) {
		// The same report again (a node that resent it after a timeout,
		// or on a node stream that broke before its acknowledgement):
		// nothing to write.
		return nil, errSkip
	}
	wasTerminal := a.ClientTerminal()
	a.ClientStatus = u.ClientStatus
	a.ClientReason = u.ClientReason
	a.Health = u.Health
	a.TaskStates = u.TaskStates
	if len(u.MIGInstances) > 0 {
		a.Resources = maps.Clone(a.Resources)
	}
	for task, inst := range u.MIGInstances {
		if r := a.Resources[task]; r != nil && r.GPU != nil && r.GPU.MIG != nil {
			mig := *r.GPU.MIG
			mig.InstanceUUID, mig.Create = inst, false
			rc := *r
			g := *r.GPU
			g.MIG = &mig
			rc.GPU = &g
			a.Resources[task] = &rc
		}
	}
	a.ModifyTime = now
	var extra []clientv3.Op
	if !wasTerminal && a.ClientTerminal() && a.DesiredStatus == api.AllocDesiredRun && newEval != nil {
		if e := newEval(a); e != nil {
			extra = append(extra, clientv3.OpPut(s.keys.eval(e.ID), encode(e)))
		}
	}
	return extra, nil
}

// migRecorded reports whether every MIG instance a report names is the
// one the allocation records already (or names a task without a MIG
// assignment, which the merge ignores): such a report changes nothing.
func migRecorded(a *api.Allocation, instances map[string]string) bool {
	for task, inst := range instances {
		if r := a.Resources[task]; r != nil && r.GPU != nil && r.GPU.MIG != nil &&
			(r.GPU.MIG.InstanceUUID != inst || r.GPU.MIG.Create) {
			return false
		}
	}
	return true
}

var errSkip = errors.New("skip")

// cas runs a read-modify-write on one key until it commits without
// interference. fn gets the current value (nil when absent) and returns
// the new value and extra operations for the same transaction.
func (s *Store) cas(ctx context.Context, key string, fn func(cur []byte) (string, []clientv3.Op, error)) (int64, error) {
	for range maxRetries {
		resp, err := s.cli.Get(ctx, key)
		if err != nil {
			return 0, err
		}
		var cur []byte
		var rev int64
		if len(resp.Kvs) == 1 {
			cur, rev = resp.Kvs[0].Value, resp.Kvs[0].ModRevision
		}
		val, extra, err := fn(cur)
		if err != nil {
			return 0, err
		}
		ops := append([]clientv3.Op{clientv3.OpPut(key, val)}, extra...)
		tr, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).Then(ops...).Commit()
		if err != nil {
			return 0, err
		}
		if tr.Succeeded {
			return tr.Header.Revision, nil
		}
	}
	return 0, fmt.Errorf("%s: %w after %d attempts", key, ErrConflict, maxRetries)
}

// RegisterNode stores a node's fingerprint, marks it ready and starts its
// heartbeat lease, which Heartbeat renews by the node's ID: the lease
// itself never leaves the store.
func (s *Store) RegisterNode(ctx context.Context, n *api.Node, ttl time.Duration, now time.Time) error {
	grant, err := s.cli.Grant(ctx, int64(max(ttl/time.Second, 2)))
	if err != nil {
		return fmt.Errorf("grant heartbeat lease for node %s: %w", n.Name, err)
	}
	lease := grant.ID
	key := s.keys.node(n.ID)
	_, err = s.cas(ctx, key, func(cur []byte) (string, []clientv3.Op, error) {
		nn := *n
		nn.RegisterTime = now
		nn.StatusChanged = now
		if cur != nil {
			var old api.Node
			if err := json.Unmarshal(cur, &old); err == nil {
				// Operator decisions survive re-registration.
				nn.RegisterTime = old.RegisterTime
				nn.Ineligible = old.Ineligible
				nn.Drain = old.Drain
				keepVSphereAttrs(&nn, &old)
				if old.Status == api.NodeStatusReady {
					nn.StatusChanged = old.StatusChanged
				}
			}
		}
		nn.Status = api.NodeStatusReady
		nn.StatusReason = ""
		nn.LastHeartbeat = now
		return encode(&nn), []clientv3.Op{clientv3.OpPut(s.keys.heartbeat(n.ID), "", clientv3.WithLease(lease))}, nil
	})
	if err != nil {
		s.cli.Revoke(ctx, lease)
		return fmt.Errorf("register node %s: %w", n.Name, err)
	}
	s.mu.Lock()
	s.leases[n.ID] = int64(lease)
	s.mu.Unlock()
	return nil
}

// ErrLeaseExpired is returned by Heartbeat when the node's lease is gone:
// the node must register again.
var ErrLeaseExpired = errors.New("heartbeat lease expired: register again")

// Heartbeat renews the lease of node id's latest registration. The view
// names the lease; where it does not know one yet (the node registered
// through another server a moment ago) or the one it knows is gone (the
// node registered again), the heartbeat key is read from etcd.
func (s *Store) Heartbeat(ctx context.Context, id string) error {
	s.mu.RLock()
	lease, ok := s.leases[id]
	s.mu.RUnlock()
	if ok {
		_, err := s.cli.KeepAliveOnce(ctx, clientv3.LeaseID(lease))
		if !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			return err
		}
	}
	resp, err := s.cli.Get(ctx, s.keys.heartbeat(id))
	if err != nil {
		return fmt.Errorf("read the heartbeat lease of node %s: %w", id, err)
	}
	if len(resp.Kvs) == 0 || resp.Kvs[0].Lease == 0 {
		return ErrLeaseExpired
	}
	_, err = s.cli.KeepAliveOnce(ctx, clientv3.LeaseID(resp.Kvs[0].Lease))
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return ErrLeaseExpired
	}
	return err
}

// UpdateNode changes a node with fn under compare-and-swap.
func (s *Store) UpdateNode(ctx context.Context, fence *Fence, id string, fn func(n *api.Node) error) (*api.Node, error) {
	key := s.keys.node(id)
	var out *api.Node
	for range maxRetries {
		resp, err := s.cli.Get(ctx, key)
		if err != nil {
			return nil, err
		}
		if len(resp.Kvs) == 0 {
			return nil, fmt.Errorf("node %s: %w", id, ErrNotFound)
		}
		var n api.Node
		if err := json.Unmarshal(resp.Kvs[0].Value, &n); err != nil {
			return nil, err
		}
		if err := fn(&n); err != nil {
			return nil, err
		}
		cmps := append(fence.cmps(), clientv3.Compare(clientv3.ModRevision(key), "=", resp.Kvs[0].ModRevision))
		tr, err := s.cli.Txn(ctx).If(cmps...).Then(clientv3.OpPut(key, encode(&n))).Commit()
		if err != nil {
			return nil, err
		}
		if tr.Succeeded {
			n.ModifyIndex = tr.Header.Revision
			out = &n
			return out, nil
		}
	}
	return nil, fmt.Errorf("node %s: %w", id, ErrConflict)
}

// LeaderPrefix is the election prefix for server leadership.
func (s *Store) LeaderPrefix() string { return s.keys.leader() }

// PutQueue creates or replaces a queue. When a queue already lists one of
// the namespaces, the caller's validation decides; the store only writes.
func (s *Store) PutQueue(ctx context.Context, q *api.Queue) (int64, error) {
	resp, err := s.cli.Put(ctx, s.keys.queue(q.Name), encode(q))
	if err != nil {
		return 0, fmt.Errorf("write queue %s: %w", q.Name, err)
	}
	return resp.Header.Revision, nil
}

// DeleteQueue removes a queue; its namespaces fall back to "default".
func (s *Store) DeleteQueue(ctx context.Context, name string) (int64, error) {
	resp, err := s.cli.Delete(ctx, s.keys.queue(name))
	if err != nil {
		return 0, fmt.Errorf("delete queue %s: %w", name, err)
	}
	if resp.Deleted == 0 {
		return 0, fmt.Errorf("queue %s: %w", name, ErrNotFound)
	}
	return resp.Header.Revision, nil
}
