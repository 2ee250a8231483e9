package apiclient

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/gantryhq/gantry/internal/api"
)

// Events says which events to follow and from where.
type Events struct {
	Topics    []string // only these topics (none: every topic)
	Keys      []string // only events about these keys: a job name (its allocations, evaluations and deployments too), an allocation or node ID
	Namespace string   // only this namespace (and cluster-wide events)
	// After is the index of the last event already handled: the follower
	// hands over every later event. 0 means "from the next change": the
	// follower reads the server's current index first, so that a
	// reconnect resumes from there too.
	After int64
	// Lost, when set, is told once that the stream broke (err says why)
	// and after which index it resumes; Resumed, when set, that it was
	// opened again.
	Lost    func(err error, after int64)
	Resumed func(after int64)
}

// ErrStreamBroken marks a stream that ended or sent something that is not
// an event: the follower opens it again.
var ErrStreamBroken = errors.New("the event stream broke off")

// FollowEvents hands every event matching s to fn, each exactly once and
// in index order, until ctx ends (it returns nil), fn returns an error
// (returned as is), or a server refuses the stream for a reason retrying
// cannot fix (an *Error: 410 when After is older than the history the
// store keeps, 400, 401, 403, 404 from a server without the stream).
//
// When the stream breaks (the server restarts or goes away, the
// connection drops) it asks again, from the next server when that one
// cannot be reached, after the last index it handed over, waiting a
// little longer each time (up to 5 s). A store revision's events travel
// together, but a connection can break among them: so it asks from the
// index before the last one and skips the events of the last index it has
// already handed over.
func (c *Client) FollowEvents(ctx context.Context, s Events, fn func(api.Event) error) error {
	f := &follower{c: c, s: s, last: s.After}
	if f.last == 0 {
		st, err := c.Status(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("read the server's index to follow events from: %w", err)
		}
		f.last = st.Index
	}
	delay := 500 * time.Millisecond
	lost := false
	for {
		started, err := f.once(ctx, lost, fn)
		if ctx.Err() != nil {
			return nil
		}
		var fe fnError
		if errors.As(err, &fe) {
			return fe.err
		}
		if !errors.Is(err, ErrStreamBroken) && !Retryable(err) {
			return fmt.Errorf("follow the event stream: %w", err)
		}
		if started {
			delay, lost = 500*time.Millisecond, false
		}
		if !lost {
			if s.Lost != nil {
				s.Lost(err, f.last)
			}
			lost = true
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
		delay = min(delay*2, 5*time.Second)
	}
}

// fnError carries the caller's own error out of the stream.
type fnError struct{ err error }

func (e fnError) Error() string { return e.err.Error() }

type follower struct {
	c    *Client
	s    Events
	last int64           // index of the last event handed over
	seen map[string]bool // events of index last already handed over
}

// eventID identifies an event within its index (one store revision can
// change several objects).
func eventID(e *api.Event) string {
	return e.Topic + "\x00" + e.Type + "\x00" + e.Namespace + "\x00" + e.Key
}

// once reads the stream once; started says whether it opened.
func (f *follower) once(ctx context.Context, resumed bool, fn func(api.Event) error) (bool, error) {
	q := url.Values{}
	for _, t := range f.s.Topics {
		q.Add("topic", t)
	}
	for _, k := range f.s.Keys {
		q.Add("key", k)
	}
	if f.s.Namespace != "" {
		q.Set("namespace", f.s.Namespace)
	}
	from := f.last
	if from > 0 && len(f.seen) > 0 {
		from--
	}
	q.Set("index", strconv.FormatInt(from, 10))
	resp, err := f.c.Stream(ctx, http.MethodGet, "/v1/events?"+q.Encode(), nil)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resumed && f.s.Resumed != nil {
		f.s.Resumed(f.last)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue // keep-alive
		}
		var e api.Event
		if err := json.Unmarshal(line, &e); err != nil {
			return true, fmt.Errorf("%w: the server sent an event that is not JSON: %v", ErrStreamBroken, err)
		}
		switch {
		case e.Index < f.last:
			continue
		case e.Index == f.last && f.seen[eventID(&e)]:
			continue
		case e.Index > f.last:
			f.last, f.seen = e.Index, map[string]bool{}
		}
		if f.seen == nil {
			f.seen = map[string]bool{}
		}
		f.seen[eventID(&e)] = true
		if err := fn(e); err != nil {
			return true, fnError{err}
		}
	}
	if err := sc.Err(); err != nil {
		return true, fmt.Errorf("%w: %v", ErrStreamBroken, err)
	}
	return true, fmt.Errorf("%w: %v", ErrStreamBroken, io.ErrUnexpectedEOF)
}
