package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	dockerclient "github.com/moby/moby/client"
	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/compose"
	"github.com/gantryhq/gantry/internal/jobspec"
	"github.com/gantryhq/gantry/internal/validate"
)

// composeFlags are the loading flags every compose verb shares, as
// docker compose takes them.
type composeFlags struct {
	files      []string
	project    string
	profiles   []string
	envFiles   []string
	projectDir string
	strict     bool
}

func newComposeCmd(g *globals) *cobra.Command {
	f := &composeFlags{}
	cmd := &cobra.Command{
		Use:   "compose",
		Short: "Deploy a Compose file onto the cluster: up, down, ps, config, logs",
		Long: `Deploy a Compose file onto the cluster, as 'docker stack deploy' does for Swarm.

The files are loaded by compose-go exactly as Docker Compose loads them
(interpolation, .env, several -f files merged, profiles, extends). Each
service becomes one Gantry job in the namespace named after the project;
'gantry compose config' prints them. Options Gantry does not support are
named in one warning line per service; --strict makes them errors.`,
	}
	pf := cmd.PersistentFlags()
	pf.StringArrayVarP(&f.files, "file", "f", nil, "Compose file (repeat to merge several; default: compose.yaml and its alternatives in the current directory)")
	pf.StringVarP(&f.project, "project-name", "p", "", "project name, which is also the Gantry namespace (default: the file's name: key, else the directory's name)")
	pf.StringArrayVar(&f.profiles, "profile", nil, "profile to enable (repeatable)")
	pf.StringArrayVar(&f.envFiles, "env-file", nil, "environment file for interpolation instead of .env (repeatable)")
	pf.StringVar(&f.projectDir, "project-directory", "", "the project's directory, where .env is read and relative paths start (default: the first file's directory)")
	pf.BoolVar(&f.strict, "strict", false, "treat unsupported options as errors")
	cmd.AddCommand(newComposeConfigCmd(g, f), newComposeUpCmd(g, f), newComposeDownCmd(g, f),
		newComposePsCmd(g, f), newComposeLogsCmd(g, f))
	return cmd
}

// load reads and translates the project; compose-go's errors keep their
// file and line, translation problems come one sentence each.
// composeLog formats what compose-go logs itself (through logrus: "the
// attribute `version` is obsolete", found in many older public Compose
// files) as the command's other lines read, "Warning: …" on standard
// error, instead of a logrus record with a timestamp and a level.
type composeLog struct{}

func (composeLog) Format(e *logrus.Entry) ([]byte, error) {
	word := "Warning"
	if e.Level <= logrus.ErrorLevel {
		word = "Error"
	}
	return []byte(word + ": " + e.Message + "\n"), nil
}

func (f *composeFlags) load(g *globals) (*compose.Result, error) {
	wd, err := os.Getwd()
	if err != nil {
		return nil, exitf(ExitError, "compose: %v", err)
	}
	logrus.SetOutput(g.errw)
	logrus.SetFormatter(composeLog{})
	logrus.SetLevel(logrus.WarnLevel)
	p, err := compose.Load(context.Background(), compose.LoadOptions{
		Files: f.files, Project: f.project, Profiles: f.profiles, EnvFiles: f.envFiles,
		WorkingDir: wd, ProjectDir: f.projectDir, Env: os.Environ(),
	})
	if err != nil {
		return nil, exitf(ExitError, "compose: %v", err)
	}
	res, err := compose.Translate(p, compose.Options{Strict: f.strict})
	if err != nil {
		var errs compose.Errors
		if errors.As(err, &errs) && len(errs) > 1 {
			fmt.Fprintf(g.errw, "Error: compose project %q cannot be deployed, %d problems:\n", p.Name, len(errs))
			for _, e := range errs {
				fmt.Fprintf(g.errw, "  %s\n", e)
			}
			return nil, errSilent{ExitError}
		}
		return nil, exitf(ExitError, "compose project %q cannot be deployed: %v", p.Name, err)
	}
	// Each job goes through the same parser and rules as a file given to
	// 'gantry job run', so that 'compose config' output runs unchanged.
	var problems []string
	for _, s := range res.Services {
		y, err := compose.JobYAML(s.Job)
		if err != nil {
			return nil, exitf(ExitError, "compose: service %s: %v", s.Name, err)
		}
		job, err := jobspec.Parse("service "+s.Name, y)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		if invalid, _, _ := validate.Split(validate.Rules(job, nil)); len(invalid) > 0 {
			for _, p := range invalid {
				problems = append(problems, fmt.Sprintf("service %s: %s: %s", s.Name, p.Path, p.Message))
			}
			continue
		}
		s.Job = job
	}
	if len(problems) > 0 {
		fmt.Fprintf(g.errw, "Error: compose project %q translates into jobs Gantry rejects:\n", p.Name)
		for _, e := range problems {
			fmt.Fprintf(g.errw, "  %s\n", strings.ReplaceAll(e, "\n", "\n  "))
		}
		return nil, errSilent{ExitError}
	}
	return res, nil
}

