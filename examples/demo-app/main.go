// Command demo-app is Gantry's demo workload: a small HTTP service and a
// batch job in one static binary, used by the examples, the end-to-end
// tests and new users trying Gantry out.
//
// Service mode (the default):
//
//	demo-app [--listen :8080] [--unhealthy-after 30s] [--unhealthy] [--version v2]
//
// listens on $GANTRY_PORT_HTTP when set (as ":<port>"), else on --listen,
// and answers (built for GOOS=wasip1 it serves the listener the wasm
// driver pre-opened, file descriptor $GANTRY_LISTEN_FD_HTTP, default 3):
//
//	GET /          {"hostname":…,"alloc_id":…,"count":N,"version":…}
//	GET /healthz   200 "ok", or 503 once unhealthy
//	GET /slow?ms=N sleeps N milliseconds, then answers like /
//	GET /upstream  GET of --upstream (env DEMO_UPSTREAM), its answer passed on
//
// Health can be turned bad for rollback tests with --unhealthy (from the
// start) or --unhealthy-after D (after D has passed), or the environment
// variables DEMO_UNHEALTHY=1 and DEMO_UNHEALTHY_AFTER=D. On SIGTERM or
// SIGINT the server stops accepting, lets requests in flight finish (up to
// --drain, default 10s) and exits 0.
//
// Batch mode:
//
//	demo-app batch [--steps 5] [--interval 1s] [--exit-code 0]
//
// prints one progress line per step to stdout and one to stderr, then
// exits with --exit-code. On SIGTERM it prints where it stopped and exits
// 143.
//
// Two helpers for exec tests, since a FROM scratch image has no shell:
//
//	demo-app probe URL           exits 0 when GET URL answers 2xx, else 1
//	                             (a Compose healthcheck: ["CMD", "/demo-app", "probe", URL])
//	demo-app cat                 copies stdin to stdout
//	demo-app tty [--wait-winch]  prints "tty=<bool> rows=R cols=C", and with
//	                             --wait-winch once more after the terminal
//	                             is resized
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"time"
)

func main() {
	args := os.Args[1:]
	if len(args) > 0 {
		switch args[0] {
		case "batch":
			os.Exit(batch(args[1:], os.Stdout, os.Stderr))
		case "cat":
			if _, err := io.Copy(os.Stdout, os.Stdin); err != nil {
				log.Printf("demo-app cat: %v", err)
				os.Exit(1)
			}
			os.Exit(0)
		case "tty":
			os.Exit(tty(args[1:]))
		case "probe":
			os.Exit(probe(args[1:]))
		}
	}
	if len(args) > 0 && args[0] == "serve" {
		args = args[1:]
	}
	os.Exit(serve(args))
}

func envDuration(name string) (time.Duration, error) {
	v := os.Getenv(name)
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%s=%q: %w", name, v, err)
	}
	return d, nil
}

func serve(args []string) int {
	fs := flag.NewFlagSet("demo-app", flag.ContinueOnError)
	listenAddr := fs.String("listen", ":8080", "address to listen on when GANTRY_PORT_HTTP is not set")
	unhealthy := fs.Bool("unhealthy", os.Getenv("DEMO_UNHEALTHY") == "1", "answer /healthz with 503 from the start (env DEMO_UNHEALTHY=1)")
	unhealthyAfter := fs.Duration("unhealthy-after", 0, "answer /healthz with 503 once this long has passed (env DEMO_UNHEALTHY_AFTER)")
	drain := fs.Duration("drain", 10*time.Second, "how long to let requests in flight finish after SIGTERM")
	version := fs.String("version", envOr("DEMO_VERSION", "v1"), "version string reported by / (env DEMO_VERSION)")
	upstream := fs.String("upstream", os.Getenv("DEMO_UPSTREAM"), "URL that GET /upstream fetches and passes on (env DEMO_UPSTREAM)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *unhealthyAfter == 0 {
		d, err := envDuration("DEMO_UNHEALTHY_AFTER")
		if err != nil {
			log.Printf("demo-app: %v", err)
			return 2
		}
		*unhealthyAfter = d
	}
	addr := *listenAddr
	if p := os.Getenv("GANTRY_PORT_HTTP"); p != "" {
		addr = ":" + p
	}

	h := &handler{
		start:          time.Now(),
		version:        *version,
		unhealthy:      *unhealthy,
		unhealthyAfter: *unhealthyAfter,
		upstream:       *upstream,
	}
	h.hostname, _ = os.Hostname()
	h.allocID = os.Getenv("GANTRY_ALLOC_ID")

	// Catch SIGTERM before anyone can reach us, so a stop is always a drain.
	ctx, stop := stopContext()
	defer stop()
	ln, err := listen(addr)
	if err != nil {
		log.Printf("demo-app: %v", err)
		return 1
	}
	srv := &http.Server{Handler: h.routes(), ReadHeaderTimeout: 10 * time.Second}
	log.Printf("demo-app %s listening on %s (alloc %q)", h.version, ln.Addr(), h.allocID)

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	select {
	case err := <-errc:
		log.Printf("demo-app: %v", err)
		return 1
	case <-ctx.Done():
	}
	log.Printf("demo-app: signal received, draining for up to %s", *drain)
	sctx, cancel := context.WithTimeout(context.Background(), *drain)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Printf("demo-app: drain incomplete: %v", err)
		return 1
	}
	log.Printf("demo-app: stopped after %d requests", h.count.Load())
	return 0
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

