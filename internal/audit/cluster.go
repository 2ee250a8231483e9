package audit

import (
	"encoding/json"
	"fmt"
	"io"
)

// Renderings of several nodes' reports (`gantry audit` without --node).

// EvaluateReports applies the policy to every report (see EvaluateReport).
func EvaluateReports(p Policy, reports []Report) Verdict {
	v := Verdict{Blocking: []Finding{}, Warning: []Finding{}}
	for _, r := range reports {
		rv := EvaluateReport(p, r)
		v.Blocking = append(v.Blocking, rv.Blocking...)
		v.Warning = append(v.Warning, rv.Warning...)
	}
	return v
}

// WriteTables writes each report as WriteTable does, one after the other,
// then a line that sums them up.
func WriteTables(w io.Writer, reports []Report, opts RenderOptions) error {
	if len(reports) == 0 {
		_, err := io.WriteString(w, "no node has reported an audit yet\n")
		return err
	}
	failing := 0
	for i, r := range reports {
		if i > 0 {
			if _, err := io.WriteString(w, "\n"); err != nil {
				return err
			}
		}
		if err := WriteTable(w, r, opts); err != nil {
			return err
		}
		failing += len(r.Failures())
	}
	if len(reports) == 1 {
		return nil
	}
	line := fmt.Sprintf("\ncluster: %d nodes, %d failing findings", len(reports), failing)
	if opts.Policy != nil {
		v := EvaluateReports(*opts.Policy, reports)
		line += fmt.Sprintf(": %d blocking, %d warning", len(v.Blocking), len(v.Warning))
	}
	_, err := io.WriteString(w, line+"\n")
	return err
}

// WriteJSONReports writes the reports as one JSON object: each node's
// report as WriteJSON writes it, and the cluster's totals.
func WriteJSONReports(w io.Writer, reports []Report, opts RenderOptions) error {
	out := struct {
		Nodes    []jsonReport `json:"nodes"`
		Failing  int          `json:"failing"`
		Blocking *int         `json:"blocking,omitempty"`
		Warning  *int         `json:"warning,omitempty"`
		Policy   *Policy      `json:"policy,omitempty"`
	}{Nodes: []jsonReport{}, Policy: opts.Policy}
	for _, r := range reports {
		out.Nodes = append(out.Nodes, toJSON(r, opts))
		out.Failing += len(r.Failures())
	}
	if opts.Policy != nil {
		v := EvaluateReports(*opts.Policy, reports)
		nb, nw := len(v.Blocking), len(v.Warning)
		out.Blocking, out.Warning = &nb, &nw
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
