// Package suite owns the benchmark suites of `gantry bench run` (sched,
// startup, proxy, failover, sim, scale) and the runner that records their
// figures into a report. Each suite measures against a cluster it is
// given, or starts what it needs on loopback, prints progress, and stops
// and removes everything it started when it ends or is interrupted. It
// never asserts a timing: it measures and records.
package suite

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/gantryhq/gantry/internal/bench/report"
)

// Env is what every suite is given.
type Env struct {
	// Quick asks for the small version of each suite: few samples and
	// sizes, for CI and a first look.
	Quick bool
	// Address is a running cluster to measure ("": a suite that needs a
	// cluster starts one on loopback).
	Address string
	Token   string
	// Bin is the gantry binary the suites start and drive.
	Bin string
	// Dir is a scratch directory; the runner removes it.
	Dir string
	// Progress receives one line per step.
	Progress io.Writer
	// RunID tells this run's jobs apart from another run's on a shared
	// cluster.
	RunID string
	// Params holds each suite's tunables (see Params).
	Params Params
}

// Params are the tunables of the suites; zero values take each suite's
// default for the mode (quick or full).
type Params struct {
	Replicas                          int           // startup: replicas per round
	Rounds                            int           // startup, proxy, sched: rounds
	Kills                             int           // failover: leader kills
	Duration                          time.Duration // proxy: length of one round
	Rate                              int           // proxy: requests per second offered (0: as fast as the workers go)
	ScaleNodes, ScaleJobs, ScaleTasks int           // scale
	ScaleServers                      int           // scale: servers started per round (0 or 1: one; 3: one etcd cluster of three members)
	ScaleKillLeaderAt                 float64       // scale: kill -9 the leader once this many allocations are placed (below 1: a fraction of them; 0: never)
	ScaleLongPoll                     bool          // scale: the simulated nodes long-poll instead of using the node stream
	TraceDir                          string        // sim: the trace folder ("": searched above the working directory)
	VMGuest                           string        // startup: the test guest's folder for the qemu driver ("": qemu skipped)
	WasmModule                        string        // startup: the demo module for the wasm driver
	Drivers                           []string      // startup: drivers to measure (nil: docker, exec, wasm, qemu)
	BasePort                          int           // first loopback port of clusters a suite starts (0: free ports)
}

func (e *Env) logf(format string, args ...any) {
	fmt.Fprintf(e.Progress, format+"\n", args...)
}

// pick returns quick or full by mode, unless v is set.
func pick(v, quick, full int, isQuick bool) int {
	switch {
	case v > 0:
		return v
	case isQuick:
		return quick
	default:
		return full
	}
}

// Skip is returned by a suite whose prerequisite is missing.
type Skip struct{ Reason string }

func (s *Skip) Error() string { return s.Reason }

func skipf(format string, args ...any) error { return &Skip{Reason: fmt.Sprintf(format, args...)} }

// Recorder collects one suite's figures and notes.
type Recorder struct {
	figures []report.Figure
	notes   []string
}

// Add records a figure.
func (r *Recorder) Add(f report.Figure) { r.figures = append(r.figures, f) }

// Note records a sentence shown with the suite.
func (r *Recorder) Note(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

// Suite is one benchmark.
type Suite struct {
	Name  string
	Short string
	// Target says what it measures given env ("in process", the address).
	Target func(env *Env) string
	Run    func(ctx context.Context, env *Env, rec *Recorder) error
}

// All lists the suites in the order they run.
func All() []Suite {
	return []Suite{sched(), startup(), proxy(), failover(), simSuite(), scale()}
}

// Default is the suites `gantry bench run` runs without --suite.
var Default = []string{"sched", "startup", "proxy", "failover", "sim", "scale"}

// Select returns the named suites, refusing unknown names with the list.
func Select(names []string) ([]Suite, error) {
	all := All()
	var out []Suite
	for _, n := range names {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		i := slices.IndexFunc(all, func(s Suite) bool { return s.Name == n })
		if i < 0 {
			var known []string
			for _, s := range all {
				known = append(known, s.Name)
			}
			return nil, fmt.Errorf("no suite %q: choose from %s", n, strings.Join(known, ", "))
		}
		if !slices.ContainsFunc(out, func(s Suite) bool { return s.Name == n }) {
			out = append(out, all[i])
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no suite named: give --suite with one or more of " + strings.Join(Default, ","))
	}
	return out, nil
}

// Run runs suites in order into r. Each suite's outcome is recorded:
// figures measured before a failure or an interruption are kept, and the
// report is marked partial. clock gives the time (the runner's only
// clock, so that tests may fix it); saved is called after each suite, so
// that what was measured is on disk before the next suite starts.
func Run(ctx context.Context, env *Env, suites []Suite, r *report.Report, clock func() time.Time, saved func()) {
	for _, s := range suites {
		out := report.Suite{Name: s.Name, Target: s.Target(env), Status: report.StatusOK}
		if ctx.Err() != nil {
			out.Status, out.Reason = report.StatusInterrupted, "not started: the run was interrupted"
			r.Suites = append(r.Suites, out)
			continue
		}
		env.logf("==> %s: %s (%s)", s.Name, s.Short, out.Target)
		start := clock()
		rec := &Recorder{}
		err := s.Run(ctx, env, rec)
		out.Seconds = clock().Sub(start).Seconds()
		out.Figures, out.Notes = rec.figures, rec.notes
		var skip *Skip
		switch {
		case err == nil:
		case errors.As(err, &skip):
			out.Status, out.Reason = report.StatusSkipped, skip.Reason
		case ctx.Err() != nil:
			out.Status, out.Reason = report.StatusInterrupted, "interrupted: "+err.Error()
		default:
			out.Status, out.Reason = report.StatusFailed, err.Error()
		}
		if out.Status != report.StatusOK {
			env.logf("    %s %s: %s", s.Name, out.Status, out.Reason)
		}
		if out.Status == report.StatusFailed || out.Status == report.StatusInterrupted {
			r.Partial = true
			r.PartialReason = strings.TrimPrefix(r.PartialReason+"; ", "; ") + fmt.Sprintf("suite %s %s", s.Name, out.Status)
		}
		for _, f := range out.Figures {
			env.logf("    %-44s %10s %s (n=%d, p90 %s, p99 %s)", f.Name, report.Num(f.Summary.Median), f.Unit, f.Summary.N, report.Num(f.Summary.P90), report.Num(f.Summary.P99))
		}
		r.Suites = append(r.Suites, out)
		r.Finished = clock()
		saved()
	}
}

// httpClient is for the suites' reads of a cluster's API and of
// workloads' endpoints.
var (
	httpClient  = &http.Client{Timeout: 10 * time.Second}
	shortClient = &http.Client{Timeout: 100 * time.Millisecond}
)

// cleanupContext is for stopping what a suite started after its own
// context ended (an interrupt): cleanup gets its own minute.
func cleanupContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), time.Minute)
}

func removeAll(path string) { _ = os.RemoveAll(path) }
