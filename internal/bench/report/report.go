// Package report owns the benchmark report of `gantry bench`: its schema
// (machine facts, suites, figures with their samples and summaries), the
// JSON file and its version check, and the Markdown and HTML renderings.
// It never runs a benchmark and never reads the clock; times are given.
package report

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/gantryhq/gantry/internal/bench/stats"
)

// Schema names the layout of the JSON report; a reader refuses another.
const Schema = "gantry-bench/1"

// Report is one `gantry bench run`.
type Report struct {
	Schema   string    `json:"schema"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Command  string    `json:"command"`
	Quick    bool      `json:"quick"`
	// Partial: the run was interrupted or a suite failed; what was
	// measured before is kept.
	Partial       bool    `json:"partial"`
	PartialReason string  `json:"partial_reason,omitempty"`
	Machine       Machine `json:"machine"`
	Suites        []Suite `json:"suites"`
}

// Machine is what the figures were measured on.
type Machine struct {
	CPUModel      string `json:"cpu_model"`
	CPUs          int    `json:"cpus"`
	MemoryMiB     int64  `json:"memory_mib"`
	Kernel        string `json:"kernel"`
	OS            string `json:"os"`
	GoVersion     string `json:"go_version"`
	GantryVersion string `json:"gantry_version"`
	GantryCommit  string `json:"gantry_commit"`
	DockerVersion string `json:"docker_version,omitempty"`
}

// Suite statuses.
const (
	StatusOK          = "ok"
	StatusSkipped     = "skipped"
	StatusFailed      = "failed"
	StatusInterrupted = "interrupted"
)

// Suite is the outcome of one suite.
type Suite struct {
	Name    string   `json:"name"`
	Status  string   `json:"status"`
	Reason  string   `json:"reason,omitempty"` // why skipped, failed or interrupted
	Target  string   `json:"target"`           // what it measured: "in process", a cluster's address, …
	Seconds float64  `json:"seconds"`
	Notes   []string `json:"notes,omitempty"`
	Figures []Figure `json:"figures"`
}

// Better tells which direction of a figure is an improvement.
const (
	LowerIsBetter  = "lower"
	HigherIsBetter = "higher"
)

// Figure is one measured quantity with every sample.
type Figure struct {
	Name   string `json:"name"` // suite/…, unique in a report
	Unit   string `json:"unit"`
	Better string `json:"better"`
	// Baseline names the figure this one is judged against in the same
	// run (docker run for a Gantry start, nginx for the proxy).
	Baseline string        `json:"baseline,omitempty"`
	Chart    *Chart        `json:"chart,omitempty"`
	Samples  []float64     `json:"samples"`
	Summary  stats.Summary `json:"summary"`
	// Rounds holds one value per independent round (the median of that
	// round's samples) where a round yields several samples that share
	// its conditions (the replicas of one start-up round, the requests of
	// one proxy round). Comparisons test these, not the samples, which
	// are not independent of each other.
	Rounds []float64 `json:"rounds,omitempty"`
}

// Chart places a figure on a plot: all figures with one chart ID share a
// plot. A "cdf" plot draws each figure's samples as a distribution; a
// "line" plot draws one point per figure (its median at X) on the line
// of its Series.
type Chart struct {
	ID     string  `json:"id"`
	Kind   string  `json:"kind"` // "cdf" or "line"
	Title  string  `json:"title"`
	XLabel string  `json:"x_label,omitempty"`
	Series string  `json:"series,omitempty"`
	X      float64 `json:"x,omitempty"`
}

// NewFigure returns a figure of samples with its summary.
func NewFigure(name, unit, better string, samples []float64) Figure {
	return Figure{Name: name, Unit: unit, Better: better, Samples: samples, Summary: stats.Summarize(samples)}
}

// Figures returns every figure of the report, in order.
func (r *Report) Figures() []Figure {
	var out []Figure
	for _, s := range r.Suites {
		out = append(out, s.Figures...)
	}
	return out
}

// Write stores r as indented JSON at path, through a temporary file so
// that a reader never sees half a report.
func Write(path string, r *Report) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode the report: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write the report: %w", err)
	}
	return os.Rename(tmp, path)
}

// ErrSchema is returned for a report of another layout.
var ErrSchema = errors.New("not a report this gantry can read")

// Read loads a report, refusing one of another schema with a sentence
// that says which.
func Read(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read the report: %w", err)
	}
	return Decode(path, b)
}

// Decode parses a report read from name.
func Decode(name string, b []byte) (*Report, error) {
	var head struct {
		Schema *string `json:"schema"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return nil, fmt.Errorf("%s is not a JSON benchmark report: %w", name, err)
	}
	if head.Schema == nil {
		return nil, fmt.Errorf("%s has no \"schema\" field: %w (write one with gantry bench run)", name, ErrSchema)
	}
	if *head.Schema != Schema {
		return nil, fmt.Errorf("%s was written with report schema %q; this gantry reads %q: %w (run both sides with the same gantry version)", name, *head.Schema, Schema, ErrSchema)
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s does not match schema %s: %w", name, Schema, err)
	}
	seen := map[string]bool{}
	for _, f := range r.Figures() {
		if f.Name == "" || seen[f.Name] {
			return nil, fmt.Errorf("%s: figure name %q is empty or repeated: %w", name, f.Name, ErrSchema)
		}
		seen[f.Name] = true
	}
	return &r, nil
}

