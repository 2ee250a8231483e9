package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gantryhq/gantry/internal/admission"
	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/apiclient"
	"github.com/gantryhq/gantry/internal/audit"
	"github.com/gantryhq/gantry/internal/driver/qemu"
	"github.com/gantryhq/gantry/internal/jobspec"
	"github.com/gantryhq/gantry/internal/validate"
	"github.com/spf13/cobra"
)

func newJobCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "job", Short: "Run, plan, inspect and stop jobs"}
	cmd.PersistentFlags().StringVarP(&g.namespace, "namespace", "n", "", "namespace of the job (default: the spec's, else \"default\")")
	cmd.AddCommand(newJobRunCmd(g), newJobPlanCmd(g), newJobStatusCmd(g), newJobStopCmd(g),
		newJobHistoryCmd(g), newJobInspectCmd(g), newJobValidateCmd(g), newJobPromoteCmd(g), newJobRevertCmd(g))
	return cmd
}

// loadSpec reads and validates a job file, with every problem located:
// the spec's rules and the rules internal to the job that the server
// would reject it for (package validate). It returns the locator of the
// file's lines for problems the server reports.
func loadSpec(g *globals, path string) (*api.Job, *jobspec.Locator, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, exitf(ExitError, "read job file: %v", err)
	}
	job, err := jobspec.Parse(path, data)
	if err != nil {
		var errs *jobspec.Errors
		if errors.As(err, &errs) {
			printSpecErrors(g, errs)
			return nil, nil, errSilent{ExitError}
		}
		return nil, nil, exitf(ExitError, "%v", err)
	}
	if g.namespace != "" {
		job.Namespace = g.namespace
	}
	lines := jobspec.NewLocator(path, data)
	if invalid, _, _ := validate.Split(validate.Rules(job, nil)); len(invalid) > 0 {
		printSpecErrors(g, specErrors(path, lines, located(invalid)))
		return nil, nil, errSilent{ExitError}
	}
	return job, lines, nil
}

// located turns problems found on this machine into field errors.
func located(ps []validate.Problem) []api.FieldError {
	out := make([]api.FieldError, len(ps))
	for i, p := range ps {
		out[i] = api.FieldError{Path: p.Path, Message: p.Message}
	}
	return out
}

// specErrors locates field errors in the file (the server's lines are
// those of the JSON it was sent) and formats them as jobspec does.
func specErrors(file string, lines *jobspec.Locator, fs []api.FieldError) *jobspec.Errors {
	errs := &jobspec.Errors{File: file}
	for _, f := range fs {
		errs.Fields = append(errs.Fields, jobspec.FieldError{Path: f.Path, Line: lines.Line(f.Path), Message: f.Message})
	}
	return errs
}

// relocate sets the file and its lines on field errors from the server.
func relocate(file string, lines *jobspec.Locator, fs []api.FieldError) {
	for i := range fs {
		fs[i].File, fs[i].Line = file, lines.Line(fs[i].Path)
	}
}

// printRejection prints a job the server rejected: a refusal by the
// isolation policy (403) in its own words, then located; other problems
// located.
func printRejection(g *globals, file string, lines *jobspec.Locator, ae *apiError) {
	if ae.Status == http.StatusForbidden {
		fmt.Fprintf(g.errw, "Error: %s\n", ae.Message)
		fmt.Fprintf(g.errw, "Where, in %s:\n", file)
		for _, line := range strings.Split(specErrors(file, lines, ae.Errors).Error(), "\n") {
			fmt.Fprintf(g.errw, "  %s\n", line)
		}
		return
	}
	printSpecErrors(g, specErrors(file, lines, ae.Errors))
}

func printSpecErrors(g *globals, errs *jobspec.Errors) {
	fmt.Fprintf(g.errw, "Error: %s has %d problem(s):\n", errs.File, len(errs.Fields))
	for _, line := range strings.Split(errs.Error(), "\n") {
		fmt.Fprintf(g.errw, "  %s\n", line)
	}
}

