// Package codec owns the form in which the store keeps allocations in
// etcd: a version byte, then a protocol buffers message (pb.Allocation,
// schema in pb/allocation.proto). It decodes that form and the JSON that
// earlier releases wrote (and that servers still write while an older
// server runs, see internal/state's encoding.go), telling the two apart
// by the first byte: JSON never starts with the version byte. It must
// never import etcd, nor decide when the compact form may be written:
// the store owns that.
//
// Why protocol buffers: allocations are the store's highest-volume
// values (created by plans, rewritten by every status report), and each
// one's bytes live in etcd's raft log, WAL and bbolt file and go through
// every server's watch. BenchmarkAllocationCodecs compares encoding/json,
// fxamacker/cbor/v2 (v2.10.0, on the api types' json tags, times as
// RFC 3339 strings so that nanoseconds survive) and this form on a
// running allocation with one task, a port, three task events (plain)
// and with a MIG instance (mig): medians of -count 5, in two runs on the
// project's 2-core machine while other work shared it (load average 9
// to 16), so the times move by up to 2x between runs and only their
// order is firm; sizes and allocations are exact:
//
//	                 bytes  encode µs    decode µs   allocs enc/dec
//	plain  json        934  14.8 / 7.7   23.1 / 22.8   13 / 44
//	       cbor        791   3.3 / 5.2    6.6 / 12.7    7 / 35
//	       protobuf    422   3.7 / 5.1    5.7 /  6.6   18 / 48
//	mig    json       1097   7.1 / 12.9  28.9 / 46.3   13 / 49
//	       cbor        932   5.8 / 3.8   17.1 / 12.3    7 / 40
//	       protobuf    524   6.4 / 4.4   12.2 /  8.6   20 / 55
//
// CBOR with string keys saves only 15% of the bytes: the keys and the
// RFC 3339 times are most of them. Protocol buffers needs under half of
// JSON's (field numbers for keys, times as seconds and nanoseconds),
// decodes fastest in both runs (2.4 to 5.4 times faster than JSON) and
// encodes about as fast as CBOR. Its cost is the copy between the
// generated messages and the api types: a few more, smaller allocations
// per decode than JSON (48 against 44, 3.0 KiB against 2.2 KiB), all
// short-lived. Writing 10,000 allocations through the store (placed,
// then reported running; internal/state's BenchmarkAllocationStorage)
// leaves 749 B per value and a 17.6 MiB etcd database as JSON, 316 B and
// 8.3 MiB compact. google.golang.org/protobuf was already in the module
// (through etcd and gRPC); the generated code is committed, so building
// needs no protoc. CBOR stays a test dependency, for the benchmark.
//
// Strings are stored as protocol buffers strings, which must be UTF-8:
// invalid bytes become U+FFFD, as they always did in the JSON form.
// Times are stored as instants and decode in UTC. An empty list or map
// decodes as nil (Resources keeps the difference), and a nil entry of a
// map as an empty one.
package codec
