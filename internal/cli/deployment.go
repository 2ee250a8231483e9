package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/apiclient"
	"github.com/spf13/cobra"
)

func newDeploymentCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "deployment", Short: "Follow rolling updates: list deployments, show one"}
	cmd.PersistentFlags().StringVarP(&g.namespace, "namespace", "n", "", "namespace of the job (default \"default\")")
	cmd.PersistentFlags().BoolVar(&g.json, "json", false, "print as JSON")
	var job string
	list := &cobra.Command{
		Use:   "list",
		Short: "List deployments, newest version first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := url.Values{}
			if g.namespace != "" {
				q.Set("namespace", g.namespace)
			}
			if job != "" {
				q.Set("job", job)
			}
			var ds []*api.Deployment
			if err := g.client().get("/v1/deployments?"+q.Encode(), &ds); err != nil {
				return exitf(ExitError, "list deployments: %v", err)
			}
			if g.json {
				return printJSON(g.out, ds)
			}
			if len(ds) == 0 {
				fmt.Fprintln(g.out, "No deployments: service jobs roll out under deployments (an update block, or the default one); batch jobs have none.")
				return nil
			}
			tw := tabwriter.NewWriter(g.out, 0, 2, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tJOB\tVERSION\tSTATUS\tDESCRIPTION")
			for _, d := range ds {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", api.ShortID(d.ID), d.Job, d.JobVersion, d.Status, d.StatusDescription)
			}
			return tw.Flush()
		},
	}
	list.Flags().StringVar(&job, "job", "", "only this job's deployments")
	var watch bool
	var timeout time.Duration
	status := &cobra.Command{
		Use:   "status <deployment-id | job>",
		Short: "Show a deployment (by ID or ID prefix, or a job's newest); --watch follows it to its end",
		Long: "Show a deployment (by ID or ID prefix, or a job's newest). With --watch, a deployment still running is then followed " +
			"through the event stream, as 'job run' follows one, until it succeeds or waits for promotion (exit 0) or fails (exit 1).",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := g.client()
			var d api.Deployment
			err := c.get("/v1/deployments/"+url.PathEscape(args[0]), &d)
			if err != nil {
				if err2 := c.get("/v1/jobs/"+url.PathEscape(args[0])+"/deployment"+nsQuery(g.namespace), &d); err2 != nil {
					return exitf(ExitError, "no deployment %q (%v), and no job of that name with one (%v)", args[0], err, err2)
				}
			}
			if g.json {
				return printJSON(g.out, &d)
			}
			printDeployment(g.out, &d)
			if !watch || !d.Active() {
				return nil
			}
			s, err := c.job(d.Namespace, d.Job)
			if err != nil {
				return exitf(ExitError, "job %s: %v", d.Job, err)
			}
			fmt.Fprintln(g.out)
			m := &monitor{g: g, c: c, ns: d.Namespace, job: s.Job, version: d.JobVersion}
			m.watch()
			defer m.stop()
			start := time.Now()
			return m.followDeployment(start, start.Add(timeout))
		},
	}
	status.Flags().BoolVarP(&watch, "watch", "w", false, "follow a running deployment through the event stream until it ends")
	status.Flags().DurationVar(&timeout, "timeout", 10*time.Minute, "with --watch: how long to follow")
	cmd.AddCommand(list, status)
	return cmd
}

