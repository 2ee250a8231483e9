package apiclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/nodewire"
)

// ErrStreamUnsupported says that the servers answered the node stream
// 404 or 405: they are older than it. The caller uses the long-poll
// endpoints (NodeAllocs, ReportAllocs, Heartbeat) instead.
var ErrStreamUnsupported = errors.New("the servers do not serve the node stream (POST /v1/nodes/stream): they predate it; use the long-poll endpoints")

// ErrStreamClosed is returned by a NodeStream's methods once it was
// closed.
var ErrStreamClosed = errors.New("the node stream was closed")

// errStreamLost is the cause of an UnavailableError for a report or
// heartbeat whose stream broke before the server acknowledged it: it may
// or may not have been done, and sending it again is safe.
var errStreamLost = errors.New("the node stream broke before the server acknowledged the frame")

// Stream timing.
const (
	// streamHeaderTimeout bounds how long a server may take to accept
	// the stream before the next one is tried.
	streamHeaderTimeout = 10 * time.Second
	// streamBackoffMin and streamBackoffMax bound the wait between
	// attempts to (re)connect, doubled per failure, with jitter.
	streamBackoffMin = 250 * time.Millisecond
	streamBackoffMax = 5 * time.Second
)

// NodeStreamOptions tune a NodeStream.
type NodeStreamOptions struct {
	// OnError, when set, is told of each failed attempt to connect and
	// of each stream that broke (the client reconnects by itself).
	OnError func(err error)
}

// NodeStream carries the agent protocol of any number of nodes over one
// long-lived request to the servers (POST /v1/nodes/stream; see
// internal/server/stream.go): a subscription per node delivers its
// allocations as they change, and reports and heartbeats go up the same
// stream, written together when they are ready together.
//
// It reconnects by itself when the stream breaks, with backoff, to the
// server that answered last or, when that one cannot be reached, the
// next one, and resubscribes every node from the index of the last
// answer it received for it, so that each change is delivered once.
// Reports and heartbeats in flight when a stream breaks fail with an
// *UnavailableError (Retryable): reports are idempotent, so the caller
// sends them again. When the servers answer that they do not know the
// stream (404, 405: an older version), every method returns
// ErrStreamUnsupported and Unsupported is closed: the caller falls back
// to the long-poll endpoints.
//
// It is safe for concurrent use; nodes of different agents may share
// one (the load tool's simulated nodes do).
type NodeStream struct {
	c    *Client
	opts NodeStreamOptions
	ctx  context.Context
	stop context.CancelFunc
	done chan struct{}

	unsupported chan struct{}

	mu   sync.Mutex
	subs map[string]*NodeSub
	conn *streamConn   // the connection up; nil between
	up   chan struct{} // closed when conn is set
}

// OpenNodeStream starts a node stream that connects in the background
// and lives until ctx ends or Close.
func (c *Client) OpenNodeStream(ctx context.Context, o NodeStreamOptions) *NodeStream {
	ctx, stop := context.WithCancel(ctx)
	s := &NodeStream{c: c, opts: o, ctx: ctx, stop: stop, done: make(chan struct{}), unsupported: make(chan struct{}),
		subs: map[string]*NodeSub{}, up: make(chan struct{})}
	go s.run()
	return s
}

// Close ends the stream and waits until its connection is closed.
func (s *NodeStream) Close() {
	s.stop()
	<-s.done
}

// Unsupported is closed when the servers answered that they do not serve
// the stream.
func (s *NodeStream) Unsupported() <-chan struct{} { return s.unsupported }

// IsUnsupported reports whether the servers answered that they do not
// serve the stream.
func (s *NodeStream) IsUnsupported() bool {
	select {
	case <-s.unsupported:
		return true
	default:
		return false
	}
}

// endErr is why the stream ended: the servers do not serve it, or it
// was closed.
func (s *NodeStream) endErr() error {
	if s.IsUnsupported() {
		return ErrStreamUnsupported
	}
	return ErrStreamClosed
}

// NodeSub is one node's subscription: the answers the servers send for
// it, in order.
type NodeSub struct {
	s    *NodeStream
	node string

	mu     sync.Mutex
	index  int64 // of the last answer received: where a reconnect resumes
	queue  []*api.NodeAllocsResponse
	notify chan struct{}
	closed bool
}

