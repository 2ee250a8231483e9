package nodewire

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"

	"github.com/gantryhq/gantry/internal/api"
)

func encodeAll(t testing.TB, fs ...*Frame) []byte {
	t.Helper()
	var buf []byte
	for _, f := range fs {
		var err error
		if buf, err = Append(buf, f); err != nil {
			t.Fatal(err)
		}
	}
	return buf
}

func TestRoundTrip(t *testing.T) {
	in := []*Frame{
		{Type: Subscribe, Node: "n1", Index: 42},
		{Type: Report, Node: "n1", Seq: 7, Updates: []api.AllocUpdate{{ID: "a1", ClientStatus: api.AllocRunning}}},
		{Type: Allocs, Node: "n2", Allocs: &api.NodeAllocsResponse{Index: 9, IDs: []string{"a"}, Consistent: true}},
		{Type: Ack, Node: "n1", Seq: 7, Status: 200},
		{Type: Ping},
	}
	d := NewDecoder(bytes.NewReader(encodeAll(t, in...)), 1<<20)
	for i, want := range in {
		got, err := d.Next()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("frame %d: got %+v, want %+v", i, got, want)
		}
	}
	if _, err := d.Next(); err != io.EOF {
		t.Fatalf("after the last frame: %v, want io.EOF", err)
	}
}

func TestDecoderRejects(t *testing.T) {
	big := encodeAll(t, &Frame{Type: Report, Node: "n1", Seq: 1, Updates: make([]api.AllocUpdate, 100)})
	if _, err := NewDecoder(bytes.NewReader(big), 64).Next(); !errors.Is(err, ErrTooLarge) {
		t.Errorf("a frame over the limit: %v, want ErrTooLarge", err)
	}
	if _, err := NewDecoder(bytes.NewReader(big[:len(big)-3]), 1<<20).Next(); err != io.ErrUnexpectedEOF {
		t.Errorf("a cut frame: %v, want io.ErrUnexpectedEOF", err)
	}
	for name, body := range map[string]string{
		"not JSON":         `{"v":1,`,
		"version":          `{"v":2,"type":"ping"}`,
		"no type":          `{"v":1}`,
		"no node":          `{"v":1,"type":"subscribe"}`,
		"negative index":   `{"v":1,"type":"subscribe","node":"n","index":-1}`,
		"allocs with none": `{"v":1,"type":"allocs","node":"n"}`,
	} {
		if _, err := Decode([]byte(body)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
	// A malformed frame is skipped whole: the next one still reads.
	buf := append([]byte{0, 0, 0, 7}, `{"v":9}`...)
	buf = append(buf, encodeAll(t, &Frame{Type: Ping})...)
	d := NewDecoder(bytes.NewReader(buf), 1<<20)
	if _, err := d.Next(); !errors.Is(err, ErrMalformed) {
		t.Fatalf("first frame: %v, want ErrMalformed", err)
	}
	if f, err := d.Next(); err != nil || f.Type != Ping {
		t.Fatalf("second frame: %+v, %v; want the ping", f, err)
	}
}

// FuzzDecoder: whatever the bytes, the decoder never panics, never
// allocates past its limit, and every frame it accepts encodes back to a
// frame that decodes and encodes to the same bytes (JSON's empty lists
// and absent ones decode apart, so the bytes are compared, not the
// frames).
func FuzzDecoder(f *testing.F) {
	f.Add(encodeAll(f, &Frame{Type: Subscribe, Node: "n1", Index: 3}, &Frame{Type: Ping}))
	f.Add(encodeAll(f, &Frame{Type: Report, Node: "n1", Seq: 1, Updates: []api.AllocUpdate{{ID: "a", ClientStatus: "running", TaskStates: map[string]*api.TaskState{"t": {State: "running"}}}}}))
	f.Add(encodeAll(f, &Frame{Type: Allocs, Node: "n", Allocs: &api.NodeAllocsResponse{Index: 1, Allocs: []*api.Allocation{{ID: "a", NodeID: "n"}}}}))
	f.Add([]byte{0, 0, 0, 2, '{', '}'})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		d := NewDecoder(bytes.NewReader(data), 4096)
		for range 64 {
			fr, err := d.Next()
			if err != nil {
				if errors.Is(err, ErrMalformed) {
					continue
				}
				return
			}
			again, err := Append(nil, fr)
			if err != nil {
				t.Fatalf("re-encode %+v: %v", fr, err)
			}
			back, err := NewDecoder(bytes.NewReader(again), 1<<20).Next()
			if err != nil {
				t.Fatalf("decode the re-encoded frame %q: %v", again, err)
			}
			twice, err := Append(nil, back)
			if err != nil || !bytes.Equal(twice, again) {
				t.Fatalf("round trip changed the frame: %q, then %q (%v)", again, twice, err)
			}
		}
	})
}
