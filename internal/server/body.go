package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"syscall"
	"time"
)

// Request bodies are read under a deadline and a budget. A client that
// sends its headers and then stalls halfway through a large body holds a
// connection, a goroutine and the bytes received so far; without bounds a
// few dozen such clients took the server from 49 to 379 MiB. So:
//
//   - a body must arrive within Config.BodyReadTimeout of the handler
//     starting to read it (the headers have their own ReadHeaderTimeout);
//   - the bytes of all bodies being read at once are bounded by
//     Config.BodyBudgetBytes: a reader takes budget in 64 KiB chunks as
//     its bytes arrive and gives it back when the handler has decoded the
//     body; a reader that cannot get budget before its deadline is turned
//     away with 503;
//   - a request abandoned or timed out while its body was read is logged
//     once, at Info (it is the client's doing, not the server's), and
//     answered 408 or 400 rather than counted as a server error.

// Defaults of the body bounds.
const (
	DefaultBodyReadTimeout = 30 * time.Second
	DefaultBodyBudgetBytes = 64 << 20
	bodyChunk              = 64 << 10
)

// bodyBudget bounds the bytes of request bodies held at once, in chunks.
type bodyBudget struct{ tokens chan struct{} }

func newBodyBudget(bytes int64) *bodyBudget {
	n := max(1, int(bytes/bodyChunk))
	return &bodyBudget{tokens: make(chan struct{}, n)}
}

// acquire takes one chunk, waiting until one is free or ctx ends.
func (b *bodyBudget) acquire(ctx context.Context) error {
	select {
	case b.tokens <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// release gives back n chunks.
func (b *bodyBudget) release(n int) {
	for range n {
		<-b.tokens
	}
}

// errBodyBudget: the budget stayed exhausted until the reader's deadline.
var errBodyBudget = errors.New("body budget exhausted")

// readBody reads the request's whole body (at most Config.MaxBodyBytes)
// under the deadline and the budget. The caller must call release once it
// no longer needs the bytes. Errors are ready for writeError: a
// *http.MaxBytesError, or an httpError saying what happened to the body.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) (data []byte, release func(), err error) {
	deadline := time.Now().Add(s.cfg.BodyReadTimeout)
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(deadline) // unsupported only by test recorders
	defer rc.SetReadDeadline(time.Time{})
	ctx, cancel := context.WithDeadline(r.Context(), deadline)
	defer cancel()

	held := 0
	release = func() { s.bodies.release(held); held = 0 }
	body := http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
	chunk := make([]byte, 32<<10)
	var buf []byte // grows with what arrives, never with what is announced
	for {
		n, err := body.Read(chunk)
		for n > 0 && len(buf)+n > held*bodyChunk {
			if err := s.bodies.acquire(ctx); err != nil {
				release()
				if r.Context().Err() != nil {
					err = r.Context().Err()
				} else {
					err = errBodyBudget
				}
				return nil, func() {}, s.bodyAborted(r, len(buf), err)
			}
			held++
		}
		buf = append(buf, chunk[:n]...)
		if errors.Is(err, io.EOF) {
			return buf, release, nil
		}
		if err != nil {
			release()
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return nil, func() {}, err
			}
			return nil, func() {}, s.bodyAborted(r, len(buf), err)
		}
	}
}

// bodyAborted logs, once, a request whose body did not arrive, and returns
// the error its client gets (if it still listens).
func (s *Server) bodyAborted(r *http.Request, got int, err error) error {
	var ne net.Error
	var he *httpError
	switch {
	case errors.Is(err, errBodyBudget):
		he = &httpError{status: http.StatusServiceUnavailable, msg: fmt.Sprintf("the server is reading too many request bodies at once (%d MiB in flight); retry shortly", s.cfg.BodyBudgetBytes>>20)}
	case errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		he = &httpError{status: http.StatusRequestTimeout, msg: fmt.Sprintf("the request body did not arrive within %s (%d of %d bytes received); send it whole and promptly", s.cfg.BodyReadTimeout, got, r.ContentLength)}
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, net.ErrClosed) || r.Context().Err() != nil:
		he = &httpError{status: http.StatusBadRequest, msg: fmt.Sprintf("the request body ended early (%d of %d bytes received)", got, r.ContentLength)}
	default:
		he = &httpError{status: http.StatusBadRequest, msg: fmt.Sprintf("the request body could not be read (%d bytes received): %v", got, err)}
	}
	s.log.Info("request aborted while its body was read", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr,
		"received", got, "length", r.ContentLength, "status", he.status, "reason", err)
	return he
}
