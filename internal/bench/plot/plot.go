// Package plot draws the charts of a benchmark report as SVG, in Go:
// latency distributions (empirical CDFs) and figures against a size
// (throughput against cluster size). It reads a report and returns
// markup; it writes no files and runs nothing.
package plot

import (
	"cmp"
	"fmt"
	"html"
	"math"
	"slices"
	"strings"

	"github.com/gantryhq/gantry/internal/bench/report"
)

var colors = []string{"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"}

// Charts renders every chart the report's figures name, in the order of
// their first figure.
func Charts(r *report.Report) []report.ChartSVG {
	type group struct {
		chart   report.Chart
		figures []report.Figure
	}
	var order []string
	groups := map[string]*group{}
	for _, f := range r.Figures() {
		if f.Chart == nil || len(f.Samples) == 0 {
			continue
		}
		g, ok := groups[f.Chart.ID]
		if !ok {
			g = &group{chart: *f.Chart}
			groups[f.Chart.ID] = g
			order = append(order, f.Chart.ID)
		}
		g.figures = append(g.figures, f)
	}
	var out []report.ChartSVG
	for _, id := range order {
		g := groups[id]
		var svg string
		switch g.chart.Kind {
		case "cdf":
			svg = CDF(g.chart.Title, g.figures)
		case "line":
			svg = Lines(g.chart.Title, g.chart.XLabel, g.figures)
		default:
			continue
		}
		out = append(out, report.ChartSVG{ID: id, Title: g.chart.Title, SVG: svg})
	}
	return out
}

const (
	width, height          = 760.0, 440.0
	left, right, top, bott = 70.0, 230.0, 40.0, 50.0
)

type frame struct {
	b                      strings.Builder
	xMin, xMax, yMin, yMax float64
	logX                   bool
}

func (f *frame) x(v float64) float64 {
	lo, hi, v := f.xMin, f.xMax, v
	if f.logX {
		lo, hi, v = math.Log10(lo), math.Log10(hi), math.Log10(math.Max(v, f.xMin))
	}
	return left + (v-lo)/(hi-lo)*(width-left-right)
}

func (f *frame) y(v float64) float64 {
	return top + (1-(v-f.yMin)/(f.yMax-f.yMin))*(height-top-bott)
}

