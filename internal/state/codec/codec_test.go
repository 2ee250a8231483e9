package codec

import (
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"pgregory.net/rapid"
)

// genTime draws an instant JSON can also hold (years 1 to 9999), in UTC
// with nanoseconds, or the zero time.
func genTime(t *rapid.T, label string) time.Time {
	if rapid.IntRange(0, 4).Draw(t, label+"_zero") == 0 {
		return time.Time{}
	}
	sec := rapid.Int64Range(time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC).Unix(), time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC).Unix()).Draw(t, label+"_sec")
	ns := rapid.Int64Range(0, 999_999_999).Draw(t, label+"_ns")
	return time.Unix(sec, ns).UTC()
}

// genAlloc draws an arbitrary allocation. Empty lists and maps other
// than Resources are drawn as nil, and map entries are never nil: both
// forms store an empty list or map as absent (the JSON form through
// omitempty), and neither is meaningful to Gantry.
func genAlloc(t *rapid.T) *api.Allocation {
	s := func(label string) string { return rapid.String().Draw(t, label) }
	i := func(label string) int { return rapid.Int().Draw(t, label) }
	a := &api.Allocation{
		ID: s("id"), Namespace: s("namespace"), Job: s("job"), JobVersion: rapid.Uint64().Draw(t, "job_version"),
		JobSubmitTime: genTime(t, "job_submit_time"),
		Group:         s("group"), Index: i("index"), Priority: i("priority"), NodeID: s("node_id"), NodeName: s("node_name"),
		EvalID: s("eval_id"), DesiredStatus: s("desired_status"), DesiredReason: s("desired_reason"),
		ClientStatus: s("client_status"), ClientReason: s("client_reason"), Health: s("health"),
		PreviousAlloc: s("previous_alloc"), DeploymentID: s("deployment_id"), Canary: rapid.Bool().Draw(t, "canary"),
		Reschedules: i("reschedules"), Move: s("move"),
		CreateTime: genTime(t, "create_time"), ModifyTime: genTime(t, "modify_time"), ModifyIndex: rapid.Int64().Draw(t, "modify_index"),
	}
	switch rapid.IntRange(0, 2).Draw(t, "resources_kind") {
	case 0: // nil
	case 1:
		a.Resources = map[string]*api.AllocatedResources{}
	case 2:
		a.Resources = map[string]*api.AllocatedResources{}
		for n := rapid.IntRange(1, 3).Draw(t, "tasks"); n > 0; n-- {
			r := &api.AllocatedResources{CPU: i("cpu"), Memory: i("memory"), Disk: i("disk")}
			for p := rapid.IntRange(0, 3).Draw(t, "ports"); p > 0; p-- {
				r.Ports = append(r.Ports, api.AllocatedPort{Name: s("port"), Host: i("host"), To: i("to")})
			}
			if rapid.Bool().Draw(t, "gpu") {
				r.GPU = &api.AllocatedGPU{}
				for d := rapid.IntRange(0, 3).Draw(t, "devices"); d > 0; d-- {
					r.GPU.Devices = append(r.GPU.Devices, s("device"))
				}
				if rapid.Bool().Draw(t, "mig") {
					r.GPU.MIG = &api.MIGAssignment{GPU: s("mig_gpu"), Profile: s("profile"), Start: i("start"), Size: i("size"),
						InstanceUUID: s("instance"), Create: rapid.Bool().Draw(t, "create")}
				}
				if rapid.Bool().Draw(t, "share") {
					r.GPU.Share = &api.ShareAssignment{GPU: s("share_gpu"), Milli: i("milli"), Memory: i("share_memory"),
						Enforce: rapid.Bool().Draw(t, "enforce")}
				}
			}
			a.Resources[s("task")] = r
		}
	}
	if n := rapid.IntRange(0, 3).Draw(t, "task_states"); n > 0 {
		a.TaskStates = map[string]*api.TaskState{}
		for ; n > 0; n-- {
			st := &api.TaskState{State: s("state"), Failed: rapid.Bool().Draw(t, "failed"), ExitCode: i("exit_code"),
				Restarts: i("restarts"), Health: s("task_health"), StartedAt: genTime(t, "started"), FinishedAt: genTime(t, "finished")}
			for e := rapid.IntRange(0, 4).Draw(t, "events"); e > 0; e-- {
				st.Events = append(st.Events, api.TaskEvent{Time: genTime(t, "event_time"), Type: s("event_type"), Message: s("message")})
			}
			a.TaskStates[s("task_state")] = st
		}
	}
	return a
}

// TestCompactRoundTrip: every allocation decodes from its compact form
// equal to what was encoded.
func TestCompactRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a := genAlloc(t)
		b, err := EncodeAllocation(a)
		if err != nil {
			t.Fatalf("encode: %v", err)
		}
		if IsJSON(b) {
			t.Fatalf("the compact form %x reads as JSON", b[:1])
		}
		var got api.Allocation
		if err := DecodeAllocation(b, &got); err != nil {
			t.Fatalf("decode: %v", err)
		}
		if !reflect.DeepEqual(a, &got) {
			t.Fatalf("round trip changed the allocation:\n in: %#v\nout: %#v", a, &got)
		}
	})
}