// Subscribe asks for the node's allocations past index (0: all of them,
// consistent as a full long-poll answer is). Subscribing a node again
// replaces its earlier subscription, which ends.
func (s *NodeStream) Subscribe(node string, index int64) *NodeSub {
	sub := &NodeSub{s: s, node: node, index: index, notify: make(chan struct{}, 1)}
	s.mu.Lock()
	if old := s.subs[node]; old != nil {
		old.end()
	}
	s.subs[node] = sub
	conn := s.conn
	s.mu.Unlock()
	if conn != nil {
		conn.queue(&nodewire.Frame{Type: nodewire.Subscribe, Node: node, Index: index})
	}
	return sub
}

// Next waits for the node's next answer: the allocations the servers
// changed past the previous one (all of them for the first after a
// subscription from 0, or after a server that knew less than the index
// asked answered in full), every ID when one may have left the node, and
// the index. It returns ErrStreamUnsupported when the servers do not
// serve the stream, ErrStreamClosed once the subscription or the stream
// ended.
func (n *NodeSub) Next(ctx context.Context) (*api.NodeAllocsResponse, error) {
	for {
		n.mu.Lock()
		if len(n.queue) > 0 {
			r := n.queue[0]
			n.queue[0] = nil
			n.queue = n.queue[1:]
			n.mu.Unlock()
			return r, nil
		}
		closed := n.closed
		n.mu.Unlock()
		if closed {
			return nil, n.s.endErr()
		}
		select {
		case <-n.notify:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-n.s.unsupported:
			return nil, ErrStreamUnsupported
		case <-n.s.ctx.Done():
			return nil, n.s.endErr()
		}
	}
}

// Index is the index of the last answer received for the node.
func (n *NodeSub) Index() int64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.index
}

// Close ends the subscription.
func (n *NodeSub) Close() {
	s := n.s
	s.mu.Lock()
	mine := s.subs[n.node] == n
	if mine {
		delete(s.subs, n.node)
	}
	conn := s.conn
	s.mu.Unlock()
	n.end()
	if mine && conn != nil {
		conn.queue(&nodewire.Frame{Type: nodewire.Unsubscribe, Node: n.node})
	}
}

func (n *NodeSub) end() {
	n.mu.Lock()
	n.closed = true
	n.mu.Unlock()
	n.wake()
}

func (n *NodeSub) wake() {
	select {
	case n.notify <- struct{}{}:
	default:
	}
}

func (n *NodeSub) deliver(r *api.NodeAllocsResponse) {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	n.index = r.Index
	n.queue = append(n.queue, r)
	n.mu.Unlock()
	n.wake()
}

// Report sends the node's allocation reports and waits until the server
// committed them (as ReportAllocs does).
func (s *NodeStream) Report(ctx context.Context, node string, updates []api.AllocUpdate) error {
	ctx, cancel := context.WithTimeout(ctx, reportTimeout)
	defer cancel()
	return s.call(ctx, &nodewire.Frame{Type: nodewire.Report, Node: node, Updates: updates})
}

// Heartbeat renews the node's lease with its latest usage sample (nil:
// none), waiting at most timeout for the server's acknowledgement (as
// Client.Heartbeat does).
func (s *NodeStream) Heartbeat(ctx context.Context, node string, sample *api.NodeSample, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return s.call(ctx, &nodewire.Frame{Type: nodewire.Heartbeat, Node: node, Sample: sample})
}

// call sends f on the connection up (waiting for one until ctx ends) and
// waits for the server's acknowledgement.
func (s *NodeStream) call(ctx context.Context, f *nodewire.Frame) error {
	conn, err := s.live(ctx)
	if err != nil {
		return err
	}
	seq, ch := conn.expect()
	if ch == nil {
		return &UnavailableError{Servers: conn.base, Hint: s.c.hint, Err: errStreamLost}
	}
	f.Seq = seq
	conn.queue(f)
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		conn.forget(seq)
		return s.ctxErr(ctx, conn.base)
	}
}

// ctxErr is what a call whose ctx ended returns: like Client.call, an
// *UnavailableError when its time ran out, the context's error when it
// was cancelled.
func (s *NodeStream) ctxErr(ctx context.Context, servers string) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return &UnavailableError{Servers: servers, Hint: s.c.hint, Err: ctx.Err()}
	}
	return ctx.Err()
}

