package state

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/gantryhq/gantry/internal/acl"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrBootstrapped is returned when ACLs were bootstrapped already.
var ErrBootstrapped = errors.New("ACLs are bootstrapped already: the management token was shown once, when they were")

// BootstrapACL stores the first management token, once per cluster.
func (s *Store) BootstrapACL(ctx context.Context, t *acl.Token) error {
	tr, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(s.keys.aclBootstrap()), "=", 0)).
		Then(clientv3.OpPut(s.keys.aclBootstrap(), t.AccessorID), clientv3.OpPut(s.keys.aclToken(t.SecretHash), encode(t))).
		Commit()
	if err != nil {
		return fmt.Errorf("bootstrap ACLs: %w", err)
	}
	if !tr.Succeeded {
		return ErrBootstrapped
	}
	return s.WaitIndex(ctx, tr.Header.Revision)
}

// PutToken stores a token under the hash of its secret.
func (s *Store) PutToken(ctx context.Context, t *acl.Token) error {
	resp, err := s.cli.Put(ctx, s.keys.aclToken(t.SecretHash), encode(t))
	if err != nil {
		return fmt.Errorf("store token %s: %w", t.Name, err)
	}
	return s.WaitIndex(ctx, resp.Header.Revision)
}

// DeleteToken removes the token with the given accessor ID.
func (s *Store) DeleteToken(ctx context.Context, accessor string) error {
	for _, t := range s.Tokens() {
		if t.AccessorID == accessor {
			resp, err := s.cli.Delete(ctx, s.keys.aclToken(t.SecretHash))
			if err != nil {
				return fmt.Errorf("delete token %s: %w", accessor, err)
			}
			return s.WaitIndex(ctx, resp.Header.Revision)
		}
	}
	return fmt.Errorf("token %s: %w", accessor, ErrNotFound)
}

// TokenByHash finds a token by the hash of its secret.
func (s *Store) TokenByHash(hash string) (*acl.Token, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	t, ok := s.aclTokens[hash]
	return t, ok
}

// Tokens lists every token, by name.
func (s *Store) Tokens() []*acl.Token {
	s.mu.RLock()
	out := make([]*acl.Token, 0, len(s.aclTokens))
	for _, t := range s.aclTokens {
		out = append(out, t)
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool {
		return out[i].Name < out[j].Name || out[i].Name == out[j].Name && out[i].AccessorID < out[j].AccessorID
	})
	return out
}

// PutPolicy creates or replaces an ACL policy.
func (s *Store) PutPolicy(ctx context.Context, p *acl.Policy) error {
	resp, err := s.cli.Put(ctx, s.keys.aclPolicy(p.Name), encode(p))
	if err != nil {
		return fmt.Errorf("store policy %s: %w", p.Name, err)
	}
	return s.WaitIndex(ctx, resp.Header.Revision)
}

// DeletePolicy removes an ACL policy.
func (s *Store) DeletePolicy(ctx context.Context, name string) error {
	resp, err := s.cli.Delete(ctx, s.keys.aclPolicy(name))
	if err != nil {
		return fmt.Errorf("delete policy %s: %w", name, err)
	}
	if resp.Deleted == 0 {
		return fmt.Errorf("policy %s: %w", name, ErrNotFound)
	}
	return s.WaitIndex(ctx, resp.Header.Revision)
}

// ACLPolicies returns the named policies that exist.
func (s *Store) ACLPolicies(names ...string) []*acl.Policy {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []*acl.Policy
	if names == nil {
		for _, p := range s.aclPolicies {
			out = append(out, p)
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
		return out
	}
	for _, n := range names {
		if p := s.aclPolicies[n]; p != nil {
			out = append(out, p)
		}
	}
	return out
}
