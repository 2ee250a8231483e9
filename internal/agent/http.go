package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"

	"github.com/coder/websocket"
	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/driver"
	"github.com/gantryhq/gantry/internal/pki"
)

func (a *Agent) routes() http.Handler {
	mux := http.NewServeMux()
	// With TLS, logs, exec and the local allocation list answer servers
	// only (users reach them through a server, which checks their token);
	// status and metrics answer any certificate of the cluster.
	mux.HandleFunc("GET /v1/client/allocations/{id}/logs", serversOnly(a.handleLogs))
	mux.HandleFunc("GET /v1/client/allocations/{id}/exec", serversOnly(a.handleExec))
	mux.HandleFunc("GET /v1/client/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"node_id": a.nodeID})
	})
	mux.HandleFunc("GET /v1/client/allocations", serversOnly(a.handleLocalAllocs))
	mux.HandleFunc("POST /v1/client/audit", serversOnly(a.handleAuditNow))
	mux.Handle("GET /metrics", a.metrics.Handler())
	return mux
}

// serversOnly refuses callers whose certificate is not a server's (when
// the agent speaks TLS).
func serversOnly(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
			role, err := pki.RoleOf(r.TLS.VerifiedChains[0][0])
			if err != nil || role != pki.RoleServer {
				writeErr(w, http.StatusForbidden, "only servers may call %s on an agent (certificate role %q)", r.URL.Path, role)
				return
			}
		}
		h(w, r)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, status int, format string, args ...any) {
	writeJSON(w, status, api.Error{Error: fmt.Sprintf(format, args...)})
}

// taskHandle finds the running (or last) handle of an allocation's task.
func (a *Agent) taskHandle(r *http.Request) (*taskRunner, *driver.Handle, int, error) {
	id, task := r.PathValue("id"), r.URL.Query().Get("task")
	ar := a.runner(id)
	if ar == nil {
		return nil, nil, http.StatusNotFound, fmt.Errorf("allocation %s is not on this node", api.ShortID(id))
	}
	tr := ar.task(task)
	if tr == nil {
		return nil, nil, http.StatusNotFound, fmt.Errorf("allocation %s has no task %q here yet", api.ShortID(id), task)
	}
	h := tr.currentHandle()
	if h == nil {
		return nil, nil, http.StatusConflict, fmt.Errorf("task %q of allocation %s has not started", task, api.ShortID(id))
	}
	return tr, h, 0, nil
}

func (a *Agent) handleLogs(w http.ResponseWriter, r *http.Request) {
	tr, h, code, err := a.taskHandle(r)
	if err != nil {
		writeErr(w, code, "%v", err)
		return
	}
	lg, ok := tr.drv.(driver.Logs)
	if !ok {
		writeErr(w, http.StatusNotImplemented, "driver %s does not keep logs", tr.drv.Name())
		return
	}
	q := r.URL.Query()
	opts := driver.LogOptions{Follow: q.Get("follow") == "true"}
	switch q.Get("type") {
	case "", "both":
		opts.Both = true // as docker logs does
	case "stdout":
	case "stderr":
		opts.Stderr = true
	default:
		writeErr(w, http.StatusBadRequest, "type %q must be stdout, stderr or both (the default)", q.Get("type"))
		return
	}
	if v := q.Get("tail"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeErr(w, http.StatusBadRequest, "tail %q must be a non-negative number of lines", v)
			return
		}
		opts.Tail = n
	}
	rc, err := lg.Logs(r.Context(), h, opts)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, "read logs of task %s: %v", tr.task.Name, err)
		return
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	fl, _ := w.(http.Flusher)
	if fl != nil {
		fl.Flush()
	}
	buf := make([]byte, 32<<10)
	for {
		n, err := rc.Read(buf)
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

// handleExec runs a command in a task over a WebSocket of api.ExecFrame
// messages. Query: task, command (a JSON array), tty.
func (a *Agent) handleExec(w http.ResponseWriter, r *http.Request) {
	tr, h, code, err := a.taskHandle(r)
	if err != nil {
		writeErr(w, code, "%v", err)
		return
	}
	ex, ok := tr.drv.(driver.Execer)
	if !ok {
		writeErr(w, http.StatusNotImplemented, "driver %s cannot exec", tr.drv.Name())
		return
	}
	var cmd []string
	if err := json.Unmarshal([]byte(r.URL.Query().Get("command")), &cmd); err != nil || len(cmd) == 0 {
		writeErr(w, http.StatusBadRequest, "command must be a non-empty JSON array of strings")
		return
	}
	tty := r.URL.Query().Get("tty") == "true"
	conn, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer conn.CloseNow()
	conn.SetReadLimit(1 << 20)
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()

	var wmu sync.Mutex
	send := func(f api.ExecFrame) error {
		b, _ := json.Marshal(f)
		wmu.Lock()
		defer wmu.Unlock()
		return conn.Write(ctx, websocket.MessageText, b)
	}
	stdinR, stdinW := io.Pipe()
	resize := make(chan driver.TermSize, 4)
	go func() {
		defer stdinW.Close()
		for {
			_, msg, err := conn.Read(ctx)
			if err != nil {
				cancel()
				return
			}
			var f api.ExecFrame
			if json.Unmarshal(msg, &f) != nil {
				continue
			}
			if len(f.Stdin) > 0 {
				if _, err := stdinW.Write(f.Stdin); err != nil {
					return
				}
			}
			if f.Resize != nil {
				select {
				case resize <- driver.TermSize{Width: f.Resize.Width, Height: f.Resize.Height}:
				default:
				}
			}
			if f.StdinClose {
				stdinW.Close()
			}
		}
	}()
	out := frameWriter(func(b []byte) error { return send(api.ExecFrame{Stdout: b}) })
	errw := frameWriter(func(b []byte) error { return send(api.ExecFrame{Stderr: b}) })
	exit, err := ex.Exec(ctx, h, &driver.ExecRequest{Cmd: cmd, TTY: tty, Stdin: stdinR, Stdout: out, Stderr: errw, Resize: resize})
	if err != nil {
		send(api.ExecFrame{Error: err.Error()})
	} else {
		send(api.ExecFrame{Exit: &exit})
	}
	conn.Close(websocket.StatusNormalClosure, "")
}

type frameWriter func([]byte) error

func (f frameWriter) Write(b []byte) (int, error) {
	c := append([]byte(nil), b...)
	if err := f(c); err != nil {
		return 0, err
	}
	return len(b), nil
}

// handleLocalAllocs lists the allocations with a task running on this node.
func (a *Agent) handleLocalAllocs(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	runners := make([]*allocRunner, 0, len(a.runners))
	for _, ar := range a.runners {
		runners = append(runners, ar)
	}
	a.mu.Unlock()
	out := []api.LocalAlloc{}
	for _, ar := range runners {
		la := api.LocalAlloc{ID: ar.current().ID, Running: map[string]string{}}
		for _, tr := range ar.taskList() {
			if h := tr.currentHandle(); h != nil && tr.snapshot().State == api.TaskRunning {
				la.Running[tr.task.Name] = h.ID
			}
		}
		if len(la.Running) > 0 {
			out = append(out, la)
		}
	}
	writeJSON(w, http.StatusOK, out)
}
