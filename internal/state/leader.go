package state

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/gantryhq/gantry/internal/state/codec"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// Leadership is a won election: its Fence makes the leader's writes
// conditional on still holding it, and Done closes once the session that
// holds it ended (its lease expired or was revoked), after which every
// fenced write fails with ErrNotLeader.
type Leadership struct {
	Fence *Fence
	sess  *concurrency.Session
	el    *concurrency.Election
}

// Campaign blocks until this server (id) leads or ctx ends. The election
// key is held by a lease of ttl; a server that stops renewing it (killed,
// cut off) loses leadership once it expires. Election keys left by an
// earlier run of the same id (a crash leaves its lease behind until it
// expires) are removed first, so a restarted server does not wait for
// itself. apiURL, when not empty, is where the server's API answers
// (http[s]://host:port): it is kept under the same lease while the
// server campaigns and leads, for Leader.
func (s *Store) Campaign(ctx context.Context, id, apiURL string, ttl time.Duration) (*Leadership, error) {
	sess, err := concurrency.NewSession(s.cli, concurrency.WithTTL(int(max(ttl/time.Second, 1))), concurrency.WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("open an election session: %w", err)
	}
	s.clearStaleCandidacy(ctx, id, sess.Lease())
	// Before the candidacy: no store may see this server campaign without
	// knowing which allocation format it reads (encoding.go).
	if _, err := s.cli.Put(ctx, s.keys.encodings(id), strconv.Itoa(codec.Version), clientv3.WithLease(sess.Lease())); err != nil {
		sess.Close()
		return nil, fmt.Errorf("advertise this server's allocation format: %w", err)
	}
	if apiURL != "" {
		if _, err := s.cli.Put(ctx, s.keys.server(id), apiURL, clientv3.WithLease(sess.Lease())); err != nil {
			sess.Close()
			return nil, fmt.Errorf("advertise this server's API address: %w", err)
		}
	}
	el := concurrency.NewElection(sess, s.keys.leader())
	if err := el.Campaign(ctx, id); err != nil {
		sess.Close()
		return nil, fmt.Errorf("campaign for leadership: %w", err)
	}
	return &Leadership{Fence: &Fence{Key: el.Key(), Rev: el.Rev()}, sess: sess, el: el}, nil
}

// Done is closed once the leadership's session ended.
func (l *Leadership) Done() <-chan struct{} { return l.sess.Done() }

// Resign gives leadership up (the next candidate wins at once instead of
// after the lease expires) and closes the session.
func (l *Leadership) Resign(ctx context.Context) {
	l.el.Resign(ctx)
	l.sess.Close()
}

// clearStaleCandidacy deletes the election keys of id that another lease
// than own holds, each only if unchanged since read.
func (s *Store) clearStaleCandidacy(ctx context.Context, id string, own clientv3.LeaseID) {
	resp, err := s.cli.Get(ctx, s.keys.leader(), clientv3.WithPrefix())
	if err != nil {
		return
	}
	for _, kv := range resp.Kvs {
		if string(kv.Value) == id && clientv3.LeaseID(kv.Lease) != own {
			s.cli.Txn(ctx).
				If(clientv3.Compare(clientv3.ModRevision(string(kv.Key)), "=", kv.ModRevision)).
				Then(clientv3.OpDelete(string(kv.Key))).Commit()
		}
	}
}

// EndpointStatus is what one etcd endpoint says of itself.
type EndpointStatus struct {
	Endpoint string
	Version  string
	DBSize   int64 // bytes of the database file
	DBInUse  int64 // bytes of it in use
	Quota    int64 // backend quota in bytes; 0 when etcd did not say
}

// Endpoints lists the etcd endpoints the store uses.
func (s *Store) Endpoints() []string {
	if s.cli == nil {
		return nil
	}
	return s.cli.Endpoints()
}

// EndpointStatus asks one etcd endpoint for its status.
func (s *Store) EndpointStatus(ctx context.Context, endpoint string) (EndpointStatus, error) {
	st, err := s.cli.Status(ctx, endpoint)
	if err != nil {
		return EndpointStatus{}, fmt.Errorf("status of etcd endpoint %s: %w", endpoint, err)
	}
	return EndpointStatus{Endpoint: endpoint, Version: st.Version, DBSize: st.DbSize, DBInUse: st.DbSizeInUse, Quota: st.DbSizeQuota}, nil
}

// ErrNoLeader is returned by Leader when no server holds the election: one
// is being elected, or none runs. Asking again a few seconds later may
// find one.
var ErrNoLeader = errors.New("no server leads the cluster at the moment")

// Leader reads, with a quorum read, which server leads (the election key
// created first, as etcd's election decides) and the API URL it gave
// Campaign ("" when it gave none). It returns ErrNoLeader when no server
// campaigns, and the store's error (see Unavailable) when etcd cannot
// answer.
func (s *Store) Leader(ctx context.Context) (id, apiURL string, err error) {
	resp, err := s.cli.Get(ctx, s.keys.leader(), clientv3.WithFirstCreate()...)
	if err != nil {
		return "", "", fmt.Errorf("read which server leads: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return "", "", ErrNoLeader
	}
	id = string(resp.Kvs[0].Value)
	sr, err := s.cli.Get(ctx, s.keys.server(id))
	if err != nil {
		return id, "", fmt.Errorf("read the API address of leader %s: %w", id, err)
	}
	if len(sr.Kvs) > 0 {
		apiURL = string(sr.Kvs[0].Value)
	}
	return id, apiURL, nil
}
