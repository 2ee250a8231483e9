package lb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"sync"
	"syscall"
	"time"
)

// maxAttempts bounds how many endpoints one request tries.
const maxAttempts = 3

// errNoEndpoint is returned when a service has no endpoint to send to.
var errNoEndpoint = errors.New("no healthy endpoint")

// httpProxy is the reverse proxy of one service.
type httpProxy struct {
	svc       string // namespace/name, for logs
	pool      *pool
	rp        *httputil.ReverseProxy
	accessLog *slog.Logger
	log       *slog.Logger
}

// reqState carries what the transport learned about a request to the
// access log.
type reqState struct {
	ep       *endpoint
	attempts int
}

type stateKey struct{}

func newHTTPProxy(svc string, p *pool, base *http.Transport, accessLog, log *slog.Logger) *httpProxy {
	h := &httpProxy{svc: svc, pool: p, accessLog: accessLog, log: log}
	h.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = "backend" // the transport picks the endpoint
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
		},
		Transport:    &retryTransport{pool: p, base: base},
		BufferPool:   bufPool{},
		ErrorHandler: h.proxyError,
		ErrorLog:     nil,
	}
	return h
}

func (h *httpProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.accessLog == nil {
		h.rp.ServeHTTP(w, r)
		return
	}
	start := time.Now()
	st := &reqState{}
	rec := &recorder{ResponseWriter: w, status: http.StatusOK}
	h.rp.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), stateKey{}, st)))
	attrs := []slog.Attr{
		slog.String("service", h.svc),
		slog.String("client", r.RemoteAddr),
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.String("proto", r.Proto),
		slog.Int("status", rec.status),
		slog.Int64("bytes", rec.bytes),
		slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000),
		slog.Int("attempts", st.attempts),
	}
	if st.ep != nil {
		attrs = append(attrs, slog.String("upstream", st.ep.addr), slog.String("alloc", st.ep.alloc))
	}
	h.accessLog.LogAttrs(r.Context(), slog.LevelInfo, "request", attrs...)
}

func (h *httpProxy) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusBadGateway
	switch {
	case errors.Is(err, errNoEndpoint):
		status = http.StatusServiceUnavailable
	case errors.Is(err, context.Canceled):
		status = 499 // the client went away; nobody reads this
	}
	h.log.Debug("proxy error", "service", h.svc, "path", r.URL.Path, "err", err)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	fmt.Fprintf(w, "gantry load balancer: service %s: %v\n", h.svc, err)
}

// recorder notes the status and size of a response for the access log.
// Unwrap lets the reverse proxy reach the connection's Flusher and
// Hijacker (streaming, WebSocket).
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (r *recorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// retryTransport sends a request to an endpoint the pool picks, and to
// another one when the first refused the connection (any request) or
// failed before answering (idempotent requests without a body).
type retryTransport struct {
	pool *pool
	base *http.Transport
}

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	st, _ := req.Context().Value(stateKey{}).(*reqState)
	replayable := req.Body == nil || req.Body == http.NoBody
	var body *trackedReader
	if !replayable {
		body = &trackedReader{r: req.Body}
	}
	idempotent := replayable && (req.Method == http.MethodGet || req.Method == http.MethodHead || req.Method == http.MethodOptions)
	var tried [maxAttempts]*endpoint
	var lastErr error
	for attempt := 0; attempt < maxAttempts; attempt++ {
		ep := t.pool.pick(tried[:attempt])
		if ep == nil {
			if lastErr != nil {
				return nil, lastErr
			}
			t.pool.noEndpoint.Add(1)
			return nil, errNoEndpoint
		}
		if st != nil {
			st.ep, st.attempts = ep, attempt+1
		}
		out := *req
		u := *req.URL
		u.Host = ep.addr
		out.URL = &u
		if body != nil {
			out.Body = body
		}
		ep.outstanding.Add(1)
		start := time.Now()
		resp, err := t.base.RoundTrip(&out)
		if err == nil {
			d := time.Since(start)
			ep.latency.observe(d)
			if t.pool.policy.Load().(string) == "p2c" {
				ep.observeLatency(start.UnixNano()+int64(d), d)
			}
			if c := resp.StatusCode / 100; c >= 1 && c <= 5 {
				ep.requests[c].Add(1)
			}
			resp.Body = track(resp.Body, ep)
			return resp, nil
		}
		ep.outstanding.Add(-1)
		lastErr = err
		if req.Context().Err() != nil {
			ep.requests[0].Add(1)
			return nil, err
		}
		dial := isDialError(err)
		if dial || idempotent {
			ep.eject(time.Now().UnixNano())
		}
		retry := dial && (body == nil || !body.read) || idempotent
		if !retry {
			ep.requests[0].Add(1)
			return nil, err
		}
		ep.retries.Add(1)
		tried[attempt] = ep
	}
	return nil, lastErr
}

// isDialError reports whether err means the connection was never made
// (refused, unreachable, timed out while dialing).
func isDialError(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

// trackedReader is a request body that survives a failed attempt: the
// transport's Close does not close it, and it notes whether any of it was
// read (then it cannot be sent again).
type trackedReader struct {
	r    io.ReadCloser
	read bool
}

func (t *trackedReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if n > 0 {
		t.read = true
	}
	return n, err
}

func (t *trackedReader) Close() error { return nil }

// track wraps a response body so the endpoint's request counts as in
// flight until the body is closed. A 101 Switching Protocols body is a
// connection (WebSocket) and keeps being one.
func track(b io.ReadCloser, ep *endpoint) io.ReadCloser {
	if rwc, ok := b.(io.ReadWriteCloser); ok {
		return &trackedConn{ReadWriteCloser: rwc, ep: ep}
	}
	return &trackedBody{ReadCloser: b, ep: ep}
}

type trackedBody struct {
	io.ReadCloser
	ep   *endpoint
	once sync.Once
}

func (t *trackedBody) Close() error {
	t.once.Do(func() { t.ep.outstanding.Add(-1) })
	return t.ReadCloser.Close()
}

type trackedConn struct {
	io.ReadWriteCloser
	ep   *endpoint
	once sync.Once
}

func (t *trackedConn) Close() error {
	t.once.Do(func() { t.ep.outstanding.Add(-1) })
	return t.ReadWriteCloser.Close()
}

// bufPool lends the reverse proxy its copy buffers.
type bufPool struct{}

var buffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufPool) Get() []byte  { return *buffers.Get().(*[]byte) }
func (bufPool) Put(b []byte) { buffers.Put(&b) }

// newTransport is the transport to the endpoints: keep-alive HTTP/1.1,
// responses passed on as they are (no transparent gzip).
func newTransport(dialTimeout time.Duration) *http.Transport {
	d := &net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}
	return &http.Transport{
		DialContext:           d.DialContext,
		MaxIdleConnsPerHost:   1024,
		IdleConnTimeout:       90 * time.Second,
		DisableCompression:    true,
		ExpectContinueTimeout: time.Second,
		WriteBufferSize:       16 << 10,
		ReadBufferSize:        16 << 10,
	}
}