func printDeployment(w io.Writer, d *api.Deployment) {
	fmt.Fprintf(w, "ID           %s\nJob          %s (namespace %s)\nVersion      %d\nStatus       %s\nDescription  %s\nStarted      %s\n",
		d.ID, d.Job, d.Namespace, d.JobVersion, d.Status, d.StatusDescription, d.CreateTime.Local().Format(time.RFC3339))
	if d.RevertTo != nil {
		fmt.Fprintf(w, "Rollback to  version %d", *d.RevertTo)
		if d.RevertedAs != nil {
			fmt.Fprintf(w, " (job now at version %d)", *d.RevertedAs)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tDESIRED\tPLACED\tHEALTHY\tUNHEALTHY\tCANARIES\tPROMOTED\tAUTO-REVERT\tPROGRESS BY")
	for _, name := range groupNames(d) {
		gr := d.Groups[name]
		canaries, promoted, by := "-", "-", "-"
		if gr.DesiredCanaries > 0 {
			canaries = fmt.Sprintf("%d/%d", gr.HealthyCanaries, gr.DesiredCanaries)
			promoted = strconv.FormatBool(gr.Promoted)
		}
		if !gr.RequireProgressBy.IsZero() && d.Active() {
			by = gr.RequireProgressBy.Local().Format(time.TimeOnly)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\t%s\t%t\t%s\n", name, gr.Desired, gr.Placed, gr.Healthy, gr.Unhealthy, canaries, promoted, gr.AutoRevert, by)
	}
	tw.Flush()
}

// latestDeployment is the job's newest deployment, or nil.
func latestDeployment(c *client, j *api.Job) *api.Deployment {
	var d api.Deployment
	if c.get("/v1/jobs/"+url.PathEscape(j.Name)+"/deployment"+nsQuery(j.Namespace), &d) != nil {
		return nil
	}
	return &d
}

// printDeploymentSummary ends `job status` with the newest deployment,
// saying so when it is not the current version's: a version without an
// update block has no deployment, and the older one must not pass for it.
func printDeploymentSummary(w io.Writer, d *api.Deployment, version uint64) {
	if d == nil {
		return
	}
	if d.JobVersion != version {
		fmt.Fprintf(w, "\nVersion %d has no deployment (no group has an update block: its replicas were replaced at once).\n", version)
		fmt.Fprintf(w, "Previous deployment %s (version %d): %s — %s\n", api.ShortID(d.ID), d.JobVersion, d.Status, d.StatusDescription)
		return
	}
	fmt.Fprintf(w, "\nLatest deployment %s (version %d): %s — %s\n    %s\n", api.ShortID(d.ID), d.JobVersion, d.Status, d.StatusDescription, deploymentLine(d))
}

func groupNames(d *api.Deployment) []string {
	names := make([]string, 0, len(d.Groups))
	for n := range d.Groups {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func newJobPromoteCmd(g *globals) *cobra.Command {
	var detach bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "promote <name>",
		Short: "Promote the healthy canaries of a job's deployment and follow the rest of the rollout",
		Long:  "Promote the canaries of a job's running deployment. Exit codes: 0 the deployment succeeded (or --detach), 1 it failed or an error.",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := g.client()
			var resp api.PromoteResponse
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := c.do(ctx, http.MethodPost, "/v1/jobs/"+url.PathEscape(args[0])+"/promote"+nsQuery(g.namespace), struct{}{}, &resp); err != nil {
				return exitf(ExitError, "promote job %s: %v", args[0], err)
			}
			if g.json && detach {
				return printJSON(g.out, resp)
			}
			follow := func() error {
				fmt.Fprintf(g.out, "==> Deployment %s promoted (evaluation %s)\n", api.ShortID(resp.DeploymentID), api.ShortID(resp.EvalID))
				if detach {
					return nil
				}
				s, err := c.job(g.namespace, args[0])
				if err != nil {
					return exitf(ExitError, "job %s: %v", args[0], err)
				}
				m := &monitor{g: g, c: c, ns: s.Job.Namespace, job: s.Job, version: s.Job.Version, promoted: true, index: resp.Index}
				m.watch()
				defer m.stop()
				start := time.Now()
				return m.followDeployment(start, start.Add(timeout))
			}
			if g.json {
				return followJSON(g, resp, follow)
			}
			return follow()
		},
	}
	cmd.Flags().BoolVarP(&detach, "detach", "d", false, "return once promoted, without following the rollout")
	cmd.Flags().BoolVar(&g.json, "json", false, "print the server's answer as JSON; without --detach, then the rollout's progress as JSON lines")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "how long to follow the rollout")
	return cmd
}

func newJobRevertCmd(g *globals) *cobra.Command {
	var detach bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "revert <name> <version>",
		Short: "Register an earlier version's spec again, as a new version, and follow it",
		Long:  "Register the spec of an earlier version (see 'gantry job history') again as a new version. Exit codes as for 'job run'.",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := strconv.ParseUint(args[1], 10, 64)
			if err != nil {
				return exitf(ExitError, "version %q must be a non-negative integer", args[1])
			}
			c := g.client()
			var resp api.RegisterResponse
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := c.do(ctx, http.MethodPost, "/v1/jobs/"+url.PathEscape(args[0])+"/revert"+nsQuery(g.namespace), api.RevertRequest{Version: v}, &resp); err != nil {
				return exitf(ExitError, "revert job %s: %v", args[0], err)
			}
			if g.json && detach {
				return printJSON(g.out, resp)
			}
			follow := func() error {
				fmt.Fprintf(g.out, "==> Job %q reverted to the spec of version %d, registered as version %d (evaluation %s)\n", args[0], v, resp.JobVersion, api.ShortID(resp.EvalID))
				if detach {
					return nil
				}
				var j api.Job
				if err := c.get(fmt.Sprintf("/v1/jobs/%s/versions/%d%s", url.PathEscape(args[0]), resp.JobVersion, nsQuery(g.namespace)), &j); err != nil {
					return exitf(ExitError, "job %s version %d: %v", args[0], resp.JobVersion, err)
				}
				m := &monitor{g: g, c: c, ns: j.Namespace, job: &j, version: resp.JobVersion, evalID: resp.EvalID, index: resp.Index}
				return m.run(timeout)
			}
			if g.json {
				return followJSON(g, resp, follow)
			}
			return follow()
		},
	}
	cmd.Flags().BoolVarP(&detach, "detach", "d", false, "return once registered, without following the rollout")
	cmd.Flags().BoolVar(&g.json, "json", false, "print the server's answer as JSON; without --detach, then the rollout's progress as JSON lines")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "how long to follow the rollout")
	return cmd
}