// MachineLine is the machine in one line, for tables and plots.
func (m Machine) Line() string {
	parts := []string{fmt.Sprintf("%d × %s", m.CPUs, orUnknown(m.CPUModel)), fmt.Sprintf("%.1f GiB", float64(m.MemoryMiB)/1024),
		"Linux " + orUnknown(m.Kernel), m.GoVersion, "gantry " + m.GantryVersion}
	if m.GantryCommit != "" {
		parts[len(parts)-1] += " (" + shortCommit(m.GantryCommit) + ")"
	}
	if m.DockerVersion != "" {
		parts = append(parts, "Docker "+m.DockerVersion)
	}
	return strings.Join(parts, ", ")
}

// shortCommit shortens a commit hash to 12 digits, keeping a suffix
// such as "+modified".
func shortCommit(c string) string {
	hash, suffix, _ := strings.Cut(c, "+")
	if len(hash) > 12 {
		hash = hash[:12]
	}
	if suffix != "" {
		return hash + "+" + suffix
	}
	return hash
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// Markdown writes the report as a summary: the machine, then per suite
// its status and a table of figures.
func Markdown(w io.Writer, r *Report) error {
	var b strings.Builder
	mode := "full"
	if r.Quick {
		mode = "quick"
	}
	fmt.Fprintf(&b, "Gantry benchmark report (%s), %s, %s\n\n", mode, r.Started.UTC().Format("2006-01-02 15:04 MST"), r.Finished.Sub(r.Started).Round(time.Second))
	fmt.Fprintf(&b, "Machine: %s\n\n", r.Machine.Line())
	if r.Partial {
		fmt.Fprintf(&b, "**Partial report**: %s\n\n", r.PartialReason)
	}
	b.WriteString("| figure | unit | samples | median | p90 | p99 | min | max | baseline |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, s := range r.Suites {
		if s.Status != StatusOK && len(s.Figures) == 0 {
			fmt.Fprintf(&b, "| %s | %s: %s | | | | | | | |\n", s.Name, s.Status, mdEscape(s.Reason))
			continue
		}
		for _, f := range s.Figures {
			base := ""
			if f.Baseline != "" {
				base = f.Baseline
				if bf, ok := r.Figure(f.Baseline); ok && bf.Summary.Median != 0 {
					base = fmt.Sprintf("%s (%.2f×)", f.Baseline, f.Summary.Median/bf.Summary.Median)
				}
			}
			fmt.Fprintf(&b, "| %s | %s | %d | %s | %s | %s | %s | %s | %s |\n", f.Name, f.Unit, f.Summary.N, Num(f.Summary.Median),
				Num(f.Summary.P90), Num(f.Summary.P99), Num(f.Summary.Min), Num(f.Summary.Max), base)
		}
		if s.Status != StatusOK {
			fmt.Fprintf(&b, "| %s | %s: %s | | | | | | | |\n", s.Name, s.Status, mdEscape(s.Reason))
		}
	}
	for _, s := range r.Suites {
		for _, n := range s.Notes {
			fmt.Fprintf(&b, "\n- %s: %s", s.Name, n)
		}
	}
	b.WriteString("\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// Figure finds a figure by name.
func (r *Report) Figure(name string) (Figure, bool) {
	for _, f := range r.Figures() {
		if f.Name == name {
			return f, true
		}
	}
	return Figure{}, false
}

func mdEscape(s string) string { return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s) }

// Num formats a figure's value with a precision that suits its size.
func Num(v float64) string {
	switch a := abs(v); {
	case a == 0:
		return "0"
	case a >= 1000:
		return groupThousands(fmt.Sprintf("%.0f", v))
	case a >= 100:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3g", v)
	}
}

func abs(v float64) float64 {
	if v < 0 {
		return -v
	}
	return v
}

func groupThousands(s string) string {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}
