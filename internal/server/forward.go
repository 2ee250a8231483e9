package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gantryhq/gantry/internal/state"
)

// Forwarding to the leader: what only the leader holds (the vSphere
// collectors and their history) is asked of it by whichever server a
// client called. The follower authorizes the request as usual, then
// sends it on to the API URL the leader advertised when it campaigned
// (state.Store.Leader), with the caller's token, so that the leader
// authorizes it again; the leader's answer, error or not, goes back
// unchanged. A request is forwarded at most once: a server that receives
// a forwarded request while it does not lead (leadership moved in
// between) answers 503 instead of passing it further.

// forwardedHeader marks a forwarded request with the ID of the server
// that forwarded it; leaderHeader names, on the answer, the leader that
// served it.
const (
	forwardedHeader = "X-Gantry-Forwarded-By"
	leaderHeader    = "X-Gantry-Leader"
)

// leaderLookupTimeout bounds the store read that finds the leader: a
// store without quorum would otherwise hold the request until the
// client gives up.
const leaderLookupTimeout = 5 * time.Second

// retryLater is a 503 whose answer says when to try again: the leader is
// being elected, moved, or did not answer.
func retryLater(format string, args ...any) error {
	return &httpError{status: http.StatusServiceUnavailable, msg: fmt.Sprintf(format, args...), retryAfter: 2}
}

// onLeader serves r on the leader: on the leader it returns false and the
// caller serves the request itself; elsewhere it forwards r to the
// leader, writes the leader's answer and returns true, or returns the
// error to answer with (a retryable 503 when no leader can be reached).
func (s *Server) onLeader(w http.ResponseWriter, r *http.Request, what string) (bool, error) {
	if s.IsLeader() {
		return false, nil
	}
	if by := r.Header.Get(forwardedHeader); by != "" {
		return true, retryLater("server %s forwarded this request here as to the leader, but %s no longer leads: leadership is moving; retry in a few seconds", by, s.cfg.ID)
	}
	ctx, cancel := context.WithTimeout(r.Context(), leaderLookupTimeout)
	id, apiURL, err := s.store.Leader(ctx)
	cancel()
	switch {
	case errors.Is(err, state.ErrNoLeader):
		return true, retryLater("no server leads the cluster at the moment (an election is under way), and only the leader has %s; retry in a few seconds", what)
	case err != nil:
		return true, retryLater("this server cannot tell which server leads (the cluster store did not answer: %v), and only the leader has %s; retry in a few seconds", err, what)
	case id == s.cfg.ID:
		return true, retryLater("this server is taking over or giving up leadership, and only the leader has %s; retry in a few seconds", what)
	case apiURL == "":
		return true, &httpError{status: http.StatusServiceUnavailable, msg: fmt.Sprintf(
			"only the leader, server %s, has %s, and it gave no address other servers can reach (it listens on a wildcard address): start it with --advertise-addr, or ask it directly", id, what)}
	}
	var body io.Reader
	if r.Body != nil && r.Method != http.MethodGet && r.Method != http.MethodDelete {
		data, release, err := s.readBody(w, r)
		if err != nil {
			return true, err
		}
		defer release()
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(r.Context(), r.Method, strings.TrimSuffix(apiURL, "/")+r.URL.RequestURI(), body)
	if err != nil {
		return true, fmt.Errorf("forward %s to leader %s at %s: %w", r.URL.Path, id, apiURL, err)
	}
	for _, h := range []string{"X-Gantry-Token", "Authorization", "Content-Type", "Accept"} {
		if v := r.Header.Get(h); v != "" {
			req.Header.Set(h, v)
		}
	}
	req.Header.Set(forwardedHeader, s.cfg.ID)
	resp, err := s.leaderClient().Do(req)
	if err != nil {
		if r.Context().Err() != nil {
			return true, r.Context().Err()
		}
		return true, retryLater("the leader, server %s at %s, did not answer (%v), and only the leader has %s; retry in a few seconds", id, apiURL, unwrapURLError(err), what)
	}
	defer resp.Body.Close()
	for _, h := range []string{"Content-Type", "Retry-After"} {
		if v := resp.Header.Get(h); v != "" {
			w.Header().Set(h, v)
		}
	}
	w.Header().Set(leaderHeader, id)
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, resp.Body)
	return true, nil
}

// leaderClient calls the leader's API, presenting this server's
// certificate when the cluster speaks TLS (as agentClient does); one
// client, so that forwarded requests share its connections.
func (s *Server) leaderClient() *http.Client {
	s.leaderHTTPOnce.Do(func() { s.leaderHTTP = s.agentClient() })
	return s.leaderHTTP
}

// unwrapURLError drops net/http's "Get "url": " prefix, which repeats
// what the sentence around it says.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// advertisedURL is the API URL this server campaigns with, for the
// others to forward leader-only requests to: advertise (host:port, or a
// URL) when set, else the address it listens on, unless that is a
// wildcard (0.0.0.0, [::]), which names no host another server can reach.
func advertisedURL(advertise string, listen net.Addr, tls bool) string {
	scheme := "http"
	if tls {
		scheme = "https"
	}
	if advertise != "" {
		if strings.Contains(advertise, "://") {
			return strings.TrimSuffix(advertise, "/")
		}
		return scheme + "://" + advertise
	}
	ta, ok := listen.(*net.TCPAddr)
	if !ok || ta.IP == nil || ta.IP.IsUnspecified() {
		return ""
	}
	return scheme + "://" + ta.String()
}
