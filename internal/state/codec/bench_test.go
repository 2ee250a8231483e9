package codec

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/gantryhq/gantry/internal/api"
)

// realistic builds the kind of allocation the scale runs store by the
// hundred thousand: placed by a plan (UUIDs, one task with resources and
// a dynamic port), then reported running and healthy by its agent (task
// state with its events). gpu adds a MIG instance, as a GPU job has.
func realistic(i int, gpu bool) *api.Allocation {
	t0 := time.Date(2026, 12, 6, 10, 0, 0, 123456789, time.UTC).Add(time.Duration(i) * time.Millisecond)
	res := &api.AllocatedResources{CPU: 250, Memory: 128, Disk: 100,
		Ports: []api.AllocatedPort{{Name: "http", Host: 20000 + i%10000, To: 8080}}}
	if gpu {
		res.GPU = &api.AllocatedGPU{MIG: &api.MIGAssignment{GPU: "GPU-5f1c4e2a-9b7d-4c3e-8a61-2d0f9e7b3c14", Profile: "3g.40gb", Start: 4, Size: 4,
			InstanceUUID: "MIG-0c2d9a1e-7f3b-5e48-b6a2-91d4c8e0f357"}}
	}
	return &api.Allocation{
		ID:            fmt.Sprintf("6f9c2b1e-4d3a-4e8f-9b7c-%012d", i),
		Namespace:     "default",
		Job:           fmt.Sprintf("load-%03d", i/1000),
		JobVersion:    0,
		Group:         "app",
		Index:         i % 1000,
		Priority:      50,
		NodeID:        fmt.Sprintf("a1b2c3d4-e5f6-4a7b-8c9d-%012d", i%10000),
		NodeName:      fmt.Sprintf("node-%05d", i%10000),
		EvalID:        "0e8f7d6c-5b4a-4938-a7b6-c5d4e3f2a1b0",
		Resources:     map[string]*api.AllocatedResources{"task": res},
		DesiredStatus: api.AllocDesiredRun,
		ClientStatus:  api.AllocRunning,
		Health:        api.HealthHealthy,
		TaskStates: map[string]*api.TaskState{"task": {
			State: api.TaskRunning, Health: api.HealthHealthy, StartedAt: t0.Add(1200 * time.Millisecond),
			Events: []api.TaskEvent{
				{Time: t0.Add(800 * time.Millisecond), Type: api.TaskEventReceived},
				{Time: t0.Add(1200 * time.Millisecond), Type: api.TaskEventStarted},
				{Time: t0.Add(11 * time.Second), Type: api.TaskEventHealthy, Message: "all checks passing"},
			},
		}},
		DeploymentID: "d7e6f5a4-b3c2-4d1e-9f8a-7b6c5d4e3f2a",
		CreateTime:   t0,
		ModifyTime:   t0.Add(11 * time.Second),
		ModifyIndex:  int64(1000 + i),
	}
}

// cborMode encodes api types by their json tags (fxamacker/cbor falls
// back to them), times as RFC 3339 strings with nanoseconds: its default
// (whole Unix seconds) and its float form would both lose precision.
var cborMode = func() cbor.EncMode {
	m, err := cbor.EncOptions{Time: cbor.TimeRFC3339Nano}.EncMode()
	if err != nil {
		panic(err)
	}
	return m
}()

type codecUnderTest struct {
	name string
	enc  func(*api.Allocation) ([]byte, error)
	dec  func([]byte, *api.Allocation) error
}

var codecs = []codecUnderTest{
	{"json", func(a *api.Allocation) ([]byte, error) { return json.Marshal(a) }, func(b []byte, a *api.Allocation) error { return json.Unmarshal(b, a) }},
	{"cbor", func(a *api.Allocation) ([]byte, error) { return cborMode.Marshal(a) }, func(b []byte, a *api.Allocation) error { return cbor.Unmarshal(b, a) }},
	{"protobuf", EncodeAllocation, DecodeAllocation},
}

// BenchmarkAllocationCodecs compares the candidate encodings on
// realistic allocations: B/alloc is the stored size, the value etcd's
// raft log, WAL and bbolt file hold for each allocation.
//
//	go test ./internal/state/codec -run '^$' -bench AllocationCodecs -benchmem -count 5
func BenchmarkAllocationCodecs(b *testing.B) {
	for _, shape := range []struct {
		name string
		gpu  bool
	}{{"plain", false}, {"mig", true}} {
		a := realistic(4242, shape.gpu)
		for _, c := range codecs {
			enc, err := c.enc(a)
			if err != nil {
				b.Fatal(err)
			}
			b.Run(shape.name+"/"+c.name+"/encode", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := c.enc(a); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(len(enc)), "B/alloc")
			})
			b.Run(shape.name+"/"+c.name+"/decode", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					var out api.Allocation
					if err := c.dec(enc, &out); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(len(enc)), "B/alloc")
			})
		}
	}
}