// deployed reports whether job run follows a deployment for the job: a
// service with an update block in some group.
func deployed(j *api.Job) bool {
	if j.Type != api.JobService {
		return false
	}
	for _, gr := range j.Groups {
		if gr.Update != nil {
			return true
		}
	}
	return false
}

// followDeployment follows the deployment of m.version until it
// succeeds (exit 0), waits for promotion (exit 0, says how to promote),
// fails or is cancelled (exit 1, with the reason and the rollback).
func (m *monitor) followDeployment(start, deadline time.Time) error {
	var d *api.Deployment
	for d == nil {
		got, err := m.deployment()
		switch {
		case err == nil:
			d = got
		case !isNotFound(err):
			return exitf(ExitError, "follow the deployment of job %s: %v", m.job.Name, err)
		case time.Now().After(deadline):
			return exitf(ExitError, "no deployment of job %q version %d appeared: is a server leading? check 'gantry job status %s'", m.job.Name, m.version, m.job.Name)
		default:
			m.w.wait(deadline)
		}
	}
	fmt.Fprintf(m.g.out, "==> Deployment %s of version %d: %s\n", api.ShortID(d.ID), d.JobVersion, strategySummary(m.job))
	last := ""
	seen := map[string]string{}
	for {
		if allocs, err := m.allocs(); err == nil {
			for _, a := range allocs {
				if a.JobVersion != m.version {
					continue
				}
				key := a.DesiredStatus + "/" + a.ClientStatus + "/" + a.Health
				if seen[a.ID] != key {
					seen[a.ID] = key
					state := a.ClientStatus + healthSuffix(a)
					if a.DesiredStatus != api.AllocDesiredRun {
						state = "stopping (" + a.DesiredReason + ")"
					}
					canary := ""
					if a.Canary {
						canary = " (canary)"
					}
					fmt.Fprintf(m.g.out, "    %s %-22s on %-12s %s%s\n", a.ShortID(), a.Name(), a.NodeName, state, canary)
				}
			}
		}
		if line := deploymentLine(d); line != last {
			fmt.Fprintf(m.g.out, "    %s (%.1fs)\n", line, time.Since(start).Seconds())
			last = line
		}
		switch d.Status {
		case api.DeploymentSuccessful:
			fmt.Fprintf(m.g.out, "==> Deployment %s successful: %s after %.1fs\n", api.ShortID(d.ID), d.StatusDescription, time.Since(start).Seconds())
			return nil
		case api.DeploymentFailed:
			fmt.Fprintf(m.g.out, "==> Deployment %s failed: %s\n", api.ShortID(d.ID), d.StatusDescription)
			if d.RevertTo != nil {
				m.waitRollback(d)
			}
			return errSilent{ExitError}
		case api.DeploymentCancelled:
			fmt.Fprintf(m.g.out, "==> Deployment %s cancelled: %s\n", api.ShortID(d.ID), d.StatusDescription)
			return errSilent{ExitError}
		}
		if d.RequiresPromotion() && !m.promoted && canariesHealthy(d) {
			fmt.Fprintf(m.g.out, "==> Canaries of version %d are healthy; the rollout waits: promote with 'gantry job promote %s', or roll back with 'gantry job revert %s <version>'\n",
				d.JobVersion, m.job.Name, m.job.Name)
			return nil
		}
		if time.Now().After(deadline) {
			return exitf(ExitError, "deployment %s of job %q still running after %s: %s (see 'gantry deployment status %s')",
				api.ShortID(d.ID), m.job.Name, time.Since(start).Round(time.Second), deploymentLine(d), api.ShortID(d.ID))
		}
		m.w.wait(deadline)
		got, err := m.deployment()
		if err != nil {
			return exitf(ExitError, "follow deployment %s: %v", api.ShortID(d.ID), err)
		}
		d = got
	}
}

