package server

import (
	"context"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/nodewire"
	"github.com/gantryhq/gantry/internal/scheduler/schedtest"
	"github.com/gantryhq/gantry/internal/state"
)

// rawStream is a test's end of POST /v1/nodes/stream, frame by frame.
type rawStream struct {
	t      *testing.T
	pw     *io.PipeWriter
	body   io.ReadCloser
	frames chan *nodewire.Frame
	seq    uint64
}

func openStream(t *testing.T, c *http.Client, base string) *rawStream {
	t.Helper()
	pr, pw := io.Pipe()
	req, _ := http.NewRequest(http.MethodPost, base+"/v1/nodes/stream", pr)
	req.Header.Set("Content-Type", nodewire.ContentType)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("open the stream: %s", resp.Status)
	}
	rs := &rawStream{t: t, pw: pw, body: resp.Body, frames: make(chan *nodewire.Frame, 64)}
	go func() {
		defer close(rs.frames)
		dec := nodewire.NewDecoder(resp.Body, 64<<20)
		for {
			f, err := dec.Next()
			if err != nil {
				return
			}
			if f.Type != nodewire.Ping {
				rs.frames <- f
			}
		}
	}()
	t.Cleanup(rs.close)
	return rs
}

func (rs *rawStream) close() {
	rs.pw.Close()
	rs.body.Close()
}

func (rs *rawStream) send(f *nodewire.Frame) uint64 {
	rs.t.Helper()
	if f.Type == nodewire.Report || f.Type == nodewire.Heartbeat {
		rs.seq++
		f.Seq = rs.seq
	}
	b, err := nodewire.Append(nil, f)
	if err != nil {
		rs.t.Fatal(err)
	}
	if _, err := rs.pw.Write(b); err != nil {
		rs.t.Fatalf("write a %s frame: %v", f.Type, err)
	}
	return f.Seq
}

func (rs *rawStream) next() *nodewire.Frame {
	rs.t.Helper()
	select {
	case f, ok := <-rs.frames:
		if !ok {
			rs.t.Fatal("the stream ended")
		}
		return f
	case <-time.After(20 * time.Second):
		rs.t.Fatal("no frame within 20s")
	}
	return nil
}

// allocsOf reads frames until one answer for each node named, and
// returns them by node.
func (rs *rawStream) answers(nodes ...string) map[string]*api.NodeAllocsResponse {
	rs.t.Helper()
	out := map[string]*api.NodeAllocsResponse{}
	for len(out) < len(nodes) {
		f := rs.next()
		if f.Type != nodewire.Allocs {
			rs.t.Fatalf("got a %s frame, want allocations", f.Type)
		}
		if !slices.Contains(nodes, f.Node) {
			rs.t.Fatalf("an answer for %s, want one for %v", f.Node, nodes)
		}
		if out[f.Node] != nil {
			rs.t.Fatalf("two answers for %s before one for each of %v", f.Node, nodes)
		}
		out[f.Node] = f.Allocs
	}
	return out
}

func (rs *rawStream) ack(seq uint64) *nodewire.Frame {
	rs.t.Helper()
	f := rs.next()
	if f.Type != nodewire.Ack || f.Seq != seq {
		rs.t.Fatalf("got %+v, want the ack of %d", f, seq)
	}
	return f
}

func allocIDs(r *api.NodeAllocsResponse) []string {
	var ids []string
	for _, a := range r.Allocs {
		ids = append(ids, a.ID)
	}
	slices.Sort(ids)
	return ids
}

func h2cClient() *http.Client {
	t := &http.Transport{}
	t.Protocols = new(http.Protocols)
	t.Protocols.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: t}
}

