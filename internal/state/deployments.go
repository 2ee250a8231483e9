package state

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"

	"github.com/gantryhq/gantry/internal/api"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func (k keys) deployment(id string) string { return k.prefix + kindDeployment + "/" + id }

// applyDeploymentLocked folds one deployment key into the view.
func (s *Store) applyDeploymentLocked(kv *mvccpb.KeyValue, id string, deleted bool) {
	if deleted {
		delete(s.deployments, id)
		return
	}
	var d api.Deployment
	if s.decode(kv, &d) {
		d.ModifyIndex = kv.ModRevision
		s.deployments[id] = &d
	}
}

// Deployment returns a deployment by ID.
func (s *Store) Deployment(id string) (*api.Deployment, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	d, ok := s.deployments[id]
	return d, ok
}

// Deployments lists the deployments of one job (job "" for every job of
// the namespace, namespace "" for all), newest first: by job version, then
// creation.
func (s *Store) Deployments(namespace, job string) []*api.Deployment {
	s.mu.RLock()
	var out []*api.Deployment
	for _, d := range s.deployments {
		if (namespace == "" || d.Namespace == namespace) && (job == "" || d.Job == job) {
			out = append(out, d)
		}
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.JobKey() != b.JobKey() {
			return a.JobKey() < b.JobKey()
		}
		if a.JobVersion != b.JobVersion {
			return a.JobVersion > b.JobVersion
		}
		if !a.CreateTime.Equal(b.CreateTime) {
			return a.CreateTime.After(b.CreateTime)
		}
		return a.ModifyIndex > b.ModifyIndex
	})
	return out
}

// OpenDeployments lists the deployments that still need the leader: those
// running, and failed ones whose rollback was not acted on yet. Unsorted.
func (s *Store) OpenDeployments() []*api.Deployment {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []*api.Deployment
	for _, d := range s.deployments {
		if d.Active() || d.Status == api.DeploymentFailed && d.RevertTo != nil && d.RevertedAs == nil {
			out = append(out, d)
		}
	}
	return out
}

// LatestDeployment returns the newest deployment of a job, if any.
func (s *Store) LatestDeployment(namespace, job string) (*api.Deployment, bool) {
	ds := s.Deployments(namespace, job)
	if len(ds) == 0 {
		return nil, false
	}
	return ds[0], true
}

// deploymentOps adds the compares and writes of deployments to a
// transaction: a new deployment (ModifyIndex 0) must not exist yet, a
// changed one must be as it was read.
func (s *Store) deploymentOps(ds []*api.Deployment, cmps []clientv3.Cmp, ops []clientv3.Op) ([]clientv3.Cmp, []clientv3.Op) {
	for _, d := range ds {
		k := s.keys.deployment(d.ID)
		if d.ModifyIndex == 0 {
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(k), "=", 0))
		} else {
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", d.ModifyIndex))
		}
		ops = append(ops, clientv3.OpPut(k, encode(d)))
	}
	return cmps, ops
}

// UpdateDeployment changes a deployment with fn under compare-and-swap and
// stores evals in the same transaction. fn may return an error to abort.
func (s *Store) UpdateDeployment(ctx context.Context, fence *Fence, id string, fn func(d *api.Deployment) error, evals ...*api.Evaluation) (*api.Deployment, int64, error) {
	key := s.keys.deployment(id)
	for range maxRetries {
		resp, err := s.cli.Get(ctx, key)
		if err != nil {
			return nil, 0, fmt.Errorf("read deployment %s: %w", id, err)
		}
		if len(resp.Kvs) == 0 {
			return nil, 0, fmt.Errorf("deployment %s: %w", id, ErrNotFound)
		}
		var d api.Deployment
		if err := json.Unmarshal(resp.Kvs[0].Value, &d); err != nil {
			return nil, 0, fmt.Errorf("decode deployment %s: %w", id, err)
		}
		if err := fn(&d); err != nil {
			return nil, 0, err
		}
		cmps := append(fence.cmps(), clientv3.Compare(clientv3.ModRevision(key), "=", resp.Kvs[0].ModRevision))
		ops := []clientv3.Op{clientv3.OpPut(key, encode(&d))}
		for _, e := range evals {
			ops = append(ops, clientv3.OpPut(s.keys.eval(e.ID), encode(e)))
		}
		tr, err := s.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
		if err != nil {
			return nil, 0, fmt.Errorf("update deployment %s: %w", id, err)
		}
		if tr.Succeeded {
			d.ModifyIndex = tr.Header.Revision
			return &d, tr.Header.Revision, nil
		}
		if fence != nil {
			if r, err := s.cli.Get(ctx, fence.Key); err == nil && (len(r.Kvs) == 0 || r.Kvs[0].CreateRevision != fence.Rev) {
				return nil, 0, ErrNotLeader
			}
		}
	}
	return nil, 0, fmt.Errorf("deployment %s: %w after %d attempts", id, ErrConflict, maxRetries)
}

// DeleteDeployments removes deployments (garbage collection), fenced like
// DeleteEvals.
func (s *Store) DeleteDeployments(ctx context.Context, fence *Fence, ids []string) error {
	return s.deleteFenced(ctx, fence, "deployments", ids, s.keys.deployment)
}
