package server

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/coder/websocket"
	"github.com/gantryhq/gantry/internal/acl"
	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/state"
)

func (s *Server) handleAllocList(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	f := state.AllocFilter{Namespace: q.Get("namespace"), Job: q.Get("job"), NodeID: q.Get("node")}
	if f.Job != "" && f.Namespace == "" {
		f.Namespace = api.DefaultNamespace
	}
	all := s.store.Allocs(f)
	out := make([]*api.Allocation, 0, len(all))
	for _, a := range all {
		if s.visible(r, a.Namespace) {
			out = append(out, a)
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// findAlloc resolves a full allocation ID or an unambiguous prefix.
func (s *Server) findAlloc(id string) (*api.Allocation, error) {
	if a, ok := s.store.Alloc(id); ok {
		return a, nil
	}
	if len(id) < 4 {
		return nil, badRequest("allocation ID prefix %q is too short: give at least 4 characters", id)
	}
	matches := s.store.AllocsByPrefix(id)
	switch len(matches) {
	case 0:
		return nil, notFound("allocation %q not found", id)
	case 1:
		return matches[0], nil
	}
	ids := make([]string, 0, len(matches))
	for _, m := range matches {
		ids = append(ids, m.ID)
	}
	return nil, badRequest("allocation prefix %q is ambiguous: %s", id, strings.Join(ids, ", "))
}

func (s *Server) handleAllocRead(w http.ResponseWriter, r *http.Request) error {
	a, err := s.findAlloc(r.PathValue("id"))
	if err != nil {
		return err
	}
	if err := s.allow(r, a.Namespace, acl.Read); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, a)
	return nil
}

// agentURL builds the URL of an allocation's endpoint on its node's agent,
// checking that the task exists.
func (s *Server) agentURL(a *api.Allocation, r *http.Request, scheme, suffix string) (string, error) {
	n, ok := s.store.Node(a.NodeID)
	if !ok || n.HTTPAddr == "" {
		return "", notFound("node %s of allocation %s is unknown or has no agent address", a.NodeName, a.ShortID())
	}
	q := r.URL.Query()
	if q.Get("task") == "" {
		if len(a.Resources) != 1 {
			return "", badRequest("allocation %s has %d tasks: name one with task=", a.ShortID(), len(a.Resources))
		}
		for t := range a.Resources {
			q.Set("task", t)
		}
	} else if _, ok := a.Resources[q.Get("task")]; !ok {
		return "", notFound("allocation %s has no task %q", a.ShortID(), q.Get("task"))
	}
	u := url.URL{Scheme: scheme, Host: n.HTTPAddr, Path: "/v1/client/allocations/" + a.ID + "/" + suffix, RawQuery: q.Encode()}
	return u.String(), nil
}

// handleAllocLogs streams a task's logs from the agent that runs it.
func (s *Server) handleAllocLogs(w http.ResponseWriter, r *http.Request) error {
	a, err := s.findAlloc(r.PathValue("id"))
	if err != nil {
		return err
	}
	if err := s.allow(r, a.Namespace, acl.ReadLogs); err != nil {
		return err
	}
	target, err := s.agentURL(a, r, s.agentScheme("http"), "logs")
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, target, nil)
	if err != nil {
		return err
	}
	resp, err := s.agentClient().Do(req)
	if err != nil {
		return &httpError{status: http.StatusBadGateway, msg: fmt.Sprintf("agent of node %s does not answer: %v", a.NodeName, err)}
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	// Send the headers now: a task that writes nothing must not leave its
	// follower waiting for an answer.
	if fl, ok := w.(http.Flusher); ok {
		fl.Flush()
	}
	copyFlushing(w, resp.Body)
	return nil
}

// copyFlushing copies a stream, flushing after every read so followers
// see lines as they come.
func copyFlushing(w http.ResponseWriter, r io.Reader) {
	fl, _ := w.(http.Flusher)
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			if fl != nil {
				fl.Flush()
			}
		}
		if err != nil {
			return
		}
	}
}

// handleAllocExec relays an exec session (a WebSocket) to the agent.
func (s *Server) handleAllocExec(w http.ResponseWriter, r *http.Request) error {
	a, err := s.findAlloc(r.PathValue("id"))
	if err != nil {
		return err
	}
	if err := s.allow(r, a.Namespace, acl.AllocExec); err != nil {
		return err
	}
	target, err := s.agentURL(a, r, s.agentScheme("ws"), "exec")
	if err != nil {
		return err
	}
	up, _, err := websocket.Dial(r.Context(), target, &websocket.DialOptions{HTTPClient: s.agentClient()})
	if err != nil {
		return &httpError{status: http.StatusBadGateway, msg: fmt.Sprintf("agent of node %s refused the exec session: %v", a.NodeName, err)}
	}
	defer up.CloseNow()
	down, err := websocket.Accept(w, r, nil)
	if err != nil {
		return nil // Accept wrote the error
	}
	defer down.CloseNow()
	up.SetReadLimit(1 << 20)
	down.SetReadLimit(1 << 20)
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	relay := func(dst, src *websocket.Conn) {
		defer cancel()
		for {
			typ, msg, err := src.Read(ctx)
			if err != nil {
				if cs := websocket.CloseStatus(err); cs != -1 {
					dst.Close(cs, "")
				}
				return
			}
			if err := dst.Write(ctx, typ, msg); err != nil {
				return
			}
		}
	}
	go relay(up, down)
	relay(down, up)
	return nil
}

// agentScheme is http/ws, or https/wss when agents speak TLS.
func (s *Server) agentScheme(plain string) string {
	if s.cfg.ClientTLS != nil {
		return plain + "s"
	}
	return plain
}

// agentClient calls agents, presenting the server's certificate when TLS
// is on.
func (s *Server) agentClient() *http.Client {
	if s.cfg.ClientTLS == nil {
		return http.DefaultClient
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: s.cfg.ClientTLS}}
}