// namespace is the project's namespace, from -p without reading the file
// when the file cannot be read (down and ps still work on what runs).
func (f *composeFlags) namespace(g *globals) (string, error) {
	res, err := f.load(g)
	if err == nil {
		return res.Namespace, nil
	}
	if f.project != "" {
		return f.project, nil
	}
	return "", err
}

func newComposeConfigCmd(g *globals, f *composeFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "config",
		Short: "Print the Gantry job specs the project translates into, in start order",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := f.load(g)
			if err != nil {
				return err
			}
			out, err := compose.Render(res)
			if err != nil {
				return exitf(ExitError, "compose config: %v", err)
			}
			for _, w := range res.Warnings {
				fmt.Fprintf(g.errw, "Warning: %s\n", w)
			}
			_, err = g.out.Write(out)
			return err
		},
	}
}

func newComposeUpCmd(g *globals, f *composeFlags) *cobra.Command {
	var detach, skipImages bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Deploy every service in start order and follow each until healthy",
		Long: `Deploy every service of the project, in the order depends_on gives:
a service is submitted once the services it depends on are healthy
(service_healthy, service_started) or finished (service_completed_successfully),
and each deployment is followed with progress as 'gantry job run' does.

Before anything is submitted, the project is checked whole: the
translation, every job's rules, every image on the local Docker engine
(--skip-image-check to leave that to the nodes), and every job against the
cluster (GPUs no node has, ports another job holds).

Running it again with an unchanged file changes nothing; with a changed
file only the services whose job changed are rolled.

Exit codes: 0 every service healthy (or finished), 1 a deployment failed
or the project is invalid, 2 a service cannot be placed (the reason is printed).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := f.load(g)
			if err != nil {
				return err
			}
			for _, w := range res.Warnings {
				fmt.Fprintf(g.errw, "Warning: %s\n", w)
			}
			c := g.client()
			if !skipImages {
				if err := checkImages(g, res); err != nil {
					return err
				}
			}
			if err := checkCluster(g, c, res); err != nil {
				return err
			}
			warnOrphans(g, c, res)
			for _, s := range res.Services {
				job := s.Job
				var resp api.RegisterResponse
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				err := c.do(ctx, http.MethodPost, "/v1/jobs", job, &resp)
				cancel()
				if err != nil {
					return exitf(ExitError, "compose up: submit service %s: %v", s.Name, err)
				}
				if resp.Changed {
					fmt.Fprintf(g.out, "==> Service %s: job %q registered as version %d\n", s.Name, job.Name, resp.JobVersion)
				} else {
					fmt.Fprintf(g.out, "==> Service %s: unchanged at version %d\n", s.Name, resp.JobVersion)
				}
				for _, w := range resp.Warnings { // the isolation policy's, as job run prints them
					fmt.Fprintf(g.errw, "Warning: service %s: %s\n", s.Name, w)
				}
				if detach {
					continue
				}
				m := &monitor{g: g, c: c, ns: job.Namespace, job: job, version: resp.JobVersion, evalID: resp.EvalID}
				if err := m.run(timeout); err != nil {
					fmt.Fprintf(g.errw, "Error: service %s did not come up; the services after it were not started\n", s.Name)
					return err
				}
			}
			if !detach {
				fmt.Fprintf(g.out, "==> Project %s: %d service(s) up\n", res.Project, len(res.Services))
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&detach, "detach", "d", false, "submit every service without following (and without waiting for dependencies)")
	cmd.Flags().BoolVar(&skipImages, "skip-image-check", false, "do not check that every image is on the local Docker engine (the nodes pull what is missing)")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "how long to follow each service's deployment")
	return cmd
}

// checkImages says, one sentence per image, which images the local Docker
// engine does not have. An engine that does not answer is a warning: the
// nodes pull what they miss.
func checkImages(g *globals, res *compose.Result) error {
	cli, err := dockerclient.New(dockerclient.FromEnv, dockerclient.WithAPIVersionNegotiation())
	if err != nil {
		fmt.Fprintf(g.errw, "Warning: images not checked: %v\n", err)
		return nil
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var missing []string
	seen := map[string]bool{}
	for _, s := range res.Services {
		if seen[s.Image] {
			continue
		}
		seen[s.Image] = true
		_, err := cli.ImageInspect(ctx, s.Image)
		switch {
		case err == nil:
		case cerrdefs.IsNotFound(err):
			missing = append(missing, fmt.Sprintf("service %s: image %s is not on the Docker engine at %s; build or load it there first (or pass --skip-image-check when the nodes can pull it)", s.Name, s.Image, cli.DaemonHost()))
		default:
			fmt.Fprintf(g.errw, "Warning: images not checked: the Docker engine did not answer: %v\n", err)
			return nil
		}
	}
	if len(missing) > 0 {
		for _, m := range missing {
			fmt.Fprintf(g.errw, "Error: %s\n", m)
		}
		return errSilent{ExitError}
	}
	return nil
}

// checkCluster asks the server to validate every job against the cluster
// before any is submitted: errors exit 1, placement problems (a GPU
// reservation no node can hold) exit 2.
func checkCluster(g *globals, c *client, res *compose.Result) error {
	code := ExitOK
	for _, s := range res.Services {
		var resp api.ValidateResponse
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := c.do(ctx, http.MethodPost, "/v1/validate/job", s.Job, &resp)
		cancel()
		if err != nil {
			return exitf(ExitError, "compose up: check service %s against the cluster: %v", s.Name, err)
		}
		for _, e := range resp.Errors {
			fmt.Fprintf(g.errw, "Error: service %s: %s: %s\n", s.Name, e.Path, e.Message)
			code = ExitError
		}
		for _, e := range resp.Placement {
			fmt.Fprintf(g.errw, "Cannot be placed: service %s: %s: %s\n", s.Name, e.Path, e.Message)
			if code == ExitOK {
				code = ExitCannotPlace
			}
		}
	}
	if code != ExitOK {
		fmt.Fprintln(g.errw, "Nothing was deployed.")
		return errSilent{code}
	}
	return nil
}

// projectJobs lists the jobs of a project's namespace that are not
// stopped, by name.
func projectJobs(c *client, ns string) ([]*api.JobSummary, error) {
	var list []*api.JobSummary
	if err := c.get("/v1/jobs"+nsQuery(ns), &list); err != nil {
		return nil, err
	}
	var out []*api.JobSummary
	for _, s := range list {
		if s.Job.Namespace == ns && !s.Job.Stop {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Job.Name < out[j].Job.Name })
	return out, nil
}

// warnOrphans names the project's jobs that the file no longer has.
func warnOrphans(g *globals, c *client, res *compose.Result) {
	list, err := projectJobs(c, res.Namespace)
	if err != nil {
		return
	}
	inFile := map[string]bool{}
	for _, s := range res.Services {
		inFile[s.Job.Name] = true
	}
	for _, s := range list {
		if !inFile[s.Job.Name] {
			fmt.Fprintf(g.errw, "Warning: job %q runs in namespace %s but is not a service of the file; 'gantry job stop -n %s %s' stops it\n", s.Job.Name, res.Namespace, res.Namespace, s.Job.Name)
		}
	}
}

func newComposeDownCmd(g *globals, f *composeFlags) *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Stop every job of the project and wait until no container of it runs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ns, err := f.namespace(g)
			if err != nil {
				return err
			}
			c := g.client()
			list, err := projectJobs(c, ns)
			if err != nil {
				return exitf(ExitError, "compose down: list jobs of namespace %s: %v", ns, err)
			}
			for _, s := range list {
				var resp api.StopResponse
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				err := c.do(ctx, http.MethodDelete, "/v1/jobs/"+url.PathEscape(s.Job.Name)+nsQuery(ns), nil, &resp)
				cancel()
				if err != nil {
					return exitf(ExitError, "compose down: stop job %s: %v", s.Job.Name, err)
				}
				fmt.Fprintf(g.out, "==> Job %q stopping\n", s.Job.Name)
			}
			deadline := time.Now().Add(timeout)
			for _, s := range list {
				for {
					allocs, err := c.jobAllocs(ns, s.Job.Name)
					if err != nil {
						return exitf(ExitError, "compose down: follow job %s: %v", s.Job.Name, err)
					}
					live := 0
					for _, a := range allocs {
						if !a.ClientTerminal() {
							live++
						}
					}
					if live == 0 {
						fmt.Fprintf(g.out, "==> Job %q stopped\n", s.Job.Name)
						break
					}
					if time.Now().After(deadline) {
						return exitf(ExitError, "compose down: job %s has %d allocation(s) still running after %s; check 'gantry job status -n %s %s'", s.Job.Name, live, timeout, ns, s.Job.Name)
					}
					time.Sleep(250 * time.Millisecond)
				}
			}
			fmt.Fprintf(g.out, "==> Project %s down: %d job(s) stopped\n", ns, len(list))
			return nil
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "how long to wait for the containers to stop")
	return cmd
}

func newComposePsCmd(g *globals, f *composeFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ps",
		Short: "List the project's services: type, version, replicas running and healthy, published ports",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ns, err := f.namespace(g)
			if err != nil {
				return err
			}
			list, err := projectJobs(g.client(), ns)
			if err != nil {
				return exitf(ExitError, "compose ps: list jobs of namespace %s: %v", ns, err)
			}
			if g.json {
				return printJSON(g.out, list)
			}
			if len(list) == 0 {
				fmt.Fprintf(g.out, "No service of project %s runs.\n", ns)
				return nil
			}
			tw := tabwriter.NewWriter(g.out, 0, 2, 2, ' ', 0)
			fmt.Fprintln(tw, "SERVICE\tTYPE\tVERSION\tSTATUS\tRUNNING\tHEALTHY\tCOMPLETE\tPORTS")
			for _, s := range list {
				run, healthy, desired, complete := 0, 0, 0, 0
				for _, gs := range s.Groups {
					run += gs.Running
					healthy += gs.Healthy
					desired += gs.Desired
					complete += gs.Complete
				}
				var ports []string
				for _, gr := range s.Job.Groups {
					for _, sv := range gr.Services {
						if sv.LB != nil {
							ports = append(ports, fmt.Sprintf("%d->%s", sv.LB.Port, sv.Port))
						}
					}
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d/%d\t%d\t%d\t%s\n", s.Job.Name, s.Job.Type, s.Job.Version, s.Status, run, desired, healthy, complete, strings.Join(ports, ","))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&g.json, "json", false, "print as JSON")
	return cmd
}

func newComposeLogsCmd(g *globals, f *composeFlags) *cobra.Command {
	var follow bool
	var tail int
	cmd := &cobra.Command{
		Use:   "logs [service…]",
		Short: "Print (with --follow, follow) the output of every service's running replicas, each line prefixed",
		RunE: func(cmd *cobra.Command, args []string) error {
			ns, err := f.namespace(g)
			if err != nil {
				return err
			}
			c := g.client()
			list, err := projectJobs(c, ns)
			if err != nil {
				return exitf(ExitError, "compose logs: list jobs of namespace %s: %v", ns, err)
			}
			want := map[string]bool{}
			for _, a := range args {
				want[a] = true
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			var mu sync.Mutex
			var wg sync.WaitGroup
			for _, s := range list {
				if len(want) > 0 && !want[s.Job.Name] {
					continue
				}
				allocs, err := c.jobAllocs(ns, s.Job.Name)
				if err != nil {
					return exitf(ExitError, "compose logs: allocations of %s: %v", s.Job.Name, err)
				}
				for _, a := range allocs {
					if a.DesiredStatus != api.AllocDesiredRun || a.ClientStatus == api.AllocPending {
						continue
					}
					prefix := fmt.Sprintf("%s.%d", s.Job.Name, a.Index)
					for _, typ := range []string{"stdout", "stderr"} {
						q := url.Values{"type": {typ}}
						if follow {
							q.Set("follow", "true")
						}
						if tail > 0 {
							q.Set("tail", fmt.Sprint(tail))
						}
						wg.Add(1)
						go func(id string) {
							defer wg.Done()
							resp, err := c.raw(ctx, http.MethodGet, "/v1/allocations/"+url.PathEscape(id)+"/logs?"+q.Encode(), nil)
							if err != nil {
								if ctx.Err() != nil {
									return // interrupted: no warning
								}
								mu.Lock()
								fmt.Fprintf(g.errw, "Warning: logs of %s: %v\n", prefix, err)
								mu.Unlock()
								return
							}
							defer resp.Body.Close()
							prefixLines(resp.Body, prefix, g.out, &mu)
						}(a.ID)
					}
				}
			}
			wg.Wait()
			return nil
		},
	}
	// -f is the file flag of every compose verb, as in docker compose -f;
	// follow is --follow only.
	cmd.Flags().BoolVar(&follow, "follow", false, "keep printing new output")
	cmd.Flags().IntVar(&tail, "tail", 0, "print only the last N lines of each replica")
	return cmd
}

// prefixLines copies r to w line by line, each line headed by the
// replica's name, as docker compose logs does.
func prefixLines(r io.Reader, prefix string, w io.Writer, mu *sync.Mutex) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		mu.Lock()
		fmt.Fprintf(w, "%-12s | %s\n", prefix, sc.Text())
		mu.Unlock()
	}
}