func newJobRunCmd(g *globals) *cobra.Command {
	var detach bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "run <file>",
		Short: "Submit a job and follow it until it is healthy (services) or done (batch)",
		Long: `Submit a job and follow its deployment.

Exit codes: 0 healthy (or, for batch work, finished successfully),
2 cannot be placed (the reason is printed), 1 any other error.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			job, lines, err := loadSpec(g, args[0])
			if err != nil {
				return err
			}
			c := g.client()
			var resp api.RegisterResponse
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := c.do(ctx, http.MethodPost, "/v1/jobs", job, &resp); err != nil {
				var ae *apiError
				if errors.As(err, &ae) && len(ae.Errors) > 0 {
					// Problems only the server sees (another job's
					// load-balancer port, the isolation policy): located
					// in the file.
					printRejection(g, args[0], lines, ae)
					return errSilent{ExitError}
				}
				return exitf(ExitError, "submit job %s: %v", job.Name, err)
			}
			if g.json && detach {
				return printJSON(g.out, resp)
			}
			for _, w := range resp.Warnings {
				fmt.Fprintf(g.errw, "Warning: %s\n", w)
			}
			if len(resp.Placement) > 0 {
				// Accepted, but the cluster as it is cannot place it:
				// the same words as `job validate --cluster`.
				fmt.Fprintf(g.errw, "Warning: the cluster as it is can never place this job; it waits until the cluster changes:\n")
				for _, line := range strings.Split(specErrors(args[0], lines, resp.Placement).Error(), "\n") {
					fmt.Fprintf(g.errw, "  %s\n", line)
				}
			}
			follow := func() error {
				if resp.Changed {
					fmt.Fprintf(g.out, "==> Job %q registered as version %d (evaluation %s)\n", job.Name, resp.JobVersion, api.ShortID(resp.EvalID))
				} else {
					fmt.Fprintf(g.out, "==> Job %q unchanged at version %d (evaluation %s)\n", job.Name, resp.JobVersion, api.ShortID(resp.EvalID))
				}
				if detach {
					return nil
				}
				m := &monitor{g: g, c: c, ns: job.Namespace, job: job, version: resp.JobVersion, evalID: resp.EvalID, index: resp.Index}
				return m.run(timeout)
			}
			if g.json {
				return followJSON(g, resp, follow)
			}
			return follow()
		},
	}
	cmd.Flags().BoolVarP(&detach, "detach", "d", false, "return once the job is accepted, without following it")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "how long to follow the deployment before giving up")
	cmd.Flags().BoolVar(&g.json, "json", false, "print the server's answer as JSON; without --detach, then the deployment's progress as JSON lines")
	return cmd
}

// monitor follows one job version until it is healthy, done or failed.
// It reads the job's state again after each change the event stream
// reports (jobWatch), with reads that first bring the server's view up
// to date, so that they reflect the change the event announced.
type monitor struct {
	g       *globals
	c       *client
	ns      string
	job     *api.Job
	version uint64
	evalID  string
	index   int64 // the store index of the change followed (0: unknown)
	// promoted: the canaries were just promoted, follow to the end.
	promoted bool
	w        *jobWatch
}

// watch starts following the job's events, once.
func (m *monitor) watch() {
	if m.w == nil {
		m.w = watchJob(m.c, m.ns, m.job.Name, m.index)
	}
}

func (m *monitor) stop() {
	if m.w != nil {
		m.w.stop()
	}
}

// evaluation is m.evalID once it is no longer pending, or nil.
func (m *monitor) evaluation() (*api.Evaluation, error) {
	evals, err := read(m.c, func(ctx context.Context) ([]*api.Evaluation, error) {
		return m.c.JobEvals(ctx, m.ns, m.job.Name, apiclient.Consistent)
	})
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	for _, e := range evals {
		if e.ID == m.evalID && e.Status != api.EvalPending {
			// The evaluation as its own endpoint words it (placement
			// failures explained).
			return m.c.eval(m.evalID)
		}
	}
	return nil, nil
}

// allocs are the job's allocations as of the latest change seen.
func (m *monitor) allocs() ([]*api.Allocation, error) {
	return read(m.c, func(ctx context.Context) ([]*api.Allocation, error) {
		return m.c.JobAllocs(ctx, m.ns, m.job.Name, apiclient.Consistent)
	})
}

func (m *monitor) run(timeout time.Duration) error {
	start := time.Now()
	deadline := start.Add(timeout)
	m.watch()
	defer m.stop()
	// 1. The evaluation: did everything get placed?
	var ev *api.Evaluation
	for {
		e, err := m.evaluation()
		if err != nil {
			return exitf(ExitError, "follow evaluation %s: %v", api.ShortID(m.evalID), err)
		}
		if e != nil {
			ev = e
			break
		}
		if time.Now().After(deadline) {
			return exitf(ExitError, "evaluation %s still pending after %s: is a server leading? check 'gantry job status %s'", api.ShortID(m.evalID), timeout, m.job.Name)
		}
		m.w.wait(deadline)
	}
	switch ev.Status {
	case api.EvalFailed:
		return exitf(ExitError, "evaluation %s failed: %s", api.ShortID(ev.ID), ev.StatusDescription)
	case api.EvalBlocked:
		fmt.Fprintf(m.g.out, "==> Evaluation %s: %d placed, %d stopped, some replicas cannot be placed\n", api.ShortID(ev.ID), ev.Placed, ev.Stopped)
		printFailures(m.g.out, ev.FailedGroups)
		return errSilent{ExitCannotPlace}
	}
	if ev.Placed+ev.Stopped > 0 {
		fmt.Fprintf(m.g.out, "==> Evaluation %s: %d placed, %d stopped\n", api.ShortID(ev.ID), ev.Placed, ev.Stopped)
	}
	if deployed(m.job) {
		return m.followDeployment(start, deadline)
	}

	// 2. The allocations of this version: healthy, done or failed?
	last := ""
	seenState := map[string]string{}
	for {
		allocs, err := m.allocs()
		if err != nil {
			return exitf(ExitError, "follow job %s: %v", m.job.Name, err)
		}
		p := m.progress(allocs)
		for _, a := range p.current {
			key := a.ClientStatus + "/" + a.Health
			if seenState[a.ID] != key {
				seenState[a.ID] = key
				fmt.Fprintf(m.g.out, "    %s %-22s on %-12s %s%s\n", a.ShortID(), a.Name(), a.NodeName, a.ClientStatus, healthSuffix(a))
			}
		}
		if line := p.line(); line != last {
			fmt.Fprintf(m.g.out, "    %s (%.1fs)\n", line, time.Since(start).Seconds())
			last = line
		}
		switch {
		case p.failed != nil:
			fmt.Fprintf(m.g.out, "==> Allocation %s failed: %s\n", p.failed.ShortID(), allocReason(p.failed))
			return errSilent{ExitError}
		case p.done:
			if m.job.Type == api.JobBatch {
				fmt.Fprintf(m.g.out, "==> Job %q finished: %d allocation(s) complete in %.1fs\n", m.job.Name, p.complete, time.Since(start).Seconds())
			} else {
				fmt.Fprintf(m.g.out, "==> Job %q is healthy: %d/%d allocations healthy after %.1fs\n", m.job.Name, p.healthy, p.desired, time.Since(start).Seconds())
			}
			return nil
		case time.Now().After(deadline):
			return exitf(ExitError, "job %q not healthy after %s: %s (see 'gantry job status %s')", m.job.Name, timeout, p.line(), m.job.Name)
		}
		m.w.wait(deadline)
	}
}

type progress struct {
	desired, placed, running, healthy, complete int
	current                                     []*api.Allocation
	failed                                      *api.Allocation
	done                                        bool
}

func (p *progress) line() string {
	return fmt.Sprintf("%d/%d placed, %d running, %d healthy, %d complete", p.placed, p.desired, p.running, p.healthy, p.complete)
}

func (m *monitor) progress(allocs []*api.Allocation) *progress {
	p := &progress{}
	for _, g := range m.job.Groups {
		p.desired += g.Count
	}
	for _, a := range allocs {
		if a.JobVersion != m.version || a.DesiredStatus != api.AllocDesiredRun {
			continue
		}
		p.current = append(p.current, a)
		p.placed++
		switch a.ClientStatus {
		case api.AllocRunning:
			p.running++
			if a.Health == api.HealthHealthy {
				p.healthy++
			}
		case api.AllocComplete:
			p.complete++
		case api.AllocFailed:
			if p.failed == nil {
				p.failed = a
			}
		}
	}
	if m.job.Type == api.JobBatch {
		p.done = p.desired > 0 && p.complete >= p.desired
	} else {
		p.done = p.healthy >= p.desired
	}
	return p
}

func healthSuffix(a *api.Allocation) string {
	if a.Health != "" && a.ClientStatus == api.AllocRunning {
		return ", " + a.Health
	}
	return ""
}

// allocReason is the most telling reason an allocation gives.
func allocReason(a *api.Allocation) string {
	if a.ClientReason != "" {
		return a.ClientReason
	}
	var best api.TaskEvent
	for name, ts := range a.TaskStates {
		for _, e := range ts.Events {
			if e.Message != "" && !e.Time.Before(best.Time) {
				best = e
				best.Message = name + ": " + e.Message
			}
		}
	}
	if best.Message != "" {
		return best.Message
	}
	return a.ClientStatus
}

func printFailures(w interface{ Write([]byte) (int, error) }, failed map[string]*api.Explanation) {
	names := make([]string, 0, len(failed))
	for n := range failed {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		ex := failed[n]
		fmt.Fprintf(w, "    group %q: %d replica(s) unplaced: %s\n", n, ex.Unplaced, ex.String())
	}
}

func newJobPlanCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "plan <file>",
		Short: "Show what submitting a job would change, without changing anything",
		Long:  "Show what submitting a job would change. Exit codes: 0 everything can be placed, 2 some replicas cannot be placed, 1 error.",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			job, lines, err := loadSpec(g, args[0])
			if err != nil {
				return err
			}
			var resp api.PlanResponse
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := g.client().do(ctx, http.MethodPost, "/v1/jobs/plan", job, &resp); err != nil {
				var ae *apiError
				if errors.As(err, &ae) && len(ae.Errors) > 0 {
					printRejection(g, args[0], lines, ae)
					return errSilent{ExitError}
				}
				return exitf(ExitError, "plan job %s: %v", job.Name, err)
			}
			if g.json {
				if err := printJSON(g.out, resp); err != nil {
					return err
				}
			} else {
				printPlan(g, job, &resp)
			}
			if len(resp.Failed) > 0 {
				return errSilent{ExitCannotPlace}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&g.json, "json", false, "print the plan as JSON")
	return cmd
}

func printPlan(g *globals, job *api.Job, p *api.PlanResponse) {
	w := g.out
	switch {
	case !p.Changed:
		fmt.Fprintf(w, "Job %q: no change to the spec (version %d)\n", job.Name, p.JobVersion)
	case len(p.Diff) == 0:
		fmt.Fprintf(w, "Job %q: new job, would be version %d\n", job.Name, p.JobVersion)
	default:
		fmt.Fprintf(w, "Job %q: would become version %d; changed fields:\n", job.Name, p.JobVersion)
		for _, d := range p.Diff {
			switch {
			case d.Old == "":
				fmt.Fprintf(w, "  + %s: %s\n", d.Path, d.New)
			case d.New == "":
				fmt.Fprintf(w, "  - %s: %s\n", d.Path, d.Old)
			default:
				fmt.Fprintf(w, "  ~ %s: %s => %s\n", d.Path, d.Old, d.New)
			}
		}
	}
	names := make([]string, 0, len(p.Groups))
	for n := range p.Groups {
		names = append(names, n)
	}
	sort.Strings(names)
	tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tPLACE\tSTOP\tIN-PLACE\tKEEP")
	for _, n := range names {
		gp := p.Groups[n]
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\n", n, gp.Place, gp.Stop, gp.InPlace, gp.Keep)
	}
	tw.Flush()
	for _, n := range names {
		if gp := p.Groups[n]; gp.Later > 0 {
			u := "1"
			if g := job.LookupGroup(n); g != nil && g.Update != nil {
				u = fmt.Sprint(g.Update.MaxParallel)
			}
			fmt.Fprintf(w, "Group %s: the rolling update replaces the %d other replica(s) after these, %s at a time.\n", n, gp.Later, u)
		}
	}
	printVMs(w, job)
	if len(p.Failed) > 0 {
		fmt.Fprintln(w, "Cannot place:")
		printFailures(w, p.Failed)
		if p.Defrag != nil {
			fmt.Fprintf(w, "  GPUs are fragmented: group %q %s\n", p.Defrag.Group, p.Defrag.Sentence())
		}
	} else {
		fmt.Fprintln(w, "All replicas can be placed.")
	}
}

// printVMs says how each qemu task's resources become a VM: vCPUs are
// whole, so millicores round up, and the node accounts QEMU's overhead on
// top of the guest's RAM.
func printVMs(w io.Writer, job *api.Job) {
	for _, g := range job.Groups {
		for _, t := range g.Tasks {
			if t.Driver != api.DriverQEMU {
				continue
			}
			v := qemu.VCPUs(t.Resources.CPU)
			round := ""
			if v*1000 != t.Resources.CPU {
				round = ", rounded up"
			}
			fmt.Fprintf(w, "VM %s/%s: %d vCPU(s) from %d millicores%s; %d MiB guest RAM, %d MiB accounted per VM with QEMU's overhead\n",
				g.Name, t.Name, v, t.Resources.CPU, round, t.Resources.Memory, api.TaskMemory(t))
		}
	}
}

func newJobStatusCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status [name]",
		Short: "List jobs, or show one job with its allocations",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := g.client()
			if len(args) == 0 {
				var list []*api.JobSummary
				if err := c.get("/v1/jobs"+nsQuery(g.namespace), &list); err != nil {
					return exitf(ExitError, "list jobs: %v", err)
				}
				if g.json {
					return printJSON(g.out, list)
				}
				if len(list) == 0 {
					fmt.Fprintln(g.out, "No jobs.")
					return nil
				}
				tw := tabwriter.NewWriter(g.out, 0, 2, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tNAMESPACE\tTYPE\tPRIORITY\tVERSION\tSTATUS\tRUNNING\tHEALTHY")
				for _, s := range list {
					run, healthy, desired := 0, 0, 0
					for _, gs := range s.Groups {
						run += gs.Running
						healthy += gs.Healthy
						desired += gs.Desired
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%d/%d\t%d\n", s.Job.Name, s.Job.Namespace, s.Job.Type, s.Job.Priority, s.Job.Version, s.Status, run, desired, healthy)
				}
				return tw.Flush()
			}
			ns := g.namespace
			s, err := c.job(ns, args[0])
			if err != nil {
				return exitf(ExitError, "job %s: %v", args[0], err)
			}
			allocs, err := c.jobAllocs(s.Job.Namespace, s.Job.Name)
			if err != nil {
				return exitf(ExitError, "allocations of job %s: %v", args[0], err)
			}
			var evals []*api.Evaluation
			c.get("/v1/jobs/"+url.PathEscape(s.Job.Name)+"/evaluations"+nsQuery(s.Job.Namespace), &evals)
			dep := latestDeployment(c, s.Job)
			if g.json {
				return printJSON(g.out, map[string]any{"summary": s, "allocations": allocs, "evaluations": evals, "deployment": dep})
			}
			printJobStatus(g, s, allocs, evals)
			printDeploymentSummary(g.out, dep, s.Job.Version)
			return nil
		},
	}
	cmd.Flags().BoolVar(&g.json, "json", false, "print as JSON")
	return cmd
}

func printJobStatus(g *globals, s *api.JobSummary, allocs []*api.Allocation, evals []*api.Evaluation) {
	w := g.out
	j := s.Job
	fmt.Fprintf(w, "Name       %s\nNamespace  %s\nType       %s\nPriority   %d\nVersion    %d\nStatus     %s\nSubmitted  %s\n\n",
		j.Name, j.Namespace, j.Type, j.Priority, j.Version, s.Status, j.SubmitTime.Local().Format(time.RFC3339))
	tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tDESIRED\tPENDING\tRUNNING\tHEALTHY\tCOMPLETE\tFAILED\tLOST")
	names := make([]string, 0, len(s.Groups))
	for n := range s.Groups {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		gs := s.Groups[n]
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n", n, gs.Desired, gs.Pending, gs.Running, gs.Healthy, gs.Complete, gs.Failed, gs.Lost)
	}
	tw.Flush()
	for i := len(evals) - 1; i >= 0; i-- {
		if e := evals[i]; e.Status == api.EvalBlocked {
			fmt.Fprintln(w, "\nPlacement failures:")
			printFailures(w, e.FailedGroups)
			break
		}
	}
	fmt.Fprintln(w, "\nAllocations")
	printAllocTable(w, allocs)
}

func printAllocTable(w interface{ Write([]byte) (int, error) }, allocs []*api.Allocation) {
	if len(allocs) == 0 {
		fmt.Fprintln(w, "No allocations.")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tNODE\tVERSION\tDESIRED\tSTATUS\tHEALTH\tCREATED")
	for _, a := range allocs {
		health := a.Health
		if health == "" || a.ClientStatus != api.AllocRunning {
			health = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", a.ShortID(), a.Name(), a.NodeName, a.JobVersion, a.DesiredStatus, a.ClientStatus, health, ago(a.CreateTime))
	}
	tw.Flush()
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := time.Since(t).Round(time.Second)
	return d.String() + " ago"
}

func newJobStopCmd(g *globals) *cobra.Command {
	var detach bool
	cmd := &cobra.Command{
		Use:   "stop <name>",
		Short: "Stop a job: every allocation is stopped and its containers removed",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := g.client()
			var resp api.StopResponse
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := c.do(ctx, http.MethodDelete, "/v1/jobs/"+url.PathEscape(args[0])+nsQuery(g.namespace), nil, &resp); err != nil {
				return exitf(ExitError, "stop job %s: %v", args[0], err)
			}
			if g.json && detach {
				return printJSON(g.out, resp)
			}
			if g.json {
				return followJSON(g, resp, func() error { return followStop(g, c, args[0], resp) })
			}
			if detach {
				fmt.Fprintf(g.out, "==> Job %q stopping (evaluation %s)\n", args[0], api.ShortID(resp.EvalID))
				return nil
			}
			return followStop(g, c, args[0], resp)
		},
	}
	cmd.Flags().BoolVarP(&detach, "detach", "d", false, "return without waiting for the allocations to stop")
	cmd.Flags().BoolVar(&g.json, "json", false, "print the server's answer as JSON; without --detach, then the progress as JSON lines")
	return cmd
}

// followStop waits until no allocation of the stopped job runs.
func followStop(g *globals, c *client, name string, resp api.StopResponse) error {
	fmt.Fprintf(g.out, "==> Job %q stopping (evaluation %s)\n", name, api.ShortID(resp.EvalID))
	deadline := time.Now().Add(2 * time.Minute)
	for {
		allocs, err := c.jobAllocs(g.namespace, name)
		if err != nil {
			return exitf(ExitError, "follow job %s: %v", name, err)
		}
		live := 0
		for _, a := range allocs {
			if !a.ClientTerminal() {
				live++
			}
		}
		if live == 0 {
			fmt.Fprintf(g.out, "==> Job %q stopped: no allocation running\n", name)
			return nil
		}
		if time.Now().After(deadline) {
			return exitf(ExitError, "job %s: %d allocation(s) still running after 2m; check 'gantry job status %s'", name, live, name)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func newJobHistoryCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "history <name>",
		Short: "List every version of a job",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var versions []*api.Job
			if err := g.client().get("/v1/jobs/"+url.PathEscape(args[0])+"/versions"+nsQuery(g.namespace), &versions); err != nil {
				return exitf(ExitError, "history of job %s: %v", args[0], err)
			}
			if g.json {
				return printJSON(g.out, versions)
			}
			tw := tabwriter.NewWriter(g.out, 0, 2, 2, ' ', 0)
			fmt.Fprintln(tw, "VERSION\tSUBMITTED\tGROUPS")
			for _, v := range versions {
				var groups []string
				for _, gr := range v.Groups {
					groups = append(groups, fmt.Sprintf("%s×%d", gr.Name, gr.Count))
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\n", v.Version, v.SubmitTime.Local().Format(time.RFC3339), strings.Join(groups, ", "))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&g.json, "json", false, "print as JSON")
	return cmd
}

func newJobInspectCmd(g *globals) *cobra.Command {
	var version int
	cmd := &cobra.Command{
		Use:   "inspect <name>",
		Short: "Print a job's spec as the server holds it (JSON)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := g.client()
			if version >= 0 {
				var j api.Job
				if err := c.get(fmt.Sprintf("/v1/jobs/%s/versions/%d%s", url.PathEscape(args[0]), version, nsQuery(g.namespace)), &j); err != nil {
					return exitf(ExitError, "job %s version %d: %v", args[0], version, err)
				}
				return printJSON(g.out, &j)
			}
			s, err := c.job(g.namespace, args[0])
			if err != nil {
				return exitf(ExitError, "job %s: %v", args[0], err)
			}
			return printJSON(g.out, s.Job)
		},
	}
	cmd.Flags().IntVar(&version, "version", -1, "print this version instead of the current one")
	return cmd
}

func newJobValidateCmd(g *globals) *cobra.Command {
	var cluster bool
	cmd := &cobra.Command{
		Use:   "validate <file>",
		Short: "Check a job file without submitting it, against the cluster when a server answers",
		Long: `Check a job file without submitting it and report every problem at once,
each with its file and line.

The spec's syntax and rules, and the rules internal to the job (update
strategies that cannot progress, colliding load-balancer ports), are
checked here. With --cluster, or by default when a server answers at
--address, the server also checks the job against the cluster's shape:
resources no node could hold even when empty, GPUs and MIG profiles no
node offers, constraints no node satisfies, gangs larger than the
cluster, queue limits, load-balancer ports other jobs hold, unknown
namespaces. --cluster=false checks the file alone.

