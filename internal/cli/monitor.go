package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/apiclient"
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
			ev := apiclient.Events{Keys: keys, Namespace: namespace, After: index}
			for _, t := range topics {
				for _, t := range strings.Split(t, ",") {
					if t = strings.TrimSpace(t); t != "" {
						ev.Topics = append(ev.Topics, t)
					}
				}
			}
			ctx, cancel := signalContext()
			defer cancel()
			// After 0 ("from the next change") makes the follower ask
			// for the current index first, so a reconnect resumes there.
			m := &eventMonitor{g: g, c: g.client(), events: ev}
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

// eventMonitor follows the event stream, reconnecting after failures
// and saying so on stderr.
type eventMonitor struct {
	g      *globals
	c      *client
	events apiclient.Events
}

func (m *eventMonitor) run(ctx context.Context) error {
	if m.c.err != nil {
		return exitf(ExitError, "%v", m.c.err)
	}
	ev := m.events
	ev.Lost = func(err error, after int64) {
		fmt.Fprintf(m.g.errw, "event stream lost (%v); resuming after index %d\n", err, after)
	}
	ev.Resumed = func(after int64) {
		fmt.Fprintf(m.g.errw, "event stream resumed after index %d\n", after)
	}
	err := m.c.FollowEvents(ctx, ev, m.print)
	var ae *apiError
	switch {
	case ctx.Err() != nil:
		return nil
	case errors.As(err, &ae):
		// 410 (history compacted), 400, 401, 403: retrying cannot help.
		return exitf(ExitError, "event stream: %s", ae.Message)
	case err != nil:
		return exitf(ExitError, "%v", err)
	}
	return nil
}

func (m *eventMonitor) print(e api.Event) error {
	if m.g.json {
		line, err := json.Marshal(e)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(m.g.out, "%s\n", line)
		return err
	}
	_, err := fmt.Fprintln(m.g.out, formatEvent(&e))
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
