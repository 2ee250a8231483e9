package state

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/gantryhq/gantry/internal/api"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Keys of GPU defragmentation (see keys.go for the layout):
//
//	defrag/proposal       the latest plan proposed (api.DefragRecord)
//	defrag/moves/<alloc>  the latest step of the move of one replica
//
// Each put is one event of topic "defrag" whose type is the record's
// Type; deletes make none. There is one move key per replica ever moved
// (a moved replica never moves again), so they grow with the moves made.
const kindDefrag = "defrag"

func (k keys) defragProposal() string         { return k.prefix + kindDefrag + "/proposal" }
func (k keys) defragMove(alloc string) string { return k.prefix + kindDefrag + "/moves/" + alloc }

// PutDefragRecord records a proposal (r.Plan set) or a step of the move
// of replica r.Move.Alloc, fenced by the leadership that acts.
// A step that changes allocations is better recorded with them
// (PlanCommit.Defrag).
func (s *Store) PutDefragRecord(ctx context.Context, fence *Fence, r *api.DefragRecord) error {
	op, err := s.defragOp(r)
	if err != nil {
		return err
	}
	tr, err := s.cli.Txn(ctx).If(fence.cmps()...).Then(op).Commit()
	if err != nil {
		return fmt.Errorf("record GPU defragmentation event %s: %w", r.Type, err)
	}
	if !tr.Succeeded {
		return ErrNotLeader
	}
	return nil
}

// defragOp is the put of record r: under the proposal's key, or under
// the key of the replica it moves.
func (s *Store) defragOp(r *api.DefragRecord) (clientv3.Op, error) {
	key := s.keys.defragProposal()
	if r.Move != nil {
		key = s.keys.defragMove(r.Move.Alloc)
	}
	b, err := json.Marshal(r)
	if err != nil {
		return clientv3.Op{}, fmt.Errorf("encode the GPU defragmentation record %s: %w", r.Type, err)
	}
	return clientv3.OpPut(key, string(b)), nil
}

// DefragMove returns the latest recorded step of the move of replica
// alloc, or nil when it never moved (or its record was collected).
func (s *Store) DefragMove(ctx context.Context, alloc string) (*api.DefragRecord, error) {
	resp, err := s.cli.Get(ctx, s.keys.defragMove(alloc))
	if err != nil {
		return nil, fmt.Errorf("read the GPU defragmentation record of %s: %w", alloc, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	var r api.DefragRecord
	if err := json.Unmarshal(resp.Kvs[0].Value, &r); err != nil {
		return nil, fmt.Errorf("decode the GPU defragmentation record of %s: %w", alloc, err)
	}
	return &r, nil
}

// DefragMoveAllocs lists the replicas (allocation IDs) that have a move
// record, for garbage collection.
func (s *Store) DefragMoveAllocs(ctx context.Context) ([]string, error) {
	prefix := s.keys.defragMove("")
	resp, err := s.cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, fmt.Errorf("list the GPU defragmentation move records: %w", err)
	}
	ids := make([]string, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		ids = append(ids, strings.TrimPrefix(string(kv.Key), prefix))
	}
	return ids, nil
}

// DeleteDefragMoves removes the move records of the replicas ids
// (garbage collection), fenced like DeleteEvals.
func (s *Store) DeleteDefragMoves(ctx context.Context, fence *Fence, ids []string) error {
	return s.deleteFenced(ctx, fence, "GPU defragmentation move records", ids, s.keys.defragMove)
}

// DefragProposal returns the latest proposed plan, or nil when none was
// ever proposed.
func (s *Store) DefragProposal(ctx context.Context) (*api.DefragRecord, error) {
	resp, err := s.cli.Get(ctx, s.keys.defragProposal())
	if err != nil {
		return nil, fmt.Errorf("read the latest GPU defragmentation proposal: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	var r api.DefragRecord
	if err := json.Unmarshal(resp.Kvs[0].Value, &r); err != nil {
		return nil, fmt.Errorf("decode the latest GPU defragmentation proposal: %w", err)
	}
	return &r, nil
}

// defragEvent turns a put of a defrag key into its event, keyed by the
// job (of the moved replica, or the plan's); deletes make none.
func defragEvent(ev *clientv3.Event, payload []byte) (api.Event, bool) {
	if ev.Type == mvccpb.DELETE {
		return api.Event{}, false
	}
	var r api.DefragRecord
	if err := json.Unmarshal(payload, &r); err != nil || r.Type == "" {
		return api.Event{}, false
	}
	return api.Event{Index: ev.Kv.ModRevision, Topic: api.TopicDefrag, Type: r.Type, Namespace: r.Namespace, Key: r.Job, Payload: json.RawMessage(payload)}, true
}