// deployment is the deployment of m.version as of the latest change seen.
func (m *monitor) deployment() (*api.Deployment, error) {
	return read(m.c, func(ctx context.Context) (*api.Deployment, error) {
		return m.c.JobDeployment(ctx, m.ns, m.job.Name, &m.version, apiclient.Consistent)
	})
}

// waitRollback reports the version an automatic rollback registered.
func (m *monitor) waitRollback(d *api.Deployment) {
	deadline := time.Now().Add(15 * time.Second)
	for d.RevertedAs == nil && time.Now().Before(deadline) {
		m.w.wait(deadline)
		if got, err := m.deployment(); err == nil {
			d = got
		}
	}
	if d.RevertedAs != nil {
		fmt.Fprintf(m.g.out, "==> Rolled back: the spec of version %d runs again as version %d (follow it with 'gantry deployment status %s')\n",
			*d.RevertTo, *d.RevertedAs, m.job.Name)
	} else {
		fmt.Fprintf(m.g.out, "==> Rolling back to version %d (see 'gantry deployment status %s')\n", *d.RevertTo, m.job.Name)
	}
}

func canariesHealthy(d *api.Deployment) bool {
	for _, gr := range d.Groups {
		if gr.DesiredCanaries > 0 && !gr.Promoted && gr.HealthyCanaries < gr.DesiredCanaries {
			return false
		}
	}
	return true
}

// deploymentLine is one line of progress, per group.
func deploymentLine(d *api.Deployment) string {
	var parts []string
	for _, name := range groupNames(d) {
		gr := d.Groups[name]
		p := fmt.Sprintf("%s: %d/%d healthy, %d placed", name, gr.Healthy, gr.Desired, gr.Placed)
		if gr.Unhealthy > 0 {
			p += fmt.Sprintf(", %d unhealthy", gr.Unhealthy)
		}
		if gr.DesiredCanaries > 0 {
			p += fmt.Sprintf(", canaries %d/%d", gr.HealthyCanaries, gr.DesiredCanaries)
			if gr.Promoted {
				p += " promoted"
			}
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, "; ")
}

// strategySummary says how the job's groups roll out.
func strategySummary(j *api.Job) string {
	var parts []string
	for _, gr := range j.Groups {
		u := gr.Update
		if u == nil {
			continue
		}
		p := fmt.Sprintf("group %s: %d at a time", gr.Name, u.MaxParallel)
		if u.MinHealthyTime > 0 {
			p += fmt.Sprintf(", healthy for %s", u.MinHealthyTime)
		}
		if u.Canary > 0 {
			p += fmt.Sprintf(", %d canar%s first", u.Canary, map[bool]string{true: "y", false: "ies"}[u.Canary == 1])
		}
		if u.AutoRevert {
			p += ", automatic rollback"
		}
		parts = append(parts, p)
	}
	return "rolling update, " + strings.Join(parts, "; ")
}
