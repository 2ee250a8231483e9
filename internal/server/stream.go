package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/nodewire"
)

// The node stream (POST /v1/nodes/stream) is the agent protocol on one
// long-lived request, full duplex (HTTP/2, or HTTP/1.1 with the
// server's full-duplex mode), for any number of nodes: the agent
// subscribes node IDs, each with the index it holds, and sends its
// reports and heartbeats as frames; the server answers each subscribed
// node, whenever its allocations change past that index, with what the
// long-poll (GET /v1/nodes/{id}/allocations) would answer, and
// acknowledges each report and heartbeat once done. Frames are
// nodewire's.
//
//   - Coalescing: a node whose allocations change while the stream is
//     writing is answered once, in the next write, with everything past
//     what it was last sent; the nodes ready together go out in one write
//     and one flush.
//   - Resume: the index of a subscription is the store revision of the
//     last answer the agent received, so a reconnect, to this server or
//     another, gets exactly the changes past it.
//   - The first answer after each (re)subscription follows a
//     linearizable read (store.Sync), as a full long-poll answer does:
//     a server whose view lags answers only once it has caught up, so a
//     lagging follower can neither omit an allocation from a full answer
//     (on which the agent removes orphaned tasks) nor answer a resume
//     with less than the agent already holds. If it knows less than the
//     index asked for even then (its store was restored from an older
//     backup), it answers in full, and the agent starts over from that
//     answer.
//   - Reports are idempotent: they carry the allocation's whole client
//     state, and the store writes one equal to what it holds as nothing,
//     so an agent sends again whatever was not acknowledged.
//
// A stream is authorized once, when it opens, like the endpoints it
// stands for (agentProto); it ends when the client closes it or the
// server shuts down, and the client then reconnects, to this server or
// the next one.

// Bounds of one stream.
const (
	// maxStreamNodes bounds the nodes one stream may subscribe.
	maxStreamNodes = 4096
	// maxStreamInFlight bounds the reports and heartbeats of one stream
	// being committed at once; past it the stream's reader waits.
	maxStreamInFlight = 256
)

func (s *Server) handleNodeStream(w http.ResponseWriter, r *http.Request) error {
	if r.ContentLength == 0 {
		// A client's probe: the stream is served here (a server before
		// it answers 404). Over HTTP/1.1 an answer refusing the stream
		// itself would not arrive while its body goes on.
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, nodewire.ContentType) {
		return &httpError{status: http.StatusUnsupportedMediaType, msg: fmt.Sprintf("the node stream's body must be %s frames, not %q", nodewire.ContentType, ct)}
	}
	rc := http.NewResponseController(w)
	if r.ProtoMajor == 1 {
		// HTTP/1.1 reads the request's body while it writes the answer
		// only when asked to; HTTP/2 always does.
		if err := rc.EnableFullDuplex(); err != nil {
			return fmt.Errorf("the node stream needs full duplex: %w", err)
		}
	}
	w.Header().Set("Content-Type", nodewire.ContentType)
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return nil // the client is gone
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stop := context.AfterFunc(s.streamsCtx(), cancel)
	defer stop()
	// Once the stream ends on either side, or the server shuts down, a
	// read or write still waiting returns.
	unblocked := make(chan struct{})
	stopUnblock := context.AfterFunc(ctx, func() {
		defer close(unblocked)
		rc.SetReadDeadline(time.Now())
		rc.SetWriteDeadline(time.Now())
	})
	defer func() {
		// The response may not be touched once the handler returned.
		if !stopUnblock() {
			<-unblocked
		}
	}()
	st := &nodeStream{s: s, ctx: ctx, w: w, rc: rc, subs: map[string]*streamSub{}, ready: map[string]bool{},
		kick: make(chan struct{}, 1), inFlight: make(chan struct{}, maxStreamInFlight)}
	done := make(chan error, 1)
	go func() {
		err := st.writeLoop()
		cancel()
		done <- err
	}()
	rerr := st.readLoop(r.Body)
	cancel()
	werr := <-done
	st.wg.Wait()
	if rerr != nil && !errors.Is(rerr, io.EOF) && ctx.Err() == nil {
		s.log.Debug("node stream ended", "err", rerr)
	}
	if werr != nil && !errors.Is(werr, context.Canceled) {
		s.log.Debug("node stream write", "err", werr)
	}
	return nil
}

