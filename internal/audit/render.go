package audit

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// RenderOptions tune the renderers.
type RenderOptions struct {
	// Policy, when set, adds what it does with each failure (block or
	// warn) and, in SARIF, sets each result's level from it.
	Policy *Policy
	// All also lists passing and informational findings (table only; JSON
	// always holds every finding, SARIF only failures).
	All bool
}

// action returns the policy's action for a failing finding, or "" when no
// policy is given or the finding does not fail.
func (o RenderOptions) action(f Finding) Action {
	if o.Policy == nil || !f.Failed() {
		return ""
	}
	return o.Policy.Action(f.Namespace, f.CheckID, f.Severity)
}

// WriteTable writes the report as aligned text: a header line, the engine
// findings, the container findings, and a summary. Without opts.All only
// failures are listed.
func WriteTable(w io.Writer, r Report, opts RenderOptions) error {
	var b strings.Builder
	fmt.Fprintf(&b, "node %s  engine %s  %d containers  %s\n", orDash(r.Node), orDash(r.EngineVersion),
		r.Containers, r.Time.UTC().Format(time.RFC3339))

	withAction := opts.Policy != nil
	show := func(f Finding) bool { return opts.All || f.Failed() }
	cols := func(head ...string) string {
		if !withAction {
			head = removeCol(head, "ACTION")
		}
		return strings.Join(head, "\t") + "\n"
	}
	row := func(f Finding, lead ...string) string {
		c := append(lead, f.CheckID, string(f.Severity), string(f.Status))
		if withAction {
			c = append(c, orDash(string(opts.action(f))))
		}
		c = append(c, f.Detail)
		return strings.Join(c, "\t") + "\n"
	}

	none := "no failing findings\n"
	if opts.All {
		none = "no findings\n"
	}
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprint(tw, "\nENGINE\n")
	n := 0
	for _, f := range r.Engine {
		if show(f) {
			if n == 0 {
				fmt.Fprint(tw, cols("CHECK", "SEVERITY", "STATUS", "ACTION", "DETAIL"))
			}
			fmt.Fprint(tw, row(f))
			n++
		}
	}
	if n == 0 {
		fmt.Fprint(tw, none)
	}
	tw.Flush()

	tw = tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprint(tw, "\nCONTAINERS\n")
	n = 0
	for _, f := range r.Findings {
		if show(f) {
			if n == 0 {
				fmt.Fprint(tw, cols("CONTAINER", "NAMESPACE/JOB", "CHECK", "SEVERITY", "STATUS", "ACTION", "DETAIL"))
			}
			fmt.Fprint(tw, row(f, containerLabel(f), jobLabel(f)))
			n++
		}
	}
	if n == 0 {
		fmt.Fprint(tw, none)
	}
	tw.Flush()

	failures := r.Failures()
	fmt.Fprintf(&b, "\n%d failing findings", len(failures))
	if opts.Policy != nil {
		v := EvaluateReport(*opts.Policy, r)
		fmt.Fprintf(&b, ": %d blocking, %d warning", len(v.Blocking), len(v.Warning))
	}
	b.WriteString("\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func removeCol(cols []string, name string) []string {
	out := cols[:0:0]
	for _, c := range cols {
		if c != name {
			out = append(out, c)
		}
	}
	return out
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func containerLabel(f Finding) string {
	if f.ContainerName != "" {
		return f.ContainerName
	}
	if len(f.ContainerID) > 12 {
		return f.ContainerID[:12]
	}
	return orDash(f.ContainerID)
}

func jobLabel(f Finding) string {
	if f.Namespace == "" && f.Job == "" {
		return "-"
	}
	return orDash(f.Namespace) + "/" + orDash(f.Job)
}

// jsonFinding is a finding with the policy's action on it.
type jsonFinding struct {
	Finding
	Action Action `json:"action,omitempty"`
}

type jsonReport struct {
	Node          string        `json:"node"`
	Time          time.Time     `json:"time"`
	EngineVersion string        `json:"engine_version,omitempty"`
	Containers    int           `json:"containers"`
	Engine        []jsonFinding `json:"engine"`
	Findings      []jsonFinding `json:"findings"`
	Failing       int           `json:"failing"`
	Blocking      *int          `json:"blocking,omitempty"`
	Warning       *int          `json:"warning,omitempty"`
}

// WriteJSON writes the report as one indented JSON object with every
// finding; with a policy, each failure carries its action and the object
// counts blocking and warning findings.
func WriteJSON(w io.Writer, r Report, opts RenderOptions) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(toJSON(r, opts))
}

func toJSON(r Report, opts RenderOptions) jsonReport {
	conv := func(fs []Finding) []jsonFinding {
		out := make([]jsonFinding, 0, len(fs))
		for _, f := range fs {
			out = append(out, jsonFinding{Finding: f, Action: opts.action(f)})
		}
		return out
	}
	out := jsonReport{
		Node: r.Node, Time: r.Time.UTC(), EngineVersion: r.EngineVersion, Containers: r.Containers,
		Engine: conv(r.Engine), Findings: conv(r.Findings), Failing: len(r.Failures()),
	}
	if opts.Policy != nil {
		v := EvaluateReport(*opts.Policy, r)
		nb, nw := len(v.Blocking), len(v.Warning)
		out.Blocking, out.Warning = &nb, &nw
	}
	return out
}