// live is the connection up, waiting for one until ctx ends.
func (s *NodeStream) live(ctx context.Context) (*streamConn, error) {
	for {
		s.mu.Lock()
		conn, up := s.conn, s.up
		s.mu.Unlock()
		if conn != nil {
			return conn, nil
		}
		select {
		case <-up:
		case <-ctx.Done():
			return nil, s.ctxErr(ctx, strings.Join(s.c.servers, ", "))
		case <-s.unsupported:
			return nil, ErrStreamUnsupported
		case <-s.ctx.Done():
			return nil, s.endErr()
		}
	}
}

// run connects, serves the connection until it breaks, and connects
// again, until the stream is closed or the servers say they do not serve
// it.
func (s *NodeStream) run() {
	defer close(s.done)
	defer s.stop()
	backoff := streamBackoffMin
	for s.ctx.Err() == nil {
		conn, err := s.dial()
		if err != nil {
			if st := StatusOf(err); st == http.StatusNotFound || st == http.StatusMethodNotAllowed {
				close(s.unsupported)
				return
			}
			if s.ctx.Err() != nil {
				return
			}
			s.tell(err)
		} else {
			s.attach(conn)
			err := conn.serve(s)
			s.detach(conn)
			if s.ctx.Err() != nil {
				return
			}
			s.tell(fmt.Errorf("the node stream to %s broke: %w", conn.base, err))
			if conn.heard.Load() {
				backoff = streamBackoffMin
			}
		}
		wait := backoff + rand.N(backoff/2+1)
		backoff = min(2*backoff, streamBackoffMax)
		if sleepCtx(s.ctx, wait) != nil {
			return
		}
	}
}

func (s *NodeStream) tell(err error) {
	if s.opts.OnError != nil {
		s.opts.OnError(err)
	}
}

// attach makes conn the connection up and subscribes every node on it
// from the index of the last answer received.
func (s *NodeStream) attach(conn *streamConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	frames := make([]*nodewire.Frame, 0, len(s.subs))
	for node, sub := range s.subs {
		frames = append(frames, &nodewire.Frame{Type: nodewire.Subscribe, Node: node, Index: sub.Index()})
	}
	conn.queue(frames...)
	s.conn = conn
	close(s.up)
}

// detach forgets conn, which broke: what waits for its acknowledgements
// is told so.
func (s *NodeStream) detach(conn *streamConn) {
	s.mu.Lock()
	if s.conn == conn {
		s.conn = nil
		s.up = make(chan struct{})
	}
	s.mu.Unlock()
	conn.close(&UnavailableError{Servers: conn.base, Hint: s.c.hint, Err: errStreamLost})
}

// dial opens the stream on the server that answered last or, when it
// cannot be reached, the next one. It asks first with an empty request
// (which a server that serves the stream answers 204): over HTTP/1.1 a
// server that does not know the stream (or refuses the caller) would
// answer only once the request's body ended, which the stream's never
// does.
func (s *NodeStream) dial() (*streamConn, error) {
	c := s.c
	if len(c.servers) == 0 {
		return nil, errors.New("no Gantry server address given")
	}
	probe, done, err := c.sendOnce(s.ctx, http.MethodPost, streamPath, false, nil, streamHeaderTimeout)
	if err != nil {
		return nil, err
	}
	io.Copy(io.Discard, probe.Body)
	probe.Body.Close()
	done()
	base := probe.Request.URL.Scheme + "://" + probe.Request.URL.Host
	ctx, cancel := context.WithCancel(s.ctx)
	pr, pw := io.Pipe()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+streamPath, pr)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("bad server address %q: %w", base, err)
	}
	req.Header.Set("Content-Type", nodewire.ContentType)
	if c.token != "" {
		req.Header.Set("X-Gantry-Token", c.token)
	}
	// A server that does not answer in time is given up on; the body is
	// ended too, as the transport waits for it before it returns.
	slow := time.AfterFunc(streamHeaderTimeout, func() {
		cancel()
		pw.CloseWithError(context.DeadlineExceeded)
	})
	resp, err := c.http.Do(req)
	slow.Stop()
	if err != nil {
		pw.Close()
		cancel()
		if s.ctx.Err() != nil {
			return nil, s.ctx.Err()
		}
		return nil, &UnavailableError{Servers: base, Hint: c.hint, Err: err}
	}
	if resp.StatusCode != http.StatusOK {
		pw.Close()
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		cancel()
		return nil, decodeError(resp.StatusCode, resp.Status, data)
	}
	return &streamConn{base: base, pw: pw, body: resp.Body, cancel: cancel, kick: make(chan struct{}, 1),
		waiting: map[uint64]chan error{}}, nil
}

