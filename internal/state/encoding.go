package state

import (
	"strconv"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/state/codec"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// Allocations are stored in the compact form of internal/state/codec
// (a format byte, then protocol buffers) once every server can read it,
// and as JSON until then; both are read everywhere.
//
// The gate: each server that campaigns puts encodings/<server id>, the
// highest allocation format it reads, under its election lease before it
// campaigns. A store writes the compact form while every election
// candidate it sees (a key under leader/) has such a key saying it reads
// it, and JSON otherwise: a server of an earlier release campaigns
// without one, so during a rolling upgrade the cluster keeps writing JSON
// until the last old server has left. A store that sees no candidate at
// all (a cluster's first server before it campaigns, tools, tests) writes
// the compact form. An old server that is not campaigning at that moment
// (stopped, or between sessions) is not seen: it cannot read what was
// written meanwhile (see the README's upgrade note).
const kindEncodings = "encodings"

func (k keys) encodings(id string) string { return k.prefix + kindEncodings + "/" + id }

// applyGateLocked folds a change of an election candidate or of a
// server's advertised format into the view.
func (s *Store) applyGateLocked(kind, rest string, kv *mvccpb.KeyValue, deleted bool) {
	switch kind {
	case kindLeader:
		if deleted {
			delete(s.candidates, rest)
		} else {
			s.candidates[rest] = string(kv.Value)
		}
	case kindEncodings:
		if deleted {
			delete(s.encodings, rest)
		} else if v, err := strconv.Atoi(string(kv.Value)); err == nil {
			s.encodings[rest] = v
		} else {
			s.encodings[rest] = 0
		}
	}
}

// recomputeGateLocked opens or closes the gate from the candidates and
// their formats; the view calls it once it has applied a whole batch of
// changes, so that a reload never opens the gate before it has seen
// every candidate.
func (s *Store) recomputeGateLocked() {
	compact := true
	for _, id := range s.candidates {
		if s.encodings[id] < codec.Version {
			compact = false
			break
		}
	}
	s.compact.Store(compact)
}

// encodeAlloc is an allocation's stored value: compact when the gate is
// open, JSON otherwise.
func (s *Store) encodeAlloc(a *api.Allocation) string {
	if !s.compact.Load() {
		return encode(a)
	}
	b, err := codec.EncodeAllocation(a)
	if err != nil {
		// Every api.Allocation encodes; an error is a bug in the codec.
		panic(err)
	}
	return string(b)
}

// WritesCompact reports whether this store writes allocations in the
// compact form now (every server it sees can read it).
func (s *Store) WritesCompact() bool { return s.compact.Load() }
