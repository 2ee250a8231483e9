package apiclient

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gantryhq/gantry/internal/api"
)

// Error is a server's answer other than 2xx. Its text is the server's own
// sentence; Status keeps the HTTP status for classification.
type Error struct {
	Status  int    // the HTTP status code
	Message string // the server's sentence, or the status and body when it sent none
	Field   string // the field the server blames, when it names one
	// Errors lists every problem of a rejected job, located by path,
	// when the server lists them.
	Errors []api.FieldError
	// RetryAfter is how long the server asked the client to wait before
	// sending the request again (its Retry-After header; 0: it did not
	// say).
	RetryAfter time.Duration
}

func (e *Error) Error() string { return e.Message }

// UnavailableError says that no server could be reached: the connection
// was refused, reset or timed out, so the request may not have arrived.
type UnavailableError struct {
	Servers string // the addresses tried, comma-separated
	Hint    string // what the user can do about it (Options.Hint)
	Err     error  // the last server's transport error
}

func (e *UnavailableError) Error() string {
	if errors.Is(e.Err, context.DeadlineExceeded) {
		return fmt.Sprintf("the Gantry server at %s did not answer in time", e.Servers)
	}
	if e.Hint != "" {
		return fmt.Sprintf("no Gantry server answers at %s: %s", e.Servers, e.Hint)
	}
	return fmt.Sprintf("no Gantry server answers at %s (%v)", e.Servers, e.Err)
}

func (e *UnavailableError) Unwrap() error { return e.Err }

// StatusOf is the HTTP status of the server's answer that err carries, or
// 0 when no server answered.
func StatusOf(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

// RetryAfter is how long the server that answered err asked the client
// to wait before sending the same request again, and whether it said.
func RetryAfter(err error) (time.Duration, bool) {
	var e *Error
	if errors.As(err, &e) && e.RetryAfter > 0 {
		return e.RetryAfter, true
	}
	return 0, false
}

// parseRetryAfter reads a Retry-After header: a number of seconds or an
// HTTP date (from now). 0: absent or unreadable.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(v); err == nil {
		return max(time.Duration(secs)*time.Second, 0)
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0)
	}
	return 0
}

// IsNotFound reports whether a server answered 404.
func IsNotFound(err error) bool { return StatusOf(err) == http.StatusNotFound }

// Retryable reports whether the same request may succeed later: no
// server could be reached, or one answered 5xx (it is unavailable or
// failed inside) or 429 (too many requests). Every other 4xx means the
// request itself is wrong (bad input, no permission, not found, history
// compacted), and sending it again cannot help; nor can an error that is
// neither (a cancelled context, a bad address).
func Retryable(err error) bool {
	var ue *UnavailableError
	if errors.As(err, &ue) {
		return true
	}
	switch s := StatusOf(err); {
	case s == 0:
		return false
	case s >= 500, s == http.StatusTooManyRequests:
		return true
	}
	return false
}

// decodeError turns a non-2xx answer into an *Error (the caller fills in
// RetryAfter from the headers).
func decodeError(status int, statusText string, body []byte) *Error {
	var e api.Error
	_ = jsonUnmarshal(body, &e)
	if e.Error == "" {
		e.Error = fmt.Sprintf("server answered %s", statusText)
		if b := strings.TrimSpace(string(body)); b != "" {
			e.Error += ": " + b
		}
	}
	return &Error{Status: status, Message: e.Error, Field: e.Field, Errors: e.Errors}
}