func (f *frame) open(title, xLabel, yLabel string) {
	pw, ph := width-left-right, height-top-bott
	fmt.Fprintf(&f.b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	f.b.WriteString(`<rect width="100%" height="100%" fill="white"/>` + "\n")
	fmt.Fprintf(&f.b, `<text x="%.0f" y="22" font-size="15">%s</text>`+"\n", left, html.EscapeString(title))
	for _, v := range ticks(f.xMin, f.xMax, f.logX) {
		fmt.Fprintf(&f.b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e5e5e5"/>`+"\n", f.x(v), f.y(f.yMin), f.x(v), f.y(f.yMax))
		fmt.Fprintf(&f.b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", f.x(v), f.y(f.yMin)+16, report.Num(v))
	}
	for _, v := range ticks(f.yMin, f.yMax, false) {
		fmt.Fprintf(&f.b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e5e5e5"/>`+"\n", f.x(f.xMin), f.y(v), f.x(f.xMax), f.y(v))
		fmt.Fprintf(&f.b, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", f.x(f.xMin)-6, f.y(v)+4, report.Num(v))
	}
	fmt.Fprintf(&f.b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#333"/>`+"\n", left, top, pw, ph)
	fmt.Fprintf(&f.b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", left+pw/2, height-12, html.EscapeString(xLabel))
	fmt.Fprintf(&f.b, `<text transform="translate(16 %.1f) rotate(-90)" text-anchor="middle">%s</text>`+"\n", top+ph/2, html.EscapeString(yLabel))
}

func (f *frame) legend(i int, label string) string {
	color := colors[i%len(colors)]
	ly := top + 14 + float64(i)*18
	fmt.Fprintf(&f.b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"/>`+"\n", width-right+12, ly-4, width-right+34, ly-4, color)
	fmt.Fprintf(&f.b, `<text x="%.1f" y="%.1f">%s</text>`+"\n", width-right+40, ly, html.EscapeString(label))
	return color
}

func (f *frame) close() string {
	f.b.WriteString("</svg>\n")
	return f.b.String()
}

// CDF draws each figure's samples as an empirical distribution: x the
// value (log scale where the values span more than a factor of 20),
// y the share of samples at or below it.
func CDF(title string, figures []report.Figure) string {
	f := &frame{xMin: math.Inf(1), xMax: math.Inf(-1), yMin: 0, yMax: 100}
	unit := ""
	for _, fig := range figures {
		unit = fig.Unit
		f.xMin, f.xMax = math.Min(f.xMin, fig.Summary.Min), math.Max(f.xMax, fig.Summary.Max)
	}
	if f.xMin > 0 && f.xMax/f.xMin > 20 {
		f.logX = true
	} else {
		f.xMin = 0
	}
	if f.xMax <= f.xMin {
		f.xMax = f.xMin + 1
	}
	f.open(title, unit, "samples at or below (%)")
	for i, fig := range figures {
		s := slices.Clone(fig.Samples)
		slices.Sort(s)
		color := f.legend(i, fmt.Sprintf("%s p50 %s", short(fig.Name), report.Num(fig.Summary.Median)))
		var pts []string
		prevY := 0.0
		for j, v := range s {
			y := 100 * float64(j+1) / float64(len(s))
			pts = append(pts, fmt.Sprintf("%.1f,%.1f %.1f,%.1f", f.x(v), f.y(prevY), f.x(v), f.y(y)))
			prevY = y
		}
		fmt.Fprintf(&f.b, `<polyline fill="none" stroke="%s" stroke-width="1.6" points="%s"/>`+"\n", color, strings.Join(pts, " "))
	}
	return f.close()
}

// Lines draws one line per series through the medians of its figures
// at their X, with the min–max range as a bar.
func Lines(title, xLabel string, figures []report.Figure) string {
	f := &frame{xMin: math.Inf(1), xMax: math.Inf(-1), yMin: 0, yMax: 0}
	series := map[string][]report.Figure{}
	var names []string
	unit := ""
	for _, fig := range figures {
		unit = fig.Unit
		if _, ok := series[fig.Chart.Series]; !ok {
			names = append(names, fig.Chart.Series)
		}
		series[fig.Chart.Series] = append(series[fig.Chart.Series], fig)
		f.xMin, f.xMax = math.Min(f.xMin, fig.Chart.X), math.Max(f.xMax, fig.Chart.X)
		f.yMax = math.Max(f.yMax, fig.Summary.Max)
	}
	if f.xMin > 0 && f.xMax/f.xMin >= 5 {
		f.logX = true
	}
	pad := (f.xMax - f.xMin) * 0.05
	if f.logX {
		f.xMin, f.xMax = f.xMin/1.2, f.xMax*1.2
	} else {
		f.xMin, f.xMax = f.xMin-pad-0.5, f.xMax+pad+0.5
	}
	f.yMax = niceCeil(f.yMax * 1.05)
	f.open(title, xLabel, unit)
	for i, name := range names {
		figs := series[name]
		slices.SortFunc(figs, func(a, b report.Figure) int { return cmp.Compare(a.Chart.X, b.Chart.X) })
		color := f.legend(i, name)
		var pts []string
		for _, fig := range figs {
			x := f.x(fig.Chart.X)
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x, f.y(fig.Summary.Median)))
			fmt.Fprintf(&f.b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>`+"\n", x, f.y(fig.Summary.Min), x, f.y(fig.Summary.Max), color)
			fmt.Fprintf(&f.b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"><title>%s: %s %s</title></circle>`+"\n", x, f.y(fig.Summary.Median), color,
				html.EscapeString(fig.Name), report.Num(fig.Summary.Median), html.EscapeString(fig.Unit))
		}
		fmt.Fprintf(&f.b, `<polyline fill="none" stroke="%s" stroke-width="1.6" points="%s"/>`+"\n", color, strings.Join(pts, " "))
	}
	return f.close()
}

// short drops the suite from a figure's name for a legend.
func short(name string) string {
	if _, rest, ok := strings.Cut(name, "/"); ok {
		return rest
	}
	return name
}

// ticks returns about five round values between lo and hi (powers of ten
// on a log scale).
func ticks(lo, hi float64, log bool) []float64 {
	var out []float64
	if log {
		for p := math.Floor(math.Log10(lo)); p <= math.Ceil(math.Log10(hi)); p++ {
			if v := math.Pow(10, p); v >= lo && v <= hi {
				out = append(out, v)
			}
		}
		return out
	}
	step := niceStep((hi - lo) / 5)
	for v := math.Ceil(lo/step) * step; v <= hi+step*1e-9; v += step {
		out = append(out, v)
	}
	return out
}

func niceStep(raw float64) float64 {
	if raw <= 0 || math.IsNaN(raw) || math.IsInf(raw, 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	s := niceStep(v / 5)
	return math.Ceil(v/s) * s
}
