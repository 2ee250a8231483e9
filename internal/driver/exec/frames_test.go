package exec

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// frame is one length-prefixed frame of n bytes.
func frame(n int) []byte {
	b := make([]byte, 4+n)
	binary.BigEndian.PutUint32(b, uint32(n))
	for i := range n {
		b[4+i] = byte(i)
	}
	return b
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestCountFrames(t *testing.T) {
	tooLong := make([]byte, 4)
	binary.BigEndian.PutUint32(tooLong, maxFrame+1)
	for _, tc := range []struct {
		name           string
		in             []byte
		frames, bytes_ uint64
		err            string
	}{
		{name: "empty stream", in: nil},
		{name: "one frame", in: frame(60), frames: 1, bytes_: 60},
		{name: "frames of every size", in: cat(frame(0), frame(1), frame(1514), frame(65535)), frames: 4, bytes_: 1 + 1514 + 65535},
		{name: "the longest frame", in: frame(maxFrame), frames: 1, bytes_: maxFrame},
		{name: "length cut short", in: cat(frame(10), []byte{0, 0}), frames: 1, bytes_: 10, err: "frame length"},
		{name: "payload cut short", in: cat(frame(10), frame(100)[:50]), frames: 1, bytes_: 10, err: "cut short after 46"},
		{name: "not frames", in: cat(frame(10), tooLong, frame(10)), frames: 1, bytes_: 10, err: "not length-prefixed frames"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c frameCounter
			err := countFrames(bytes.NewReader(tc.in), &c)
			if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("error %v, want %q", err, tc.err)
			}
			if f, b := c.frames.Load(), c.bytes.Load(); f != tc.frames || b != tc.bytes_ {
				t.Errorf("counted %d frames, %d bytes; want %d, %d", f, b, tc.frames, tc.bytes_)
			}
		})
	}
}

// FuzzCountFrames: any stream is counted without panicking, never counts
// more than it read, and a stream it accepts is exactly whole frames.
func FuzzCountFrames(f *testing.F) {
	f.Add(cat(frame(60), frame(0)))
	f.Add([]byte{0, 0, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 1})
	f.Fuzz(func(t *testing.T, in []byte) {
		var c frameCounter
		err := countFrames(bytes.NewReader(in), &c)
		used := 4*c.frames.Load() + c.bytes.Load()
		if used > uint64(len(in)) {
			t.Fatalf("counted %d frames and %d bytes from %d bytes", c.frames.Load(), c.bytes.Load(), len(in))
		}
		if err == nil && used != uint64(len(in)) {
			t.Fatalf("accepted a stream of %d bytes as %d frames and %d bytes", len(in), c.frames.Load(), c.bytes.Load())
		}
	})
}

func TestCheckFrameStreams(t *testing.T) {
	for _, tc := range []struct {
		names []string
		ok    bool
	}{
		{nil, true},
		{[]string{"net0.sent", "net0.received"}, true},
		{[]string{"a", "a"}, false},
		{[]string{""}, false},
		{[]string{"1", "2", "3", "4", "5", "6", "7", "8", "9"}, false},
	} {
		if err := checkFrameStreams(tc.names); (err == nil) != tc.ok {
			t.Errorf("%q: %v, want ok %v", tc.names, err, tc.ok)
		}
	}
}

// TestFrameStreams runs a task that writes frames on the descriptors the
// executor hands it: the totals appear while it runs (the executor writes
// them every second), grow to the final figures when it ends, and a
// stream that is not frames stops being counted without blocking its
// writer.
func TestFrameStreams(t *testing.T) {
	root := t.TempDir()
	d := newDriver(t, root)
	gate := filepath.Join(root, "go-on")
	// 2 frames (3 + 5 bytes) on fd 3 and one of 1000 bytes on fd 4; then,
	// once the test says so, a frame of 2 bytes on fd 3, then 4 MiB that
	// are not frames on fd 5 (more than its pipe holds).
	script := `printf '\000\000\000\003abc\000\000\000\005abcde' >&3
printf '\000\000\003\350' >&4; head -c 1000 /dev/zero >&4
while [ ! -e ` + gate + ` ]; do sleep 0.05; done
printf '\000\000\000\002ab' >&3
printf '\377\377\377\377' >&5; head -c 4194304 /dev/zero >&5`
	cfg := task(root, "n1", "sh", "-c", script)
	h, err := d.StartWith(testCtx(t), cfg, StartOptions{FrameStreams: []string{"sent", "received", "garbage"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Destroy(context.Background(), h) })

	deadline := time.Now().Add(10 * time.Second)
	var got map[string]FrameCount
	for time.Now().Before(deadline) {
		if got, err = FrameCounts(h); err != nil {
			t.Fatal(err)
		}
		if got["sent"].Frames == 2 && got["received"].Frames == 1 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if want := (FrameCount{Frames: 2, Bytes: 8}); got["sent"] != want {
		t.Fatalf("while running: sent %+v, want %+v (all: %+v)", got["sent"], want, got)
	}
	if want := (FrameCount{Frames: 1, Bytes: 1000}); got["received"] != want {
		t.Fatalf("while running: received %+v, want %+v", got["received"], want)
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if res := wait(t, d, h); !res.Successful() {
		t.Fatalf("exit %+v: a stream no longer counted must still be read", res)
	}
	got, err = FrameCounts(h)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]FrameCount{"sent": {Frames: 3, Bytes: 10}, "received": {Frames: 1, Bytes: 1000}, "garbage": {}}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("after the end: %s %+v, want %+v", k, got[k], v)
		}
	}
	st, _ := stateOf(h)
	if b, _ := os.ReadFile(statePaths(st).log); !strings.Contains(string(b), "no longer counted") {
		t.Errorf("the executor's log does not say the garbage stream stopped being counted:\n%s", b)
	}

	// Destroy removes the totals with the other state files.
	if err := d.Destroy(context.Background(), h); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(statePaths(st).frames); !os.IsNotExist(err) {
		t.Errorf("frame totals left after destroy: %v", err)
	}

	if _, err := d.StartWith(testCtx(t), task(root, "n1", "true"), StartOptions{FrameStreams: []string{"x", "x"}}); err == nil {
		t.Error("two streams of one name were accepted")
	}
}
