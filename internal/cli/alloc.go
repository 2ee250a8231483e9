package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/coder/websocket"
	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/apiclient"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

func newAllocCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "alloc", Short: "Inspect allocations, read their logs, run commands in them"}
	cmd.AddCommand(newAllocStatusCmd(g), newAllocLogsCmd(g), newAllocExecCmd(g))
	return cmd
}

func newAllocStatusCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status [id]",
		Short: "List allocations, or show one with its task states and events",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := g.client()
			if len(args) == 0 {
				var as []*api.Allocation
				if err := c.get("/v1/allocations", &as); err != nil {
					return exitf(ExitError, "list allocations: %v", err)
				}
				if g.json {
					return printJSON(g.out, as)
				}
				printAllocTable(g.out, as)
				return nil
			}
			a, err := c.alloc(args[0])
			if err != nil {
				return exitf(ExitError, "allocation %s: %v", args[0], err)
			}
			if g.json {
				return printJSON(g.out, a)
			}
			drivers := map[string]string{}
			if s, err := c.job(a.Namespace, a.Job); err == nil && s.Job != nil {
				for _, grp := range s.Job.Groups {
					if grp.Name == a.Group {
						for _, t := range grp.Tasks {
							drivers[t.Name] = t.Driver
						}
					}
				}
			}
			printAlloc(g, a, drivers)
			return nil
		},
	}
	cmd.Flags().BoolVar(&g.json, "json", false, "print as JSON")
	return cmd
}

// printAlloc shows one allocation; drivers (task → driver, from its job)
// name each task's kind where known.
func printAlloc(g *globals, a *api.Allocation, drivers map[string]string) {
	w := g.out
	fmt.Fprintf(w, "ID             %s\nName           %s\nNamespace      %s\nJob version    %d\nNode           %s (%s)\n",
		a.ID, a.Name(), a.Namespace, a.JobVersion, a.NodeName, api.ShortID(a.NodeID))
	fmt.Fprintf(w, "Desired        %s", a.DesiredStatus)
	if a.DesiredReason != "" {
		fmt.Fprintf(w, " (%s)", a.DesiredReason)
	}
	fmt.Fprintf(w, "\nStatus         %s", a.ClientStatus)
	if a.ClientReason != "" {
		fmt.Fprintf(w, " (%s)", a.ClientReason)
	}
	health := a.Health
	if health == "" {
		health = "unknown"
	}
	fmt.Fprintf(w, "\nHealth         %s\nCreated        %s\n", health, a.CreateTime.Local().Format(time.RFC3339))
	if a.PreviousAlloc != "" {
		fmt.Fprintf(w, "Replaces       %s\n", api.ShortID(a.PreviousAlloc))
	}
	tasks := make([]string, 0, len(a.Resources))
	for t := range a.Resources {
		tasks = append(tasks, t)
	}
	sort.Strings(tasks)
	for _, t := range tasks {
		r := a.Resources[t]
		fmt.Fprintf(w, "\nTask %q", t)
		if d := drivers[t]; d != "" {
			fmt.Fprintf(w, " (%s, %s)", api.TaskKind(d), d)
		}
		fmt.Fprintf(w, ": cpu %d millicores, memory %d MiB", r.CPU, r.Memory)
		for _, p := range r.Ports {
			fmt.Fprintf(w, ", port %s %d->%d", p.Name, p.Host, p.To)
		}
		fmt.Fprintln(w)
		ts := a.TaskStates[t]
		if ts == nil {
			fmt.Fprintln(w, "  not started yet")
			continue
		}
		fmt.Fprintf(w, "  state %s, restarts %d", ts.State, ts.Restarts)
		if ts.Failed {
			fmt.Fprint(w, ", failed")
		}
		if ts.Health != "" {
			fmt.Fprintf(w, ", %s", ts.Health)
		}
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
		fmt.Fprintln(tw, "  TIME\tEVENT\tMESSAGE")
		for _, e := range ts.Events {
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", e.Time.Local().Format("15:04:05.000"), e.Type, e.Message)
		}
		tw.Flush()
	}
}