// TestJSONStillDecodes: an allocation a previous release wrote as JSON
// decodes as json.Unmarshal decodes it, and keeps that value through
// the compact form.
func TestJSONStillDecodes(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a := genAlloc(t)
		js, err := json.Marshal(a)
		if err != nil {
			t.Fatalf("json: %v", err)
		}
		var want, got, again api.Allocation
		if err := json.Unmarshal(js, &want); err != nil {
			t.Fatal(err)
		}
		if err := DecodeAllocation(js, &got); err != nil {
			t.Fatalf("decode JSON: %v", err)
		}
		if !reflect.DeepEqual(&want, &got) {
			t.Fatalf("JSON decoded differently:\nwant %#v\n got %#v", &want, &got)
		}
		b, err := EncodeAllocation(&got)
		if err != nil {
			t.Fatal(err)
		}
		if err := DecodeAllocation(b, &again); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(&want, &again) {
			t.Fatalf("JSON → compact changed the allocation:\nwant %#v\n got %#v", &want, &again)
		}
	})
}

// TestPreviousReleaseValue decodes a value exactly as the release before
// the compact form wrote it (testdata/alloc-json-v0.json, kept as it was
// even when api.Allocation changes).
func TestPreviousReleaseValue(t *testing.T) {
	b, err := os.ReadFile("testdata/alloc-json-v0.json")
	if err != nil {
		t.Fatal(err)
	}
	var got api.Allocation
	if err := DecodeAllocation(b, &got); err != nil {
		t.Fatal(err)
	}
	want := realistic(7, true)
	if !reflect.DeepEqual(want, &got) {
		t.Fatalf("previous release's value:\nwant %#v\n got %#v", want, &got)
	}
}

// TestUnreadableValues: what is neither JSON nor a known compact form is
// an error that says so, never a zero allocation.
func TestUnreadableValues(t *testing.T) {
	for _, b := range [][]byte{nil, {}, {0x02, 0x0a, 0x01, 'x'}, {0xff}, []byte("\x00{}")} {
		var a api.Allocation
		if err := DecodeAllocation(b, &a); !errors.Is(err, ErrUnknownFormat) {
			t.Errorf("%q: want ErrUnknownFormat, got %v", b, err)
		}
	}
	var a api.Allocation
	if err := DecodeAllocation([]byte{0x01, 0x0a, 0x05, 'x'}, &a); err == nil || errors.Is(err, ErrUnknownFormat) {
		t.Errorf("a truncated compact value: want a decode error, got %v", err)
	}
}

// TestInvalidUTF8: strings that are not UTF-8 (a driver's raw error in a
// task event) are stored with U+FFFD in place of the bad bytes, as the
// JSON form stored them, instead of failing the write.
func TestInvalidUTF8(t *testing.T) {
	a := realistic(1, false)
	a.TaskStates["task"].Events[0].Message = "exit \xff\xfe status"
	a.Resources["bad\xffname"] = &api.AllocatedResources{CPU: 1}
	b, err := EncodeAllocation(a)
	if err != nil {
		t.Fatal(err)
	}
	var got api.Allocation
	if err := DecodeAllocation(b, &got); err != nil {
		t.Fatal(err)
	}
	if m := got.TaskStates["task"].Events[0].Message; m != "exit \uFFFD status" {
		t.Errorf("message %q", m)
	}
	if got.Resources["bad\uFFFDname"] == nil {
		t.Errorf("resources by task %v", got.Resources)
	}
}

// FuzzDecodeAllocation: no input makes the decoder panic, and whatever
// it decodes, the compact form holds: encoding it again is a fixed point.
//
//	go test ./internal/state/codec -run '^$' -fuzz FuzzDecodeAllocation -fuzztime 60s
func FuzzDecodeAllocation(f *testing.F) {
	for i, a := range []*api.Allocation{realistic(1, false), realistic(2, true), {}, {ID: "x", Resources: map[string]*api.AllocatedResources{}}} {
		js, _ := json.Marshal(a)
		f.Add(js)
		b, err := EncodeAllocation(a)
		if err != nil {
			f.Fatalf("seed %d: %v", i, err)
		}
		f.Add(b)
	}
	old, err := os.ReadFile("testdata/alloc-json-v0.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(old)
	f.Add([]byte(`{"resources":{"t":null},"task_states":{}}`))
	f.Add([]byte{0x01})
	f.Add([]byte{0x02})
	f.Fuzz(func(t *testing.T, b []byte) {
		var a api.Allocation
		if err := DecodeAllocation(b, &a); err != nil {
			return
		}
		e1, err := EncodeAllocation(&a)
		if err != nil {
			t.Fatalf("a decoded allocation does not encode: %v", err)
		}
		var a2 api.Allocation
		if err := DecodeAllocation(e1, &a2); err != nil {
			t.Fatalf("the compact form does not decode again: %v", err)
		}
		e2, err := EncodeAllocation(&a2)
		if err != nil {
			t.Fatal(err)
		}
		if string(e1) != string(e2) {
			t.Fatalf("not a fixed point:\n%x\n%x", e1, e2)
		}
	})
}