// TestNodeStream: two nodes on one stream get their allocations as they
// change; a stream opened again and resumed from each node's last index
// gets exactly the changes past it; a report sent twice is applied once.
func TestNodeStream(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    *http.Client
	}{{"HTTP/1.1", &http.Client{Transport: &http.Transport{}}}, {"HTTP/2", h2cClient()}} {
		t.Run(tc.name, func(t *testing.T) { testNodeStream(t, tc.c) })
	}
}

func testNodeStream(t *testing.T, c *http.Client) {
	s := startTestServer(t, Config{})
	base := "http://" + s.Addr()
	ctx := context.Background()
	n1, n2 := schedtest.Node("n1"), schedtest.Node("n2")
	for _, n := range []*api.Node{n1, n2} {
		if err := s.store.RegisterNode(ctx, n, time.Minute, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	place := func(allocs ...*api.Allocation) int64 {
		t.Helper()
		rev, err := s.store.ApplyPlan(ctx, &state.PlanCommit{Place: allocs})
		if err != nil {
			t.Fatal(err)
		}
		return rev
	}
	alloc := func(id string, n *api.Node) *api.Allocation {
		return &api.Allocation{ID: id, Namespace: "default", Job: "j", Group: "g", NodeID: n.ID,
			DesiredStatus: api.AllocDesiredRun, ClientStatus: api.AllocPending}
	}

	// 1. Both nodes subscribe from 0: a full, consistent answer each.
	place(alloc("a0", n1))
	rs := openStream(t, c, base)
	rs.send(&nodewire.Frame{Type: nodewire.Subscribe, Node: n1.ID})
	rs.send(&nodewire.Frame{Type: nodewire.Subscribe, Node: n2.ID})
	got := rs.answers(n1.ID, n2.ID)
	if r := got[n1.ID]; !r.Consistent || !slices.Equal(allocIDs(r), []string{"a0"}) || !slices.Equal(r.IDs, []string{"a0"}) {
		t.Fatalf("n1's first answer: %+v, want a0, consistent, with every ID", r)
	}
	if r := got[n2.ID]; !r.Consistent || len(r.Allocs) != 0 || r.IDs == nil {
		t.Fatalf("n2's first answer: %+v, want none, consistent, with every ID (none)", r)
	}
	idx := map[string]int64{n1.ID: got[n1.ID].Index, n2.ID: got[n2.ID].Index}

	// 2. One plan places on both: an answer each, with only what is new.
	rev := place(alloc("a1", n1), alloc("a2", n2))
	got = rs.answers(n1.ID, n2.ID)
	if !slices.Equal(allocIDs(got[n1.ID]), []string{"a1"}) || !slices.Equal(allocIDs(got[n2.ID]), []string{"a2"}) {
		t.Fatalf("answers after the plan: n1 %v, n2 %v; want a1 and a2", allocIDs(got[n1.ID]), allocIDs(got[n2.ID]))
	}
	for _, n := range []string{n1.ID, n2.ID} {
		if got[n].Index != rev || got[n].Consistent {
			t.Fatalf("answer for %s: index %d consistent %v, want %d, not marked consistent (a delta)", n, got[n].Index, got[n].Consistent, rev)
		}
		idx[n] = got[n].Index
	}

	// 3. The stream ends. While no stream is open, n1 gets a3 and a0 is
	// stopped; n2 gets nothing.
	rs.close()
	place(alloc("a3", n1))
	if _, err := s.store.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	a0, _ := s.store.Alloc("a0")
	stop := *a0
	stop.DesiredStatus = api.AllocDesiredStop
	if _, err := s.store.ApplyPlan(ctx, &state.PlanCommit{Update: []*api.Allocation{&stop}}); err != nil {
		t.Fatal(err)
	}

	// 4. A new stream resumes both from their last index: n1 gets exactly
	// a0 (stopped) and a3, n2 nothing until a4 is placed, and then only
	// a4.
	rs = openStream(t, c, base)
	rs.send(&nodewire.Frame{Type: nodewire.Subscribe, Node: n1.ID, Index: idx[n1.ID]})
	rs.send(&nodewire.Frame{Type: nodewire.Subscribe, Node: n2.ID, Index: idx[n2.ID]})
	got = rs.answers(n1.ID)
	if ids := allocIDs(got[n1.ID]); !slices.Equal(ids, []string{"a0", "a3"}) {
		t.Fatalf("n1 resumed from %d got %v, want exactly a0 and a3", idx[n1.ID], ids)
	}
	for _, a := range got[n1.ID].Allocs {
		if a.ID == "a0" && a.DesiredStatus != api.AllocDesiredStop {
			t.Fatalf("a0 is %s in the resumed answer, want stop", a.DesiredStatus)
		}
	}
	place(alloc("a4", n2))
	got = rs.answers(n2.ID)
	if ids := allocIDs(got[n2.ID]); !slices.Equal(ids, []string{"a4"}) {
		t.Fatalf("n2 resumed from %d got %v, want only a4", idx[n2.ID], ids)
	}

	// 5. The same report twice: both acknowledged, applied once.
	report := &nodewire.Frame{Type: nodewire.Report, Node: n2.ID, Updates: []api.AllocUpdate{{ID: "a4", ClientStatus: api.AllocRunning,
		TaskStates: map[string]*api.TaskState{"t": {State: "running"}}}}}
	if f := rs.ack(rs.send(report)); f.Status != http.StatusOK {
		t.Fatalf("first report: %d %s", f.Status, f.Error)
	}
	if _, err := s.store.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	once, _ := s.store.Alloc("a4")
	if once.ClientStatus != api.AllocRunning {
		t.Fatalf("a4 is %s after the report, want running", once.ClientStatus)
	}
	if f := rs.ack(rs.send(report)); f.Status != http.StatusOK {
		t.Fatalf("second report: %d %s", f.Status, f.Error)
	}
	if _, err := s.store.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if twice, _ := s.store.Alloc("a4"); twice.ModifyIndex != once.ModifyIndex {
		t.Fatalf("the same report again rewrote a4 (modify index %d, then %d)", once.ModifyIndex, twice.ModifyIndex)
	}

	// 6. Refusals come back as acknowledgements, and the stream goes on.
	if f := rs.ack(rs.send(&nodewire.Frame{Type: nodewire.Report, Node: "nobody", Updates: []api.AllocUpdate{{ID: "a4", ClientStatus: api.AllocRunning}}})); f.Status != http.StatusNotFound {
		t.Fatalf("a report for an unknown node: %d, want 404", f.Status)
	}
	if f := rs.ack(rs.send(&nodewire.Frame{Type: nodewire.Report, Node: n2.ID, Updates: []api.AllocUpdate{{ID: "a4", ClientStatus: "bogus"}}})); f.Status != http.StatusBadRequest {
		t.Fatalf("a report with a bad status: %d, want 400", f.Status)
	}
	if f := rs.ack(rs.send(&nodewire.Frame{Type: nodewire.Heartbeat, Node: n1.ID})); f.Status != http.StatusOK {
		t.Fatalf("heartbeat: %d %s", f.Status, f.Error)
	}
	if f := rs.ack(rs.send(&nodewire.Frame{Type: nodewire.Heartbeat, Node: "nobody"})); f.Status != http.StatusNotFound {
		t.Fatalf("heartbeat of an unknown node: %d, want 404", f.Status)
	}
}

// TestNodeStreamProbe: an empty request is a client's probe, answered
// 204; the long-poll endpoints stay.
func TestNodeStreamProbe(t *testing.T) {
	s := startTestServer(t, Config{})
	resp, err := http.Post("http://"+s.Addr()+"/v1/nodes/stream", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("probe: %s, want 204", resp.Status)
	}
	resp, err = http.Get("http://" + s.Addr() + "/v1/nodes/x/allocations?index=0&wait=1s")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("long-poll: %s, want 200", resp.Status)
	}
}