func newAllocLogsCmd(g *globals) *cobra.Command {
	var follow, stdout, stderr bool
	var tail int
	var task string
	cmd := &cobra.Command{
		Use:   "logs <alloc-id> [task]",
		Short: "Print a task's output: stdout and stderr interleaved, or one of them",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 2 {
				task = args[1]
			}
			q := url.Values{}
			if task != "" {
				q.Set("task", task)
			}
			switch {
			case stdout && stderr:
				return exitf(ExitError, "--stdout and --stderr pick one stream each; give neither for both")
			case stdout:
				q.Set("type", "stdout")
			case stderr:
				q.Set("type", "stderr")
			default:
				q.Set("type", "both")
			}
			if follow {
				q.Set("follow", "true")
			}
			if tail > 0 {
				q.Set("tail", strconv.Itoa(tail))
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			resp, err := g.client().raw(ctx, http.MethodGet, "/v1/allocations/"+url.PathEscape(args[0])+"/logs?"+q.Encode(), nil)
			if err != nil {
				return exitf(ExitError, "logs of allocation %s: %v", args[0], err)
			}
			defer resp.Body.Close()
			if _, err := io.Copy(g.out, resp.Body); err != nil && ctx.Err() == nil {
				return exitf(ExitError, "logs of allocation %s ended early: %v", args[0], err)
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new output")
	cmd.Flags().BoolVar(&stdout, "stdout", false, "print stdout only (default: stdout and stderr, interleaved)")
	cmd.Flags().BoolVar(&stderr, "stderr", false, "print stderr only (default: stdout and stderr, interleaved)")
	cmd.Flags().IntVar(&tail, "tail", 0, "print only the last N lines")
	cmd.Flags().StringVar(&task, "task", "", "task name (needed when the allocation has several)")
	return cmd
}

func newAllocExecCmd(g *globals) *cobra.Command {
	var interactive, tty bool
	var task string
	cmd := &cobra.Command{
		Use:   "exec [-i] [-t] <alloc-id> <command> [args...]",
		Short: "Run a command inside a running task",
		Long: `Run a command inside a running task. -i forwards your stdin, -t gives it a
terminal. The command's exit code becomes gantry's exit code.`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			command, _ := json.Marshal(args[1:])
			q := url.Values{"command": {string(command)}}
			if task != "" {
				q.Set("task", task)
			}
			if tty {
				q.Set("tty", "true")
			}
			c := g.client()
			wsURL := strings.Replace(c.Address(), "http", "ws", 1) + "/v1/allocations/" + url.PathEscape(args[0]) + "/exec?" + q.Encode()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			hdr := http.Header{}
			if g.token != "" {
				hdr.Set("X-Gantry-Token", g.token)
			}
			conn, resp, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{HTTPClient: c.HTTPClient(), HTTPHeader: hdr})
			if err != nil {
				if resp != nil && resp.StatusCode/100 != 2 {
					var e api.Error
					json.NewDecoder(resp.Body).Decode(&e)
					return exitf(ExitError, "exec in allocation %s: %s", args[0], e.Error)
				}
				return exitf(ExitError, "exec in allocation %s: %v", args[0], &apiclient.UnavailableError{Servers: c.Address(), Hint: unreachableHint, Err: err})
			}
			defer conn.CloseNow()
			conn.SetReadLimit(1 << 20)
			return runExec(ctx, g, conn, interactive, tty)
		},
	}
	cmd.Flags().BoolVarP(&interactive, "interactive", "i", false, "forward stdin")
	cmd.Flags().BoolVarP(&tty, "tty", "t", false, "allocate a terminal")
	cmd.Flags().StringVar(&task, "task", "", "task name (needed when the allocation has several)")
	cmd.Flags().SetInterspersed(false)
	return cmd
}

func runExec(ctx context.Context, g *globals, conn *websocket.Conn, interactive, tty bool) error {
	send := func(f api.ExecFrame) error {
		b, _ := json.Marshal(f)
		return conn.Write(ctx, websocket.MessageText, b)
	}
	fd := int(os.Stdin.Fd())
	if tty && term.IsTerminal(fd) {
		old, err := term.MakeRaw(fd)
		if err == nil {
			defer term.Restore(fd, old)
		}
		sendSize := func() {
			if w, h, err := term.GetSize(fd); err == nil {
				send(api.ExecFrame{Resize: &api.TermSize{Width: uint(w), Height: uint(h)}})
			}
		}
		sendSize()
		winch := make(chan os.Signal, 1)
		signal.Notify(winch, syscall.SIGWINCH)
		defer signal.Stop(winch)
		go func() {
			for range winch {
				sendSize()
			}
		}()
	}
	if interactive {
		go func() {
			buf := make([]byte, 16<<10)
			for {
				n, err := os.Stdin.Read(buf)
				if n > 0 {
					if send(api.ExecFrame{Stdin: append([]byte(nil), buf[:n]...)}) != nil {
						return
					}
				}
				if err != nil {
					send(api.ExecFrame{StdinClose: true})
					return
				}
			}
		}()
	} else {
		send(api.ExecFrame{StdinClose: true})
	}
	for {
		_, msg, err := conn.Read(ctx)
		if err != nil {
			return exitf(ExitError, "exec session ended without an exit code: %v", err)
		}
		var f api.ExecFrame
		if err := json.Unmarshal(msg, &f); err != nil {
			continue
		}
		if len(f.Stdout) > 0 {
			g.out.Write(f.Stdout)
		}
		if len(f.Stderr) > 0 {
			g.errw.Write(f.Stderr)
		}
		if f.Error != "" {
			return exitf(ExitError, "exec: %s", f.Error)
		}
		if f.Exit != nil {
			conn.Close(websocket.StatusNormalClosure, "")
			if *f.Exit != 0 {
				return errSilent{*f.Exit}
			}
			return nil
		}
	}
}
