package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gantryhq/gantry/internal/acl"
	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/state"
)

var knownTopics = map[string]bool{
	api.TopicJob: true, api.TopicAllocation: true, api.TopicNode: true,
	api.TopicEvaluation: true, api.TopicDeployment: true, api.TopicQueue: true,
	api.TopicAudit: true, api.TopicVSphere: true, api.TopicDefrag: true,
}

// handleEvents streams events as newline-delimited JSON, or as server-sent
// events when the client accepts text/event-stream. index=N resumes after
// the event with index N; an index older than the kept history gets 410.
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	f := state.EventFilter{Topics: map[string]bool{}, Keys: map[string]bool{}, Namespace: q.Get("namespace")}
	for _, t := range q["topic"] {
		if !knownTopics[t] {
			return badRequest("unknown event topic %q: use job, allocation, node, evaluation, deployment, queue, audit, vsphere or defrag", t)
		}
		f.Topics[t] = true
	}
	for _, k := range q["key"] {
		f.Keys[k] = true
	}
	var index int64
	if v := q.Get("index"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return badRequest("index %q must be a non-negative integer", v)
		}
		index = n
	}
	if a := requestACL(r); a != nil && s.cfg.ACL {
		f.Visible = func(topic, ns string) bool {
			switch {
			case ns != "":
				return a.CanRead(ns)
			case topic == api.TopicNode:
				return a.Allow("", acl.NodeRead) == nil
			default:
				return a.Allow("", acl.OperatorRead) == nil
			}
		}
	}
	sse := strings.Contains(r.Header.Get("Accept"), "text/event-stream")
	if v := r.Header.Get("Last-Event-ID"); sse && v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			index = n
		}
	}
	fl, _ := w.(http.Flusher)
	started := false
	start := func() {
		if started {
			return
		}
		started = true
		if sse {
			w.Header().Set("Content-Type", "text/event-stream")
		} else {
			w.Header().Set("Content-Type", "application/x-ndjson")
		}
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		if fl != nil {
			fl.Flush()
		}
	}
	// A keep-alive ticker sends a comment (SSE) or an empty line (NDJSON)
	// so proxies and clients notice dead connections.
	ctx := r.Context()
	stop := make(chan struct{})
	defer close(stop)
	writes := make(chan []byte, 64)
	done := make(chan error, 1)
	go func() {
		done <- s.store.Events(ctx, index, f, s.now, func(es []api.Event) error {
			// One revision's events go out in one write.
			var b []byte
			for _, e := range es {
				line, err := json.Marshal(e)
				if err != nil {
					return err
				}
				if sse {
					b = fmt.Appendf(b, "id: %d\nevent: %s\ndata: %s\n\n", e.Index, e.Topic, line)
				} else {
					b = append(append(b, line...), '\n')
				}
			}
			select {
			case writes <- b:
				return nil
			case <-stop:
				return errors.New("client gone")
			}
		})
	}()
	// Wait briefly for an early error (a compacted index) so it can be
	// answered with a status code instead of a broken stream.
	select {
	case err := <-done:
		if err != nil && ctx.Err() == nil {
			return err
		}
		return nil
	case b := <-writes:
		start()
		w.Write(b)
	case <-time.After(300 * time.Millisecond):
		start()
	}
	keepAlive := time.NewTicker(15 * time.Second)
	defer keepAlive.Stop()
	for {
		if fl != nil {
			fl.Flush()
		}
		select {
		case b := <-writes:
			if _, err := w.Write(b); err != nil {
				return nil
			}
		case <-keepAlive.C:
			if sse {
				w.Write([]byte(": keep-alive\n\n"))
			} else {
				w.Write([]byte("\n"))
			}
		case err := <-done:
			if err != nil && ctx.Err() == nil {
				s.log.Warn("event stream ended", "err", err)
			}
			return nil
		}
	}
}