type handler struct {
	start          time.Time
	hostname       string
	allocID        string
	version        string
	unhealthy      bool
	unhealthyAfter time.Duration
	upstream       string
	count          atomic.Int64
}

type answer struct {
	Hostname string `json:"hostname"`
	AllocID  string `json:"alloc_id"`
	Count    int64  `json:"count"`
	Version  string `json:"version"`
}

func (h *handler) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", h.root)
	mux.HandleFunc("GET /healthz", h.healthz)
	mux.HandleFunc("GET /slow", h.slow)
	mux.HandleFunc("GET /upstream", h.fetchUpstream)
	return mux
}

// fetchUpstream passes on the answer of the --upstream URL, so that tests
// can see one service reach another by name.
func (h *handler) fetchUpstream(w http.ResponseWriter, r *http.Request) {
	if h.upstream == "" {
		http.Error(w, "no --upstream set", http.StatusNotFound)
		return
	}
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, h.upstream, nil)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		http.Error(w, "upstream: "+err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

// probe is a health check for images without a shell: GET the URL, exit 0
// on a 2xx answer within 5 seconds.
func probe(args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: demo-app probe URL")
		return 2
	}
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(args[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		fmt.Fprintln(os.Stderr, resp.Status)
		return 1
	}
	return 0
}

func (h *handler) root(w http.ResponseWriter, r *http.Request) {
	h.reply(w)
}

func (h *handler) reply(w http.ResponseWriter) {
	n := h.count.Add(1)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(answer{Hostname: h.hostname, AllocID: h.allocID, Count: n, Version: h.version})
}

func (h *handler) healthy() bool {
	if h.unhealthy {
		return false
	}
	return h.unhealthyAfter <= 0 || time.Since(h.start) < h.unhealthyAfter
}

func (h *handler) healthz(w http.ResponseWriter, r *http.Request) {
	if !h.healthy() {
		http.Error(w, "unhealthy", http.StatusServiceUnavailable)
		return
	}
	_, _ = io.WriteString(w, "ok\n")
}

func (h *handler) slow(w http.ResponseWriter, r *http.Request) {
	ms, err := strconv.Atoi(r.URL.Query().Get("ms"))
	if err != nil || ms < 0 {
		http.Error(w, "ms must be a number of milliseconds", http.StatusBadRequest)
		return
	}
	select {
	case <-time.After(time.Duration(ms) * time.Millisecond):
	case <-r.Context().Done():
		return
	}
	h.reply(w)
}

func batch(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo-app batch", flag.ContinueOnError)
	fs.SetOutput(stderr)
	steps := fs.Int("steps", 5, "number of steps")
	interval := fs.Duration("interval", time.Second, "time between steps")
	exitCode := fs.Int("exit-code", 0, "exit status once all steps are done")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, stop := stopContext()
	defer stop()
	alloc := os.Getenv("GANTRY_ALLOC_ID")
	for i := 1; i <= *steps; i++ {
		fmt.Fprintf(stdout, "step %d/%d alloc=%s\n", i, *steps, alloc)
		fmt.Fprintf(stderr, "progress %d/%d\n", i, *steps)
		if i == *steps {
			break
		}
		t := time.NewTimer(*interval)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			fmt.Fprintf(stdout, "terminated at step %d/%d\n", i, *steps)
			return 143
		}
	}
	fmt.Fprintf(stdout, "done, exiting %d\n", *exitCode)
	return *exitCode
}
