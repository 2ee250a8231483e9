package lb

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"
)

// tcpProxy forwards each client connection to one endpoint.
type tcpProxy struct {
	svc       string
	pool      *pool
	dialer    *net.Dialer
	accessLog *slog.Logger
	log       *slog.Logger

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func newTCPProxy(svc string, p *pool, dialTimeout time.Duration, accessLog, log *slog.Logger) *tcpProxy {
	return &tcpProxy{svc: svc, pool: p, dialer: &net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second},
		accessLog: accessLog, log: log, conns: map[net.Conn]struct{}{}}
}

// serve accepts connections until the listener closes.
func (t *tcpProxy) serve(ln net.Listener) {
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off a little.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			t.log.Warn("accept failed", "service", t.svc, "err", err)
			time.Sleep(delay)
			continue
		}
		delay = 0
		go t.handle(c)
	}
}

// closeAll ends every connection still open (listener removed).
func (t *tcpProxy) closeAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for c := range t.conns {
		c.Close()
	}
}

func (t *tcpProxy) track(c net.Conn, on bool) {
	t.mu.Lock()
	if on {
		t.conns[c] = struct{}{}
	} else {
		delete(t.conns, c)
	}
	t.mu.Unlock()
}

func (t *tcpProxy) handle(client net.Conn) {
	defer client.Close()
	t.track(client, true)
	defer t.track(client, false)
	start := time.Now()
	var tried [maxAttempts]*endpoint
	var up net.Conn
	var ep *endpoint
	for attempt := 0; attempt < maxAttempts; attempt++ {
		ep = t.pool.pick(tried[:attempt])
		if ep == nil {
			break
		}
		ep.outstanding.Add(1)
		c, err := t.dialer.DialContext(context.Background(), "tcp", ep.addr)
		if err == nil {
			up = c
			break
		}
		ep.outstanding.Add(-1)
		ep.eject(time.Now().UnixNano())
		ep.retries.Add(1)
		tried[attempt] = ep
		ep = nil
	}
	if up == nil {
		if tried[0] == nil {
			t.pool.noEndpoint.Add(1)
		} else {
			tried[0].requests[0].Add(1)
		}
		t.log.Debug("no endpoint accepted the connection", "service", t.svc, "client", client.RemoteAddr())
		return
	}
	defer ep.outstanding.Add(-1)
	t.track(up, true)
	defer t.track(up, false)
	ep.latency.observe(time.Since(start))
	var wg sync.WaitGroup
	var in, out int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		in, _ = io.Copy(up, client)
		closeWrite(up)
	}()
	out, _ = io.Copy(client, up)
	closeWrite(client)
	wg.Wait()
	up.Close()
	ep.requests[2].Add(1) // a connection that was made counts as a success
	if t.accessLog != nil {
		t.accessLog.LogAttrs(context.Background(), slog.LevelInfo, "connection",
			slog.String("service", t.svc), slog.String("client", client.RemoteAddr().String()),
			slog.String("upstream", ep.addr), slog.String("alloc", ep.alloc),
			slog.Int64("bytes_in", in), slog.Int64("bytes_out", out),
			slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000))
	}
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	} else {
		c.Close()
	}
}
