package state

import (
	"context"
	"fmt"
	"sort"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Keys of the container isolation audit (see keys.go for the layout):
//
//	policy/admission   the admission policy document (JSON)
//	audit/<node id>    the latest audit report of a node (JSON)
//
// The state package stores them as opaque JSON: their shape belongs to
// internal/audit, and the server decodes them. Both are read from etcd
// directly rather than from the in-memory view: the policy is read once
// per job registration, the reports once per `gantry audit`.
const (
	kindPolicy = "policy"
	kindAudit  = "audit"
)

func (k keys) policy() string             { return k.prefix + kindPolicy + "/admission" }
func (k keys) audits() string             { return k.prefix + kindAudit + "/" }
func (k keys) audit(nodeID string) string { return k.audits() + nodeID }

// AdmissionPolicy returns the stored admission policy and the revision
// that last changed it; data is nil when no policy was ever applied (or it
// was deleted), and the caller's default applies.
func (s *Store) AdmissionPolicy(ctx context.Context) (data []byte, rev int64, err error) {
	resp, err := s.cli.Get(ctx, s.keys.policy())
	if err != nil {
		return nil, 0, fmt.Errorf("read the admission policy: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, resp.Header.Revision, nil
	}
	return resp.Kvs[0].Value, resp.Kvs[0].ModRevision, nil
}

// PutAdmissionPolicy replaces the admission policy and returns the
// revision of the change. The caller validates data.
func (s *Store) PutAdmissionPolicy(ctx context.Context, data []byte) (int64, error) {
	resp, err := s.cli.Put(ctx, s.keys.policy(), string(data))
	if err != nil {
		return 0, fmt.Errorf("store the admission policy: %w", err)
	}
	return resp.Header.Revision, nil
}

// DeleteAdmissionPolicy removes the applied policy, so the default applies
// again.
func (s *Store) DeleteAdmissionPolicy(ctx context.Context) (int64, error) {
	resp, err := s.cli.Delete(ctx, s.keys.policy())
	if err != nil {
		return 0, fmt.Errorf("delete the admission policy: %w", err)
	}
	return resp.Header.Revision, nil
}

// NodeAudit returns the latest audit report stored for a node, or nil.
func (s *Store) NodeAudit(ctx context.Context, nodeID string) ([]byte, error) {
	resp, err := s.cli.Get(ctx, s.keys.audit(nodeID))
	if err != nil {
		return nil, fmt.Errorf("read the audit of node %s: %w", nodeID, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	return resp.Kvs[0].Value, nil
}

// NodeAudits returns the latest audit report of every node that sent one,
// by node ID, in order of node ID.
func (s *Store) NodeAudits(ctx context.Context) (ids []string, reports [][]byte, err error) {
	resp, err := s.cli.Get(ctx, s.keys.audits(), clientv3.WithPrefix())
	if err != nil {
		return nil, nil, fmt.Errorf("read the audit reports: %w", err)
	}
	type kv struct {
		id   string
		data []byte
	}
	all := make([]kv, 0, len(resp.Kvs))
	for _, x := range resp.Kvs {
		_, id := s.keys.split(string(x.Key))
		all = append(all, kv{id, x.Value})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].id < all[j].id })
	for _, x := range all {
		ids, reports = append(ids, x.id), append(reports, x.data)
	}
	return ids, reports, nil
}

// PutNodeAudit stores a node's latest audit report; an event of topic
// "audit" carries it to the event stream.
func (s *Store) PutNodeAudit(ctx context.Context, nodeID string, data []byte) (int64, error) {
	resp, err := s.cli.Put(ctx, s.keys.audit(nodeID), string(data))
	if err != nil {
		return 0, fmt.Errorf("store the audit of node %s: %w", nodeID, err)
	}
	return resp.Header.Revision, nil
}
