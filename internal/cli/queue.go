package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/scheduler"
	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"
)

func newQueueCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "queue", Short: "Manage fair-share queues: weights, guarantees, limits, namespaces"}
	cmd.AddCommand(newQueueApplyCmd(g), newQueueListCmd(g, "list"), newQueueListCmd(g, "status"), newQueueDeleteCmd(g))
	return cmd
}

// readQueues reads one queue, or a list of queues, from YAML or JSON.
func readQueues(path string) ([]*api.Queue, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, exitf(ExitError, "read queue file: %v", err)
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, exitf(ExitError, "%s is not valid YAML or JSON: %v", path, err)
	}
	js = bytes.TrimSpace(js)
	if len(js) > 0 && js[0] != '[' {
		js = append(append([]byte("["), js...), ']')
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	var qs []*api.Queue
	if err := dec.Decode(&qs); err != nil {
		return nil, exitf(ExitError, "%s: %v (fields: name, weight, guarantee, limit, namespaces)", path, err)
	}
	for i, q := range qs {
		if err := scheduler.ValidateQueue(q); err != nil {
			return nil, exitf(ExitError, "%s: queue %d (%s): %v", path, i, q.Name, err)
		}
	}
	return qs, nil
}

func newQueueApplyCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "apply <file>",
		Short: "Create or replace queues from a file (one queue, or a list)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			qs, err := readQueues(args[0])
			if err != nil {
				return err
			}
			c := g.client()
			for _, q := range qs {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				var out api.Queue
				err := c.do(ctx, http.MethodPut, "/v1/queues", q, &out)
				cancel()
				if err != nil {
					return exitf(ExitError, "apply queue %s: %v", q.Name, err)
				}
				fmt.Fprintf(g.out, "Queue %q applied (weight %d, namespaces %s)\n", out.Name, out.Weight, strings.Join(out.Namespaces, ","))
			}
			return nil
		},
	}
}

func newQueueListCmd(g *globals, use string) *cobra.Command {
	short := "List queues with their guarantees, limits and usage"
	if use == "status" {
		short = "Show queues' usage against guarantees and limits, dominant share and borrowing"
	}
	cmd := &cobra.Command{
		Use:   use + " [name]",
		Short: short,
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var qs []scheduler.QueueStatus
			if len(args) == 1 {
				var q scheduler.QueueStatus
				if err := g.client().get("/v1/queues/"+url.PathEscape(args[0]), &q); err != nil {
					return exitf(ExitError, "queue %s: %v", args[0], err)
				}
				qs = append(qs, q)
			} else if err := g.client().get("/v1/queues", &qs); err != nil {
				return exitf(ExitError, "list queues: %v", err)
			}
			if g.json {
				return printJSON(g.out, qs)
			}
			tw := tabwriter.NewWriter(g.out, 0, 2, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tWEIGHT\tNAMESPACES\tGUARANTEE cpu/mem/gpu\tLIMIT cpu/mem/gpu\tUSAGE cpu/mem/gpu\tSHARE\tBORROWING")
			for _, q := range qs {
				ns := strings.Join(q.Namespaces, ",")
				if ns == "" {
					ns = "-"
				}
				limit := "-"
				if q.Limit != nil {
					limit = limits(*q.Limit)
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%.3f\t%v\n", q.Name, q.Weight, ns, limits(q.Guarantee), limit, limits(q.Usage), q.Share, q.Borrowing)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&g.json, "json", false, "print as JSON")
	return cmd
}

func limits(l api.QueueLimits) string {
	return fmt.Sprintf("%d/%d/%g", l.CPU, l.Memory, l.GPU)
}

func newQueueDeleteCmd(g *globals) *cobra.Command {
	return deleteCmd(g, "delete <name>", "Delete a queue; its namespaces fall back to queue default", "/v1/queues/", "delete", "queue", "Queue")
}
