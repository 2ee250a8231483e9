package report

import (
	"fmt"
	"html"
	"io"
	"strings"
	"time"
)

// ChartSVG is one rendered chart of a report.
type ChartSVG struct {
	ID, Title string
	SVG       string // a whole <svg> element
}

// HTML writes one self-contained page: the machine, every suite with its
// status and figures, and the charts inline.
func HTML(w io.Writer, r *Report, charts []ChartSVG) error {
	var b strings.Builder
	esc := html.EscapeString
	b.WriteString("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Gantry benchmark report</title>\n")
	b.WriteString("<style>body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child,th:first-child{text-align:left}.skipped,.failed,.interrupted{color:#a33}figure{margin:1.5em 0}</style>\n")
	b.WriteString("</head><body>\n<h1>Gantry benchmark report</h1>\n")
	mode := "full"
	if r.Quick {
		mode = "quick"
	}
	fmt.Fprintf(&b, "<p>%s run, started %s, took %s.</p>\n", mode, esc(r.Started.UTC().Format(time.RFC3339)), r.Finished.Sub(r.Started).Round(time.Second))
	fmt.Fprintf(&b, "<p>Machine: %s</p>\n", esc(r.Machine.Line()))
	if r.Partial {
		fmt.Fprintf(&b, "<p class=\"failed\"><strong>Partial report:</strong> %s</p>\n", esc(r.PartialReason))
	}
	for _, s := range r.Suites {
		fmt.Fprintf(&b, "<h2 id=\"%s\">%s</h2>\n<p class=\"%s\">%s", esc(s.Name), esc(s.Name), esc(s.Status), esc(s.Status))
		if s.Reason != "" {
			fmt.Fprintf(&b, ": %s", esc(s.Reason))
		}
		fmt.Fprintf(&b, " (%s, %.1f s)</p>\n", esc(s.Target), s.Seconds)
		for _, n := range s.Notes {
			fmt.Fprintf(&b, "<p>%s</p>\n", esc(n))
		}
		if len(s.Figures) > 0 {
			b.WriteString("<table><tr><th>figure</th><th>unit</th><th>samples</th><th>median</th><th>p90</th><th>p99</th><th>min</th><th>max</th><th>baseline</th></tr>\n")
			for _, f := range s.Figures {
				fmt.Fprintf(&b, "<tr><td>%s</td><td>%s</td><td>%d</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>\n",
					esc(f.Name), esc(f.Unit), f.Summary.N, Num(f.Summary.Median), Num(f.Summary.P90), Num(f.Summary.P99), Num(f.Summary.Min), Num(f.Summary.Max), esc(f.Baseline))
			}
			b.WriteString("</table>\n")
		}
		for _, c := range charts {
			if strings.HasPrefix(c.ID, s.Name+"/") || c.ID == s.Name {
				fmt.Fprintf(&b, "<figure id=\"chart-%s\">%s<figcaption>%s</figcaption></figure>\n", esc(c.ID), c.SVG, esc(c.Title))
			}
		}
	}
	b.WriteString("</body></html>\n")
	_, err := io.WriteString(w, b.String())
	return err
}
