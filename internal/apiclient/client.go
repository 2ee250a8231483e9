package apiclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Options say where the servers are and how to reach them.
type Options struct {
	// Servers are the API addresses, tried in order when one does not
	// answer: "host:port" or a URL; an address without a scheme gets
	// https:// with TLS, http:// without.
	Servers []string
	// TLS, when set, is used for https (mutual TLS when it holds a
	// certificate); http:// addresses become https://.
	TLS *tls.Config
	// Token is the ACL token sent with every request.
	Token string
	// Transport, when set, carries every request instead of one built
	// from TLS (the agent shares one among simulated nodes; HTTP/2
	// without TLS).
	Transport http.RoundTripper
	// Hint ends the error for servers that cannot be reached: what the
	// user can do about it (the CLI names its --address flag).
	Hint string
	// ThrottleRetries bounds how many times one request is sent again
	// after a server answered 429 Too Many Requests with a Retry-After:
	// each time the client waits what the server asked (at most
	// MaxRetryAfter, plus up to a tenth more so that refused clients do
	// not all come back at once), unless the context would end first,
	// when the 429 is returned at once. 0: DefaultThrottleRetries;
	// negative: never, the 429 is returned (RetryAfter says how long the
	// server asked for).
	ThrottleRetries int
	// OnThrottle, when set, is told of each such wait before it starts,
	// with the server's answer (the CLI says so; a caller may count).
	OnThrottle func(method, path string, wait time.Duration, answer *Error)
}

// DefaultThrottleRetries is how many times a request refused with 429 and
// a Retry-After is sent again unless Options.ThrottleRetries says.
const DefaultThrottleRetries = 5

// MaxRetryAfter caps one wait for a Retry-After.
const MaxRetryAfter = time.Minute

// Client talks to the servers' /v1 API. It is safe for concurrent use.
type Client struct {
	servers []string
	http    *http.Client
	token   string
	hint    string

	throttleRetries int
	onThrottle      func(method, path string, wait time.Duration, answer *Error)
	// sleep waits d or until ctx ends (tests record the waits instead).
	sleep func(ctx context.Context, d time.Duration) error

	mu  sync.Mutex
	cur int // the server that answered last
}

// maxBody bounds an answer read into memory (a node's allocations in a
// large cluster are the largest).
const maxBody = 256 << 20

// New returns a client of the servers o names.
func New(o Options) *Client {
	scheme := "http://"
	if o.TLS != nil {
		scheme = "https://"
	}
	c := &Client{http: &http.Client{Transport: o.Transport}, token: o.Token, hint: o.Hint,
		throttleRetries: o.ThrottleRetries, onThrottle: o.OnThrottle, sleep: sleepCtx}
	if c.throttleRetries == 0 {
		c.throttleRetries = DefaultThrottleRetries
	}
	if o.Transport == nil && o.TLS != nil {
		c.http.Transport = &http.Transport{TLSClientConfig: o.TLS}
	}
	for _, a := range o.Servers {
		a = strings.TrimRight(strings.TrimSpace(a), "/")
		if a == "" {
			continue
		}
		switch {
		case !strings.Contains(a, "://"):
			a = scheme + a
		case o.TLS != nil:
			a = strings.Replace(a, "http://", "https://", 1)
		}
		c.servers = append(c.servers, a)
	}
	return c
}

// Address is the base URL of the server the client asks first now (the
// one that answered last).
func (c *Client) Address() string {
	if len(c.servers) == 0 {
		return ""
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.servers[c.cur]
}

// Servers are the base URLs of every server, in the order given.
func (c *Client) Servers() []string { return append([]string(nil), c.servers...) }

// HTTPClient is the client's transport, for protocols this package does
// not speak itself (the WebSocket of `alloc exec`); its requests carry no
// token unless the caller sets one.
func (c *Client) HTTPClient() *http.Client { return c.http }

// Do sends one request with body (JSON, when not nil) and decodes the
// answer into out (when not nil). A server that cannot be reached is left
// for the next one, each tried once, as is one that cannot serve a GET
// now (502, 503, 504); a 429 with a Retry-After is sent again after it
// (Options.ThrottleRetries); a server's answer other than 2xx is an
// *Error.
func (c *Client) Do(ctx context.Context, method, path string, body, out any) error {
	return c.call(ctx, method, path, body, out, 0)
}

// call is Do with a limit on each server's try (0: none but ctx's): a
// server that vanished without a reset is given up on after timeout, and
// the next one asked.
func (c *Client) call(ctx context.Context, method, path string, body, out any, timeout time.Duration) error {
	resp, cancel, err := c.send(ctx, method, path, body, timeout)
	if err != nil {
		return err
	}
	defer cancel()
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		// The answer broke off: the server went away mid-answer.
		return &UnavailableError{Servers: resp.Request.URL.Scheme + "://" + resp.Request.URL.Host, Hint: c.hint, Err: err}
	}
	if out == nil {
		return nil
	}
	if err := jsonUnmarshal(data, out); err != nil {
		return fmt.Errorf("the server's answer to %s %s is not valid JSON: %w", method, path, err)
	}
	return nil
}