// streamsCtx ends when the server begins to shut down, and with it every
// node stream (Shutdown waits for no long-lived request).
func (s *Server) streamsCtx() context.Context {
	s.streamsOnce.Do(func() {
		s.streams, s.endStreams = context.WithCancel(context.Background())
	})
	return s.streams
}

// nodeStream is one open stream.
type nodeStream struct {
	s   *Server
	ctx context.Context
	w   io.Writer
	rc  *http.ResponseController

	mu    sync.Mutex
	subs  map[string]*streamSub
	ready map[string]bool  // subscribed nodes to answer in the next write
	acks  []nodewire.Frame // acknowledgements for the next write
	kick  chan struct{}

	inFlight chan struct{} // reports and heartbeats being done
	wg       sync.WaitGroup
}

// streamSub is one node's subscription.
type streamSub struct {
	index int64 // the index of the last answer sent, or the one the agent asked to resume from
	fresh bool  // nothing sent since (re)subscription: the next answer follows a linearizable read
	stop  chan struct{}
}

func (st *nodeStream) poke() {
	select {
	case st.kick <- struct{}{}:
	default:
	}
}

func (st *nodeStream) ack(f *nodewire.Frame, err error) {
	a := nodewire.Frame{Type: nodewire.Ack, Node: f.Node, Seq: f.Seq, Status: http.StatusOK}
	if err != nil {
		status, body := errorAnswer(err)
		a.Status, a.Error = status, body.Error
	}
	st.mu.Lock()
	st.acks = append(st.acks, a)
	st.mu.Unlock()
	st.poke()
}

// readLoop reads the agent's frames until the stream ends.
func (st *nodeStream) readLoop(body io.Reader) error {
	dec := nodewire.NewDecoder(body, int(st.s.cfg.MaxBodyBytes))
	defer st.unsubscribeAll()
	for {
		f, err := dec.Next()
		if errors.Is(err, nodewire.ErrMalformed) {
			if f != nil && f.Seq != 0 {
				st.ack(f, badRequest("%v", err))
			}
			continue
		}
		if err != nil {
			return err
		}
		switch f.Type {
		case nodewire.Subscribe:
			if err := st.subscribe(f.Node, f.Index); err != nil {
				st.ack(f, err)
			}
		case nodewire.Unsubscribe:
			st.unsubscribe(f.Node)
		case nodewire.Report, nodewire.Heartbeat:
			select {
			case st.inFlight <- struct{}{}:
			case <-st.ctx.Done():
				return st.ctx.Err()
			}
			st.wg.Add(1)
			go func() {
				defer st.wg.Done()
				defer func() { <-st.inFlight }()
				var err error
				if f.Type == nodewire.Report {
					err = st.s.nodeReport(st.ctx, f.Node, f.Updates)
				} else {
					err = st.s.nodeHeartbeat(st.ctx, f.Node, f.Sample)
				}
				if st.ctx.Err() == nil {
					st.ack(f, err)
				}
			}()
		default:
			if f.Seq != 0 {
				st.ack(f, badRequest("frame type %q is not one this server reads", f.Type))
			}
		}
	}
}

func (st *nodeStream) subscribe(node string, index int64) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	old := st.subs[node]
	if old == nil && len(st.subs) >= maxStreamNodes {
		return badRequest("a stream carries at most %d nodes: open another for node %s", maxStreamNodes, node)
	}
	if old != nil {
		close(old.stop)
	}
	sub := &streamSub{index: index, fresh: true, stop: make(chan struct{})}
	st.subs[node] = sub
	st.ready[node] = true
	st.wg.Add(1)
	go func() { defer st.wg.Done(); st.watch(node, sub) }()
	st.poke()
	return nil
}

func (st *nodeStream) unsubscribe(node string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if sub := st.subs[node]; sub != nil {
		close(sub.stop)
		delete(st.subs, node)
		delete(st.ready, node)
	}
}

func (st *nodeStream) unsubscribeAll() {
	st.mu.Lock()
	defer st.mu.Unlock()
	for node, sub := range st.subs {
		close(sub.stop)
		delete(st.subs, node)
	}
}

// watch marks the node ready whenever its index passes what it was last
// sent, until its subscription ends.
func (st *nodeStream) watch(node string, sub *streamSub) {
	for {
		idx, changed := st.s.store.NodeWait(node)
		st.mu.Lock()
		if st.subs[node] != sub {
			st.mu.Unlock()
			return
		}
		if idx > sub.index {
			st.ready[node] = true
			st.poke()
		}
		st.mu.Unlock()
		select {
		case <-changed:
		case <-sub.stop:
			return
		case <-st.ctx.Done():
			return
		}
	}
}

// writeLoop writes what is ready, each round in one write and one flush,
// and a ping when the stream has been silent for nodewire.PingInterval.
func (st *nodeStream) writeLoop() error {
	ping := time.NewTicker(nodewire.PingInterval)
	defer ping.Stop()
	var buf []byte
	wrote := false
	for {
		pinging := false
		select {
		case <-st.ctx.Done():
			return st.ctx.Err()
		case <-st.kick:
		case <-ping.C:
			if wrote {
				wrote = false
				continue
			}
			pinging = true
		}
		var err error
		if buf, err = st.round(buf[:0], pinging); err != nil {
			return err
		}
		if len(buf) == 0 {
			continue
		}
		if _, err := st.w.Write(buf); err != nil {
			return fmt.Errorf("write to the node stream: %w", err)
		}
		if err := st.rc.Flush(); err != nil {
			return fmt.Errorf("flush the node stream: %w", err)
		}
		wrote = true
		if cap(buf) > 1<<20 {
			buf = nil
		}
	}
}

// round appends to buf the frames of one write: the acknowledgements
// waiting, and the answers of the nodes ready.
func (st *nodeStream) round(buf []byte, ping bool) ([]byte, error) {
	st.mu.Lock()
	nodes := make([]string, 0, len(st.ready))
	fresh := false
	for node := range st.ready {
		if sub := st.subs[node]; sub != nil {
			nodes = append(nodes, node)
			fresh = fresh || sub.fresh
		}
	}
	clear(st.ready)
	acks := st.acks
	st.acks = nil
	st.mu.Unlock()
	var err error
	for i := range acks {
		if buf, err = nodewire.Append(buf, &acks[i]); err != nil {
			return buf, err
		}
	}
	if fresh {
		// One linearizable read for every node (re)subscribed since the
		// last round.
		if _, err := st.s.store.Sync(st.ctx); err != nil {
			return buf, fmt.Errorf("bring the view up to date before answering a subscription: %w", err)
		}
	}
	slices.Sort(nodes)
	for _, node := range nodes {
		st.mu.Lock()
		sub := st.subs[node]
		st.mu.Unlock()
		if sub == nil {
			continue
		}
		if buf, err = st.answer(buf, node, sub); err != nil {
			return buf, err
		}
	}
	if ping && len(buf) == 0 {
		buf, err = nodewire.Append(buf, &nodewire.Frame{Type: nodewire.Ping})
	}
	return buf, err
}

// answer appends the node's answer past its index, if there is one.
func (st *nodeStream) answer(buf []byte, node string, sub *streamSub) ([]byte, error) {
	st.mu.Lock()
	index, fresh := sub.index, sub.fresh
	st.mu.Unlock()
	allocs, ids, idx, _ := st.s.store.NodeAllocsSince(node, index)
	idx = max(idx, 1)
	if fresh && index > 0 && idx < index {
		// This server knows less than the agent holds even after the
		// linearizable read: answer in full, and the agent starts over.
		index = 0
		allocs, ids, idx, _ = st.s.store.NodeAllocsSince(node, 0)
		idx = max(idx, 1)
	}
	st.mu.Lock()
	current := st.subs[node] == sub
	if current {
		sub.fresh = false
	}
	st.mu.Unlock()
	if !current || (index > 0 && idx <= index) {
		return buf, nil
	}
	buf, err := nodewire.Append(buf, &nodewire.Frame{Type: nodewire.Allocs, Node: node,
		Allocs: &api.NodeAllocsResponse{Index: idx, Allocs: allocs, IDs: ids, Consistent: fresh}})
	if err != nil {
		return buf, err
	}
	st.mu.Lock()
	if st.subs[node] == sub {
		sub.index = idx
	}
	st.mu.Unlock()
	return buf, nil
}
