package state

import (
	"context"
	"fmt"
)

// policy/versions holds the version policy (JSON) that `gantry version
// policy apply` stores; its shape belongs to internal/versions. It is
// read from etcd directly, once per version report.
func (k keys) versionPolicy() string { return k.prefix + kindPolicy + "/versions" }

// VersionPolicy returns the stored version policy, or nil when none was
// applied (the shipped starting policy applies).
func (s *Store) VersionPolicy(ctx context.Context) ([]byte, error) {
	resp, err := s.cli.Get(ctx, s.keys.versionPolicy())
	if err != nil {
		return nil, fmt.Errorf("read the version policy: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	return resp.Kvs[0].Value, nil
}

// PutVersionPolicy replaces the version policy. The caller validates data.
func (s *Store) PutVersionPolicy(ctx context.Context, data []byte) (int64, error) {
	resp, err := s.cli.Put(ctx, s.keys.versionPolicy(), string(data))
	if err != nil {
		return 0, fmt.Errorf("store the version policy: %w", err)
	}
	return resp.Header.Revision, nil
}