Exit codes: 0 valid, 1 invalid (the server would reject it), 2 the only
problems are that the cluster as it is can never place it (the server
would accept it and wait for the cluster to change).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			file := args[0]
			data, err := os.ReadFile(file)
			if err != nil {
				return exitf(ExitError, "read job file: %v", err)
			}
			job, perr := jobspec.Parse(file, data)
			if perr != nil {
				return syntaxProblems(g, file, perr)
			}
			if g.namespace != "" {
				job.Namespace = g.namespace
			}
			lines := jobspec.NewLocator(file, data)
			c := g.client()
			useCluster := cluster
			if !cmd.Flags().Changed("cluster") {
				useCluster = c.answers()
			}
			var resp api.ValidateResponse
			if useCluster {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				if err := c.do(ctx, http.MethodPost, "/v1/validate/job", job, &resp); err != nil {
					return exitf(ExitError, "validate job %s against the cluster: %v", job.Name, err)
				}
			} else {
				invalid, unplaceable, advice := validate.Split(validate.Job(job, nil))
				resp.Errors, resp.Placement, resp.Warnings = located(invalid), located(unplaceable), located(advice)
				// The isolation policy: the default one, as no server
				// says which is in force.
				if rv, err := admission.Check(audit.DefaultPolicy(), job); err != nil {
					resp.Errors = append(resp.Errors, api.FieldError{Message: err.Error()})
				} else {
					resp.Errors = append(resp.Errors, rv.FieldErrors(job)...)
				}
			}
			relocate(file, lines, resp.Errors)
			relocate(file, lines, resp.Placement)
			relocate(file, lines, resp.Warnings)
			resp.Valid = len(resp.Errors) == 0 && len(resp.Placement) == 0
			code := ExitOK
			switch {
			case len(resp.Errors) > 0:
				code = ExitError
			case len(resp.Placement) > 0:
				code = ExitCannotPlace
			}
			if g.json {
				if err := printJSON(g.out, resp); err != nil {
					return err
				}
				if code != ExitOK {
					return errSilent{code}
				}
				return nil
			}
			where := "the file alone (no server answered at " + c.Address() + ")"
			if cmd.Flags().Changed("cluster") && !cluster {
				where = "the file alone"
			}
			if useCluster {
				where = fmt.Sprintf("the cluster at %s (%s)", c.Address(), plural(resp.Nodes, "node", "nodes"))
			}
			if len(resp.Errors) > 0 {
				printSpecErrors(g, specErrors(file, lines, resp.Errors))
			}
			if len(resp.Placement) > 0 {
				fmt.Fprintf(g.errw, "Cannot be placed: %s on %s; the server would accept the job and wait for the cluster to change:\n",
					plural(len(resp.Placement), "problem", "problems"), where)
				for _, line := range strings.Split(specErrors(file, lines, resp.Placement).Error(), "\n") {
					fmt.Fprintf(g.errw, "  %s\n", line)
				}
			}
			for _, w := range resp.Warnings {
				fmt.Fprintf(g.errw, "Warning: %s\n", specErrors(file, lines, []api.FieldError{w}).Error())
			}
			if code != ExitOK {
				return errSilent{code}
			}
			fmt.Fprintf(g.out, "%s is valid; checked against %s.\n", file, where)
			return nil
		},
	}
	cmd.Flags().BoolVar(&g.json, "json", false, "print the result as JSON")
	cmd.Flags().BoolVar(&cluster, "cluster", false, "check against the cluster (default: when a server answers at --address); --cluster=false: the file alone")
	return cmd
}

// syntaxProblems reports a spec that does not parse (exit 1).
func syntaxProblems(g *globals, file string, perr error) error {
	var errs *jobspec.Errors
	if g.json {
		resp := api.ValidateResponse{}
		if errors.As(perr, &errs) {
			for _, e := range errs.Fields {
				resp.Errors = append(resp.Errors, api.FieldError{Path: e.Path, Line: e.Line, File: file, Message: e.Message})
			}
		} else {
			resp.Errors = append(resp.Errors, api.FieldError{File: file, Message: perr.Error()})
		}
		printJSON(g.out, resp)
		return errSilent{ExitError}
	}
	if errors.As(perr, &errs) {
		printSpecErrors(g, errs)
		return errSilent{ExitError}
	}
	return exitf(ExitError, "%v", perr)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
