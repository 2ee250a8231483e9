package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/ui"
	"github.com/spf13/cobra"
)

func newMonitorCmd(g *globals) *cobra.Command {
	var (
		topics, keys []string
		index        int64
		namespace    string
	)
	cmd := &cobra.Command{
		Use:   "monitor",
		Short: "Follow the cluster's events: jobs, allocations, nodes, evaluations, deployments, queues",
		Long: `Follow the cluster's event stream (GET /v1/events) until interrupted.

Each event carries the store index of its change. --index N starts after
the event with index N, so a consumer that remembers the last index it
printed resumes without missing or repeating an event; 0 (the default)
starts with the next change. When the connection drops (a server restart),
monitor reconnects and resumes from the last index it printed. An index
older than the history the servers keep is refused (exit 1) with the
oldest index that can still be resumed from.

--json prints each event as one JSON object per line, as the API sends it.`,
		Example: `  gantry monitor
  gantry monitor --topic allocation --key web
  gantry monitor --json --index 1234 > events.ndjson`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if index < 0 {
				return exitf(ExitError, "--index must not be negative")
			}
			q := url.Values{}
			for _, t := range topics {
				for _, t := range strings.Split(t, ",") {
					if t = strings.TrimSpace(t); t != "" {
						q.Add("topic", t)
					}
				}
			}
			for _, k := range keys {
				q.Add("key", k)
			}
			if namespace != "" {
				q.Set("namespace", namespace)
			}
			ctx, cancel := signalContext()
			defer cancel()
			m := &eventMonitor{g: g, c: g.client(), query: q, last: index}
			if index == 0 {
				// "From the next change" is after the current index: asking
				// for it explicitly lets a reconnect resume from there.
				var st api.StatusResponse
				if err := m.c.get("/v1/status", &st); err != nil {
					return exitf(ExitError, "%v", err)
				}
				m.last = st.Index
			}
			err := m.run(ctx)
			if ctx.Err() != nil {
				return nil
			}
			return err
		},
	}
	cmd.Flags().StringSliceVar(&topics, "topic", nil, "only these topics (repeatable or comma-separated): job, allocation, node, evaluation, deployment, queue, audit, vsphere")
	cmd.Flags().StringSliceVar(&keys, "key", nil, "only events about these keys (repeatable): a job name (its allocations and evaluations too), an allocation or node ID")
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "", "only events of this namespace (and cluster-wide ones, such as nodes)")
	cmd.Flags().Int64Var(&index, "index", 0, "resume after the event with this index (0: from the next change)")
	cmd.Flags().BoolVar(&g.json, "json", false, "print events as JSON lines")
	return cmd
}

// eventMonitor follows the event stream, reconnecting after failures.
type eventMonitor struct {
	g     *globals
	c     *client
	query url.Values
	last  int64           // index of the last event printed
	seen  map[string]bool // events of index last already printed
}

// eventID identifies an event within its index (one store revision can
// change several objects).
func eventID(e *api.Event) string {
	return e.Topic + "\x00" + e.Type + "\x00" + e.Namespace + "\x00" + e.Key
}

func (m *eventMonitor) run(ctx context.Context) error {
	delay := 500 * time.Millisecond
	lost := false
	for {
		started, err := m.follow(ctx, lost)
		if ctx.Err() != nil {
			return nil
		}
		var ae *apiError
		if errors.As(err, &ae) && ae.Status != http.StatusServiceUnavailable && ae.Status/100 == 4 {
			// 410 (history compacted), 400, 401, 403: retrying cannot help.
			return exitf(ExitError, "event stream: %s", ae.Msg)
		}
		if started {
			delay, lost = 500*time.Millisecond, false
		}
		if !lost {
			fmt.Fprintf(m.g.errw, "event stream lost (%v); resuming after index %d\n", err, m.last)
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

// follow reads the stream once. A revision's events are written together,
// but a connection can break in the middle of them: so it asks again for
// the last index it printed and skips the events of that index it has.
func (m *eventMonitor) follow(ctx context.Context, resumed bool) (bool, error) {
	q := url.Values{}
	for k, v := range m.query {
		q[k] = v
	}
	from := m.last
	if from > 0 && len(m.seen) > 0 {
		from--
	}
	q.Set("index", strconv.FormatInt(from, 10))
	resp, err := m.c.raw(ctx, http.MethodGet, "/v1/events?"+q.Encode(), nil)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resumed {
		fmt.Fprintf(m.g.errw, "event stream resumed after index %d\n", m.last)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(strings.TrimSpace(string(line))) == 0 {
			continue // keep-alive
		}
		var e api.Event
		if err := json.Unmarshal(line, &e); err != nil {
			return true, fmt.Errorf("the server sent an event that is not JSON: %w", err)
		}
		switch {
		case e.Index < m.last:
			continue
		case e.Index == m.last && m.seen[eventID(&e)]:
			continue
		case e.Index > m.last:
			m.last, m.seen = e.Index, map[string]bool{}
		}
		m.seen[eventID(&e)] = true
		if err := m.print(line, &e); err != nil {
			return true, err
		}
	}
	if err := sc.Err(); err != nil {
		return true, err
	}
	return true, io.ErrUnexpectedEOF
}

func (m *eventMonitor) print(line []byte, e *api.Event) error {
	if m.g.json {
		_, err := fmt.Fprintf(m.g.out, "%s\n", line)
		return err
	}
	_, err := fmt.Fprintln(m.g.out, formatEvent(e))
	return err
}

// formatEvent is one event as monitor prints it:
// time, index, topic, type, object and what changed.
func formatEvent(e *api.Event) string {
	v := ui.Summarize(*e)
	obj := v.Label()
	if e.Namespace != "" {
		obj = e.Namespace + "/" + obj
	}
	s := fmt.Sprintf("%s  %-8d %-11s %-22s %s", e.Time.Local().Format("15:04:05.000"), e.Index, e.Topic, e.Type, obj)
	if v.Summary != "" {
		s += "  " + v.Summary
	}
	return s
}
