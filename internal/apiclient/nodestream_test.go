package apiclient

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/nodewire"
)

// fakeStream is a stand-in for the server's end of the node stream: it
// records the frames it reads, answers each subscription with one allocs
// frame at index+1, acks every report and heartbeat, and can cut its
// streams.
type fakeStream struct {
	mu     sync.Mutex
	frames []nodewire.Frame
	cut    chan struct{}
	opened int
}

func newFakeStream() *fakeStream { return &fakeStream{cut: make(chan struct{})} }

func (f *fakeStream) seen() []nodewire.Frame {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]nodewire.Frame(nil), f.frames...)
}

// cutAll breaks every open stream.
func (f *fakeStream) cutAll() {
	f.mu.Lock()
	close(f.cut)
	f.cut = make(chan struct{})
	f.mu.Unlock()
}

func (f *fakeStream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength == 0 {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if r.URL.Path != "/v1/nodes/stream" || r.Header.Get("Content-Type") != nodewire.ContentType {
		http.Error(w, "no", http.StatusBadRequest)
		return
	}
	rc := http.NewResponseController(w)
	if r.ProtoMajor == 1 {
		rc.EnableFullDuplex()
	}
	w.WriteHeader(http.StatusOK)
	rc.Flush()
	f.mu.Lock()
	f.opened++
	cut := f.cut
	f.mu.Unlock()
	var wmu sync.Mutex
	send := func(fr *nodewire.Frame) {
		b, _ := nodewire.Append(nil, fr)
		wmu.Lock()
		defer wmu.Unlock()
		w.Write(b)
		rc.Flush()
	}
	frames := make(chan *nodewire.Frame)
	go func() {
		defer close(frames)
		dec := nodewire.NewDecoder(r.Body, 1<<20)
		for {
			fr, err := dec.Next()
			if err != nil {
				return
			}
			frames <- fr
		}
	}()
	for {
		select {
		case <-cut:
			return
		case fr, ok := <-frames:
			if !ok {
				return
			}
			f.mu.Lock()
			f.frames = append(f.frames, *fr)
			f.mu.Unlock()
			switch fr.Type {
			case nodewire.Subscribe:
				send(&nodewire.Frame{Type: nodewire.Allocs, Node: fr.Node, Allocs: &api.NodeAllocsResponse{Index: fr.Index + 1, IDs: []string{}}})
			case nodewire.Report, nodewire.Heartbeat:
				st := http.StatusOK
				if fr.Node == "unknown" {
					st = http.StatusNotFound
				}
				send(&nodewire.Frame{Type: nodewire.Ack, Node: fr.Node, Seq: fr.Seq, Status: st, Error: "x"})
			}
		}
	}
}

func next(t *testing.T, sub *NodeSub) *api.NodeAllocsResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := sub.Next(ctx)
	if err != nil {
		t.Fatalf("next answer for %s: %v", sub.node, err)
	}
	return r
}

func TestNodeStream(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		name := "HTTP/1.1"
		if h2 {
			name = "HTTP/2"
		}
		t.Run(name, func(t *testing.T) {
			fake := newFakeStream()
			ts := httptest.NewUnstartedServer(fake)
			ts.EnableHTTP2 = h2
			ts.StartTLS()
			defer ts.Close()
			tr := ts.Client().Transport.(*http.Transport).Clone()
			tr.ForceAttemptHTTP2 = h2
			// The first address refuses connections: the client goes on
			// to the next.
			dead, _ := net.Listen("tcp", "127.0.0.1:0")
			deadAddr := "https://" + dead.Addr().String()
			dead.Close()
			c := New(Options{Servers: []string{deadAddr, ts.URL}, Transport: tr})
			var errs []error
			var emu sync.Mutex
			st := c.OpenNodeStream(context.Background(), NodeStreamOptions{OnError: func(err error) { emu.Lock(); errs = append(errs, err); emu.Unlock() }})
			defer st.Close()

			// Two nodes on one stream, one from scratch and one resuming.
			a, b := st.Subscribe("node-a", 0), st.Subscribe("node-b", 40)
			if r := next(t, a); r.Index != 1 {
				t.Fatalf("node-a's first answer at %d, want 1", r.Index)
			}
			if r := next(t, b); r.Index != 41 {
				t.Fatalf("node-b's first answer at %d, want 41", r.Index)
			}
			ctx := context.Background()
			if err := st.Report(ctx, "node-a", []api.AllocUpdate{{ID: "x", ClientStatus: api.AllocRunning}}); err != nil {
				t.Fatalf("report: %v", err)
			}
			if err := st.Heartbeat(ctx, "node-b", nil, 5*time.Second); err != nil {
				t.Fatalf("heartbeat: %v", err)
			}
			if err := st.Heartbeat(ctx, "unknown", nil, 5*time.Second); !IsNotFound(err) {
				t.Fatalf("heartbeat of an unknown node: %v, want the server's 404", err)
			}

			// The server cuts the stream: the client reconnects and
			// resubscribes each node from the last index it received.
			fake.cutAll()
			if r := next(t, a); r.Index != 2 {
				t.Fatalf("node-a after the reconnect at %d, want 2 (resumed from 1)", r.Index)
			}
			if r := next(t, b); r.Index != 42 {
				t.Fatalf("node-b after the reconnect at %d, want 42 (resumed from 41)", r.Index)
			}
			var resumed []nodewire.Frame
			for _, f := range fake.seen() {
				if f.Type == nodewire.Subscribe {
					resumed = append(resumed, f)
				}
			}
			if len(resumed) != 4 {
				t.Fatalf("subscriptions seen: %+v, want 4", resumed)
			}
			for _, f := range resumed[2:] {
				if want := map[string]int64{"node-a": 1, "node-b": 41}[f.Node]; f.Index != want {
					t.Errorf("%s resubscribed from %d, want %d", f.Node, f.Index, want)
				}
			}
			if err := st.Report(ctx, "node-b", nil); err != nil {
				t.Fatalf("report after the reconnect: %v", err)
			}
			a.Close()
			if _, err := a.Next(ctx); !errors.Is(err, ErrStreamClosed) {
				t.Fatalf("next after close: %v, want ErrStreamClosed", err)
			}
			emu.Lock()
			defer emu.Unlock()
			if len(errs) == 0 {
				t.Error("OnError was not told of the cut stream")
			}
		})
	}
}

// TestNodeStreamUnsupported: a server that predates the stream answers
// 404, and the caller is told to fall back to the long-poll.
func TestNodeStreamUnsupported(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// As the catch-all route of an older server: the body is
		// not read.
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"error":"no API endpoint POST /v1/nodes/stream"}`)
	}))
	defer ts.Close()
	st := New(Options{Servers: []string{ts.URL}}).OpenNodeStream(context.Background(), NodeStreamOptions{})
	defer st.Close()
	sub := st.Subscribe("n1", 0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := sub.Next(ctx); !errors.Is(err, ErrStreamUnsupported) {
		t.Fatalf("next: %v, want ErrStreamUnsupported", err)
	}
	if err := st.Report(ctx, "n1", nil); !errors.Is(err, ErrStreamUnsupported) {
		t.Fatalf("report: %v, want ErrStreamUnsupported", err)
	}
	if !st.IsUnsupported() {
		t.Fatal("IsUnsupported is false")
	}
}