// streamPath is the node stream's endpoint.
const streamPath = "/v1/nodes/stream"

// streamConn is one connection of a NodeStream.
type streamConn struct {
	base   string
	pw     *io.PipeWriter
	body   io.ReadCloser
	cancel context.CancelFunc
	kick   chan struct{}
	heard  atomic.Bool // a frame arrived

	mu      sync.Mutex
	out     []byte // frames waiting to be written
	seq     uint64
	waiting map[uint64]chan error // acknowledgements awaited, by Seq
	dead    error                 // set once the connection broke
}

// queue encodes the frames for the next write.
func (c *streamConn) queue(fs ...*nodewire.Frame) {
	c.mu.Lock()
	for _, f := range fs {
		// A frame of the wire types always encodes; one that did not
		// would be left out, and its caller would wait for its
		// acknowledgement until its context ends.
		c.out, _ = nodewire.Append(c.out, f)
	}
	c.mu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// expect allocates a sequence number and the channel its acknowledgement
// will arrive on; nil once the connection broke.
func (c *streamConn) expect() (uint64, chan error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dead != nil {
		return 0, nil
	}
	c.seq++
	ch := make(chan error, 1)
	c.waiting[c.seq] = ch
	return c.seq, ch
}

func (c *streamConn) forget(seq uint64) {
	c.mu.Lock()
	delete(c.waiting, seq)
	c.mu.Unlock()
}

func (c *streamConn) resolve(f *nodewire.Frame) {
	c.mu.Lock()
	ch := c.waiting[f.Seq]
	delete(c.waiting, f.Seq)
	c.mu.Unlock()
	if ch == nil {
		return
	}
	var err error
	if f.Status/100 != 2 {
		err = &Error{Status: f.Status, Message: f.Error}
	}
	ch <- err
}

// close ends the connection; what waits for an acknowledgement gets err.
func (c *streamConn) close(err error) {
	c.cancel()
	c.pw.CloseWithError(err)
	c.body.Close()
	c.mu.Lock()
	if c.dead == nil {
		c.dead = err
	}
	waiting := c.waiting
	c.waiting = map[uint64]chan error{}
	c.mu.Unlock()
	for _, ch := range waiting {
		ch <- err
	}
}

// serve writes and reads the connection until it breaks: frames from
// the server are handed to their subscriptions and callers; a server
// silent for nodewire.DeadAfter is taken for gone.
func (c *streamConn) serve(s *NodeStream) error {
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	context.AfterFunc(ctx, func() { c.body.Close() })
	wrote := make(chan error, 1)
	go func() { wrote <- c.writeLoop(ctx) }()
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	watchdog := time.NewTicker(nodewire.PingInterval)
	defer watchdog.Stop()
	silent := make(chan struct{})
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-watchdog.C:
				if time.Since(time.Unix(0, last.Load())) > nodewire.DeadAfter {
					close(silent)
					cancel()
					return
				}
			}
		}
	}()
	dec := nodewire.NewDecoder(c.body, maxBody)
	var err error
	for {
		var f *nodewire.Frame
		f, err = dec.Next()
		if err != nil {
			if errors.Is(err, nodewire.ErrMalformed) {
				continue // a frame of a newer server this client cannot read
			}
			break
		}
		last.Store(time.Now().UnixNano())
		c.heard.Store(true)
		switch f.Type {
		case nodewire.Allocs:
			s.mu.Lock()
			sub := s.subs[f.Node]
			s.mu.Unlock()
			if sub != nil {
				sub.deliver(f.Allocs)
			}
		case nodewire.Ack:
			c.resolve(f)
		}
	}
	select {
	case <-silent:
		err = fmt.Errorf("the server sent nothing for %s", nodewire.DeadAfter)
	case werr := <-wrote:
		if werr != nil {
			err = werr
		}
	default:
	}
	return err
}

// writeLoop writes what was queued, all of it in one write, until ctx
// ends.
func (c *streamConn) writeLoop(ctx context.Context) error {
	var buf []byte
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-c.kick:
		}
		c.mu.Lock()
		buf, c.out = c.out, buf[:0]
		c.mu.Unlock()
		if len(buf) == 0 {
			continue
		}
		if _, err := c.pw.Write(buf); err != nil {
			c.cancel()
			return fmt.Errorf("write to the node stream: %w", err)
		}
		if cap(buf) > 1<<20 {
			buf = nil
		}
	}
}