// Stream sends one request and returns the server's 2xx answer unread,
// for answers that go on (logs, events); the caller closes its body.
func (c *Client) Stream(ctx context.Context, method, path string, body any) (*http.Response, error) {
	resp, cancel, err := c.send(ctx, method, path, body, 0)
	if err != nil {
		return nil, err
	}
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelOnClose) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// send sends the request (sendOnce) and, while a server answers 429 with
// a Retry-After, waits that long and sends it again, at most
// c.throttleRetries times and never past ctx.
func (c *Client) send(ctx context.Context, method, path string, body any, timeout time.Duration) (*http.Response, context.CancelFunc, error) {
	if len(c.servers) == 0 {
		return nil, nil, errors.New("no Gantry server address given")
	}
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return nil, nil, fmt.Errorf("encode the request %s %s: %w", method, path, err)
		}
	}
	for attempt := 0; ; attempt++ {
		resp, cancel, err := c.sendOnce(ctx, method, path, body != nil, payload, timeout)
		var e *Error
		if err == nil || attempt >= c.throttleRetries || !errors.As(err, &e) || e.Status != http.StatusTooManyRequests || e.RetryAfter <= 0 {
			return resp, cancel, err
		}
		wait := min(e.RetryAfter, MaxRetryAfter)
		wait += time.Duration(rand.Int64N(int64(wait/10) + 1))
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			return nil, nil, err // the caller cannot wait that long
		}
		if c.onThrottle != nil {
			c.onThrottle(method, path, wait, e)
		}
		if c.sleep(ctx, wait) != nil {
			return nil, nil, err
		}
	}
}

// sleepCtx waits d, or until ctx ends (then it returns ctx's error).
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// sendOnce tries each server once, from the one that answered last, until
// one answers (a read answered 502, 503 or 504 is asked of the next
// server too); it returns a 2xx response (the caller closes its body and
// then calls cancel) or an error.
func (c *Client) sendOnce(ctx context.Context, method, path string, hasBody bool, payload []byte, timeout time.Duration) (*http.Response, context.CancelFunc, error) {
	c.mu.Lock()
	first := c.cur
	c.mu.Unlock()
	var lastErr error
	for i := range c.servers {
		n := (first + i) % len(c.servers)
		base := c.servers[n]
		rctx, cancel := ctx, context.CancelFunc(func() {})
		if timeout > 0 {
			rctx, cancel = context.WithTimeout(ctx, timeout)
		}
		var rd io.Reader
		if hasBody {
			rd = bytes.NewReader(payload)
		}
		req, err := http.NewRequestWithContext(rctx, method, base+path, rd)
		if err != nil {
			cancel()
			return nil, nil, fmt.Errorf("bad server address %q: %w", base, err)
		}
		if hasBody {
			req.Header.Set("Content-Type", "application/json")
		}
		if c.token != "" {
			req.Header.Set("X-Gantry-Token", c.token)
		}
		resp, err := c.http.Do(req)
		if err != nil {
			cancel()
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return nil, nil, &UnavailableError{Servers: base, Hint: c.hint, Err: ctx.Err()}
			}
			if ctx.Err() != nil {
				return nil, nil, ctx.Err()
			}
			lastErr = err
			continue
		}
		if resp.StatusCode/100 != 2 {
			data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
			cancel()
			e := decodeError(resp.StatusCode, resp.Status, data)
			e.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
			if method == http.MethodGet && unavailable(resp.StatusCode) && i < len(c.servers)-1 {
				// A read is safe to ask another server: this one cannot
				// serve now (no leader, etcd out of reach, a proxy's
				// upstream gone).
				lastErr = e
				continue
			}
			c.mu.Lock()
			c.cur = n
			c.mu.Unlock()
			return nil, nil, e
		}
		c.mu.Lock()
		c.cur = n
		c.mu.Unlock()
		return resp, cancel, nil
	}
	// Next time, start with the server after the one that answered last.
	c.mu.Lock()
	if c.cur == first {
		c.cur = (first + 1) % len(c.servers)
	}
	c.mu.Unlock()
	return nil, nil, &UnavailableError{Servers: strings.Join(c.servers, ", "), Hint: c.hint, Err: lastErr}
}

// unavailable reports whether a status says the server cannot serve now,
// where another server might.
func unavailable(status int) bool {
	return status == http.StatusBadGateway || status == http.StatusServiceUnavailable || status == http.StatusGatewayTimeout
}

func jsonUnmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }
