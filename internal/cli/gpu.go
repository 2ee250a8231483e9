package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/spf13/cobra"
)

func newGPUCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "gpu", Short: "GPU operations: defragmentation"}
	defrag := &cobra.Command{Use: "defrag", Short: "Move shared-GPU work to make room for GPU work that fits nowhere"}
	defrag.AddCommand(newDefragPlanCmd(g), newDefragApplyCmd(g))
	cmd.AddCommand(defrag)
	return cmd
}

func newDefragPlanCmd(g *globals) *cobra.Command {
	var job string
	cmd := &cobra.Command{
		Use:   "plan [--for <job>]",
		Short: "Propose the moves that would let a pending GPU job fit, changing nothing",
		Long: `Propose the moves of running GPU work (replicas of groups with
migrate: true) after which a pending job fits: the named one, or the
largest pending GPU request. When nothing is pending, propose the moves
that free the most whole GPUs. Nothing changes; 'gantry gpu defrag apply'
carries a plan out.

Exit codes: 0 a plan (or the job fits already), 1 error, 2 no moves make
room for the job.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var p api.DefragPlan
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			if err := g.client().do(ctx, http.MethodPost, "/v1/gpu/defrag/plan", api.DefragRequest{Namespace: g.namespace, Job: job}, &p); err != nil {
				return exitf(ExitError, "GPU defrag plan: %v", err)
			}
			if g.json {
				if err := printJSON(g.out, &p); err != nil {
					return err
				}
			} else {
				printDefragPlan(g, &p)
			}
			if !p.Fits && p.Job != "" {
				return errSilent{ExitCannotPlace}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&job, "for", "", "the pending job to make room for (default: the largest pending GPU request)")
	cmd.Flags().BoolVar(&g.json, "json", false, "print the plan as JSON")
	return cmd
}

func printDefragPlan(g *globals, p *api.DefragPlan) {
	w := g.out
	switch {
	case p.Job == "" && len(p.Moves) == 0:
		fmt.Fprintf(w, "No job is waiting for GPUs, and %s.\n", p.Why)
		return
	case p.Job == "":
		fmt.Fprintf(w, "No job is waiting for GPUs; %d move(s) free %d whole GPU(s):\n", len(p.Moves), p.Freed)
	case p.FitsNow:
		fmt.Fprintf(w, "Job %s (group %s, %d replica(s) waiting) fits now, without moving anything.\n", p.Job, p.Group, p.Replicas)
		return
	case !p.Fits:
		fmt.Fprintf(w, "Job %s (group %s, %d replica(s) waiting) cannot fit by moving GPU work: %s.\n", p.Job, p.Group, p.Replicas, p.Why)
		return
	default:
		fmt.Fprintf(w, "Job %s (group %s, %d replica(s) waiting) %s:\n", p.Job, p.Group, p.Replicas, p.Sentence())
	}
	tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, "ALLOC\tREPLICA\tFROM\tTO\tMILLI\tWHY")
	for _, m := range p.Moves {
		fmt.Fprintf(tw, "%s\t%s\t%s %s\t%s %s\t%d\t%s\n", api.ShortID(m.Alloc), m.Name, m.FromNode, gpuList(m.FromGPUs), m.ToNode, gpuList(m.ToGPUs), m.Milli, m.Reason)
	}
	tw.Flush()
}

func gpuList(gs []int) string {
	s := "GPU"
	for i, g := range gs {
		if i == 0 {
			s += fmt.Sprintf(" %d", g)
		} else {
			s += fmt.Sprintf(",%d", g)
		}
	}
	return s
}

func newDefragApplyCmd(g *globals) *cobra.Command {
	var job string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "apply --for <job>",
		Short: "Carry out the moves that let a pending GPU job fit, one replica at a time",
		Long: `Carry out the plan of 'gantry gpu defrag plan --for <job>' one move at
a time: each moved replica gets a replacement on the planned node and
GPU, and the old replica stops only once the replacement is healthy, so
no group ever has fewer healthy replicas than before. A replacement that
does not become healthy (within the group's update.healthy_deadline, 5m
by default) is stopped and the old replica stays. The server plans again
after every move; when the job fits, its evaluation places it. Every move
is an allocation event carrying its reason.

Exit codes: 0 the job fits, 1 error or a move failed, 2 no moves make
room for the job.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if job == "" {
				return exitf(ExitError, "apply needs --for <job>: the pending job to make room for (see 'gantry gpu defrag plan')")
			}
			c := g.client()
			enc := json.NewEncoder(g.out)
			deadline := time.Now().Add(timeout)
			last, moved := "", false
			for {
				var step api.DefragStep
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				err := c.do(ctx, http.MethodPost, "/v1/gpu/defrag/apply", api.DefragRequest{Namespace: g.namespace, Job: job}, &step)
				cancel()
				var ae *apiError
				if err != nil && moved && errors.As(err, &ae) && ae.Status == http.StatusConflict && strings.Contains(ae.Message, "is not waiting") {
					// The moves made room and the job's evaluation placed
					// it before this call could.
					step = api.DefragStep{State: api.DefragDone, Message: fmt.Sprintf("%s no longer waits: its evaluation placed it in the room the moves made", job)}
					err = nil
				}
				if err != nil {
					return exitf(ExitError, "GPU defrag apply --for %s: %v", job, err)
				}
				moved = moved || step.State == api.DefragMoved
				if g.json {
					if err := enc.Encode(&step); err != nil {
						return err
					}
				} else if step.Message != last {
					fmt.Fprintf(g.out, "%s: %s\n", step.State, step.Message)
					last = step.Message
				}
				switch step.State {
				case api.DefragDone:
					return nil
				case api.DefragFailed:
					if step.Move == nil {
						return errSilent{ExitCannotPlace}
					}
					return errSilent{ExitError}
				}
				if time.Now().After(deadline) {
					return exitf(ExitError, "GPU defrag apply --for %s: not done after %s; the move under way continues when apply runs again", job, timeout)
				}
				time.Sleep(500 * time.Millisecond)
			}
		},
	}
	cmd.Flags().StringVar(&job, "for", "", "the pending job to make room for (required)")
	cmd.Flags().DurationVar(&timeout, "timeout", 15*time.Minute, "give up following the moves after this long")
	cmd.Flags().BoolVar(&g.json, "json", false, "print each step as a JSON line")
	return cmd
}
